"""The interaction energy ½∬W ρρ: the term, its pair sums, the particle solvers, bad input."""

import re

import numpy as np
import pytest

from tests.conftest import assert_user_error, read, run_case, wgf
from wgf.cases import load_case
from wgf.solvers import solver_tables
from wgf.solvers.energy import FreeEnergy, Interaction


def _case(kernel: str | None = None, dim: int = 2, **inter):
    table = {"kernel": kernel, **inter} if kernel else inter
    return load_case(
        {
            "name": "w",
            "energy": {"interaction": table},
            "domain": {"lower": [-3.0] * dim, "upper": [3.0] * dim, "cells": [8] * dim},
            "initial": {"kind": "gaussian", "mean": [0.0] * dim, "cov": 0.5},
            "time": {"t_end": 1.0, "tau": 0.1},
        },
        (),
        solver_tables(),
    )


def _term(kernel: str | None = None, dim: int = 2, **inter) -> Interaction:
    term = FreeEnergy.from_case(_case(kernel, dim, **inter)).interaction
    assert term is not None
    return term


# -- the term --------------------------------------------------------------------------------
def test_newtonian_kernel_is_attractive_keller_segel():
    r = np.array([0.5, 1.0, 2.0])
    one = _term(None, 1, kind="newtonian", strength=3.0)
    np.testing.assert_allclose(one.W(r), 3.0 * r / 2, rtol=1e-15)
    two = _term(None, 2, kind="newtonian", strength=3.0)
    np.testing.assert_allclose(two.W(r), 3.0 * np.log(r) / (2 * np.pi), rtol=1e-15)
    # -ΔN = δ: the 2-D flux of ∇W through a circle is the strength (W = -χN, N = -log r/2π)
    assert 2 * np.pi * 1.7 * two.dW(np.array([1.7]))[0] == pytest.approx(3.0, rel=1e-14)
    assert two.singular and not one.singular


@pytest.mark.parametrize(
    ("kernel", "dim", "singular"),
    [
        ("r**2/2", 2, False),
        ("r**3", 2, False),
        ("r", 1, False),
        ("r", 2, True),
        ("r**2/2 - log(r)", 2, True),
        ("r**(-0.5)", 1, True),
    ],
)
def test_singular_kernels_are_mollified_and_derivatives_agree(kernel, dim, singular):
    term = _term(kernel, dim)
    assert term.singular == singular
    delta = term.mollifier(0.1)
    assert delta == (0.1 if singular else 0.0)
    r, h = np.linspace(0.05, 2.0, 40), 1e-5
    fd = (term.W(r + h, delta) - term.W(r - h, delta)) / (2 * h)
    np.testing.assert_allclose(term.dW(r, delta), fd, rtol=1e-7, atol=1e-9)
    fd2 = (term.dW(r + h, delta) - term.dW(r - h, delta)) / (2 * h)
    np.testing.assert_allclose(term.d2W(r, delta), fd2, rtol=1e-6, atol=1e-8)
    # the mollified Hessian is bounded: the stiffness is finite
    assert np.isfinite(term.stiffness(1.0, 8.0, delta))


def test_pair_sums_direct_against_mesh(rng):
    """The particle-mesh sum agrees with the direct sum, and keeps Newton's third law."""
    x = rng.normal(size=(30000, 2))
    w = np.full(len(x), 1.0 / len(x))
    targets = x[:400]
    for kernel, bound in (("r**2/2", 1e-12), ("r**2/2 - log(r)", 3e-3)):
        term = _term(kernel)
        delta = term.mollifier(0.05)
        exact = term.gradient_at(targets, x, w, delta, "direct")
        mesh = term.gradient_at(targets, x, w, delta, "mesh")
        error = np.linalg.norm(mesh - exact) / np.linalg.norm(exact)
        assert error < bound, (kernel, error)
        assert error > 0.0 or kernel == "r**2/2"
        total = w @ term.gradient_at(x, x, w, delta, "mesh")
        assert np.abs(total).max() < 1e-12
        phi = term.potential_at(targets, x, w, delta, "direct")
        phi_mesh = term.potential_at(targets, x, w, delta, "mesh")
        assert np.linalg.norm(phi_mesh - phi) / np.linalg.norm(phi) < 1e-3


