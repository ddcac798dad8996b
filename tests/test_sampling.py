"""Gaussian-mixture cases and diffusion-model sampling (issue 15): the exact mixture flow,
the probability-flow ODE against the exact 1-D map, the scores, the reverse SDE, ``wgf sample``."""

import h5py
import numpy as np
import pytest
from mpi4py import MPI
from scipy.special import ndtri

from tests.conftest import ROOT, assert_user_error, read, run_case, wgf
from wgf.cases import closed_forms as cf
from wgf.cases import load_case
from wgf.cases.errors import UserError
from wgf.postprocess import sampling as diag
from wgf.solvers import solver_tables
from wgf.solvers.particles import probability_flow as pf

CASE_1D = ROOT / "benchmarks" / "cases" / "gaussian_mixture_1d.toml"
CASE_2D = ROOT / "benchmarks" / "cases" / "gaussian_mixture_2d.toml"


def mixture_case(**changes):
    """The 1-D benchmark mixture case with ``--set`` changes."""
    return load_case(CASE_1D, dict(changes), solver_tables())


def test_the_exact_mixture_keeps_mass_one_in_1d_and_2d():
    for path, n in ((CASE_1D, 24001), (CASE_2D, 601)):
        case = load_case(path, (), solver_tables())
        exact = case.exact_solution()
        lo, hi = case.section("domain")["lower"], case.section("domain")["upper"]
        axes = [np.linspace(a, b, n) for a, b in zip(lo, hi, strict=True)]
        grid = np.stack([g.ravel() for g in np.meshgrid(*axes, indexing="ij")], axis=1)
        for t in (0.0, 0.3, 5.0):
            rho = exact(t, grid).reshape((n,) * case.dim)
            for a in reversed(axes):
                rho = np.trapezoid(rho, a, axis=-1)
            assert rho == pytest.approx(1.0, abs=1e-6)


def test_one_component_mixture_is_the_gaussian_ou_solution():
    common = {
        "name": "one",
        "energy": {"potential": {"A": [[1.5, 0.3], [0.3, 0.7]], "center": [0.2, -0.1]}},
        "domain": {"lower": [-5.0, -5.0], "upper": [5.0, 5.0], "cells": [8, 8]},
        "time": {"t_end": 1.0, "tau": 0.1},
    }
    cov = [[0.3, 0.1], [0.1, 0.2]]
    mixture = load_case(
        {
            **common,
            "initial": {
                "kind": "gaussian_mixture",
                "weights": [1.0],
                "means": [[1.0, -0.5]],
                "covs": [cov],
            },
            "exact": {"kind": "gaussian_mixture"},
        }
    )
    gaussian = load_case(
        {
            **common,
            "initial": {"kind": "gaussian", "mean": [1.0, -0.5], "cov": cov},
            "exact": {"kind": "gaussian"},
        }
    )
    x = np.random.default_rng(1).normal(size=(50, 2))
    for t in (0.0, 0.4, 2.0):
        np.testing.assert_allclose(
            mixture.exact_solution()(t, x), gaussian.exact_solution()(t, x), rtol=1e-12
        )
        # The mixture's score of one component is the Gaussian's, -Σ_t⁻¹(x - μ_t).
        mean, cov_t = gaussian.gaussian_moments(t)
        np.testing.assert_allclose(
            pf.MixtureScore(mixture)(t, x), -np.linalg.solve(cov_t, (x - mean).T).T, rtol=1e-10
        )


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("initial.weights", [0.6, 0.6], "sum to 1"),
        ("initial.weights", [1.2, -0.2], "must be >= 0"),
        ("initial.covs", [0.0625, 0.0], "positive definite"),
        ("initial.means", [[-2.0]], "expected 2 rows"),
        ("initial.covs", [0.0625], "expected 2 matrices"),
    ],
)
def test_bad_mixtures_are_refused_with_the_key(key, value, message):
    with pytest.raises(UserError, match=message) as err:
        mixture_case(**{key: value})
    assert key in str(err.value)


