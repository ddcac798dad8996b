"""A run's density at a snapshot, as a weighted point cloud and on the sample grid.

Grid densities (an FE run, the closed form) become point clouds at the sample-grid
midpoints with weights ρ·|cell|.  A point cloud on a grid of spacing h is itself O(h)
away from the density in W2 (about h/√12 per direction), which would floor every W2
error; in 1-D, where W2 is exact and cheap, each cell is therefore split into
``REFINE_1D`` sub-cells (the FE density taken constant on the cell, the closed form
evaluated at the sub-cell midpoints).  On the circle the W2 is exact for a density
constant on each sample cell (:mod:`wgf.postprocess.circle`): a grid cloud there stands for
uniform arcs, which :func:`w2_options` tells :func:`wgf.postprocess.w2.w2`.
"""

from __future__ import annotations

import math

import numpy as np

from wgf.postprocess.results import Results

REFINE_1D = 20


def _spacing(run: Results) -> float:
    return run.sample_cell_volume() ** (1.0 / run.dim)


def _sub_points(run: Results) -> np.ndarray:
    """Midpoints of the 1-D sub-cells, ``REFINE_1D`` per sample cell."""
    h = _spacing(run)
    offsets = (np.arange(REFINE_1D) + 0.5) / REFINE_1D - 0.5
    return (run.sample_points[:, :1] + h * offsets[None, :]).reshape(-1, 1)


def cloud(run: Results, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Weighted cloud of snapshot ``index``.

    Particles and their weights if the run has them, else the sample-grid midpoints with
    weights ρ·|cell| (split into sub-cells in 1-D).
    """
    if run.positions is not None and run.weights is not None:
        return run.positions[index], run.weights
    weights = run.snapshot_density[index] * run.sample_cell_areas()
    if run.dim == 1:
        return _sub_points(run), np.repeat(weights / REFINE_1D, REFINE_1D)
    return run.sample_points, weights


def exact_cloud(run: Results, t: float) -> tuple[np.ndarray, np.ndarray] | None:
    """The closed form at time t on the run's sample grid (sub-cells in 1-D), or None."""
    exact = run.exact()
    if exact is None:
        return None
    if run.dim == 1:
        points = _sub_points(run)
        return points, exact(t, points) * run.sample_cell_volume() / REFINE_1D
    return run.sample_points, exact(t, run.sample_points) * run.sample_cell_areas()


def _arc(run: Results, grid: bool) -> float:
    """The arc a point of the run's circle cloud stands for: 0 for particles, else a cell."""
    particles = run.positions is not None and run.weights is not None
    return 0.0 if particles and not grid else 2.0 * math.pi / len(run.sample_points)


def w2_options(run: Results, other: Results | None = None) -> dict:
    """Keywords of :func:`wgf.postprocess.w2.w2` for ``run``'s cloud against another's.

    ``other`` is the run whose :func:`cloud` is the second argument, or None for the
    closed form on ``run``'s grid (:func:`exact_cloud`).  Off the circle: no keywords.
    """
    if run.shape != "circle":
        return {}
    second = _arc(run, grid=True) if other is None else _arc(other, grid=False)
    return {"shape": "circle", "arcs": (_arc(run, grid=False), second)}


def relative_errors(run: Results, index: int) -> dict[str, float]:
    """Relative L1 and L2 errors of the sampled density against the closed form.

    The sample points are the midpoints of a uniform grid, so the sums are midpoint-rule
    integrals.
    """
    exact = run.exact()
    if exact is None:
        return {}
    ex = exact(run.snapshot_time[index], run.sample_points)
    diff = run.snapshot_density[index] - ex
    return {
        "l1": float(np.sum(np.abs(diff)) / np.sum(np.abs(ex))),
        "l2": float(np.sqrt(np.sum(diff**2) / np.sum(ex**2))),
    }
