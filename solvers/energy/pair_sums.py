"""Sums over weighted points of a translation-invariant kernel: Σ_j w_j K(x - y_j).

The interaction term (:mod:`.interaction`) needs W∗μ and ∇W∗μ for μ = Σ_j w_j δ_{y_j}, at
the particles (blob, langevin) or at mesh vertices (the FE solvers, next).  Two methods:

* :func:`direct_sum`: the exact sum, O(n·N), in chunks of targets so that the pair
  temporaries stay around :data:`CHUNK_PAIRS` entries (no N×N array is ever formed).  Pairs
  at distance exactly 0 are skipped: for a particle that is its own (self) pair, whose force
  is 0 and whose energy is a constant.
* :func:`mesh_sum`: the particle-mesh (PM) sum, O(N + G log G) for a grid of G nodes:
  cloud-in-cell (CIC) deposit of the weights on a uniform grid over the points' bounding box,
  discrete convolution with the kernel sampled on the grid offsets, by FFT on a grid
  zero-padded to twice the size (so the circular convolution is the free-space one: no
  periodic images), and CIC interpolation back to the targets.  For a kernel that is singular
  at 0 the offsets near the origin (|o|_∞ ≤ :data:`NEAR`) take the kernel averaged over their
  cell (Gauss–Legendre, :data:`GAUSS` points per direction) instead of its point value, as
  Carrillo–Chertock–Huang do for their finite volumes; the integrable singularity then
  enters with its mass instead of an arbitrary sample.  Because the deposit and the
  interpolation use the same CIC weights and a gradient kernel is odd, the PM forces keep
  Newton's third law: the total force, and the self force of a particle, vanish to round-off.

The PM grid spacing is isotropic: ``cells`` cells along the longest side of the bounding box.

Reuse between calls (``cache``, kept by the interaction term per sum and δ).  Sampling
the kernels and transforming them is a third of a sum at N = 10⁵, and a flow moves its
cloud by little per step.  With a cache the spacing is rounded down to the lattice 2^(k/16)
(so the grid is never coarser than asked) and the padding gets one lattice step of
headroom; the kernels' transforms are kept and reused while the spacing is the same and
the kept padded grid still fits the grid (:func:`_cached_transforms`).  A cloud that
spreads by 0.2 % per step then re-samples about once in 20 steps.

Symmetry.  A radial kernel's value is even in every coordinate of the offset, and the k-th
component of its gradient is odd in z_k and even in the others.  Given these parities the
kernels are sampled on the non-negative offsets only (about 2^{-d} of the padded grid,
near-origin averages included) and reflected: sampling, which evaluates the kernel formula,
was the largest part of a sum.

Over ranks (``comm``): each rank deposits its share of the sources and the grids are summed
(Allreduce); every rank transforms the summed masses (pruned: the padding is zero, so the
inner axes are transformed on the grid's own rows only); the sampling is split by rows of
the non-negative offsets (then all-gathered), and the kernels are dealt out, kernel k to
rank k mod p, which transforms it and convolves (the inverse pruned to the grid's own
rows), and the fields are all-gathered; each rank then interpolates every field at its own
targets (the caller's block).  Every value but the summed deposit is
computed by the same operations on any number of ranks; the deposit's partial sums add in
another order, so the sums agree with one rank's to round-off (1e-14 is tested).  A
gradient in d dimensions has d kernels, so at most d ranks share the convolutions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import product
from typing import TYPE_CHECKING

import numpy as np
from scipy import fft

if TYPE_CHECKING:
    from mpi4py import MPI

#: Pair entries per chunk of the direct sum (each float temporary 512 kB: cache-sized).
CHUNK_PAIRS = 1 << 16
#: Offsets within this many cells (max norm) of the origin are cell-averaged.
NEAR = 2
#: Gauss–Legendre points per direction of a cell average.
GAUSS = 4
#: With a kernel cache, the grid spacing is rounded down to 2^(k/H_STEPS) (k integer): a
#: cloud that changes its extent by less than 2^(1/H_STEPS) - 1 = 4.4 % keeps its grid
#: spacing, and the kernels' transforms are reused (:func:`mesh_sum`).
H_STEPS = 16
#: ...and kept transforms serve while the padded grid is at most this much too large.
PADDING_SLACK = 1.3

#: A radial factor f(r) of a kernel, evaluated on an array of distances.
Radial = Callable[[np.ndarray], np.ndarray]


def direct_sum(
    targets: np.ndarray,
    sources: np.ndarray,
    weights: np.ndarray,
    value: Radial | None = None,
    factor: Radial | None = None,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Σ_j w_j k(|x_i - y_j|) and Σ_j w_j f(|x_i - y_j|)(x_i - y_j), skipping zero distances.

    Args:
        targets: Points x_i, shape (n, d).
        sources: Points y_j, shape (N, d).
        weights: w_j, shape (N,).
        value: k(r), for the scalar sum (None: not computed).
        factor: f(r), for the vector sum (None: not computed); with f = W'(r)/r the vector
            sum is ∇(W∗μ).

    Returns:
        The scalar sums (n,) and the vector sums (n, d), or None for those not asked.
    """
    n, d = targets.shape
    scalar = None if value is None else np.empty(n)
    vector = None if factor is None else np.empty((n, d))
    chunk = max(1, CHUNK_PAIRS // max(1, len(sources)))
    # Σ_j w_j f_ij (x_i - y_j) = x_i Σ_j w_j f_ij - Σ_j f_ij w_j y_j: one product with the
    # (N, d + 1) matrix [w, w y] instead of d passes over the pairs.
    columns = np.concatenate([weights[:, None], weights[:, None] * sources], axis=1)
    for start in range(0, n, chunk):
        x = targets[start : start + chunk]
        r2 = np.zeros((len(x), len(sources)))
        for k in range(d):
            diff = np.subtract.outer(x[:, k], sources[:, k])
            r2 += diff * diff
        r = np.sqrt(r2, out=r2)
        coincide = r == 0.0
        with np.errstate(all="ignore"):
            if scalar is not None and value is not None:
                k_ij = value(r)
                k_ij[coincide] = 0.0
                scalar[start : start + len(x)] = k_ij @ weights
            if vector is not None and factor is not None:
                f_ij = factor(r)
                f_ij[coincide] = 0.0
                sums = f_ij @ columns
                vector[start : start + len(x)] = x * sums[:, :1] - sums[:, 1:]
    return scalar, vector


def default_cells(n_points: int, dim: int) -> int:
    """PM cells along the longest side: twice the mean particle spacing's count, bounded."""
    cap = {1: 1 << 16, 2: 2048, 3: 160}[dim]
    return int(np.clip(2 * np.ceil(n_points ** (1.0 / dim)), 32, cap))


def _wrapped(p: int) -> np.ndarray:
    """Indices 0..p-1 of a padded axis as signed offsets (o ≥ p/2 stands for o - p)."""
    o = np.arange(p)
    return np.where(o < p // 2, o, o - p)


class _Grid:
    """The PM grid over a box (by default the bounding box of the points), and CIC on it."""

    def __init__(
        self,
        points: np.ndarray,
        cells: int,
        box: tuple[np.ndarray, np.ndarray] | None = None,
        snap: bool = False,
    ) -> None:
        lower, upper = box if box is not None else (points.min(axis=0), points.max(axis=0))
        self.lower = lower
        extent = upper - self.lower
        longest = float(extent.max())
        self.h = longest / cells if longest > 0.0 else 1.0
        if snap:  # down to the lattice 2^(k/H_STEPS): at least ``cells`` cells, a reusable h
            self.h = float(2.0 ** (np.floor(H_STEPS * np.log2(self.h)) / H_STEPS))
        self.shape = tuple(int(np.floor(e / self.h)) + 2 for e in extent)
        # Snapped, the padding has the headroom of one lattice step: the grid can then
        # grow until its spacing steps up without outgrowing it (see _cached_transforms).
        room = 2.0 ** (1.0 / H_STEPS) if snap else 1.0
        self.padded = tuple(
            fft.next_fast_len(int(np.ceil(2 * g * room)), real=True) for g in self.shape
        )

    def corners(self, x: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """The 2^d (flat node index, CIC weight) pairs of each point.

        The flat index of the lower corner is found once and the others are offsets from it;
        the weights are products of the per-axis factors 1 - f and f (f the fraction).
        """
        u = (x - self.lower) / self.h
        base = np.clip(np.floor(u).astype(np.int64), 0, np.array(self.shape) - 2)
        frac = u - base
        dim = x.shape[1]
        strides = [int(np.prod(self.shape[k + 1 :])) for k in range(dim)]
        flat = sum(base[:, k] * strides[k] for k in range(dim))
        sides = [(1.0 - frac[:, k], np.ascontiguousarray(frac[:, k])) for k in range(dim)]
        out = []
        for corner in product((0, 1), repeat=dim):
            weight = sides[0][corner[0]]
            for k in range(1, dim):
                weight = weight * sides[k][corner[k]]
            out.append((flat + sum(c * s for c, s in zip(corner, strides, strict=True)), weight))
        return out

    def deposit(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        """CIC masses on the nodes (deterministic: one bincount in index order)."""
        corners = self.corners(x)
        index = np.concatenate([i for i, _ in corners])
        mass = np.concatenate([weight * w for _, weight in corners])
        size = int(np.prod(self.shape))
        return np.bincount(index, mass, minlength=size).reshape(self.shape)

    def interpolate(self, fields: Sequence[np.ndarray], x: np.ndarray) -> list[np.ndarray]:
        """CIC interpolation of node fields at points x (the corners found once for all)."""
        corners = self.corners(x)
        return [sum(f.ravel()[index] * weight for index, weight in corners) for f in fields]

    def offsets(self) -> np.ndarray:
        """Offset vectors o·h of the padded grid (index o ≥ P/2 stands for o - P), (P, d)."""
        axes = [_wrapped(p) for p in self.padded]
        mesh = np.meshgrid(*axes, indexing="ij")
        return np.stack([m.ravel() for m in mesh], axis=1) * self.h


#: Kernels sampled together: offset vectors z (m, d) → one array (m,) per kernel.
Sampler = Callable[[np.ndarray], list[np.ndarray]]


#: Per kernel, its parity in each coordinate of the offset: +1 even, -1 odd.
Parities = Sequence[Sequence[int]]


def _share(n: int, size: int, rank: int) -> tuple[int, int]:
    """Rank ``rank``'s contiguous share [lo, hi) of n rows among ``size`` ranks."""
    return n * rank // size, n * (rank + 1) // size


def _sampled_half(
    grid: _Grid, sample: Sampler, singular: bool, comm: MPI.Comm | None
) -> list[np.ndarray]:
    """The kernels on the non-negative offsets 0..max|o| per axis, near-origin averaged.

    Each rank samples its share of the rows (first axis) and the shares are all-gathered.
    """
    half = tuple(int(np.abs(_wrapped(p)).max()) + 1 for p in grid.padded)
    size, rank = (1, 0) if comm is None else (comm.size, comm.rank)
    lo, hi = _share(half[0], size, rank)
    axes = [np.arange(lo, hi), *(np.arange(n) for n in half[1:])]
    mesh = np.meshgrid(*axes, indexing="ij")
    z = np.stack([m.ravel() for m in mesh], axis=1) * grid.h
    with np.errstate(all="ignore"):
        local = [np.ascontiguousarray(v.reshape(hi - lo, *half[1:])) for v in sample(z)]
    if comm is not None and size > 1:
        # one all-gather for all kernels (each collective waits for every rank): each
        # rank's rows of every kernel, in rank order
        row = int(np.prod(half[1:]))
        shares = [_share(half[0], size, r) for r in range(size)]
        counts = [len(local) * row * (b - a) for a, b in shares]
        gathered = np.empty(sum(counts))
        comm.Allgatherv(np.concatenate([part.ravel() for part in local]), [gathered, counts])
        values = [np.empty(half) for _ in local]
        offset = 0
        for a, b in shares:
            for value in values:
                value[a:b] = gathered[offset : offset + row * (b - a)].reshape(b - a, *half[1:])
                offset += row * (b - a)
    else:
        values = local
    if singular:  # every rank averages the few near cells itself
        near_axes = [np.arange(NEAR + 1)] * len(half)
        near = tuple(m.ravel() for m in np.meshgrid(*near_axes, indexing="ij"))
        z_near = np.stack(near, axis=1) * grid.h
        nodes, gw = np.polynomial.legendre.leggauss(GAUSS)
        averages = [np.zeros(len(z_near)) for _ in values]
        for point in product(range(GAUSS), repeat=len(half)):
            weight = float(np.prod(0.5 * gw[list(point)]))
            with np.errstate(all="ignore"):
                shifted = sample(z_near + 0.5 * grid.h * nodes[list(point)])
            for average, value in zip(averages, shifted, strict=True):
                average += weight * value
        for value, average in zip(values, averages, strict=True):
            value[near] = average
    return values


def _reflected(half: np.ndarray, padded: tuple[int, ...], parity: Sequence[int]) -> np.ndarray:
    """The kernel on the whole padded grid from its non-negative offsets and parity."""
    full = half
    for axis, (p, sign) in enumerate(zip(padded, parity, strict=True)):
        signed = _wrapped(p)
        full = np.take(full, np.abs(signed), axis=axis)
        if sign < 0:
            shape = [1] * full.ndim
            shape[axis] = p
            full = full * np.sign(signed).reshape(shape)
    return full


def _sampled(grid: _Grid, sample: Sampler, singular: bool) -> list[np.ndarray]:
    """The kernels on the padded grid's offsets; the near-origin cells averaged if singular."""
    z = grid.offsets()
    with np.errstate(all="ignore"):
        values = sample(z)
    if singular:
        # the (2 NEAR + 1)^d offsets around the origin, found by index (no pass over z)
        near_axes = [np.r_[0 : NEAR + 1, p - NEAR : p] for p in grid.padded]
        near = np.ravel_multi_index(
            tuple(m.ravel() for m in np.meshgrid(*near_axes, indexing="ij")), grid.padded
        )
        nodes, gw = np.polynomial.legendre.leggauss(GAUSS)
        averages = [np.zeros(len(near)) for _ in values]
        for point in product(range(GAUSS), repeat=z.shape[1]):
            weight = float(np.prod(0.5 * gw[list(point)]))
            for average, value in zip(
                averages, sample(z[near] + 0.5 * grid.h * nodes[list(point)]), strict=True
            ):
                average += weight * value
        for value, average in zip(values, averages, strict=True):
            value[near] = average
    return [v.reshape(grid.padded) for v in values]


def _masses_transformed(
    grid: _Grid, sources: np.ndarray, weights: np.ndarray, comm: MPI.Comm | None
) -> np.ndarray:
    """The CIC masses on the zero-padded grid, transformed (rfftn); the deposit shared.

    Each rank deposits its share of the sources and the grids are summed (Allreduce).  The
    padding is zero, so the transform is pruned: the inner axes are transformed on the
    grid's own rows only (not on the zero rows of the padding), then the first axis.
    Every rank transforms the whole grid: splitting the passes over the ranks needs two
    all-gathers of the complex half-transform, which cost three times the transform
    (benchmarks/README.md).
    """
    size, rank = (1, 0) if comm is None else (comm.size, comm.rank)
    lo, hi = _share(len(sources), size, rank)
    mass = grid.deposit(sources[lo:hi], weights[lo:hi])
    if comm is not None and size > 1:
        from mpi4py import MPI

        comm.Allreduce(MPI.IN_PLACE, mass, op=MPI.SUM)
    if mass.ndim == 1:
        return fft.rfft(mass, n=grid.padded[0])
    inner = fft.rfftn(mass, s=grid.padded[1:], axes=tuple(range(1, mass.ndim)))
    return fft.fft(inner, n=grid.padded[0], axis=0)


def _convolved(grid: _Grid, mass_hat: np.ndarray, kernel_hat: np.ndarray) -> np.ndarray:
    """The free-space convolution on the grid's own nodes: irfftn(mass_hat·K̂), pruned.

    ``kernel_hat`` is K̂ = rfftn of the kernel on the padded grid.  The first axis is
    inverted on every column and only the grid's own rows kept, so the inner axes are
    inverted on those rows alone (the rest of the padded result is unused).
    """
    axes = tuple(range(kernel_hat.ndim))
    product_hat = mass_hat * kernel_hat
    if kernel_hat.ndim == 1:
        return fft.irfft(product_hat, n=grid.padded[0])[: grid.shape[0]]
    rows = fft.ifft(product_hat, axis=0)[: grid.shape[0]]
    field = fft.irfftn(rows, s=grid.padded[1:], axes=axes[1:])
    inside = (slice(None), *(slice(0, g) for g in grid.shape[1:]))
    return np.ascontiguousarray(field[inside])


def _cached_transforms(
    cache: dict, grid: _Grid, size: int, rank: int
) -> tuple[tuple[int, ...], list] | None:
    """The padded grid and kernel transforms kept for this spacing and split, if they fit.

    Any padded size of at least twice the grid per axis gives the free-space convolution,
    so a kept padded grid serves until the grid outgrows it or shrinks below
    1/``PADDING_SLACK`` of it: the cache does not miss each time the grid's own padded
    size would step from one FFT-friendly length to the next.
    """
    for (h, padded, kept_size, kept_rank), hats in cache.items():
        fits = all(
            2 * g <= p <= 2 * PADDING_SLACK * g for g, p in zip(grid.shape, padded, strict=True)
        )
        if h == grid.h and (kept_size, kept_rank) == (size, rank) and fits:
            return padded, hats
    return None


def _kernels_transformed(
    grid: _Grid,
    sample: Sampler,
    singular: bool,
    parity: Parities | None,
    comm: MPI.Comm | None,
    size: int,
    rank: int,
) -> list[np.ndarray | None]:
    """K̂ = rfftn of each kernel on the padded grid, for the kernels this rank convolves.

    Those are k ≡ rank (mod size); the others' entries are None.
    """
    if parity is not None:
        kernels = _sampled_half(grid, sample, singular, comm if size > 1 else None)
    else:
        kernels = _sampled(grid, sample, singular)
    hats: list[np.ndarray | None] = [None] * len(kernels)
    for k in range(rank, len(kernels), size):
        full = kernels[k] if parity is None else _reflected(kernels[k], grid.padded, parity[k])
        hats[k] = fft.rfftn(full)
    return hats


def _fields_to_all(fields: list[np.ndarray], comm: MPI.Comm) -> list[np.ndarray]:
    """Every field on every rank, field k from rank k mod p, by one all-gather."""
    size = comm.size
    owned = [list(range(r, len(fields), size)) for r in range(size)]
    nodes = fields[0].size
    mine = [fields[k].ravel() for k in owned[comm.rank]]
    send = np.concatenate(mine) if mine else np.empty(0)
    gathered = np.empty(len(fields) * nodes)
    comm.Allgatherv(send, [gathered, [len(o) * nodes for o in owned]])
    out = list(fields)
    order = [k for o in owned for k in o]
    for slot, k in enumerate(order):
        out[k] = gathered[slot * nodes : (slot + 1) * nodes].reshape(fields[0].shape)
    return out


def mesh_sum(
    targets: np.ndarray,
    sources: np.ndarray,
    weights: np.ndarray,
    sample: Sampler,
    singular: bool,
    cells: int | None = None,
    parity: Parities | None = None,
    comm: MPI.Comm | None = None,
    cache: dict | None = None,
) -> list[np.ndarray]:
    """PM sums Σ_j w_j K(x_i - y_j) of several kernels K (see the module docstring).

    Args:
        targets: Points x_i, shape (n, d) (with ``comm``: this rank's).
        sources: Points y_j, shape (N, d) (with ``comm``: all of them, on every rank).
        weights: w_j, shape (N,).
        sample: The kernels at offset vectors z (m, d), e.g. [W(|z|)] or [∂_k W(z)]_k,
            sampled together so that they can share |z| and W'(|z|).
        singular: Whether to cell-average the near-origin offsets.
        cells: Cells along the longest side (default :func:`default_cells` of N).
        parity: Each kernel's parity per coordinate (+1 even, -1 odd): then only the
            non-negative offsets are sampled.  None: the whole grid.
        comm: Share the sampling and the transforms over its ranks (collective: every
            rank calls with its own targets and the same sources).
        cache: A dict kept by the caller for these kernels (the same ``sample`` at every
            call): the grid spacing is rounded down to the lattice 2^(k/H_STEPS), and the
            kernels' transforms are kept there and reused while the spacing and the padded
            grid stay the same, which spares the sampling and one FFT per kernel.  The
            grid is then up to 4.4 % finer than ``cells`` asks.

    Returns:
        One array (n,) per kernel.
    """
    dim = sources.shape[1]
    parallel = comm is not None and comm.size > 1
    # the bounding box of the sources and targets; over ranks each rank bounds its share
    # of the sources and its targets, and the boxes are joined (min and max are exact, so
    # the grid is the same on every rank and on one)
    mine = sources[slice(*_share(len(sources), comm.size, comm.rank))] if parallel else sources
    lower = np.minimum(mine.min(axis=0, initial=np.inf), targets.min(axis=0, initial=np.inf))
    upper = np.maximum(mine.max(axis=0, initial=-np.inf), targets.max(axis=0, initial=-np.inf))
    if parallel:  # one Allreduce: the max of (-lower, upper)
        from mpi4py import MPI

        bounds = np.concatenate([-lower, upper])
        comm.Allreduce(MPI.IN_PLACE, bounds, op=MPI.MAX)
        lower, upper = -bounds[:dim], bounds[dim:]
    snap = cache is not None
    grid = _Grid(sources, cells or default_cells(len(sources), dim), (lower, upper), snap)
    size, rank = (comm.size, comm.rank) if parallel else (1, 0)
    # The grid, hence hit or miss, is the same on every rank: the sampling stays collective.
    kept = _cached_transforms(cache, grid, size, rank) if snap else None
    if kept is not None:
        grid.padded, kernel_hats = kept  # the kept padding: the transforms are of its size
    else:
        kernel_hats = _kernels_transformed(grid, sample, singular, parity, comm, size, rank)
        if snap:
            cache.clear()  # the cloud has moved on: keep the latest grid's only
            cache[grid.h, grid.padded, size, rank] = kernel_hats
    mass_hat = _masses_transformed(grid, sources, weights, comm if parallel else None)
    fields = [np.empty(grid.shape) for _ in kernel_hats]
    for k in range(rank, len(kernel_hats), size):
        fields[k] = _convolved(grid, mass_hat, kernel_hats[k])
    if parallel:
        fields = _fields_to_all(fields, comm)
    return grid.interpolate(fields, targets)
