"""fem-implicit on every shipped case: errors against closed forms, conservation,
energy decay, positivity, convergence in h."""

import logging
import re
from contextlib import contextmanager

import numpy as np
import pytest

from tests.conftest import read, run_case, wgf
from wgf.cases import shipped_cases
from wgf.cases.errors import SolverError

#: Relative L1 error at T with the shipped (coarse, seconds-long) settings; measured
#: values are about 2/3 of these bounds.
L1_BOUND = {
    "fokker_planck_ou_1d": 5e-3,
    "fokker_planck_ou_2d": 2e-2,
    "heat_1d": 1.6e-2,
    "heat_2d": 4.5e-2,
    "porous_medium_1d": 1.8e-2,
    "porous_medium_2d": 6e-2,
    "nonlinear_fokker_planck_1d": 6.5e-3,
    "nonlinear_fokker_planck_2d": 4e-2,
    "double_well_1d": 4.5e-4,
    "double_well_2d": 9.5e-3,
}


# Transport cases (a [target], no clock) are fem-bb's, tested in test_fem_bb.py.
# porous_quartic_2d: see test_power_law_in_a_confining_well_stops_instead_of_going_negative.
# Interaction cases are the particle solvers' for now (test_interaction.py), and so are
# the [model] cases (test_two_layer.py).
FLOW_CASES = [
    p
    for p in shipped_cases()
    if "[target]" not in p.read_text()
    and "[energy.interaction]" not in p.read_text()
    and "[model]" not in p.read_text()
    and p.stem != "porous_quartic_2d"
]


@pytest.mark.parametrize("path", FLOW_CASES, ids=lambda p: p.stem)
def test_shipped_case(path, tmp_path):
    summary = run_case(str(path), [], tmp_path)
    r = read(summary.path)
    d = {k.split("/")[1]: v for k, v in r.items() if k.startswith("diagnostics/")}
    t_end = r["attrs"]["config"] and summary.t
    assert r["time"][-1] == pytest.approx(t_end)
    assert len(r["time"]) == len(d["energy"]) == summary.steps + 1
    # Mass: the scheme conserves it to round-off.
    assert np.max(np.abs(d["mass"] - d["mass"][0])) / d["mass"][0] < 1e-10
    assert d["mass"][0] == pytest.approx(1.0, rel=1e-12)
    # Energy: non-increasing at every step (by construction of the scheme).
    assert np.all(np.diff(d["energy"]) <= 1e-12 * np.abs(d["energy"][:-1]))
    assert d["energy"][-1] < d["energy"][0]
    # Error against the closed form at T.
    assert d["l1_error"][-1] < L1_BOUND[path.stem]
    assert d["l1_error"][-1] > 0.1 * L1_BOUND[path.stem]  # a bound that can fail both ways
    if "fokker_planck_ou" in path.stem or "heat" in path.stem:
        assert np.all(d["min_density"] > 0.0)  # Slotboom form: discrete maximum principle


def test_power_law_below_m_2_converges_to_the_barenblatt(tmp_path):
    """m = 1.5: U'' = m ρ^{m-2} is infinite at the free boundary.  Newton on ρ alone takes
    c'(ρ) = 0 where ρ = 0 (U' is taken at max(ρ, 0)); the (ρ, μ) form's Jacobian held the
    infinity and its first linear solve failed.  The error falls with h, mass is kept."""
    errors = []
    for cells in (24, 48):
        summary = run_case(
            "porous_medium_2d", ["energy.m=1.5", f"domain.cells=[{cells}, {cells}]"], tmp_path
        )
        r = read(summary.path)
        d = {k.split("/")[1]: v for k, v in r.items() if k.startswith("diagnostics/")}
        assert np.max(np.abs(d["mass"] - d["mass"][0])) < 1e-10
        assert np.all(np.diff(d["energy"]) <= 1e-12 * np.abs(d["energy"][:-1]))
        errors.append(d["l1_error"][-1])
    # Measured 4.79e-2 and 2.73e-2 (fem-jko: 3.73e-2 and 1.76e-2).
    assert 3.5e-2 < errors[0] < 6e-2
    assert 1.8e-2 < errors[1] < 3.5e-2


