"""Wasserstein-2 distances between weighted point clouds (POT), and the exact 1-D formula.

How W2 is computed (``w2``):

* in 1-D, exactly, as the L2 distance of the two quantile functions (``w2_quantile_1d``);
* otherwise exactly, with POT's network simplex ``ot.emd`` on a *sparse* cost matrix
  (``w2_sparse_emd``).  The optimal plan between two nearby densities moves mass over short
  distances, so only the pairs within a few point spacings of each other are offered to the
  solver, with each point's ``NEAREST`` nearest partners (a light point far from the
  other cloud) and a feasible plan (the monotone coupling along the first axis) so that
  the restricted problem always has a solution.  The restricted optimum is the true
  one exactly when its dual potentials (u, v) satisfy u_i + v_j ≤ |x_i - y_j|² for *every*
  pair (LP duality); that is checked on all pairs, and the violating pairs are added and
  the problem solved again until it holds.  The answer is then ``ot.emd2``'s to round-off,
  in a fraction of the time: the dense solver works on all n·m pairs.
* should that not settle within ``MAX_ROUNDS`` (or n·m exceed ``SPARSE_SIZE``), dense
  ``ot.emd2`` while n·m ≤ ``EXACT_SIZE``, and above that ``ot.emd2`` on clouds binned to at
  most ``MAX_POINTS`` cells (the method string says so).  Binning moves mass by up to a
  bin diameter, which is of the order of W2 itself for nearby densities: a last resort.

On the circle (``shape="circle"``) W2 is the geodesic one, with the arc-length distance,
computed exactly by the quantile formula with the optimal level shift
(:mod:`wgf.postprocess.circle`); a sampled density there is a sum of uniform arcs (one per
sample cell), not of atoms.  On the sphere the clouds are compared in ℝ³ (chordal distance).

Measured accuracies and times are in benchmarks/README.md (``benchmarks/w2_accuracy.py``).

An FE density enters as the weighted cloud of its sample-grid midpoints with weights
ρ·|cell|; a particle run as its particles and weights.  Both clouds are normalised to unit
mass: W2 compares shapes; the mass is reported separately.
"""

from __future__ import annotations

import warnings

import numpy as np
import ot
import scipy.sparse as sp
from scipy.spatial import cKDTree
from scipy.spatial.distance import cdist

from wgf.postprocess.circle import CircleMeasure, w2_circle

EXACT_SIZE = 16_000_000
#: Above n·m = this, checking the duals on every pair (one pass over n·m) takes too long.
SPARSE_SIZE = 200_000_000
MAX_POINTS = 4000
#: Points whose weight is below this fraction of the total are dropped.
NEGLIGIBLE = 1e-14
#: Pairs closer than this many point spacings are offered to the sparse solver at first.
NEIGHBOUR_SPACINGS = 4.0
#: ... and each point's this many nearest neighbours in the other cloud (far light points).
NEAREST = 32
#: Rounds of "solve, check the duals on every pair, add the violating pairs".
MAX_ROUNDS = 12
#: At most this many violating pairs per source point are added in one round (the most
#: violating ones): enough to converge in a few rounds without densifying the graph.
ADD_PER_ROW = 16
#: Dual feasibility is checked up to this fraction of the potentials' size (round-off of
#: the network simplex is about 1e-13 of it).
DUAL_TOL = 1e-10
#: Rows of the full cost matrix formed at once when checking the duals.
CHUNK = 1024

#: How each method string reads in a table header.
METHOD_NOTES = {
    "quantile": "exact 1-D quantile formula",
    "circle": "geodesic W2 on the circle, exact (quantile formula with the optimal shift)",
    "emd": "POT emd on a sparse neighbour graph, optimality certified by its duals: exact to"
    " round-off (checked against dense ot.emd2 by benchmarks/w2_accuracy.py)",
    f"emd (binned to <= {MAX_POINTS} points)": f"ot.emd2 on clouds binned to <= {MAX_POINTS}"
    " points: approximate, error up to a bin diameter",
}


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


