"""Wasserstein-2 distances between weighted point clouds (POT), and the exact 1-D formula.

How W2 is computed (``w2``):

* in 1-D, exactly, as the L2 distance of the two quantile functions (``w2_quantile_1d``);
* otherwise with the exact network-simplex solver ``ot.emd2`` while n·m ≤ ``EXACT_SIZE``
  (4000 × 4000 points: the cost matrix takes 128 MB);
* above that, the clouds are first binned onto a uniform grid of at most ``MAX_POINTS``
  cells (mass at the cell barycentres) and ``ot.emd2`` solves the binned problem; the
  method string says so.  Binning moves mass by at most a bin diameter, which bounds the
  error.  POT's debiased-Sinkhorn ingredients are slower than emd at these sizes, so emd
  it is (measured: see benchmarks/README.md).

An FE density enters as the weighted cloud of its sample-grid midpoints with weights
ρ·|cell|; a particle run as its particles and weights.  Both clouds are normalised to unit
mass: W2 compares shapes; the mass is reported separately.
"""

from __future__ import annotations

import numpy as np
import ot

EXACT_SIZE = 16_000_000
MAX_POINTS = 4000
#: Points whose weight is below this fraction of the total are dropped.
NEGLIGIBLE = 1e-14


def normalise(x: np.ndarray, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop negligible (and negative round-off) weights and scale to unit mass."""
    a = np.where(a > 0.0, a, 0.0)
    keep = a > NEGLIGIBLE * a.sum()
    x, a = np.atleast_2d(x.reshape(len(a), -1))[keep], a[keep]
    return x, a / a.sum()


def w2_quantile_1d(x: np.ndarray, a: np.ndarray, y: np.ndarray, b: np.ndarray) -> float:
    """Exact W2 of two weighted 1-D clouds: ∫_0^1 |F^{-1}(s) - G^{-1}(s)|² ds."""
    x, a = normalise(x, a)
    y, b = normalise(y, b)
    ix, iy = np.argsort(x[:, 0]), np.argsort(y[:, 0])
    xs, ca = x[ix, 0], np.cumsum(a[ix])
    ys, cb = y[iy, 0], np.cumsum(b[iy])
    levels = np.union1d(ca, cb)
    levels = levels[levels < 1.0 - 1e-15]
    breaks = np.concatenate([[0.0], levels, [1.0]])
    mid = 0.5 * (breaks[1:] + breaks[:-1])
    qx = xs[np.minimum(np.searchsorted(ca, mid), len(xs) - 1)]
    qy = ys[np.minimum(np.searchsorted(cb, mid), len(ys) - 1)]
    return float(np.sqrt(np.sum(np.diff(breaks) * (qx - qy) ** 2)))


def _bin(x: np.ndarray, a: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Aggregate a cloud on a uniform grid of about ``max_points`` cells (barycentres)."""
    if len(a) <= max_points:
        return x, a
    d = x.shape[1]
    per_axis = max(2, int(max_points ** (1.0 / d)))
    lo, hi = x.min(axis=0), x.max(axis=0)
    idx = np.minimum(((x - lo) / np.maximum(hi - lo, 1e-300) * per_axis).astype(int), per_axis - 1)
    flat = np.ravel_multi_index(idx.T, (per_axis,) * d)
    inverse = np.unique(flat, return_inverse=True)[1]
    mass = np.bincount(inverse, weights=a)
    centre = np.stack([np.bincount(inverse, weights=a * x[:, k]) for k in range(d)], axis=1)
    return centre / mass[:, None], mass


def w2(x: np.ndarray, a: np.ndarray, y: np.ndarray, b: np.ndarray) -> tuple[float, str]:
    """W2 between the clouds (x, a) and (y, b); returns (value, method used)."""
    x, a = normalise(x, a)
    y, b = normalise(y, b)
    if x.shape[1] == 1:
        return w2_quantile_1d(x, a, y, b), "quantile"
    if len(a) * len(b) <= EXACT_SIZE:
        cost = ot.dist(x, y, metric="sqeuclidean")
        return float(np.sqrt(max(ot.emd2(a, b, cost, numItermax=10_000_000), 0.0))), "emd"
    xb, ab = _bin(x, a, MAX_POINTS)
    yb, bb = _bin(y, b, MAX_POINTS)
    cost = ot.dist(xb, yb, metric="sqeuclidean")
    value = float(np.sqrt(max(ot.emd2(ab, bb, cost, numItermax=10_000_000), 0.0)))
    return value, f"emd (binned to <= {MAX_POINTS} points)"
