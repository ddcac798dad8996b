"""Particle solvers (blob, langevin, quantile-1d): errors against closed forms, rates,
energy decay, exact mass, bad input, ParaView read-back."""

import numpy as np
import pytest

from tests.conftest import PVBATCH, assert_user_error, pvbatch_read, read, run_case, wgf
from wgf.cases import load_case
from wgf.solvers import solver_tables


def _run(case, solver, sets, out):
    return read(run_case(case, sets, out, solver=solver).path)


def _energy_never_increases(r):
    e = r["diagnostics/energy"]
    return np.all(np.diff(e) <= 1e-13 * np.abs(e[:-1]))


# -- blob -----------------------------------------------------------------------------------
def test_blob_heat_1d_converges_at_order_two_in_n(tmp_path):
    """L1 error of ρ_ε at T against the Gaussian: slope ≈ 2 - δ = 1.9 in N (measured 1.93)."""
    ns, errors = [100, 200, 400], []
    for n in ns:
        r = _run("heat_1d", "blob", [f"solver.blob.particles={n}"], tmp_path / str(n))
        errors.append(r["diagnostics/l1_error"][-1])
        assert _energy_never_increases(r)
        # Mass is the sum of fixed weights: conserved to the last bit.
        mass = r["diagnostics/mass"]
        assert np.all(mass == mass[0]) and mass[0] == pytest.approx(1.0, abs=1e-14)
        assert r["particles/positions"].shape == (6, n, 1)
        assert r["particles/weights"].sum() == pytest.approx(1.0, abs=1e-14)
        assert r["diagnostics/escaped"][-1] == 0
    slope = -np.polyfit(np.log(ns), np.log(errors), 1)[0]
    assert 1.6 < slope < 2.2, (errors, slope)
    assert errors[-1] < 5e-4


@pytest.mark.parametrize(
    "case,tol", [("porous_medium_1d", 0.02), ("nonlinear_fokker_planck_1d", 0.02)]
)
def test_blob_power_law_energy_decays_and_matches_closed_form(case, tol, tmp_path):
    r = _run(case, "blob", ["solver.blob.particles=100"], tmp_path)
    assert _energy_never_increases(r)
    assert r["diagnostics/l1_error"][-1] < tol
    # Substeps per τ come from the stability bound, which relaxes as the peak drops.
    its = r["diagnostics/iterations"][1:]
    assert its[0] > its[-1] >= 1


def test_blob_ou_2d_covariance(tmp_path):
    sets = ["solver.blob.particles=1600", "time.t_end=0.2"]
    r = _run("fokker_planck_ou_2d", "blob", sets, tmp_path)
    case = load_case("fokker_planck_ou_2d", sets, solver_tables())
    x, w = r["particles/positions"][-1], r["particles/weights"]
    mean, cov = case.gaussian_moments(r["snapshots/time"][-1])
    mu = w @ x
    c = (x - mu).T @ ((x - mu) * w[:, None])
    assert np.abs(mu - mean).max() < 1e-4
    assert np.abs(c - cov).max() < 0.01 * np.abs(cov).max()
    assert _energy_never_increases(r)


def test_blob_reflects_at_the_walls_and_counts(tmp_path):
    """A box too small for the run: particles stay inside and ``escaped`` says so."""
    sets = ["domain.lower=[-0.8]", "domain.upper=[0.8]", "solver.blob.particles=100"]
    r = _run("heat_1d", "blob", sets, tmp_path)
    x = r["particles/positions"]
    assert np.all((x >= -0.8) & (x <= 0.8))
    assert r["diagnostics/escaped"][-1] > 0
    assert r["diagnostics/mass"][-1] == pytest.approx(1.0, abs=1e-14)


def _blob(case, sets):
    from mpi4py import MPI

    from wgf.solvers.particles.blob import Solver

    c = load_case(case, sets, solver_tables())
    return Solver(c, MPI.COMM_SELF, c.solver_params("blob"))


def _pair_velocity(s, x):
    """The blob velocity from all pairs within the cut-off (a direct reference)."""
    from scipy.spatial import cKDTree

    from wgf.solvers.particles.kernels import CUTOFF, gaussian

    i, j = cKDTree(x).query_pairs(CUTOFF * np.sqrt(s.eps), output_type="ndarray").T
    dim = x.shape[1]
    k = gaussian(np.sum((x[i] - x[j]) ** 2, axis=1), s.eps, dim)
    rho = s.w * gaussian(np.zeros(1), s.eps, dim)
    rho += np.bincount(i, s.w[j] * k, len(x)) + np.bincount(j, s.w[i] * k, len(x))
    dg = s.energy.pressure(rho) / rho**2
    coef = ((dg[i] + dg[j]) * k / s.eps)[:, None] * (x[i] - x[j])
    v = np.zeros_like(x)
    for c in range(dim):
        v[:, c] = np.bincount(i, s.w[j] * coef[:, c], len(x))
        v[:, c] -= np.bincount(j, s.w[i] * coef[:, c], len(x))
    return v, rho