def test_mesh_kernel_transforms_are_reused_while_the_grid_spacing_stays(rng):
    """A cloud that moves a little keeps its snapped grid: the kernels are not sampled again,
    and the sums stay those of a fresh term (same grid) and within the PM error of direct."""
    from wgf.solvers.energy import pair_sums

    x = rng.normal(size=(20000, 2))
    w = np.full(len(x), 1.0 / len(x))
    term = _term("r**2/2 - log(r)")
    delta = term.mollifier(0.05)
    term.gradient_at(x, x, w, delta, "mesh")
    (cached,) = term._mesh_caches[("gradient", delta)].values()
    h = next(iter(term._mesh_caches[("gradient", delta)]))[0]
    # the spacing is on the lattice 2^(k/H_STEPS), at most 4.4 % finer than asked
    k = pair_sums.H_STEPS * np.log2(h)
    assert abs(k - round(k)) < 1e-9
    asked = np.ptp(x, axis=0).max() / pair_sums.default_cells(len(x), 2)
    assert asked / 2 ** (1 / pair_sums.H_STEPS) < h <= asked
    moved = x * 1.001 + 1e-3  # one step's worth of spreading and drift
    again = term.gradient_at(moved[:300], moved, w, delta, "mesh")
    (entry,) = term._mesh_caches[("gradient", delta)].values()
    assert entry is cached  # reused, not re-sampled
    fresh = _term("r**2/2 - log(r)").gradient_at(moved[:300], moved, w, delta, "mesh")
    np.testing.assert_array_equal(again, fresh)
    exact = term.gradient_at(moved[:300], moved, w, delta, "direct")
    assert np.linalg.norm(again - exact) / np.linalg.norm(exact) < 3e-3
    # a cloud twice as wide gets a new spacing and new transforms; the first grid's stay
    # (a spacing that flips back, as a Langevin cloud's does, finds them)
    term.gradient_at(2 * x[:300], 2 * x, w, delta, "mesh")
    kept = term._mesh_caches[("gradient", delta)]
    assert len(kept) == 2 and next(reversed(kept.values())) is not cached
    term.gradient_at(moved[:300], moved, w, delta, "mesh")
    assert len(kept) == 2 and next(reversed(kept.values())) is cached  # reused again
    # at most KEPT_GRIDS grids, the least recently used dropped first
    for scale in (3, 4, 5):
        term.gradient_at(scale * x[:300], scale * x, w, delta, "mesh")
    assert len(kept) == pair_sums.KEPT_GRIDS
    assert all(entry is not cached for entry in kept.values())


@pytest.mark.parametrize(
    ("dim", "kernel", "shell"),
    [
        # the potential at r of a unit shell of radius a: N(max(r, a)) (Newton's theorem)
        (2, None, lambda r, a: np.log(max(r, a)) / (2 * np.pi)),
        (3, "-1/(4*pi*r)", lambda r, a: -1.0 / (4 * np.pi * max(r, a))),
    ],
)
def test_mollified_newtonian_kernel_is_the_kernel_of_a_compact_mollifier(dim, kernel, shell):
    """W_δ = W∗ψ_δ, ψ_δ ∝ (1 - |x|²/δ²)³₊: exact beyond δ, the mollifier's potential within."""
    from scipy.integrate import quad

    term = _term(kernel, dim, **({} if kernel else {"kind": "newtonian"}))
    delta = 0.3
    # ψ_δ's mass on the shell of radius a, normalised: ∝ (1 - a²/δ²)³ a^{d-1}
    profile = lambda a: (1 - (a / delta) ** 2) ** 3 * a ** (dim - 1)  # noqa: E731
    tight = {"epsabs": 1e-15, "epsrel": 1e-13}
    total = quad(profile, 0.0, delta, **tight)[0]
    radii = np.array([0.0, 0.05, 0.15, 0.29, 0.3, 0.31, 0.6, 2.0])
    convolved = [
        quad(lambda a, r=r: profile(a) * shell(r, a), 0.0, delta, points=[r], **tight)[0] / total
        for r in radii
    ]
    np.testing.assert_allclose(term.W(radii, delta), convolved, rtol=1e-12, atol=1e-14)
    far = radii[radii >= delta]
    np.testing.assert_array_equal(term.W(far, delta), term.W(far))
    np.testing.assert_array_equal(term.dW(far, delta), term.dW(far))