def test_power_law_in_a_confining_well_stops_instead_of_going_negative(tmp_path):
    """The cell-averaged mobility drains the vertices outside the support near a steady
    state of a confining V: the step is refused (exit 3), not reported with ρ < 0."""
    with pytest.raises(SolverError, match="negative on"):
        run_case("porous_quartic_2d", ["domain.cells=[24, 24]"], tmp_path)
    r = read(tmp_path / "porous_quartic_2d_fem-implicit.h5")
    assert 1 <= len(r["time"]) < 101  # the completed steps are kept


def test_clusters_below_the_mesh_without_diffusion_stop_at_once_and_say_why(tmp_path):
    """USA tokens, no internal energy: the clusters outgrow the mesh; exit 3 with that reason,
    no retry (the failure time converges as τ → 0), and no blame on a power law."""
    sets = ["initial.kind=perturbed_uniform", "initial.mode=3", "initial.amplitude=0.01"]
    sets += ["domain.cells=[64]", "time.t_end=2.0"]
    args = [a for s in sets for a in ("--set", s)]
    p = wgf("run", "tokens_circle_usa", "--solver", "fem-implicit", "--out", str(tmp_path), *args)
    assert p.returncode == 3, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    assert "negative on" in lines[0] and "clusters narrower than the mesh" in lines[0]
    assert "cannot help" in lines[0] and "power law" not in lines[0]
    assert "rejected" not in p.stdout and "--resume" not in lines[0]  # τ/2 would not help
    found = re.search(r"step \d+ \(t = (\S+) →", lines[0])
    assert 0.5 < float(found[1]) < 1.2  # after the cos 3θ mode (rate 7.5) has grown 100×


def test_sampled_density_matches_exact(tmp_path):
    from wgf.cases import load_case

    summary = run_case("fokker_planck_ou_2d", [], tmp_path)
    r = read(summary.path)
    case = load_case("fokker_planck_ou_2d")
    exact = case.exact_solution()
    pts = r["samples/points"]
    assert pts.shape == (80 * 80, 2)
    for t, dens in zip(r["snapshots/time"], r["snapshots/density"], strict=True):
        ex = exact(t, pts)
        assert np.sum(np.abs(dens - ex)) / np.sum(ex) < 0.05  # P1 interpolation, h = σ/2
    np.testing.assert_allclose(r["snapshots/time"], np.linspace(0, 0.5, 6), atol=1e-12)


def test_eoc_in_h_linear_fokker_planck_1d(tmp_path):
    """L1 error at T with τ ∝ h²: second order in h for the Slotboom P1 scheme."""
    errors, hs = [], []
    for n in (25, 50, 100):
        tau = 0.02 * (25 / n) ** 2
        s = run_case(
            "fokker_planck_ou_1d",
            [f"domain.cells=[{n}]", f"time.tau={tau}", "output.snapshots=1"],
            tmp_path / str(n),
        )
        errors.append(s.diagnostics["l1_error"])
        hs.append(10.0 / n)
    slope = np.polyfit(np.log(hs), np.log(errors), 1)[0]
    assert 1.8 < slope < 2.3, (errors, slope)


def test_eoc_in_tau_porous_medium_1d(tmp_path):
    """First order in τ on a fine mesh (the free boundary limits the spatial error)."""
    errors, taus = [], [0.01, 0.005, 0.0025]
    for tau in taus:
        s = run_case(
            "porous_medium_1d",
            ["domain.cells=[1000]", f"time.tau={tau}", "output.snapshots=1"],
            tmp_path / str(tau),
        )
        errors.append(s.diagnostics["l1_error"])
    slope = np.polyfit(np.log(taus), np.log(errors), 1)[0]
    assert 0.85 < slope < 1.15, (errors, slope)


@pytest.mark.parametrize("case", ["heat_2d", "porous_medium_2d"])
def test_quadrilateral_and_triangle_meshes_agree(case, tmp_path):
    # heat_2d: the fitted flux; porous_medium_2d: the (ρ, μ) form, whose vertex rule has
    # one stiffness tensor per vertex on quadrilaterals (solvers/fem/vertex_rule.py).
    tri = run_case(case, [], tmp_path / "tri").diagnostics
    quad = run_case(case, ["domain.cell_type=hypercube"], tmp_path / "quad").diagnostics
    assert quad["l1_error"] < 1.5 * tri["l1_error"]
    assert quad["mass"] == pytest.approx(1.0, rel=1e-12)


