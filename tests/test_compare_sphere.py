"""`wgf compare` of runs on the circle, and the order parameters its moments figure draws."""

import numpy as np
import pytest
from scipy import special

from tests.conftest import run_case, wgf
from wgf.postprocess.compare import compare, load_runs
from wgf.postprocess.labels import run_labels
from wgf.postprocess.order import order_parameter
from wgf.postprocess.plots import moments_figure, slices_figure


def _on_sphere(n, dim, seed):
    x = np.random.default_rng(seed).standard_normal((n, dim))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("dim", [2, 3, 5])
def test_order_parameters_are_the_gegenbauer_pair_sums(dim):
    """s_k² M² = Σ_ij w_i w_j G_k(⟨x_i, x_j⟩) by brute force, G_k(1) = 1."""
    x, w = _on_sphere(9, dim, 1), np.random.default_rng(2).uniform(0.1, 1.0, 9)
    gram = np.clip(x @ x.T, -1.0, 1.0)
    for k in (1, 2, 3):
        if dim == 2:
            g = np.cos(k * np.arccos(gram))
        else:
            lam = (dim - 2) / 2
            g = special.eval_gegenbauer(k, lam, gram) / special.eval_gegenbauer(k, lam, 1.0)
        expected = np.sqrt(w @ g @ w) / w.sum()
        assert order_parameter(x, w, k) == pytest.approx(expected, rel=1e-12)


def test_order_parameters_of_clusters_and_of_the_uniform_density():
    """k equally spaced point clusters on S¹: s_k = 1, s_j = 0 below; uniform: s_k ≈ 0."""
    for k in (1, 2, 3):
        theta = 2 * np.pi * np.arange(k) / k + 0.3
        x = np.stack([np.cos(theta), np.sin(theta)], axis=1)
        values = [order_parameter(x, np.full(k, 0.5), j) for j in (1, 2, 3)]
        np.testing.assert_allclose(values[k - 1], 1.0, rtol=1e-13)
        # s_j² cancels to round-off, so s_j itself is its square root: ~1e-8.
        np.testing.assert_allclose(values[: k - 1], 0.0, atol=1e-7)
    # 4000 random points on S²: s_k ~ N^{-1/2}.
    x = _on_sphere(4000, 3, 3)
    assert max(order_parameter(x, np.ones(4000), k) for k in (1, 2, 3)) < 4 / np.sqrt(4000)


def test_compare_on_the_circle_draws_angles_and_order_parameters(tmp_path):
    """FE and particles with noise on S¹: geodesic W2, slices against θ, s_k, no warning."""
    a = 0.3
    sets = [
        "energy.internal=entropy",
        "energy.diffusivity=0.1",
        "initial.kind=perturbed_uniform",
        "initial.mode=3",
        f"initial.amplitude={a}",
        "domain.cells=[64]",
        "time.t_end=0.2",
        "time.tau=0.05",
        "output.snapshots=3",
        "solver.langevin.particles=300",
    ]
    for solver in ("fem-implicit", "langevin"):
        run_case("tokens_circle_usa", sets, tmp_path, solver=solver)
    files = sorted(
        str(p) for p in tmp_path.glob("tokens_circle_usa_*.h5") if "fields" not in p.name
    )
    proc = wgf("compare", *files, "--out", str(tmp_path / "cmp"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "" and "warn" not in proc.stdout.lower(), proc.stdout + proc.stderr
    for name in ("slices.png", "moments.png", "energy.png"):
        assert (tmp_path / "cmp" / name).is_file()
    runs = load_runs(files)
    result = compare(runs)
    pairs = [r for r in result.rows if r["against"] != "exact"]
    assert pairs and all(r["w2_method"] == "circle" for r in pairs)
    labels = run_labels(runs)
    # Slices: the density against the angle θ ∈ (-π, π), every panel.
    for ax in slices_figure(result, labels).axes:
        x = ax.get_lines()[0].get_xdata()
        assert ax.get_xlabel() == "angle θ" and -np.pi < x.min() < x.max() < np.pi
    # Moments: s_1, s_2, s_3 of the snapshots; at t = 0 the cos 3θ bump has s_3 = a/2 (FE,
    # on the sample grid) and the displaced lattice of tokens exactly J₁(a) (langevin).
    fig = moments_figure(runs, labels)
    assert [ax.get_ylabel() for ax in fig.axes] == ["s_1", "s_2", "s_3"]
    at_start = {line.get_label(): line.get_ydata()[0] for line in fig.axes[2].get_lines()}
    assert at_start["fem-implicit"] == pytest.approx(a / 2, abs=2e-3)
    assert at_start["langevin"] == pytest.approx(special.j1(a), rel=1e-12)
    for ax in fig.axes[:2]:  # no degree-1 or -2 part in a 3-fold symmetric start
        assert abs(ax.get_lines()[0].get_ydata()[0]) < 1e-3