def test_fem_implicit_converges_to_the_exact_mixture(tmp_path):
    """L1 error at T of the P1 implicit Euler run against the exact mixture flow."""
    errors = []
    for cells, tau in ((100, 0.01), (200, 0.005)):
        summary = run_case(
            str(CASE_1D),
            [f"domain.cells=[{cells}]", f"time.tau={tau}", "time.t_end=0.2", "output.snapshots=2"],
            tmp_path / str(cells),
        )
        l1 = read(summary.path)["diagnostics/l1_error"]
        errors.append(l1[-1])
    assert errors[1] < 8e-3
    assert 0.9 < np.log2(errors[0] / errors[1]) < 2.2  # O(τ + h²) with τ ∝ h


def test_probability_flow_reproduces_the_exact_1d_map():
    """The ODE map x_T ↦ x_0 with the exact score is the monotone rearrangement F₀⁻¹∘F_T."""
    case = mixture_case()
    flow = pf.OrnsteinUhlenbeck.of(case)
    u = (np.arange(400) + 0.5) / 400
    x_end = cf.mixture_quantile_1d(u, *case.mixture(5.0))[:, None]
    traj = pf.probability_flow(
        flow, pf.MixtureScore(case), x_end, 5.0, method="DOP853", rtol=1e-10, atol=1e-10
    )
    error = diag.map_error_1d(x_end, traj.samples, case.mixture(5.0), case.mixture(0.0))
    assert error < 1e-7
    # ... and the exact map's image of the quantiles of ρ_T are those of ρ_0.
    np.testing.assert_allclose(
        traj.samples[:, 0], cf.mixture_quantile_1d(u, *case.mixture(0.0)), atol=1e-7
    )


def test_rk4_is_fourth_order_on_the_flow():
    case = mixture_case()
    flow = pf.OrnsteinUhlenbeck.of(case)
    x_end = np.linspace(-2.5, 2.5, 41)[:, None]
    mix_t, mix_0 = case.mixture(1.0), case.mixture(0.0)
    errors = [
        diag.map_error_1d(
            x_end,
            pf.probability_flow(
                flow, pf.MixtureScore(case), x_end, 1.0, method="rk4", steps=n
            ).samples,
            mix_t,
            mix_0,
        )
        for n in (100, 200)
    ]
    assert 3.5 < np.log2(errors[0] / errors[1]) < 4.5


def test_grid_score_of_exact_densities_approaches_the_exact_score():
    case = mixture_case()
    score = pf.MixtureScore(case)
    times = np.linspace(0.0, 1.0, 201)
    errors = []
    for n in (400, 800):
        axis = -6.0 + (np.arange(n) + 0.5) * 12.0 / n
        dens = np.array([case.exact_solution()(t, axis[:, None]) for t in times])
        grid = pf.GridScore(times, [axis], dens)
        x = np.linspace(-3.0, 3.0, 101)[:, None]
        errors.append(np.max(np.abs(grid(0.5, x) - score(0.5, x))))
    assert errors[1] < 2e-3
    assert 1.7 < np.log2(errors[0] / errors[1]) < 2.3  # O(h²): central differences, linear


def test_kernel_score_of_a_gaussian_cloud():
    """∇log(φ_ε * N(0, 1)) = -x/(1 + ε), the cloud the quantiles of N(0, 1) (no noise)."""
    x = ndtri((np.arange(20000) + 0.5) / 20000)[:, None]
    eps = 0.05
    points = np.linspace(-1.0, 1.0, 11)[:, None]
    score = pf.kernel_score(points, x, np.ones(len(x)), eps)
    np.testing.assert_allclose(score, -points / (1.0 + eps), atol=2e-3)
    far = pf.kernel_score(np.array([[40.0]]), x, np.ones(len(x)), eps)
    assert far[0, 0] == pytest.approx((x.max() - 40.0) / eps)


def test_tabulated_kernel_score_matches_the_direct_sum():
    """The grid table of ∇log ρ_ε agrees with the direct sum, on and off its grid.

    The particles are a weighted lattice of spacing h (the blob method's start) with
    ε = 2h², the rule of :class:`KernelScore`.
    """
    rng = np.random.default_rng(3)
    for dim, cells in ((1, 200), (2, 40)):
        axis = -4.0 + (np.arange(cells) + 0.5) * 8.0 / cells
        x = np.stack([g.ravel() for g in np.meshgrid(*[axis] * dim, indexing="ij")], axis=1)
        w = np.exp(-0.5 * np.sum((x - 1.0) ** 2, 1) / 0.3) + np.exp(-0.5 * np.sum(x**2, 1))
        w /= w.sum()
        eps = 2.0 * (8.0 / cells) ** 2
        table = pf.TabulatedKernelScore(x, w, eps)
        points = np.concatenate([rng.normal(0.5, 1.0, (500, dim)), np.full((2, dim), 9.0)])
        direct = pf.kernel_score(points, x, w, eps)
        scale = np.abs(direct[:500]).max()
        np.testing.assert_allclose(table(points)[:500], direct[:500], rtol=0, atol=2e-3 * scale)
        np.testing.assert_array_equal(table(points)[500:], direct[500:])  # off the grid