@pytest.mark.parametrize(
    "case,n", [("porous_medium_2d", 400), ("heat_1d", 100), ("fokker_planck_ou_2d", 400)]
)
def test_blob_verlet_list_gives_the_same_sums_as_a_fresh_one(case, n, rng):
    """Reused and rebuilt Verlet lists give bitwise the same velocity (the skin only adds
    exact zeros), and it matches a direct sum over the pairs within the cut-off."""
    s = _blob(case, [f"solver.blob.particles={n}"])
    v0, _ = s.velocity(s.x)
    first = s.neighbour_list
    for step, rebuilt in [(0.45, False), (0.55, True)]:
        # Every particle moves by `step`·skin in a random direction (skin/2 is the limit).
        move = rng.normal(size=s.x.shape)
        x = s.x + step * first.skin * move / np.linalg.norm(move, axis=1, keepdims=True)
        s.neighbour_list = first
        v, rho = s.velocity(x)
        assert (s.neighbour_list is not first) == rebuilt
        s.neighbour_list = None
        v_fresh, rho_fresh = s.velocity(x)
        assert np.array_equal(v, v_fresh) and np.array_equal(rho, rho_fresh)
        v_ref, rho_ref = _pair_velocity(s, x)
        if s.energy.potential is not None:
            v_ref -= s.energy.potential.gradient(x)
        scale = np.abs(v_ref).max()
        assert np.abs(v - v_ref).max() < 1e-12 * scale
        assert np.abs(rho - rho_ref).max() < 1e-12 * rho_ref.max()
    assert not np.array_equal(v0, v)


def test_kernel_sums_on_split_blocks_match_the_whole(rng):
    """Rows of a block (also an empty one, as on a rank with no particles) equal the same
    rows of the whole list, bitwise; 3-D included."""
    from wgf.solvers.particles.kernels import kernel_sums, neighbour_list

    x, eps, w = rng.normal(size=(600, 3)), 0.05, rng.random(600)
    whole = kernel_sums(neighbour_list(x, eps, 0, 600), x, eps)
    rho, mom = whole.kernel @ w, [m @ w for m in whole.moments]
    for lo, hi in [(0, 250), (250, 600), (300, 300)]:
        part = kernel_sums(neighbour_list(x, eps, lo, hi), x, eps)
        assert np.array_equal(part.kernel @ w, rho[lo:hi])
        for m, full in zip(part.moments, mom, strict=True):
            assert np.array_equal(m @ w, full[lo:hi])


# -- quantile-1d -----------------------------------------------------------------------------
@pytest.mark.parametrize("m", [2.0, 3.0])
def test_quantile_1d_porous_medium_first_order_in_tau(m, tmp_path):
    taus, errors = [0.01, 0.005, 0.0025], []
    for tau in taus:
        sets = [f"time.tau={tau}", f"energy.m={m}", "solver.quantile-1d.particles=1000"]
        r = _run("porous_medium_1d", "quantile-1d", sets, tmp_path / str(tau))
        errors.append(r["diagnostics/w2_error"][-1])
        assert _energy_never_increases(r)
        assert r["diagnostics/mass"][-1] == pytest.approx(1.0, abs=1e-14)
        x = r["particles/positions"][-1, :, 0]
        assert np.all(np.diff(x) > 0)
    slope = np.polyfit(np.log(taus), np.log(errors), 1)[0]
    assert 0.8 < slope < 1.2, (errors, slope)
    # Quantiles: interior ones to O(τ); the two free-boundary particles lag by O(cell width).
    assert r["diagnostics/quantile_error_interior"][-1] < 0.01
    assert r["diagnostics/quantile_error"][-1] < 0.03
    assert r["diagnostics/quantile_error"][0] < 1e-4


def test_quantile_1d_nonlinear_fokker_planck(tmp_path):
    r = _run("nonlinear_fokker_planck_1d", "quantile-1d", [], tmp_path)
    assert _energy_never_increases(r)
    assert r["diagnostics/l1_error"][-1] < 0.02
    assert r["diagnostics/w2_error"][-1] < 0.01