def test_mollified_newtonian_force_breaks_the_virial_only_within_delta(rng):
    """Σ_{i≠j} w_i w_j r W_δ'(r) = κ/(2π)[M² - Σ w² - Σ_{r_ij<δ} w_i w_j (1 - r_ij²/δ²)⁴].

    For the 2-D Newtonian kernel r W'(r) = κ/(2π) for every pair (the Keller–Segel virial
    law); the mollifier changes only the pairs closer than δ, by its mass outside r_ij.
    """
    chi, delta = 4 * np.pi, 0.1
    term = _term(None, 2, kind="newtonian", strength=chi)
    x = rng.normal(scale=0.5, size=(2000, 2))
    w = rng.random(len(x))
    w /= w.sum()
    # Σ_i w_i x_i·∇(W_δ∗μ)(x_i) = ½ Σ_{i≠j} w_i w_j (x_i - x_j)·∇W_δ(x_i - x_j)
    pairs = 2.0 * float(np.sum(w[:, None] * x * term.gradient_at(x, x, w, delta, "direct")))
    r = np.linalg.norm(x[:, None] - x[None], axis=2)
    near = (r < delta) & (r > 0)
    deficit = np.sum(np.outer(w, w)[near] * (1 - (r[near] / delta) ** 2) ** 4)
    assert deficit > 1e-3 * (1 - w @ w)  # pairs within δ exist: the check is not empty
    assert pairs == pytest.approx(chi / (2 * np.pi) * (1 - w @ w - deficit), rel=1e-12)


def test_blob_keller_segel_second_moment_law(tmp_path):
    # d/dt M₂ = 4DM − χM²/(2π) = 2; blob at 2537 particles (3200 requested), particle-mesh
    # sums.  Measured 0.18 % (benchmarks/ks_blob_budget.py; the Plummer softening: 5.8 %).
    sets = ["solver.blob.particles=3200", "solver.blob.pair_sum=mesh"]
    r = read(run_case("keller_segel_2d", sets, tmp_path, solver="blob").path)
    slope = np.polyfit(r["time"], r["diagnostics/second_moment"], 1)[0]
    assert abs(slope - 2.0) / 2.0 < 0.005


def test_pair_force_is_minus_the_gradient_and_odd(rng):
    term = _term("r**2/2 - log(r)")
    z, h, delta = rng.normal(size=(50, 2)), 1e-6, 0.1
    force = term.pair_force(z, delta)
    for k in range(2):
        e = np.zeros(2)
        e[k] = h
        fd = (
            term.W(np.linalg.norm(z + e, axis=1), delta)
            - term.W(np.linalg.norm(z - e, axis=1), delta)
        ) / (2 * h)
        np.testing.assert_allclose(-force[:, k], fd, rtol=1e-6, atol=1e-8)
    np.testing.assert_array_equal(term.pair_force(-z, delta), -force)
    assert np.all(term.pair_force(np.zeros((1, 2))) == 0.0)