def test_first_guess_is_extrapolated_from_the_last_step(tmp_path):
    """nonlinear_fokker_planck_1d, 50 steps: 272 Newton iterations with the extrapolated
    (ρ, μ), 288 from the last step's; the same L1 (4.147e-3) either way."""
    res = run_case("nonlinear_fokker_planck_1d", [], tmp_path)
    assert res.iterations_total <= 280 and res.retries == 0
    assert res.diagnostics["l1_error"] < 4.2e-3


def test_case_tolerances_are_not_inherited_from_an_earlier_run(tmp_path):
    """Two runs in one process (a sweep, a notebook): the second keeps its own max_it."""
    sets = ["domain.cells=[16, 16]"]
    first = run_case("porous_medium_2d", sets, tmp_path / "a")
    capped = run_case("porous_medium_2d", [*sets, "solver.fem-implicit.max_it=3"], tmp_path / "b")
    assert first.retries == 0 and max(first.iterations) > 3
    assert capped.retries == 1 and max(capped.iterations) <= 6  # two halves of ≤ 3


@contextmanager
def warnings_of_fem_implicit():
    """The WARNING records that fem-implicit logs inside the block (messages)."""
    messages: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = logging.getLogger("wgf.solvers.fem.implicit_euler")
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)


def test_bernoulli_function_is_finite_and_exact_in_its_limits():
    from wgf.solvers.fem.graph import bernoulli

    x = np.array([-800.0, -30.0, -1e-9, 0.0, 1e-9, 0.7, 30.0, 800.0])
    b = bernoulli(x)
    assert np.all(np.isfinite(b)) and np.all(b >= 0.0)
    assert b[3] == 1.0 and b[2] == pytest.approx(1.0, abs=1e-9)
    assert b[0] == pytest.approx(800.0) and b[-1] == 0.0  # limits: -x and 0, no overflow
    assert b[5] == pytest.approx(0.7 / np.expm1(0.7), rel=1e-14)
    # B(-x) = e^x B(x): the identity that makes e^{-V/D} a discrete steady state.
    y = np.linspace(-20, 20, 81)
    np.testing.assert_allclose(bernoulli(-y), np.exp(y) * bernoulli(y), rtol=1e-12)


#: fokker_planck_ou_1d at D = 0.02 on the shipped 200 cells: the fitted flux's L1 error
#: at T (measured 0.033; the Slotboom form with cell-averaged weights gave 0.71).
SMALL_D_L1_BOUND = 0.045


def test_small_diffusion_1d_is_accurate_and_warns_once(tmp_path):
    with warnings_of_fem_implicit() as warnings:
        s = run_case("fokker_planck_ou_1d", ["energy.diffusivity=0.02"], tmp_path)
    r = read(s.path)
    l1 = r["diagnostics/l1_error"][-1]
    assert 0.1 * SMALL_D_L1_BOUND < l1 < SMALL_D_L1_BOUND
    mass, energy = r["diagnostics/mass"], r["diagnostics/energy"]
    assert np.max(np.abs(mass - 1.0)) < 1e-12
    assert np.all(np.diff(energy) <= 1e-12 * np.abs(energy[:-1]))
    assert np.all(r["diagnostics/min_density"] > 0.0)
    # |∇V| h/D on the initial support (x ≤ 1 + 3σ = 2.5, h = 0.05): about 6.
    assert len(warnings) == 1 and "Péclet number |∇V|h/D = 6." in warnings[0]


def test_small_diffusion_1d_converges_under_refinement(tmp_path):
    """Twice the cells, about half the error (first order where Pe > 2), and no warning
    once the mesh resolves the drift."""
    errors = []
    for n in (200, 400):
        sets = ["energy.diffusivity=0.02", f"domain.cells=[{n}]", "output.snapshots=1"]
        errors.append(run_case("fokker_planck_ou_1d", sets, tmp_path / str(n)).diagnostics)
    ratio = errors[0]["l1_error"] / errors[1]["l1_error"]
    assert 1.6 < ratio < 2.4, errors
    with warnings_of_fem_implicit() as warnings:
        sets = ["energy.diffusivity=0.02", "domain.cells=[1600]", "time.t_end=0.02"]
        run_case("fokker_planck_ou_1d", sets, tmp_path / "fine")
    assert warnings == []


def test_shipped_diffusion_does_not_warn(tmp_path):
    with warnings_of_fem_implicit() as warnings:
        run_case("fokker_planck_ou_2d", ["time.t_end=0.05"], tmp_path)
    assert warnings == []