# -- langevin --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "case,sets",
    [("heat_1d", []), ("fokker_planck_ou_1d", ["solver.langevin.dt=0.002", "time.t_end=0.2"])],
)
def test_langevin_second_moment_within_three_standard_errors(case, sets, tmp_path):
    sets = [*sets, "solver.langevin.particles=10000"]
    r = _run(case, "langevin", sets, tmp_path)
    c = load_case(case, sets, solver_tables())
    t = r["snapshots/time"][-1]
    mean, cov = c.gaussian_moments(t)
    exact = float(mean @ mean + np.trace(cov))
    x = r["particles/positions"][-1]
    sq = np.sum(x * x, axis=1)
    stderr = sq.std() / np.sqrt(len(sq))
    assert r["diagnostics/second_moment"][-1] == pytest.approx(sq.mean(), rel=1e-12)
    assert abs(sq.mean() - exact) < 3 * stderr, (sq.mean(), exact, stderr)
    assert r["diagnostics/l1_error"][-1] < 0.05


def test_langevin_is_reproducible_by_seed(tmp_path):
    sets = ["solver.langevin.particles=500", "time.t_end=0.02"]
    a = _run("heat_1d", "langevin", sets, tmp_path / "a")
    b = _run("heat_1d", "langevin", sets, tmp_path / "b")
    c = _run("heat_1d", "langevin", [*sets, "solver.langevin.seed=2"], tmp_path / "c")
    assert np.array_equal(a["particles/positions"], b["particles/positions"])
    assert not np.allclose(a["particles/positions"], c["particles/positions"])


@pytest.mark.parametrize("dim,n", [(1, 10000), (2, 10000), (3, 4000)])
def test_langevin_binned_kde_is_within_its_bound_of_the_exact_sum(dim, n):
    """Linear binning vs the exact kernel sum (Gaussian samples, Silverman's ε).

    Bound (kde.py): |ρ̃ - ρ_b| ≤ M (2πε)^{-d/2} Σ_k δ_k²/(8ε) on a tensor grid, twice that
    at other points (binning + interpolation), plus the cut-off's e^{-12.5} ≈ 4e-6.
    The mean difference is the bias ≈ (δ²/12)Δρ, relative ≤ d/(12 R²) in L1.
    """
    from wgf.solvers.particles.kde import (
        MAX_BINS,
        RESOLUTION,
        kde_at,
        kde_on_grid,
        linear_binning,
    )
    from wgf.solvers.particles.langevin import silverman_bandwidth

    rng = np.random.default_rng(7)
    x = rng.normal(0.0, 0.5, (n, dim))
    w = rng.uniform(0.5, 1.5, n) / n  # unequal weights: the binning must carry them
    eps = silverman_bandwidth(x, w) ** 2
    axes = [np.linspace(-3.0, 3.0, {1: 200, 2: 100, 3: 30}[dim])] * dim
    measure = linear_binning(x, w, eps)
    # The binning keeps the mass and the first moment (to round-off).
    assert measure.masses.sum() == pytest.approx(w.sum(), rel=1e-12)
    nodes = np.stack([g.ravel() for g in np.meshgrid(*measure.axes(), indexing="ij")], axis=1)
    assert measure.masses.ravel() @ nodes == pytest.approx(w @ x, rel=1e-9, abs=1e-12)
    assert measure.masses.size <= MAX_BINS
    peak = w.sum() * (2 * np.pi * eps) ** (-dim / 2)
    bound = peak * (np.sum(measure.spacing**2) / (8 * eps) + 4e-6)
    exact = kde_on_grid(axes, x, w, eps, "exact")
    binned = kde_on_grid(axes, x, w, eps)
    assert np.abs(binned - exact).max() <= bound
    resolution = np.sqrt(eps) / measure.spacing[0]  # RESOLUTION unless the grid was capped
    assert resolution == pytest.approx(RESOLUTION) if dim < 3 else resolution > 4
    assert np.abs(binned - exact).sum() / exact.sum() < dim / (12 * resolution**2)
    at = x[:500]  # the per-particle density, by interpolation on the bin grid
    exact_at, binned_at = kde_at(at, x, w, eps, "exact"), kde_at(at, x, w, eps)
    assert np.abs(binned_at - exact_at).max() <= 2 * bound
    assert np.abs(binned_at - exact_at).sum() / exact_at.sum() < 2 * dim / (12 * resolution**2)


