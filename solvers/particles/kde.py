"""Gaussian kernel density estimates of a particle cloud, in O(N) by linear binning.

The estimate is ρ_b(p) = Σ_j w_j φ_ε(p - x_j), φ_ε the Gaussian of covariance ε·I (ε = b²,
the Langevin solver's Silverman bandwidth squared), cut off at ``CUTOFF``·√ε like every
kernel sum of the package (:mod:`~wgf.solvers.particles.kernels`).

Two ways to compute it, chosen by ``method``:

* ``"exact"``: the sum itself (:func:`~wgf.solvers.particles.kernels.density_on_grid` on a
  tensor grid, :func:`~wgf.solvers.particles.kernels.density_at` elsewhere).  Its cost is
  N × (grid points within the cut-off), and at Silverman's bandwidth, which shrinks only
  like N^{-1/(d+4)}, that is nearly N × (grid size): the langevin run spent most of its
  time here (see benchmarks/README.md).
* ``"binned"`` (the default): *linear binning* (Hall & Wand), then a kernel sum over the
  bins.  Each particle's weight is shared between the 2^d corners of its cell of a uniform
  bin grid of spacing δ ≈ √ε/``RESOLUTION``, with the multilinear weights (which keep the
  mass and the first moment); the bins' masses c_g are then summed with the kernel,
  ρ̃(p) = Σ_g c_g φ_ε(p - g).  The binning is O(N·2^d) and the sum over bins does not
  depend on N, so a step costs O(N).  On a tensor grid the Gaussian factorises over
  coordinates, and the sum over bins is d one-dimensional (banded, sparse) matrix
  products; at other points (e.g. the particles themselves) the estimate is computed on
  the bin grid and interpolated multilinearly.

Accuracy.  For one particle, Σ_corners λ_c φ_ε(p - g_c) is the multilinear interpolant of
y ↦ φ_ε(p - y) at x_j, whose error is at most Σ_k δ_k²/8 · sup|∂_k²φ_ε| =
Σ_k δ_k²/(8ε) · (2πε)^{-d/2}.  Hence, with M = Σ w_j,

    |ρ̃(p) - ρ_b(p)| ≤ M (2πε)^{-d/2} Σ_k δ_k² / (8ε)   (≈ M (2πε)^{-d/2} d/(8 R²)),

plus the cut-off's ~e^{-CUTOFF²/2} (the two truncate at slightly different points).  This
worst case adds every particle's error with one sign; on average the binned measure has
the particles' mean and an extra variance θ(1-θ)δ² per coordinate (θ uniform: δ²/6), so
ρ̃ ≈ ρ_b + (δ²/12) Δρ_b, a relative bias of about d δ²/(12 s²) ≤ d/(12 R²) for a density
of variance s² ≥ ε per coordinate (0.13 % per coordinate at R = 8) — far below the
Monte-Carlo error of the estimate itself.  Interpolating (at arbitrary points) adds at
most the same again.

Rank independence: the bin grid depends on the global positions only, and every rank
computes the estimate from the same replicated array in the same order (or, with
``comm``, its rows of it; :func:`kde_at`), so the result is the same on any number of
ranks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from mpi4py import MPI
from scipy import sparse

from wgf.solvers.energy.pair_sums import bounding_box, deposited, multilinear_corners
from wgf.solvers.particles.kernels import CUTOFF, density_at, density_on_grid, gaussian
from wgf.solvers.particles.parallel import allgather_blocks, block

Method = Literal["binned", "exact"]

#: Bins per kernel width √ε (the bin spacing is δ = √ε/RESOLUTION): the relative bias is
#: about d/(12·RESOLUTION²) at most.
RESOLUTION = 8
#: At most this many bins: a wide 3-D cloud would need 10⁷ and more at RESOLUTION; the
#: spacing then grows (uniformly in every direction) until the grid fits.
MAX_BINS = 1 << 22


@dataclass(frozen=True)
class BinnedMeasure:
    """Particle weights linearly binned onto a uniform grid.

    Attributes:
        origin: The first node, per coordinate.
        spacing: The bin spacing δ_k, per coordinate.
        masses: The mass of each node, an array of shape (n_1, …, n_d).
    """

    origin: np.ndarray
    spacing: np.ndarray
    masses: np.ndarray

    def axes(self) -> list[np.ndarray]:
        """The node coordinates along each axis."""
        return [
            o + h * np.arange(n)
            for o, h, n in zip(self.origin, self.spacing, self.masses.shape, strict=True)
        ]


def bin_spacing(lower: np.ndarray, upper: np.ndarray, eps: float, pad: int = 0) -> np.ndarray:
    """δ = √ε/RESOLUTION in every direction, widened until the grid has ≤ MAX_BINS nodes.

    Args:
        lower: The smallest particle coordinates.
        upper: The largest.
        eps: The kernel variance ε (> 0).
        pad: Extra nodes on each side of every axis (for an estimate on the grid itself).
    """
    if not eps > 0:
        raise ValueError(f"kernel variance must be > 0, got {eps}")
    extent = np.asarray(upper, dtype=float) - np.asarray(lower, dtype=float)
    delta = math.sqrt(eps) / RESOLUTION
    for _ in range(64):  # each pass shrinks the count by (MAX_BINS/count)^{1/d} at least
        count = np.prod(np.floor(extent / delta) + 2 + 2 * pad)
        if count <= MAX_BINS:
            break
        delta *= 1.01 * (count / MAX_BINS) ** (1.0 / len(extent))
    return np.full(len(extent), delta)


def linear_binning(x: np.ndarray, weights: np.ndarray, eps: float, pad: int = 0) -> BinnedMeasure:
    """Share each weight between the 2^d corners of its bin-grid cell (multilinear weights).

    The grid starts ``pad`` nodes below the smallest coordinate, with the spacing of
    :func:`bin_spacing`; the corner weights Π_k (1 - θ_k or θ_k), θ the position in the
    cell, keep the total mass and the first moment of the cloud exactly.
    """
    lower, upper = bounding_box(x)
    delta = bin_spacing(lower, upper, eps, pad)
    shape = tuple(int(n) for n in np.floor((upper - lower) / delta) + 2 + 2 * pad)
    origin = lower - pad * delta
    masses = deposited(multilinear_corners((x - origin) / delta, shape), weights, shape)
    return BinnedMeasure(origin, delta, masses)


def kernel_matrix(points: np.ndarray, nodes: np.ndarray, eps: float) -> sparse.csr_matrix:
    """The banded matrix φ_ε^{1-D}(p_m - g_i) of points × nodes, zero beyond the cut-off.

    Both coordinate lists are increasing, so each row's nonzeros are one run of nodes,
    found by bisection: the matrix is built in O(nonzeros).
    """
    reach = CUTOFF * math.sqrt(eps)
    first = np.searchsorted(nodes, points - reach, side="left")
    last = np.searchsorted(nodes, points + reach, side="right")
    counts = last - first
    indptr = np.concatenate([[0], np.cumsum(counts)])
    rows = np.repeat(np.arange(len(points)), counts)
    cols = np.arange(indptr[-1]) - np.repeat(indptr[:-1] - first, counts)
    values = gaussian((points[rows] - nodes[cols]) ** 2, eps, 1)
    return sparse.csr_matrix((values, cols, indptr), shape=(len(points), len(nodes)))


def _apply_along_axes(masses: np.ndarray, factors: list[sparse.csr_matrix]) -> np.ndarray:
    """``masses`` ×_1 F_1 ×_2 F_2 … ×_d F_d: each factor applied along its axis."""
    out = masses
    for k, factor in enumerate(factors):
        moved = np.moveaxis(out, k, 0)
        flat = factor @ moved.reshape(moved.shape[0], -1)
        out = np.moveaxis(flat.reshape((factor.shape[0], *moved.shape[1:])), 0, k)
    return out


def binned_on_grid(measure: BinnedMeasure, axes: list[np.ndarray], eps: float) -> np.ndarray:
    """ρ̃ = Σ_g c_g φ_ε(p - g) on the tensor grid of ``axes`` ('ij' order, raveled)."""
    factors = [
        kernel_matrix(np.asarray(a, dtype=float), nodes, eps)
        for a, nodes in zip(axes, measure.axes(), strict=True)
    ]
    return np.ascontiguousarray(_apply_along_axes(measure.masses, factors)).ravel()


def interpolate(values: np.ndarray, measure: BinnedMeasure, points: np.ndarray) -> np.ndarray:
    """Multilinear interpolation of node ``values`` (the binning's transpose); 0 outside."""
    u = (points - measure.origin) / measure.spacing
    inside = np.all((u >= 0) & (u <= np.array(values.shape) - 1), axis=1)
    out = np.zeros(len(points))
    flat = values.ravel()
    out[inside] = sum(
        flat[index] * weight for index, weight in multilinear_corners(u[inside], values.shape)
    )
    return out


def kde_on_grid(
    axes: list[np.ndarray],
    x: np.ndarray,
    weights: np.ndarray,
    eps: float,
    method: Method = "binned",
) -> np.ndarray:
    """The kernel density estimate on the tensor grid of ``axes`` (raveled, 'ij' order).

    Args:
        axes: The grid's coordinates along each axis (increasing).
        x: Particle positions (N, d).
        weights: Their weights (N,).
        eps: The kernel variance ε.
        method: ``"binned"`` (O(N), see the module docstring) or ``"exact"``.
    """
    if method == "exact":
        return density_on_grid(axes, x, weights, eps)
    return binned_on_grid(linear_binning(x, weights, eps), axes, eps)


def kde_at(
    points: np.ndarray,
    x: np.ndarray,
    weights: np.ndarray,
    eps: float,
    method: Method = "binned",
    comm: MPI.Comm | None = None,
) -> np.ndarray:
    """The kernel density estimate at arbitrary ``points`` (M, d).

    ``"binned"``: the estimate on the bin grid (padded by the cut-off, so that it covers
    the estimate's support), interpolated multilinearly; ``"exact"``: the cut-off sum.

    With ``comm`` (collective: every rank passes its own ``points`` and all of ``x``), the
    ranks share the binned estimate's kernel sums: each computes the bin grid's rows in
    its block and the rows are all-gathered.  Every row is the same sum as on one rank, so
    the values are too, bit for bit.  Without it a 2-rank run repeated those sums on every
    rank: 0.15 of 0.22 s at N = 10⁵ (swarm_2d's peak density).
    """
    if method == "exact":
        return density_at(points, x, weights, eps) if len(points) else np.zeros(0)
    shared = comm is not None and comm.size > 1
    if len(points) == 0 and not shared:
        return np.zeros(0)
    pad = math.ceil(CUTOFF * RESOLUTION) + 1
    measure = linear_binning(x, weights, eps, pad)
    axes = measure.axes()
    lo, hi = block(len(axes[0]), comm) if shared else (0, len(axes[0]))
    rows = binned_on_grid(measure, [axes[0][lo:hi], *axes[1:]], eps)
    on_nodes = rows.reshape(hi - lo, *measure.masses.shape[1:])
    if shared:
        on_nodes = allgather_blocks(comm, on_nodes)
    return interpolate(on_nodes, measure, np.asarray(points, dtype=float))
