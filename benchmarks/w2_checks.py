"""Checks of the W2 code against closed forms, printed (not timed).

    .venv/bin/python benchmarks/w2_checks.py

1. N = 2000 samples of two 2-D Gaussians: ``ot.emd2`` against the closed form, over 10
   independent draws (mean, standard deviation).
2. 1-D weighted clouds: the quantile formula against ``ot.emd2`` on the same point sets.
3. The circle: geodesic W2 (``postprocess/circle.py``) against ``ot.emd2`` with the matrix
   of squared arc lengths on random weighted sets of 50–500 atoms, and its time against
   the LP's on the largest pair; then the time for 10⁴ against 10⁴ atoms, and 10⁴ atoms
   against a density on 200 cells (the LP is not run there).
"""

import time

import numpy as np
import ot

from wgf.cases.closed_forms import w2_gaussians
from wgf.postprocess.circle import CircleMeasure, geodesic_cost, w2_circle
from wgf.postprocess.w2 import w2, w2_quantile_1d


def circle() -> None:
    """Item 3."""
    rng = np.random.default_rng(14)
    worst, lp_time, ours_time = 0.0, 0.0, 0.0
    for _ in range(20):
        n, m = rng.integers(50, 500, size=2)
        theta = np.mod(rng.normal(0.0, 1.0, n), 2 * np.pi)
        phi = rng.uniform(0.0, 2 * np.pi, m)
        a, b = rng.random(n), rng.random(m)
        start = time.perf_counter()
        lp = np.sqrt(ot.emd2(a / a.sum(), b / b.sum(), geodesic_cost(theta, phi)))
        lp_time += time.perf_counter() - start
        start = time.perf_counter()
        ours = w2_circle(CircleMeasure.from_points(theta, a), CircleMeasure.from_points(phi, b))
        ours_time += time.perf_counter() - start
        worst = max(worst, abs(ours - lp))
    print(
        f"circle, geodesic W2 vs ot.emd2 (arc-length cost), 20 random weighted pairs of "
        f"50-500 atoms: max |difference| {worst:.2e}; time ratio LP/ours {lp_time / ours_time:.1f}"
    )
    x, y = rng.uniform(0.0, 2 * np.pi, 10_000), rng.normal(1.0, 0.5, 10_000)
    start = time.perf_counter()
    w2_circle(
        CircleMeasure.from_points(x, np.ones(10_000)), CircleMeasure.from_points(y, np.ones(10_000))
    )
    atoms = time.perf_counter() - start
    cells = 2 * np.pi * (np.arange(200) + 0.5) / 200
    density = CircleMeasure.from_points(cells, 1.0 + 0.5 * np.cos(cells), arc=2 * np.pi / 200)
    start = time.perf_counter()
    w2_circle(CircleMeasure.from_points(y, np.ones(10_000)), density)
    mixed = time.perf_counter() - start
    print(f"circle, 10^4 vs 10^4 atoms: {atoms:.2f} s; 10^4 atoms vs 200 cells: {mixed:.2f} s")


def main() -> None:
    rng = np.random.default_rng(2026)
    m1, c1 = np.array([0.0, 0.0]), np.array([[1.0, 0.3], [0.3, 0.5]])
    m2, c2 = np.array([1.0, -0.5]), np.array([[0.4, 0.0], [0.0, 1.2]])
    exact = w2_gaussians(m1, c1, m2, c2)
    values = [
        w2(
            rng.multivariate_normal(m1, c1, 2000),
            np.ones(2000),
            rng.multivariate_normal(m2, c2, 2000),
            np.ones(2000),
        )[0]
        for _ in range(10)
    ]
    print(
        f"2-D Gaussians, N = 2000: closed form {exact:.5f}, emd {np.mean(values):.5f} "
        f"± {np.std(values):.5f} (10 draws), relative bias {np.mean(values) / exact - 1:+.4f}"
    )
    worst = 0.0
    for _ in range(20):
        n, m = rng.integers(50, 500, size=2)
        x, y = rng.normal(size=(n, 1)), rng.gamma(2.0, size=(m, 1))
        a, b = rng.random(n), rng.random(m)
        emd = np.sqrt(ot.emd2(a / a.sum(), b / b.sum(), ot.dist(x, y)))
        worst = max(worst, abs(w2_quantile_1d(x, a, y, b) - emd))
    print(
        f"1-D quantile formula vs ot.emd2, 20 random weighted pairs: max |difference| {worst:.2e}"
    )
    circle()


if __name__ == "__main__":
    main()