# -- bad input -------------------------------------------------------------------------------
BAD = {
    "no particles": (["heat_1d", "--solver", "blob", "--set", "solver.blob.particles=0"], "> 0"),
    "negative epsilon": (
        ["heat_1d", "--solver", "blob", "--set", "solver.blob.epsilon=-1.0"],
        "epsilon' must be > 0",
    ),
    "epsilon too small": (
        ["heat_1d", "--solver", "blob", "--set", "solver.blob.epsilon=1e-12"],
        "< 2 neighbours per particle",
    ),
    "langevin power law": (["porous_medium_1d", "--solver", "langevin"], "linear diffusion"),
    "quantile-1d in 2-D": (["heat_2d", "--solver", "quantile-1d"], "1-D only"),
    "quantile-1d two particles": (
        ["heat_1d", "--solver", "quantile-1d", "--set", "solver.quantile-1d.particles=2"],
        ">= 3",
    ),
    "cfl above 1": (
        ["heat_1d", "--solver", "blob", "--set", "solver.blob.cfl=1.5"],
        "cfl' must be in (0, 1]",
    ),
    "negative seed": (
        ["heat_1d", "--solver", "langevin", "--set", "solver.langevin.seed=-1"],
        "seed' must be >= 0",
    ),
    "negative dt": (
        ["heat_1d", "--solver", "langevin", "--set", "solver.langevin.dt=-0.1"],
        "dt' must be > 0",
    ),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_particle_input_exits_2_with_one_line(name, tmp_path):
    args, message = BAD[name]
    out = tmp_path / "out"
    assert_user_error(wgf("run", *args, "--out", str(out)), message)
    assert not out.exists()


def test_forced_dt_above_the_bound_is_clamped_and_said(tmp_path):
    sets = ["solver.blob.particles=50", "solver.blob.dt=0.01", "time.t_end=0.01"]
    options = [arg for s in sets for arg in ("--set", s)]
    proc = wgf("run", "heat_1d", "--solver", "blob", *options, "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "above the stability bound" in proc.stdout and "clamped" in proc.stdout
    r = read(tmp_path / "heat_1d_blob.h5")
    assert np.all(r["diagnostics/iterations"][1:] > 1)


# -- ParaView ---------------------------------------------------------------------------------


@pytest.mark.skipif(PVBATCH is None, reason="pvbatch not installed (Debian python3-paraview)")
def test_particle_xdmf_opens_in_pvbatch(tmp_path):
    r = _run("heat_2d", "blob", ["solver.blob.particles=400"], tmp_path)
    out = pvbatch_read(tmp_path / "heat_2d_blob_fields.xdmf", tmp_path)
    n = len(r["particles/weights"])
    n_times, t_last = out["TIMES"].split()
    assert int(n_times) == 6 and float(t_last) == pytest.approx(0.1)
    assert int(out["POINTS"]) == n and int(out["CELLS"]) == n
    assert out["ARRAYS"] == "density,weight"
    # ρ_ε at the particles: positive, and its largest value is just below the peak of ρ_ε
    # on the (finer) sample grid: 400 particles need not sit on the peak.
    low, high = map(float, out["RANGE_density"].split())
    assert low > 0 and 0.9 < high / r["snapshots/density"][-1].max() < 1.001
    # The last time ParaView shows is the final particle cloud.
    bounds = np.array(out["BOUNDS"].split(), dtype=float)
    x = r["particles/positions"][-1]
    assert bounds[0] == pytest.approx(x[:, 0].min()) and bounds[3] == pytest.approx(x[:, 1].max())


# -- resume -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "solver,sets",
    [("blob", ["solver.blob.particles=100"]), ("langevin", ["solver.langevin.particles=500"])],
)
def test_resume_continues_the_same_trajectories(solver, sets, tmp_path):
    """Stop at T/2, resume to T: the same particles as one run to T (noise streams too)."""
    full = _run("heat_1d", solver, sets, tmp_path / "full")
    run_case("heat_1d", [*sets, "time.t_end=0.05"], tmp_path / "split", solver=solver)
    resumed = read(run_case("heat_1d", sets, tmp_path / "split", solver=solver, resume=True).path)
    # The clock after resuming may differ from the straight run's in the last bit.
    for key in ("time", "checkpoint/positions", "diagnostics/energy"):
        np.testing.assert_allclose(resumed[key], full[key], rtol=0, atol=1e-12, err_msg=key)


def test_blob_warns_when_its_spacing_does_not_resolve_the_drift(tmp_path, caplog):
    """At D = 0.02 the Péclet number |∇V|h/D is ~25 with the default particles; at D = 1, 0.5."""
    import logging

    with caplog.at_level(logging.WARNING, logger="wgf.solvers.particles.blob"):
        for sets, out in ((["energy.diffusivity=0.02"], "a"), ([], "b")):
            run_case(
                "fokker_planck_ou_2d", [*sets, "time.t_end=0.02"], tmp_path / out, solver="blob"
            )
    warned = [r.getMessage() for r in caplog.records if "resolve the drift" in r.getMessage()]
    assert len(warned) == 1 and "solver.blob.particles" in warned[0]
