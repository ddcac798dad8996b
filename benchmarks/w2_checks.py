"""Checks of the W2 code against closed forms, printed (not timed).

    .venv/bin/python benchmarks/w2_checks.py

1. N = 2000 samples of two 2-D Gaussians: ``ot.emd2`` against the closed form, over 10
   independent draws (mean, standard deviation).
2. 1-D weighted clouds: the quantile formula against ``ot.emd2`` on the same point sets.
"""

import numpy as np
import ot

from wgf.cases.closed_forms import w2_gaussians
from wgf.postprocess.w2 import w2, w2_quantile_1d


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


if __name__ == "__main__":
    main()