def test_direct_sum_skips_the_self_pair():
    term = _term("r**2/2 - log(r)")
    x = np.array([[0.0, 0.0], [1.0, 0.0]])
    w = np.array([0.25, 0.75])
    phi = term.potential_at(x, x, w)  # unmollified: W(0) = -inf would poison the sum
    np.testing.assert_allclose(phi, [0.75 * 0.5, 0.25 * 0.5], rtol=1e-15)
    assert term.energy(x, w) == pytest.approx(0.25 * 0.75 * 0.5, rel=1e-15)


# -- particle solvers --------------------------------------------------------------------------
def _diagnostics(path):
    r = read(path)
    return r, {k.split("/")[1]: v for k, v in r.items() if k.startswith("diagnostics/")}


def _as_ou_potential(solver: str, sets: list[str]) -> list[str]:
    """W = r²/2 switched off and replaced by V = M|x - m|²/2, m the particles' centre of mass."""
    from mpi4py import MPI

    from wgf.solvers import get_solver

    case = load_case("aggregation_quadratic_2d", sets, solver_tables())
    start = get_solver(solver).load()(case, MPI.COMM_SELF, case.solver_params(solver))
    m = start.w @ start.x / start.w.sum()
    return [
        *sets,
        "energy.interaction.strength=0.0",
        "energy.potential.A=[[1.0, 0.0], [0.0, 1.0]]",
        f"energy.potential.center=[{float(m[0])!r}, {float(m[1])!r}]",
    ]


@pytest.mark.parametrize(
    ("solver", "sets", "l1_bound"),
    [
        ("blob", ["solver.blob.particles=400"], 0.16),
        ("langevin", ["solver.langevin.particles=2000"], 0.14),
    ],
)
def test_aggregation_quadratic_2d_against_its_exact_solution(solver, sets, l1_bound, tmp_path):
    summary = run_case("aggregation_quadratic_2d", sets, tmp_path / "w", solver=solver)
    r, d = _diagnostics(summary.path)
    assert 0.5 * l1_bound < d["l1_error"][-1] < l1_bound
    assert np.ptp(d["mass"]) < 1e-10
    case = load_case("aggregation_quadratic_2d", (), solver_tables())
    mean, cov = case.gaussian_moments(0.5)
    exact_m2 = mean @ mean + np.trace(cov)
    assert d["second_moment"][-1] == pytest.approx(exact_m2, rel=0.07)
    # the interaction energy ½ΣΣ w w |x_i - x_j|²/2 is the variance (mass 1): Σ w |x - m|²/2
    x, w = r["particles/positions"][-1], r["particles/weights"]
    m = w @ x
    assert d["interaction_energy"][-1] == pytest.approx(0.5 * w @ ((x - m) ** 2).sum(1), rel=1e-12)
    if solver == "langevin":
        # the noise moves the empirical centre of mass, which the pair forces then follow:
        # no fixed-potential twin; its covariance is the exact one to Monte-Carlo error
        cov_h = np.cov((x - m).T, aweights=w, bias=True)
        np.testing.assert_allclose(cov_h, cov, rtol=0, atol=0.06)
        return
    # small substeps: the blob's energy never increases
    assert np.all(np.diff(d["energy"]) <= 1e-12 * np.abs(d["energy"][:-1]))
    # W = r²/2 pulls each particle with -M(x - m), m conserved: the same run as the OU
    # potential V = M|x - m|²/2 (same substeps, same noise), to round-off — and, for blob, to
    # the jump of its Gaussian truncated at 5√ε (~1e-10), which a pair at the cut-off feels
    # differently after a 1e-16 change.
    ou = run_case(
        "aggregation_quadratic_2d", _as_ou_potential(solver, sets), tmp_path / "v", solver=solver
    )
    np.testing.assert_allclose(
        read(ou.path)["particles/positions"], r["particles/positions"], rtol=0, atol=1e-8
    )


