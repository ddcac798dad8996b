"""A run's density at a snapshot, as a weighted point cloud and on the sample grid."""

from __future__ import annotations

import numpy as np

from postprocess.results import Results


def cloud(run: Results, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Weighted cloud of snapshot ``index``.

    Particles and their weights if the run has them, else the sample-grid midpoints with
    weights ρ·|cell|.
    """
    if run.positions is not None and run.weights is not None:
        return run.positions[index], run.weights
    return run.sample_points, run.snapshot_density[index] * run.sample_cell_volume()


def exact_cloud(run: Results, t: float) -> tuple[np.ndarray, np.ndarray] | None:
    """The closed form at time t on the run's sample grid, or None."""
    exact = run.exact()
    if exact is None:
        return None
    return run.sample_points, exact(t, run.sample_points) * run.sample_cell_volume()


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