def test_mass_spacing_measures_the_particles_that_carry_the_mass():
    """Heavy particles 0.5 apart, more light ones 0.01 apart: the plain median is 0.01."""
    heavy = np.stack(np.meshgrid(np.arange(10) * 0.5, np.arange(10) * 0.5), -1).reshape(-1, 2)
    light = np.stack([10.0 + np.arange(150) * 0.01, np.zeros(150)], axis=1)
    x = np.concatenate([heavy, light])
    w = np.concatenate([np.full(100, 1e-2), np.full(150, 1e-8)])
    assert np.median(pf_nearest(x)) == pytest.approx(0.01)
    assert pf.mass_spacing(x, w) == pytest.approx(0.5)


def pf_nearest(x):
    """Nearest-neighbour distances (the unweighted measure the old rule used)."""
    from scipy.spatial import cKDTree

    return cKDTree(x).query(x, k=2)[0][:, 1]


def test_reverse_sde_recovers_the_mode_masses_and_is_seeded():
    case = mixture_case()
    flow = pf.OrnsteinUhlenbeck.of(case)
    noise = flow.noise(4000, seed=2)
    runs = [
        pf.reverse_sde(flow, pf.MixtureScore(case), noise, 5.0, steps=400, seed=7) for _ in "ab"
    ]
    np.testing.assert_array_equal(runs[0].samples, runs[1].samples)
    masses = diag.mode_masses(runs[0].samples, *case.mixture(0.0))
    np.testing.assert_allclose(masses, [0.5, 0.5], atol=0.03)


def test_energy_distance_separates_laws():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(800, 2)), rng.normal(size=(800, 2))
    same = diag.energy_distance(x, y)
    shifted = diag.energy_distance(x, y + np.array([0.5, 0.0]))
    assert 0.0 <= same < 0.02
    assert shifted > 10 * same


def test_sample_verb_writes_samples_and_refuses_bad_input(tmp_path):
    done = wgf(
        "sample", str(CASE_2D), "--score", "exact", "--samples", "300", "--out", str(tmp_path)
    )
    assert done.returncode == 0, done.stderr
    path = tmp_path / "gaussian_mixture_2d_sample-exact.h5"
    with h5py.File(path, "r") as f:
        assert f["sampling/positions"].shape == (11, 300, 2)
        assert f["sampling/time"][0] == 5.0 and f["sampling/time"][-1] == 0.0
        assert f["sampling/positions"].attrs["score"] == "exact"
        assert f["sampling/positions"].attrs["w2"] < 2 * f["sampling/positions"].attrs["w2_floor"]
    assert (tmp_path / "gaussian_mixture_2d_sample-exact_particles.xdmf").is_file()
    # No closed-form score: one line, exit 2, nothing written.
    bad = wgf("sample", "fokker_planck_ou_1d", "--score", "exact", "--out", str(tmp_path / "b"))
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "no closed-form score" in bad.stderr
    assert not (tmp_path / "b").exists()
    # A forward run of another solver kind for the fem score.
    wrong = wgf(
        "sample", str(CASE_2D), "--score", "fem", "--from", str(path), "--out", str(tmp_path)
    )
    assert wrong.returncode == 2 and "needs a run of fem-implicit or fem-jko" in wrong.stderr


def test_samples_do_not_depend_on_the_communicator():
    """Every rank integrates all samples: the result on a split communicator is the same."""
    from wgf.sample import sample

    case = load_case(CASE_2D, (), solver_tables())
    whole = sample(case, "exact", samples=200, comm=MPI.COMM_SELF, snapshots=2)
    again = sample(case, "exact", samples=200, comm=MPI.COMM_WORLD, snapshots=2)
    np.testing.assert_array_equal(whole.trajectories.samples, again.trajectories.samples)