def _monotone_pairs(
    x: np.ndarray, a: np.ndarray, y: np.ndarray, b: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The pairs (i, j) of the monotone (north-west corner) coupling along the first axis.

    Both clouds sorted by their first coordinate, the coupling matches the cumulative
    masses: pair (i, j) carries mass when the intervals (A_{i-1}, A_i] and (B_{j-1}, B_j]
    overlap.  It is a feasible plan with at most n + m - 1 pairs, so a sparse problem
    that contains it always has a solution.
    """
    ix, iy = np.argsort(x[:, 0], kind="stable"), np.argsort(y[:, 0], kind="stable")
    ca, cb = np.cumsum(a[ix]), np.cumsum(b[iy])
    levels = np.union1d(ca, cb)
    levels = levels[levels < 1.0 - 1e-15]
    mid = 0.5 * (np.concatenate([[0.0], levels]) + np.concatenate([levels, [1.0]]))
    i = np.minimum(np.searchsorted(ca, mid), len(ca) - 1)
    j = np.minimum(np.searchsorted(cb, mid), len(cb) - 1)
    return ix[i], iy[j]


def _spacing(x: np.ndarray) -> float:
    """Median distance of a point to its nearest neighbour in its own cloud."""
    if len(x) < 2:
        return 1.0
    dist = cKDTree(x).query(x, k=2)[0][:, 1]
    return float(np.median(dist)) or 1.0


def _worst(
    x: np.ndarray, y: np.ndarray, u: np.ndarray, v: np.ndarray, tol: float
) -> tuple[np.ndarray, np.ndarray]:
    """For each x_i, its (at most ``ADD_PER_ROW``) partners of most negative reduced cost."""
    reduced = cdist(x, y, "sqeuclidean") - u[:, None] - v[None, :]
    k = min(ADD_PER_ROW, reduced.shape[1])
    worst = np.argpartition(reduced, k - 1, axis=1)[:, :k]
    i, c = np.nonzero(np.take_along_axis(reduced, worst, axis=1) < -tol)
    return i, worst[i, c]


def _violations(
    x: np.ndarray, y: np.ndarray, u: np.ndarray, v: np.ndarray, tol: float
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs that violate dual feasibility: the worst ones of each offending x_i and y_j.

    The reduced cost of (i, j) is |x_i - y_j|² - u_i - v_j.  One pass over all pairs (in
    chunks of rows) finds the offending points; only their rows and columns are searched
    for the worst partners.  Looking from both sides matters: a light point far from the
    other cloud offends with many partners, and only its own worst ones are what it needs.
    """
    bad_x = np.zeros(len(x), dtype=bool)
    col_min = np.full(len(y), np.inf)
    for start in range(0, len(x), CHUNK):
        stop = min(start + CHUNK, len(x))
        reduced = cdist(x[start:stop], y, "sqeuclidean") - u[start:stop, None] - v[None, :]
        bad_x[start:stop] = reduced.min(axis=1) < -tol
        col_min = np.minimum(col_min, reduced.min(axis=0))
    ix, iy = np.flatnonzero(bad_x), np.flatnonzero(col_min < -tol)
    rows_x, cols_x = _worst(x[ix], y, u[ix], v, tol)
    cols_y, rows_y = _worst(y[iy], x, v[iy], u, tol)
    return np.concatenate([ix[rows_x], rows_y]), np.concatenate([cols_x, iy[cols_y]])


def _nearest_pairs(x: np.ndarray, y: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each x_i with its k nearest y_j, and each y_j with its k nearest x_i."""
    kx, ky = min(k, len(y)), min(k, len(x))
    to_y = cKDTree(y).query(x, k=kx)[1].reshape(len(x), kx)
    to_x = cKDTree(x).query(y, k=ky)[1].reshape(len(y), ky)
    rows = np.concatenate([np.repeat(np.arange(len(x)), kx), to_x.ravel()])
    cols = np.concatenate([to_y.ravel(), np.repeat(np.arange(len(y)), ky)])
    return rows, cols


def _unique_pairs(rows: np.ndarray, cols: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """The pairs (rows[k], cols[k]) without repeats (the solver would take each twice)."""
    keys = np.sort(rows.astype(np.int64) * m + cols)
    keys = keys[np.concatenate([[True], keys[1:] != keys[:-1]])]
    return keys // m, keys % m


def w2_sparse_emd(
    x: np.ndarray, a: np.ndarray, y: np.ndarray, b: np.ndarray
) -> tuple[float, int] | None:
    """Exact W2 of two weighted clouds of unit mass by sparse network simplex.

    Returns ``(W2, rounds)``, or None if the duals did not certify the optimum within
    ``MAX_ROUNDS`` rounds (the caller then falls back to the dense solver).

    Args:
        x: Source points, (n, d).
        a: Source weights, (n,), summing to 1.
        y: Target points, (m, d).
        b: Target weights, (m,), summing to 1.
    """
    radius = NEIGHBOUR_SPACINGS * max(_spacing(x), _spacing(y))
    near = cKDTree(x).sparse_distance_matrix(cKDTree(y), radius, output_type="coo_matrix")
    chain_rows, chain_cols = _monotone_pairs(x, a, y, b)
    knn_rows, knn_cols = _nearest_pairs(x, y, NEAREST)
    rows = np.concatenate([near.row, chain_rows, knn_rows])
    cols = np.concatenate([near.col, chain_cols, knn_cols])
    rows, cols = _unique_pairs(rows, cols, len(b))
    for rounds in range(1, MAX_ROUNDS + 1):
        cost = np.sum((x[rows] - y[cols]) ** 2, axis=1)
        matrix = sp.coo_matrix((cost, (rows, cols)), shape=(len(a), len(b)))
        with warnings.catch_warnings():  # the result code is read below
            warnings.simplefilter("ignore")
            _, log = ot.emd(a, b, matrix, numItermax=10_000_000, log=True, center_dual=False)
        if log["result_code"] != 1:
            return None
        u, v = np.asarray(log["u"]), np.asarray(log["v"])
        tol = DUAL_TOL * (np.abs(u).max() + np.abs(v).max() + cost.max())
        new_rows, new_cols = _violations(x, y, u, v, tol)
        if not len(new_rows):
            return float(np.sqrt(max(log["cost"], 0.0))), rounds
        # The offending pairs are not in the graph yet (its pairs have reduced cost ≥ 0),
        # but a pair can offend both its row and its column.
        new_rows, new_cols = _unique_pairs(new_rows, new_cols, len(b))
        rows, cols = np.concatenate([rows, new_rows]), np.concatenate([cols, new_cols])
    return None


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


def w2_dense_emd(x: np.ndarray, a: np.ndarray, y: np.ndarray, b: np.ndarray) -> float:
    """W2 by ``ot.emd2`` on the full cost matrix (the reference the others are checked by)."""
    cost = ot.dist(x, y, metric="sqeuclidean")
    return float(np.sqrt(max(ot.emd2(a, b, cost, numItermax=10_000_000), 0.0)))


def w2(
    x: np.ndarray,
    a: np.ndarray,
    y: np.ndarray,
    b: np.ndarray,
    *,
    shape: str = "box",
    arcs: tuple[float, float] = (0.0, 0.0),
) -> tuple[float, str]:
    """W2 between the clouds (x, a) and (y, b); returns (value, method used).

    Args:
        x: The first cloud's points (n, d).
        a: Its weights (n,).
        y: The second cloud's points (m, d).
        b: Its weights (m,).
        shape: The case's ``domain.shape``; ``"circle"`` gives the geodesic W2 on S¹.
        arcs: On the circle, the arc length each point of x (and of y) stands for: 0 for
            particles, the cell length for a sampled density.
    """
    if shape == "circle":
        mu = CircleMeasure.from_points(x, a, arcs[0])
        nu = CircleMeasure.from_points(y, b, arcs[1])
        return w2_circle(mu, nu), "circle"
    x, a = normalise(x, a)
    y, b = normalise(y, b)
    if x.shape[1] == 1:
        return w2_quantile_1d(x, a, y, b), "quantile"
    sparse = w2_sparse_emd(x, a, y, b) if len(a) * len(b) <= SPARSE_SIZE else None
    if sparse is not None:
        return sparse[0], "emd"
    if len(a) * len(b) <= EXACT_SIZE:
        return w2_dense_emd(x, a, y, b), "emd"
    xb, ab = _bin(x, a, MAX_POINTS)
    yb, bb = _bin(y, b, MAX_POINTS)
    return w2_dense_emd(xb, ab, yb, bb), f"emd (binned to <= {MAX_POINTS} points)"