def test_quantile_1d_aggregation_quadratic_1d(tmp_path):
    summary = run_case(
        "aggregation_quadratic_1d",
        ["solver.quantile-1d.particles=200"],
        tmp_path,
        solver="quantile-1d",
    )
    _, d = _diagnostics(summary.path)
    assert 1e-4 < d["quantile_error_interior"][-1] < 2e-2
    assert 1e-3 < d["l1_error"][-1] < 3e-2
    assert np.ptp(d["mass"]) < 1e-10
    assert np.all(np.diff(d["energy"]) <= 1e-12 * np.abs(d["energy"][:-1]))


def test_quantile_1d_newtonian_moves_each_quantile_at_its_exact_speed(tmp_path):
    """W = χ|x|/2 without diffusion: ∂_t X(t, s) = -χM(s - ½), exact for interior quantiles."""
    chi, t_end = 0.8, 0.5
    case = {
        "name": "ks1",
        "energy": {"internal": "none", "interaction": {"kind": "newtonian", "strength": chi}},
        "domain": {"lower": [-3.0], "upper": [3.0], "cells": [10]},
        "initial": {"kind": "gaussian", "mean": [0.2], "cov": 0.3},
        "time": {"t_end": t_end, "tau": 0.1},
        "solver": {"quantile-1d": {"particles": 101}},
    }
    from mpi4py import MPI

    from wgf.run import run_flow
    from wgf.solvers import get_solver

    loaded = load_case(case, (), solver_tables())
    solver = get_solver("quantile-1d").load()(
        loaded, MPI.COMM_WORLD, loaded.solver_params("quantile-1d")
    )
    x0 = solver.x[:, 0].copy()
    run_flow(solver, loaded, tmp_path)
    s = np.linspace(0.0, 1.0, len(x0))
    moved = solver.x[:, 0] - x0
    np.testing.assert_allclose(moved[1:-1], -chi * t_end * (s[1:-1] - 0.5), rtol=0, atol=1e-9)
    # the end particles (mass w/2) feel the mass beyond them minus their own half: O(1/N)
    assert np.abs(moved[[0, -1]] + chi * t_end * (s[[0, -1]] - 0.5)).max() < chi * t_end / 100


def test_swarm_2d_approaches_the_unit_disk(tmp_path):
    summary = run_case(
        "swarm_2d", ["solver.blob.particles=400", "time.t_end=3.0"], tmp_path, solver="blob"
    )
    r, d = _diagnostics(summary.path)
    x, w = r["particles/positions"][-1], r["particles/weights"]
    radius = np.linalg.norm(x - w @ x, axis=1).max()
    # The mollified repulsion (δ = √ε ≈ 0.1 here) is weaker than -log r within δ, so the
    # blob steady state is a little tighter than the disk; figures in benchmarks/README.md.
    assert 0.38 < d["second_moment"][-1] < 0.5
    assert 0.75 < radius < 1.0
    assert abs(d["second_moment"][-1] - d["second_moment"][-6]) < 2e-3  # steady
    assert np.ptp(d["mass"]) < 1e-10
    assert np.all(np.diff(d["energy"]) <= 1e-12 * np.abs(d["energy"][:-1]))


def test_blob_without_internal_energy_builds_no_neighbour_list():
    """Its velocity needs none, so its peak density is the binned estimate of ρ_ε.

    A list built for that diagnostic alone cost 10.5 s at N = 10⁵ (swarm_2d) against 0.18 s
    for the binned estimate.
    """
    from mpi4py import MPI

    from wgf.run import build_solver
    from wgf.solvers.particles.kernels import density_at

    case = load_case("swarm_2d", ["solver.blob.particles=900"], solver_tables())
    solver = build_solver(case, "blob", MPI.COMM_WORLD)
    solver.step(case.section("time")["tau"])
    d = solver.diagnostics(case.section("time")["tau"])
    assert "peak_density" not in d  # a repelling core: no blow-up check (test below)
    peak = solver.peak_density(solver.resolution_length())
    binned = solver.density_at_particles()  # what the XDMF series colours particles by
    assert solver.list_builds == 0
    exact = density_at(solver.x, solver.x, solver.w, solver.eps)  # the cut-off sum of ρ_ε
    assert peak == pytest.approx(exact.max(), rel=2e-3)
    np.testing.assert_allclose(binned, exact, rtol=0, atol=5e-3 * exact.max())


