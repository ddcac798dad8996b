"""fem-implicit on every shipped case: errors against closed forms, conservation,
energy decay, positivity, convergence in h."""

import numpy as np
import pytest

from tests.conftest import read, run_case
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
# Interaction cases are the particle solvers' for now (test_interaction.py).
FLOW_CASES = [
    p
    for p in shipped_cases()
    if "[target]" not in p.read_text()
    and "[energy.interaction]" not in p.read_text()
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


def test_power_law_in_a_confining_well_stops_instead_of_going_negative(tmp_path):
    """The cell-averaged mobility drains the vertices outside the support near a steady
    state of a confining V: the step is refused (exit 3), not reported with ρ < 0."""
    with pytest.raises(SolverError, match="negative on"):
        run_case("porous_quartic_2d", ["domain.cells=[24, 24]"], tmp_path)
    r = read(tmp_path / "porous_quartic_2d_fem-implicit.h5")
    assert 1 <= len(r["time"]) < 101  # the completed steps are kept


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


def test_quadrilateral_and_triangle_meshes_agree(tmp_path):
    tri = run_case("heat_2d", [], tmp_path / "tri").diagnostics
    quad = run_case("heat_2d", ["domain.cell_type=hypercube"], tmp_path / "quad").diagnostics
    assert quad["l1_error"] < 1.5 * tri["l1_error"]
    assert quad["mass"] == pytest.approx(1.0, rel=1e-12)


def test_case_tolerances_are_not_inherited_from_an_earlier_run(tmp_path):
    """Two runs in one process (a sweep, a notebook): the second keeps its own max_it."""
    sets = ["domain.cells=[16, 16]"]
    first = run_case("porous_medium_2d", sets, tmp_path / "a")
    capped = run_case("porous_medium_2d", [*sets, "solver.fem-implicit.max_it=3"], tmp_path / "b")
    assert first.retries == 0 and max(first.iterations) > 3
    assert capped.retries == 1 and max(capped.iterations) <= 6  # two halves of ≤ 3