def test_small_diffusion_2d_runs_where_the_weight_underflowed(tmp_path):
    """D = 0.02 on [-4, 4]²: e^{-(V - V_min)/D} < 1e-300 at the corners, which stopped
    the Slotboom form at step 1; the fitted flux never forms it."""
    with warnings_of_fem_implicit() as warnings:
        s = run_case(
            "fokker_planck_ou_2d", ["energy.diffusivity=0.02", "time.t_end=0.05"], tmp_path
        )
    r = read(s.path)
    assert s.steps == 5 and r["time"][-1] == pytest.approx(0.05)
    assert np.max(np.abs(r["diagnostics/mass"] - 1.0)) < 1e-12
    assert np.all(r["diagnostics/min_density"] >= 0.0)
    assert np.all(np.diff(r["diagnostics/energy"]) <= 0.0)
    # h = 0.25, |∇V| ≈ 2.6 on the initial support: Pe ≈ 30, far from resolved.
    assert len(warnings) == 1 and "Péclet" in warnings[0] and "refine domain.cells" in warnings[0]


def test_small_diffusion_steady_state_is_kept_exactly(tmp_path):
    """ρ ∝ e^{-V/D} at the vertices is a discrete steady state of the fitted flux (F_ij = 0
    on every edge), however coarse the mesh: nothing drifts, even at D = 0.02 on h = 0.25."""
    sets = [
        "energy.diffusivity=0.02",
        'initial.kind="expression"',
        'initial.density="exp(-(x**2 + y**2)/0.04)"',  # e^{-V/D}, V = |x|²/2
        'exact.kind="stationary"',
        "time.t_end=0.05",
    ]
    r = read(run_case("fokker_planck_ou_2d", sets, tmp_path).path)
    energy, l1 = r["diagnostics/energy"], r["diagnostics/l1_error"]
    np.testing.assert_allclose(energy, energy[0], rtol=1e-11)
    np.testing.assert_allclose(l1, l1[0], rtol=1e-9)


def test_newton_stops_when_the_residual_has_stopped_falling():
    # Backtracking accepts its last, tiny trial when it finds no decrease; Newton must then
    # fail (and the step be retried) after STALLED_ITERATIONS such iterations in a row, not
    # spin to max_it, nor stop "converged" on the tiny step as PETSc's step-length test
    # would; one iteration above the lowest ‖F‖ that Newton recovers from is no stall.
    from petsc4py import PETSc

    from wgf.solvers.fem.implicit_euler import STALLED_ITERATIONS, _NewtonTest

    assert STALLED_ITERATIONS == 5
    snes = PETSc.SNES().create(PETSc.COMM_SELF)
    snes.setTolerances(rtol=1e-6, atol=1e-12, stol=1e-8, max_it=10)
    reason = PETSc.SNES.ConvergedReason

    def reasons(norms: list[float]) -> list[int]:
        test = _NewtonTest()
        return [test(snes, it, (1.0, 1e-14, f)) for it, f in enumerate(norms)]

    going = reason.CONVERGED_ITERATING
    stalled = [2.0, 1.0, 1.0, 1.5, 1.0, 1.0, 1.2]
    assert reasons(stalled) == [going] * 6 + [reason.DIVERGED_LINE_SEARCH]
    assert reasons([2.0, 1.0, 1.2, 1.1, 1.0, 1.3, 0.5, 0.6, 0.4]) == [going] * 9
    assert reasons([2.0, 1.0, 1e-3, 3e-6, 1e-7])[3:] == [going, reason.CONVERGED_FNORM_RELATIVE]
    assert reasons([1e-13]) == [reason.CONVERGED_FNORM_ABS]
    assert reasons([float("nan")]) == [reason.DIVERGED_FUNCTION_NANORINF]
    assert reasons([2.0**-it for it in range(11)])[-1] == reason.DIVERGED_MAX_IT
    assert reasons([1.0, 2e4]) == [going, reason.DIVERGED_DTOL]
    # A second solve starts afresh (the test object lives as long as the SNES).
    test = _NewtonTest()
    for it, f in enumerate([2.0, 1.0, 1.0, 1.0, 1.0, 1.0]):
        test(snes, it, (1.0, 1.0, f))
    assert test(snes, 0, (1.0, 0.0, 5.0)) == going
    assert test(snes, 1, (1.0, 1.0, 4.0)) == going