@pytest.mark.parametrize(
    ("kernel", "blows_up"),
    [
        ("log(r)", True),  # Keller–Segel
        ("-1/r", True),
        ("r", True),  # aggregation: collapses in finite time
        ("-log(r)", False),
        ("1/r", False),
        ("r**2/2 - log(r)", False),  # swarming: the disk
        ("r**2/2", False),  # smooth: contracts exponentially
    ],
)
def test_only_a_singular_core_that_attracts_may_blow_up(kernel, blows_up):
    assert FreeEnergy.from_case(_case(kernel)).may_blow_up is blows_up


# -- bad input ---------------------------------------------------------------------------------
BAD = {
    "not radial": (["--set", "energy.interaction.kernel=x**2 + r"], "must be radial"),
    "unknown function": (["--set", "energy.interaction.kernel=bessel(r)"], "unknown function"),
    "unknown kind": (["--set", "energy.interaction.kind=coulomb"], "is not one of newtonian"),
    "strength not finite": (["--set", "energy.interaction.strength=inf"], "not finite"),
}


@pytest.mark.parametrize("name", BAD)
def test_bad_interaction_input_exits_2(name, tmp_path):
    out = tmp_path / "out"
    args, message = ["--solver", "blob", *BAD[name][0]], BAD[name][1]
    assert_user_error(wgf("run", "aggregation_quadratic_2d", *args, "--out", str(out)), message)
    assert not out.exists()


def test_a_solver_without_the_interaction_refuses_it_with_its_reason():
    # Every registered flow solver takes W now; the refusal stays for new ones.
    from wgf.cases.errors import UserError
    from wgf.solvers.protocols import Capabilities

    case = load_case("aggregation_quadratic_2d", [], solver_tables())
    refusing = Capabilities(reasons={"interaction": "no W∗ρ yet"})
    with pytest.raises(UserError, match=r"'energy\.interaction': mine takes no interaction: no W"):
        refusing.check(case, "mine")
    Capabilities(interaction=True).check(case, "mine")


def test_newtonian_in_3d_is_refused(tmp_path):
    path = tmp_path / "ks3.toml"
    path.write_text(
        'name = "ks3"\n[energy.interaction]\nkind = "newtonian"\n'
        "[domain]\nlower = [-1.0, -1.0, -1.0]\nupper = [1.0, 1.0, 1.0]\ncells = [4, 4, 4]\n"
        '[initial]\nkind = "gaussian"\nmean = [0.0, 0.0, 0.0]\ncov = 0.1\n'
        "[time]\nt_end = 0.1\ntau = 0.1\n"
    )
    out = tmp_path / "out"
    proc = wgf("run", str(path), "--solver", "blob", "--out", str(out))
    assert_user_error(proc, '"newtonian" is supported in 1-D and 2-D')
    assert not out.exists()


@pytest.mark.parametrize(
    ("case", "sets", "message"),
    [
        ("aggregation_quadratic_2d", ["exact.kind=gaussian"], "a solution without interaction"),
        (
            "aggregation_quadratic_2d",
            ["energy.interaction.kernel=r**2/2 + r"],
            "kernel = a·r²/2 + b",
        ),
        ("swarm_2d", ["energy.interaction.kernel=r**2/2 - 2*log(r)"], "a positive multiple"),
        ("swarm_2d", ["energy.internal=entropy"], 'energy.internal = "none"'),
        ("aggregation_quadratic_2d", ["energy.interaction.kind=newtonian"], "not both"),
    ],
)
def test_exact_kinds_with_interaction_are_checked(case, sets, message):
    from wgf.cases.errors import UserError

    with pytest.raises(UserError, match=re.escape(message)):
        load_case(case, sets, solver_tables())