#: The issue's bad input for ``wgf sample``: (arguments, message).  ``{missing}`` is a path
#: that does not exist.
SINGULAR_COVS = (
    "initial.covs=[[[1.0,1.0],[1.0,1.0]],[[0.1,-0.05],[-0.05,0.25]],[[0.4,0.0],[0.0,0.06]],"
    "[[0.08,0.0],[0.0,0.08]],[[0.15,0.08],[0.08,0.12]]]"
)
SAMPLE_BAD_INPUT = {
    "weights not summing to 1": (
        [str(CASE_2D), "--set", "initial.weights=[0.3,0.3,0.2,0.15,0.1]"],
        "weights must sum to 1",
    ),
    "negative weight": ([str(CASE_1D), "--set", "initial.weights=[1.2,-0.2]"], "must be >= 0"),
    "singular covariance": ([str(CASE_2D), "--set", SINGULAR_COVS], "positive definite"),
    "exact score without a closed form": (["fokker_planck_ou_1d"], "no closed-form score"),
    "fem score from a missing run": (
        [str(CASE_2D), "--score", "fem", "--from", "{missing}"],
        "does not exist",
    ),
}


def _sample_bad_input(name: str, tmp_path, ranks: int) -> None:
    args, message = SAMPLE_BAD_INPUT[name]
    args = [a.format(missing=tmp_path / "none.h5") for a in args]
    score = [] if "--score" in args else ["--score", "exact"]
    out = tmp_path / "out"
    assert_user_error(wgf("sample", *args, *score, "--out", str(out), ranks=ranks), message)
    assert not out.exists(), "bad input must not leave output behind"


@pytest.mark.parametrize("name", list(SAMPLE_BAD_INPUT))
def test_sample_refuses_bad_input(name, tmp_path):
    _sample_bad_input(name, tmp_path, ranks=0)


@pytest.mark.parametrize("name", ["weights not summing to 1", "exact score without a closed form"])
def test_sample_refuses_bad_input_on_two_ranks(name, tmp_path):
    _sample_bad_input(name, tmp_path, ranks=2)


def test_sample_refuses_a_forward_run_of_another_case(tmp_path):
    summary = run_case(
        str(CASE_1D),
        ["domain.cells=[50]", "time.tau=0.05", "time.t_end=0.1", "output.snapshots=2"],
        tmp_path / "run",
    )
    out = tmp_path / "out"
    proc = wgf(
        "sample", str(CASE_2D), "--score", "fem", "--from", str(summary.path), "--out", str(out)
    )
    assert_user_error(proc, "is a run of case 'gaussian_mixture_1d', not 'gaussian_mixture_2d'")
    assert not out.exists()


def test_a_short_forward_flow_is_warned_about_with_the_kl_bound(tmp_path):
    """T = 1: the bound Σ_k w_k KL(N_k(T)‖N(0, 1)) in the warning is the 1-D formula's."""
    short = wgf(
        "sample",
        str(CASE_1D),
        "--score",
        "exact",
        "--samples",
        "50",
        "--set",
        "time.t_end=1.0",
        "--out",
        str(tmp_path / "short"),
    )
    assert short.returncode == 0, short.stderr
    decay = np.exp(-1.0)
    bound = 0.0
    for mean, var in ((-2.0, 0.0625), (2.0, 0.25)):
        m, s2 = mean * decay, var * decay**2 + 1.0 - decay**2  # the component at T = 1
        bound += 0.5 * 0.5 * (s2 + m * m - 1.0 - np.log(s2))  # ½ KL(N(m, s2)‖N(0, 1))
    (line,) = [line for line in short.stdout.splitlines() if "KL(ρ_T‖noise)" in line]
    assert "T = 1 is short" in line and f"≤ {bound:.3g} " in line
    assert bound > 0.1  # the case is far from the noise at T = 1 (the test would pass vacuously)
    # At the case's T = 5 the bound is below the threshold: no warning.
    long = wgf(
        "sample", str(CASE_1D), "--score", "exact", "--samples", "50", "--out", str(tmp_path)
    )
    assert long.returncode == 0 and "KL(ρ_T‖noise)" not in long.stdout
