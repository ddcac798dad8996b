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
spreads by 0.2 % per step then re-samples about once in 20 steps.  The transforms of the
last :data:`KEPT_GRIDS` grids are kept (within :data:`KEPT_BYTES`): a Langevin cloud at
N = 10⁵ (its bounding box set by outliers) re-sampled in 36 of 200 sums of its stationary
phase with one grid kept, in 2 with three.

Symmetry.  A radial kernel's value is even in every coordinate of the offset, and the k-th
component of its gradient is odd in z_k and even in the others.  Given these parities the
kernels are sampled on the non-negative offsets only (about 2^{-d} of the padded grid,
near-origin averages included) and reflected: sampling, which evaluates the kernel formula,
was the largest part of a sum.

Over ranks (``comm``), a slab decomposition: each rank deposits its share of the sources
on the whole grid and the grids are summed into row slabs (Reduce_scatter); a rank
transforms the inner axes of its rows (pruned: the padding rows are zero and not
transformed), an all-to-all transposes the row slabs into column slabs of the spectrum, and
a rank transforms the first axis of its columns, multiplies by its columns of every
kernel's transform and inverts the first axis; a second all-to-all turns the columns back
into rows (the padding rows are not sent), a rank inverts the inner axes of its rows, and
the row slabs of the fields are all-gathered; each rank then interpolates every field at
its own targets (the caller's block).  The all-to-alls move packed contiguous buffers.
The kernels are sampled by rows of the non-negative offsets (then all-gathered) and
transformed the same way as the masses.  Every value but the summed deposit is computed by
the same operations on any number of ranks; the deposit's partial sums add in another
order, so the sums agree with one rank's to round-off (tested to 1e-13, in 1, 2 and 3-D).
In 1-D the spectrum is one column, and the first rank transforms it.
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
#: ...and the transforms of this many grids are kept (the most recently used): a Langevin
#: cloud's bounding box, set by its outermost particles, jitters by ±5 % from step to step
#: and its spacing flips between neighbouring lattice values.
KEPT_GRIDS = 3
#: ...while they take at most this many bytes together (the latest grid's are always kept):
#: 33 MB per grid for a 2-D gradient at N = 10⁵, 270 MB at the 2-D cap of 2048 cells.
KEPT_BYTES = 256e6
#: Spectrum columns per block of :func:`_convolved` (transform, multiply, invert): 32
#: kept a block in cache best (8-128 measured at N = 2·10⁴ to 10⁵: 14-29 % faster than
#: whole arrays).
COLUMN_BLOCK = 32

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


def bounding_box(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The corners (lower, upper) of the points' bounding box (±inf for no points).

    Column by column: numpy's min over axis 0 of a narrow (N, d) array walks it d entries
    at a time, 35 times slower at N = 10⁵.
    """
    columns = points.T
    lower = np.array([c.min(initial=np.inf) for c in columns])
    return lower, np.array([c.max(initial=-np.inf) for c in columns])


def multilinear_corners(
    u: np.ndarray, shape: tuple[int, ...]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The 2^d (flat node index, multilinear weight) pairs of points on a uniform grid.

    Args:
        u: The points in grid coordinates (node 0 at 0, spacing 1 along every axis), (n, d).
        shape: The grid's nodes per axis; a point's cell is clipped into the grid.

    The flat index of the lower corner is found once and the others are offsets from it;
    the weights are products of the per-axis factors 1 - f and f (f the fraction).  This is
    the cloud-in-cell (CIC) of a particle mesh and the linear binning of a kernel density
    estimate (:mod:`wgf.solvers.particles.kde`).
    """
    base = np.clip(np.floor(u).astype(np.int64), 0, np.array(shape) - 2)
    frac = u - base
    dim = u.shape[1]
    strides = [int(np.prod(shape[k + 1 :])) for k in range(dim)]
    flat = sum(base[:, k] * strides[k] for k in range(dim))
    sides = [(1.0 - frac[:, k], np.ascontiguousarray(frac[:, k])) for k in range(dim)]
    out = []
    for corner in product((0, 1), repeat=dim):
        weight = sides[0][corner[0]]
        for k in range(1, dim):
            weight = weight * sides[k][corner[k]]
        out.append((flat + sum(c * s for c, s in zip(corner, strides, strict=True)), weight))
    return out


def deposited(
    corners: list[tuple[np.ndarray, np.ndarray]], weights: np.ndarray, shape: tuple[int, ...]
) -> np.ndarray:
    """The weights shared out to the nodes by their ``corners``, as an array of ``shape``.

    One bincount over all the corners (in index order: the same sums on every rank); a
    bincount per corner added up took 2.8 times as long at N = 10⁵ on 1.5·10⁶ nodes.
    """
    index = np.concatenate([i for i, _ in corners])
    mass = np.concatenate([weight * weights for _, weight in corners])
    return np.bincount(index, mass, minlength=int(np.prod(shape))).reshape(shape)


class _Grid:
    """The PM grid over a box (by default the bounding box of the points), and CIC on it."""

    def __init__(
        self,
        points: np.ndarray,
        cells: int,
        box: tuple[np.ndarray, np.ndarray] | None = None,
        snap: bool = False,
    ) -> None:
        lower, upper = box if box is not None else bounding_box(points)
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
        """The 2^d (flat node index, CIC weight) pairs of each point."""
        return multilinear_corners((x - self.lower) / self.h, self.shape)

    def deposit(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        """CIC masses on the nodes (deterministic: one bincount in index order)."""
        return deposited(self.corners(x), w, self.shape)

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


def _shares(n: int, comm: MPI.Comm | None) -> list[tuple[int, int]]:
    """Every rank's share of n rows, in rank order (one share of all without ``comm``)."""
    size = 1 if comm is None else comm.size
    return [_share(n, size, r) for r in range(size)]


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


def _reflected(
    half: np.ndarray,
    padded: tuple[int, ...],
    parity: Sequence[int],
    rows: tuple[int, int] | None = None,
) -> np.ndarray:
    """The kernel on the padded grid from its non-negative offsets and parity.

    ``rows``: only the padded grid's rows [lo, hi) along the first axis (default: all).
    """
    full = half
    for axis, (p, sign) in enumerate(zip(padded, parity, strict=True)):
        signed = _wrapped(p)
        if axis == 0 and rows is not None:
            signed = signed[slice(*rows)]
        full = np.take(full, np.abs(signed), axis=axis)
        if sign < 0:
            shape = [1] * full.ndim
            shape[axis] = len(signed)
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


def _window(ndim: int, axis: int, share: tuple[int, int]) -> tuple[slice, ...]:
    """The index of ``share`` along ``axis`` (all of the other axes)."""
    return tuple(slice(*share) if a == axis else slice(None) for a in range(ndim))


def _exchanged(
    source: np.ndarray,
    sent: list[tuple[slice, ...]],
    target: np.ndarray,
    received: list[tuple[slice, ...]],
    comm: MPI.Comm,
) -> np.ndarray:
    """``target[received[s]] = rank s's source[sent[rank]]`` for every rank s; returns target.

    The windows for the other ranks are packed into one contiguous buffer for an
    MPI_Alltoallv and unpacked from another; this rank's own window is copied directly.
    MPICH moves a contiguous buffer in one copy, and strided MPI subarray types (used
    before) several times slower: at N = 10⁵ on 2 ranks the three exchanges of a sum took
    about 3 ms less, measured between barriers (benchmarks/README.md).
    """
    from mpi4py import MPI

    rank = comm.rank
    outgoing = [source[window] for window in sent]
    shapes = [target[window].shape for window in received]
    counts = [0 if s == rank else part.size for s, part in enumerate(outgoing)]
    sizes = [0 if s == rank else int(np.prod(shape)) for s, shape in enumerate(shapes)]
    put, get = np.cumsum([0, *counts]), np.cumsum([0, *sizes])
    packed = np.empty(put[-1], source.dtype)
    for s, part in enumerate(outgoing):
        if s != rank:
            np.copyto(packed[put[s] : put[s + 1]].reshape(part.shape), part)
    unpacked = np.empty(get[-1], target.dtype)
    base = MPI.DOUBLE_COMPLEX if np.iscomplexobj(source) else MPI.DOUBLE
    comm.Alltoallv([packed, counts, base], [unpacked, sizes, base])
    target[received[rank]] = outgoing[rank]
    for s, (window, shape) in enumerate(zip(received, shapes, strict=True)):
        if s != rank:
            target[window] = unpacked[get[s] : get[s + 1]].reshape(shape)
    return target


def _redistributed(
    slabs: np.ndarray,
    cut: int,
    join: int,
    cut_shares: list[tuple[int, int]],
    join_shares: list[tuple[int, int]],
    comm: MPI.Comm | None,
) -> np.ndarray:
    """The transpose of a slab decomposition, by one all-to-all.

    This rank's ``slabs`` are cut along axis ``cut`` (rank s gets the part in
    ``cut_shares[s]``), and the parts a rank receives are joined along axis ``join`` in
    rank order (the part from rank s is s's share ``join_shares[s]`` of that axis).  The
    shares along ``cut`` may end before the axis does (the rest is not sent).  With
    ``cut`` the columns of a spectrum and ``join`` its rows, each rank's rows of every
    column become its columns of every row, and the other way round.
    """
    if comm is None or comm.size == 1:
        return slabs[_window(slabs.ndim, cut, cut_shares[0])]
    shape = list(slabs.shape)
    lo, hi = cut_shares[comm.rank]
    shape[cut], shape[join] = hi - lo, join_shares[-1][1]
    return _exchanged(
        slabs,
        [_window(slabs.ndim, cut, share) for share in cut_shares],
        np.empty(shape, slabs.dtype),
        [_window(slabs.ndim, join, share) for share in join_shares],
        comm,
    )


def _half_spectrum(padded: tuple[int, ...]) -> tuple[int, ...]:
    """The shape of rfftn over the padded grid's inner axes (() in 1-D)."""
    return (*padded[1:-1], padded[-1] // 2 + 1) if len(padded) > 1 else ()


def _columns(
    rows: np.ndarray,
    padded: tuple[int, ...],
    row_shares: list[tuple[int, int]],
    comm: MPI.Comm | None,
    norm: str = "backward",
) -> np.ndarray:
    """The inner axes of k arrays transformed on the padded grid, rows to spectrum columns.

    Args:
        rows: This rank's rows (its share in ``row_shares``) of k arrays, (k, r, *inner).
        padded: The padded grid (the inner axes are zero-padded to it).
        row_shares: Every rank's rows.
        comm: The ranks sharing the transform (None: one).
        norm: scipy.fft's normalisation; "forward" scales by 1/(padded inner nodes).

    Returns:
        This rank's columns of the inner half-spectra, flattened, of every row:
        (k, rows, m).  In 1-D the one column is the (complex) array itself.
    """
    k, r = rows.shape[:2]
    if rows.ndim == 2:
        inner = rows.astype(complex)[..., None]
    else:
        axes = tuple(range(2, rows.ndim))
        inner = fft.rfftn(rows, s=padded[1:], axes=axes, norm=norm).reshape(k, r, -1)
    return _redistributed(inner, 2, 1, _shares(inner.shape[2], comm), row_shares, comm)


def _convolved(columns: np.ndarray, kernel_hats: np.ndarray, keep: int) -> np.ndarray:
    """The first-axis half of the convolutions, on this rank's spectrum columns.

    The masses' columns (1, rows, m) are transformed along the first axis (zero-padded to
    the kernels' length), multiplied by each kernel's K̂/P (k, n, m) and inverted unscaled,
    and the first ``keep`` rows are returned, (k, keep, m).  A block of
    :data:`COLUMN_BLOCK` columns goes through all three at once, so that it stays in cache:
    the whole spectrum at N = 10⁵ (12 MB per array) does not.
    """
    n, m = kernel_hats.shape[1:]
    out = np.empty((kernel_hats.shape[0], keep, m), complex)
    for lo in range(0, m, COLUMN_BLOCK):
        block = slice(lo, lo + COLUMN_BLOCK)
        product = fft.fft(columns[:, :, block], n=n, axis=1) * kernel_hats[:, :, block]
        inverse = fft.ifft(product, axis=1, overwrite_x=True, norm="forward")
        out[:, :, block] = inverse[:, :keep]
    return out


def _rows(
    columns: np.ndarray, shape: tuple[int, ...], padded: tuple[int, ...], comm: MPI.Comm | None
) -> np.ndarray:
    """This rank's rows of k real arrays, from its columns of their inner half-spectra.

    The inverse of :func:`_columns` (unscaled) for the grid's own ``shape[0]`` rows, which
    ``columns`` (k, shape[0], m) holds.  Returns (k, r, *padded[1:]) for this rank's share r
    of the rows: the grid's own nodes come first along each inner axis
    (:func:`_rows_to_all` keeps them).
    """
    k = columns.shape[0]
    half = _half_spectrum(padded)
    row_shares = _shares(shape[0], comm)
    rows = _redistributed(columns, 1, 2, row_shares, _shares(int(np.prod(half)), comm), comm)
    if not half:
        return np.ascontiguousarray(rows[..., 0].real)
    axes = tuple(range(2, 2 + len(half)))
    shaped = rows.reshape(k, rows.shape[1], *half)
    return fft.irfftn(shaped, s=padded[1:], axes=axes, overwrite_x=True, norm="forward")


def _mass_rows(
    grid: _Grid, sources: np.ndarray, weights: np.ndarray, comm: MPI.Comm | None
) -> np.ndarray:
    """This rank's rows of the CIC masses on the grid.

    Each rank deposits its share of the sources on the whole grid, and the grids are summed
    into row slabs (one Reduce_scatter).
    """
    if comm is None or comm.size == 1:
        return grid.deposit(sources, weights)
    from mpi4py import MPI

    lo, hi = _share(len(sources), comm.size, comm.rank)
    mass = grid.deposit(sources[lo:hi], weights[lo:hi])
    row = int(np.prod(grid.shape[1:]))
    shares = _shares(grid.shape[0], comm)
    mine = np.empty((shares[comm.rank][1] - shares[comm.rank][0], *grid.shape[1:]))
    comm.Reduce_scatter(mass, mine, [row * (b - a) for a, b in shares], op=MPI.SUM)
    return mine


def _rows_to_all(
    rows: np.ndarray,
    shape: tuple[int, ...],
    row_shares: list[tuple[int, int]],
    comm: MPI.Comm | None,
) -> np.ndarray:
    """Every rank's row slab (k, r, ...) of k arrays on every rank, cropped to ``shape``.

    The slabs may be longer than ``shape`` along the inner axes (padding); one all-gather
    (an all-to-all of the cropped windows) joins them.
    """
    crop = (slice(None), slice(None), *(slice(0, g) for g in shape[1:]))
    if comm is None or comm.size == 1:
        return np.ascontiguousarray(rows[crop])
    return _exchanged(
        rows,
        [crop] * comm.size,
        np.empty((rows.shape[0], *shape)),
        [_window(rows.ndim, 1, share) for share in row_shares],
        comm,
    )


def _cached_transforms(
    cache: dict, grid: _Grid, size: int, rank: int
) -> tuple[tuple[int, ...], list] | None:
    """The padded grid and kernel transforms kept for this spacing and split, if they fit.

    Any padded size of at least twice the grid per axis gives the free-space convolution,
    so a kept padded grid serves until the grid outgrows it or shrinks below
    1/``PADDING_SLACK`` of it: the cache does not miss each time the grid's own padded
    size would step from one FFT-friendly length to the next.
    """
    for key, hats in cache.items():
        h, padded, kept_size, kept_rank = key
        fits = all(
            2 * g <= p <= 2 * PADDING_SLACK * g for g, p in zip(grid.shape, padded, strict=True)
        )
        if h == grid.h and (kept_size, kept_rank) == (size, rank) and fits:
            cache[key] = cache.pop(key)  # now the most recently used
            return padded, hats
    return None


def _kernels_transformed(
    grid: _Grid,
    sample: Sampler,
    singular: bool,
    parity: Parities | None,
    comm: MPI.Comm | None,
) -> np.ndarray:
    """K̂/P, P the padded grid's nodes, for K̂ = rfftn of each kernel on the padded grid.

    This rank's columns (:func:`_columns`), transformed along the first axis too: the
    factor of :func:`_convolved`.
    """
    row_shares = _shares(grid.padded[0], comm)
    rows = row_shares[0 if comm is None else comm.rank]
    if parity is not None:
        halves = _sampled_half(grid, sample, singular, comm)
        mine = [_reflected(h, grid.padded, p, rows) for h, p in zip(halves, parity, strict=True)]
    else:
        mine = [kernel[slice(*rows)] for kernel in _sampled(grid, sample, singular)]
    # scaled by 1/(padded nodes) once here, so that no inverse transform scales
    columns = _columns(np.stack(mine), grid.padded, row_shares, comm, norm="forward")
    return fft.fft(columns, axis=1, overwrite_x=True, norm="forward")


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
            kernels' transforms of the last :data:`KEPT_GRIDS` grids are kept there and
            reused for a grid of the same spacing that their padded grid fits, which
            spares the sampling and one FFT per kernel.  The grid is then up to 4.4 %
            finer than ``cells`` asks.

    Returns:
        One array (n,) per kernel.
    """
    dim = sources.shape[1]
    parallel = comm is not None and comm.size > 1
    # the bounding box of the sources and targets; over ranks each rank bounds its share
    # of the sources and its targets, and the boxes are joined (min and max are exact, so
    # the grid is the same on every rank and on one)
    mine = sources[slice(*_share(len(sources), comm.size, comm.rank))] if parallel else sources
    (lower, upper), (target_lower, target_upper) = bounding_box(mine), bounding_box(targets)
    lower, upper = np.minimum(lower, target_lower), np.maximum(upper, target_upper)
    if parallel:  # one Allreduce: the max of (-lower, upper)
        from mpi4py import MPI

        bounds = np.concatenate([-lower, upper])
        comm.Allreduce(MPI.IN_PLACE, bounds, op=MPI.MAX)
        lower, upper = -bounds[:dim], bounds[dim:]
    snap = cache is not None
    grid = _Grid(sources, cells or default_cells(len(sources), dim), (lower, upper), snap)
    size, rank = (comm.size, comm.rank) if parallel else (1, 0)
    shared = comm if parallel else None
    # The grid, hence hit or miss, is the same on every rank: the sampling stays collective.
    kept = _cached_transforms(cache, grid, size, rank) if snap else None
    if kept is not None:
        grid.padded, kernel_hats = kept  # the kept padding: the transforms are of its size
    else:
        kernel_hats = _kernels_transformed(grid, sample, singular, parity, shared)
        if snap:
            cache[grid.h, grid.padded, size, rank] = kernel_hats
            while len(cache) > KEPT_GRIDS or (
                len(cache) > 1 and sum(kept.nbytes for kept in cache.values()) > KEPT_BYTES
            ):
                del cache[next(iter(cache))]  # the least recently used
    row_shares = _shares(grid.shape[0], shared)
    masses = _columns(
        _mass_rows(grid, sources, weights, shared)[None], grid.padded, row_shares, shared
    )
    fields = _rows(_convolved(masses, kernel_hats, grid.shape[0]), grid.shape, grid.padded, shared)
    return grid.interpolate(list(_rows_to_all(fields, grid.shape, row_shares, shared)), targets)
