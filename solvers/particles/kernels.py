"""Gaussian kernel sums over Verlet neighbour lists (never dense N×N).

The mollifier is the Gaussian with covariance ε·I,

    φ_ε(x) = (2πε)^{-d/2} exp(-|x|²/(2ε)),

truncated at |x| = ``CUTOFF``·√ε = 5√ε, where it has fallen to e^{-12.5} ≈ 3.7·10⁻⁶ of its
peak: a particle's sums then miss a relative ~10⁻⁶ of the kernel mass, far below the
discretisation errors, while the lists stay short: with the blob's default √ε ≈ 1.8 h,
≈ 18 neighbours per particle in 1-D and ≈ 180–270 in 2-D (fewer at the cloud's edge).

Data structure (chosen by measurement: see benchmarks/README.md):

* A :class:`NeighbourList` holds, for each particle i of a rank's block ``[lo, hi)``, every
  j (itself included) with |x_i - x_j| ≤ (``CUTOFF`` + ``SKIN``)·√ε at the time it was
  built, as a CSR row sorted by global index j.  It is a *Verlet list*: it stays valid
  while no particle has moved more than ``SKIN``·√ε/2 since (two particles then close in
  by at most ``SKIN``·√ε), so one list serves many velocity evaluations.  Entries beyond
  the cut-off get the kernel value 0.  Each rank builds the list of its own block only,
  from a tree on the particles near the block (see :mod:`.parallel`).
* Kernel values are computed in chunks of whole rows into arrays that are kept from list
  to list, and sums are sparse matrix-vector products over the rows (``scipy.sparse``).

Why.  A symmetric pair list (each pair i < j once), rebuilt at every evaluation with
``cKDTree.query_pairs`` and summed with ``bincount``, does half the kernel evaluations but
allocates a dozen pair-sized temporaries per call, fresh memory that is page-faulted on
every call, so its cost grew faster than the neighbour counts.  The directed CSR rows
evaluate each pair twice, but with cache-sized temporaries and reused output arrays, and
``csr_matvec`` streams them once: their cost is linear in N.  A build (tree query, then
sorting the entries into rows) costs two to three evaluations, hence the Verlet reuse; the
skin trades list length against rebuilds (0.5√ε measured best on porous_medium_2d).  The
particles are not re-sorted for locality (a random order evaluated as fast as lattice
order: the coordinates fit in cache); lattice order (row by row,
:func:`~wgf.solvers.particles.initial.lattice`) matters only to keep each rank's block a
compact slab.

Rank independence: row i's sum runs over its neighbours in increasing global index j
whatever the block, and a list entry beyond the cut-off adds an exact 0.0 — so every
sum is bitwise the same on any number of ranks, and whether or not (and when) the list
was rebuilt: the skin changes the cost, never the trajectory.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import sparse
from scipy.spatial import cKDTree

#: Neighbour cut-off in units of the kernel width √ε.
CUTOFF = 5.0
#: Verlet skin in units of √ε: lists hold pairs within (CUTOFF + SKIN)·√ε.
SKIN = 0.5
#: List entries per chunk when evaluating kernels (the temporaries stay in L1/L2 cache).
CHUNK = 1 << 14


def gaussian(r2: np.ndarray, eps: float, dim: int) -> np.ndarray:
    """φ_ε at squared distances ``r2``."""
    return np.exp(-0.5 * r2 / eps) / (2.0 * np.pi * eps) ** (0.5 * dim)


@dataclass(frozen=True)
class NeighbourList:
    """Verlet list of the block ``[lo, hi)``: CSR rows of neighbours sorted by global index.

    Attributes:
        lo: First global index of the block.
        hi: One past its last.
        n: Number of particles (columns).
        indptr: Row i - lo holds the entries ``indptr[i - lo]:indptr[i - lo + 1]``.
        cols: Global index j of each entry (int32).
        chunks: Block rows where the evaluation chunks start (and ``hi - lo`` last): runs
            of whole rows of about ``CHUNK`` entries.
        anchor: Global positions when the list was built.
        radius: The list radius (CUTOFF + SKIN)·√ε.
        skin: SKIN·√ε.
        workspace: Float arrays for the kernel values, kept from list to list (see
            :meth:`buffer`).
    """

    lo: int
    hi: int
    n: int
    indptr: np.ndarray
    cols: np.ndarray
    chunks: np.ndarray
    anchor: np.ndarray
    radius: float
    skin: float
    workspace: dict[str, np.ndarray] = field(default_factory=dict, compare=False, repr=False)

    def valid_for(self, x: np.ndarray) -> bool:
        """Whether every pair within the cut-off at ``x`` is still in the list."""
        if x.shape != self.anchor.shape:
            return False
        moved = np.einsum("nk,nk->n", x - self.anchor, x - self.anchor)
        return bool(2.0 * np.sqrt(moved.max(initial=0.0)) < self.skin)

    def matrix(self, values: np.ndarray) -> sparse.csr_matrix:
        """The (hi - lo) × n CSR matrix with ``values`` on the list's entries."""
        return sparse.csr_matrix(
            (values, self.cols, self.indptr), shape=(self.hi - self.lo, self.n), copy=False
        )

    def buffer(self, name: str) -> np.ndarray:
        """A float array of one value per entry, from the workspace.

        The workspace outlives the list: a rebuilt list reuses the arrays (grown by 10 %
        when too short).  Fresh arrays of this size (10⁷ entries) cost more in first-touch
        page faults than the kernel evaluation that fills them, so they are not dropped.
        """
        size = len(self.cols)
        store = self.workspace.get(name)
        if store is None or len(store) < size:
            store = self.workspace[name] = np.empty(size + size // 10)
        return store[:size]


def _block_pairs(x: np.ndarray, lo: int, hi: int, radius: float) -> tuple[np.ndarray, ...]:
    """Pairs (a, b), a < b, within ``radius`` with a or b in ``[lo, hi)``, global indices.

    Only the particles in the block's bounding box widened by ``radius`` can be
    neighbours of the block, so the tree is built on those (all of them on one rank).
    """
    if hi <= lo:
        return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.intp)
    if lo == 0 and hi == len(x):
        near = None
        pairs = cKDTree(x).query_pairs(radius, output_type="ndarray")
    else:
        box_lo, box_hi = x[lo:hi].min(axis=0) - radius, x[lo:hi].max(axis=0) + radius
        near = np.flatnonzero(np.all((x >= box_lo) & (x <= box_hi), axis=1))
        pairs = cKDTree(x[near]).query_pairs(radius, output_type="ndarray")
        pairs = near[pairs]  # near is increasing: a < b is kept
    a, b = pairs[:, 0], pairs[:, 1]
    if near is not None:
        touch = ((a >= lo) & (a < hi)) | ((b >= lo) & (b < hi))
        a, b = a[touch], b[touch]
    return a, b


def _sorted_rows(a: np.ndarray, b: np.ndarray, lo: int, hi: int, n: int) -> tuple[np.ndarray, ...]:
    """CSR rows ``lo..hi-1`` (indptr, cols) of pairs a < b both ways plus the diagonal.

    Each row is sorted by column: row i is [its partners a < i] + [i] + [its partners
    b > i].  Only the upper part (rows a, columns b) is sorted; its transpose, the lower
    part, comes out sorted from the linear CSR -> CSC conversion: half the sorting of
    the directed entries.
    """
    ones = np.ones(len(a), dtype=np.int8)
    upper = sparse.coo_array((ones, (a, b)), shape=(n, n)).tocsr()
    lower = upper.tocsc()  # column i of the upper part = row i of the lower part
    n_low = np.diff(lower.indptr[lo : hi + 1])
    n_up = np.diff(upper.indptr[lo : hi + 1])
    indptr = np.zeros(hi - lo + 1, dtype=np.int32)
    np.cumsum(n_low + 1 + n_up, out=indptr[1:])
    cols = np.empty(indptr[-1], dtype=np.int32)
    # Entry k of a part (counted from the block's first) goes to row i's start + the
    # part's offset in the row + (k - the part's first entry in row i).
    for part, counts, shift in ((lower, n_low, 0), (upper, n_up, n_low + 1)):
        first = part.indptr[lo : hi + 1] - part.indptr[lo]
        where = np.repeat((indptr[:-1] + shift - first[:-1]).astype(np.int32), counts)
        where += np.arange(first[-1], dtype=np.int32)
        cols[where] = part.indices[part.indptr[lo] : part.indptr[hi]]
    cols[indptr[:-1] + n_low] = np.arange(lo, hi)
    return indptr, cols


def neighbour_list(
    x: np.ndarray,
    eps: float,
    lo: int,
    hi: int,
    workspace: dict[str, np.ndarray] | None = None,
) -> NeighbourList:
    """The Verlet list of the particles ``lo..hi-1`` of the global positions ``x``.

    ``workspace``: the previous list's, to reuse its arrays (they are scratch space).
    """
    n, skin = len(x), SKIN * np.sqrt(eps)
    radius = CUTOFF * np.sqrt(eps) + skin
    a, b = (p.astype(np.int32) for p in _block_pairs(x, lo, hi, radius))
    indptr, cols = _sorted_rows(a, b, lo, hi, n)
    del a, b
    starts = np.searchsorted(indptr, np.arange(0, len(cols), CHUNK), side="right") - 1
    chunks = np.unique(np.concatenate([starts, [hi - lo]]))
    return NeighbourList(
        lo=lo,
        hi=hi,
        n=n,
        indptr=indptr,
        cols=cols,
        chunks=chunks,
        anchor=x.copy(),
        radius=radius,
        skin=skin,
        workspace={} if workspace is None else workspace,
    )


@dataclass(frozen=True)
class KernelSums:
    """φ_ε(x_i - x_j) and φ_ε(x_i - x_j)·(x_i - x_j) on a list, as CSR matrices.

    The matrices' values live in the list's workspace: they are valid until the next
    :func:`kernel_sums` with that workspace.

    Attributes:
        kernel: Rows of φ_ε(x_i - x_j) (the diagonal φ_ε(0) included), 0 beyond the cut-off.
        moments: One matrix per coordinate k of φ_ε(x_i - x_j)·(x_i - x_j)_k (empty if
            not asked for).
    """

    kernel: sparse.csr_matrix
    moments: list[sparse.csr_matrix]


def kernel_sums(
    nlist: NeighbourList, x: np.ndarray, eps: float, moments: bool = True
) -> KernelSums:
    """The kernel (and, if ``moments``, its first moments) on the list at positions ``x``.

    The matrices' values live in the list's workspace: they are valid until the next
    call with a list of the same workspace.
    """
    dim = x.shape[1]
    coords = [np.ascontiguousarray(x[:, k]) for k in range(dim)]
    kernel = nlist.buffer("kernel")
    first = [nlist.buffer(f"moment{k}") for k in range(dim)] if moments else []
    cut2 = CUTOFF**2 * eps
    scale = (2.0 * np.pi * eps) ** (0.5 * dim)
    # Chunks of whole rows keep the temporaries in cache (and off the allocator's fresh,
    # page-faulting memory); chunk boundaries do not matter: the values are per entry.
    # The operations are those of `gaussian`, in place, so the values are bitwise equal.
    bounds = nlist.indptr[nlist.chunks]
    size = int(np.diff(bounds).max(initial=0))
    diff, r2, tmp = np.empty((dim, size)), np.empty(size), np.empty(size)
    for c in range(len(nlist.chunks) - 1):
        r0, r1 = nlist.chunks[c], nlist.chunks[c + 1]
        part = slice(bounds[c], bounds[c + 1])
        counts = np.diff(nlist.indptr[r0 : r1 + 1])
        j, m = nlist.cols[part], bounds[c + 1] - bounds[c]
        for k in range(dim):
            d = diff[k, :m]
            d[:] = np.repeat(coords[k][nlist.lo + r0 : nlist.lo + r1], counts)
            d -= np.take(coords[k], j, out=tmp[:m])
            if k == 0:
                np.multiply(d, d, out=r2[:m])
            else:
                r2[:m] += np.multiply(d, d, out=tmp[:m])
        phi = kernel[part]
        np.multiply(r2[:m], -0.5, out=phi)
        phi /= eps
        np.exp(phi, out=phi)
        phi /= scale
        np.putmask(phi, r2[:m] > cut2, 0.0)
        for k, out in enumerate(first):
            np.multiply(phi, diff[k, :m], out=out[part])
    return KernelSums(nlist.matrix(kernel), [nlist.matrix(m) for m in first])


def mean_neighbours(x: np.ndarray, eps: float) -> float:
    """Average number of neighbours (self excluded) within the cut-off."""
    pairs = cKDTree(x).query_pairs(CUTOFF * np.sqrt(eps), output_type="ndarray")
    return 2.0 * len(pairs) / max(len(x), 1)


def mollified_density(sums: KernelSums, weights: np.ndarray) -> np.ndarray:
    """ρ_ε(x_i) = Σ_j w_j φ_ε(x_i - x_j) (self term included) for the block's particles."""
    return sums.kernel @ weights


def density_at(points: np.ndarray, x: np.ndarray, weights: np.ndarray, eps: float) -> np.ndarray:
    """Σ_j w_j φ_ε(p - x_j) at arbitrary points p (the kernel density estimate).

    Pairs are sorted by (point, particle) so the sum order is canonical.
    """
    if len(points) == 0:
        return np.zeros(0)
    radius = CUTOFF * np.sqrt(eps)
    found = cKDTree(points).sparse_distance_matrix(cKDTree(x), radius, output_type="ndarray")
    order = np.lexsort((found["j"], found["i"]))
    i, j, r = found["i"][order], found["j"][order], found["v"][order]
    values = weights[j] * gaussian(r * r, eps, x.shape[1])
    return np.bincount(i, weights=values, minlength=len(points))


def tensor_grid_axes(points: np.ndarray) -> list[np.ndarray] | None:
    """The axes of ``points`` if they are a tensor grid in 'ij' order, else None."""
    axes = [np.unique(points[:, k]) for k in range(points.shape[1])]
    if int(np.prod([len(a) for a in axes])) != len(points):
        return None
    grid = np.meshgrid(*axes, indexing="ij")
    if not np.array_equal(np.stack([g.ravel() for g in grid], axis=1), points):
        return None
    return axes


def density_on_grid(
    axes: list[np.ndarray], x: np.ndarray, weights: np.ndarray, eps: float
) -> np.ndarray:
    """Σ_j w_j φ_ε(p - x_j) on the tensor grid of ``axes``.

    The Gaussian factorises over coordinates, so the sum is a product of N × n_k
    one-dimensional kernel matrices: O(N Σ n_k) kernel evaluations instead of one per
    (point, particle) pair — the cheap way when the bandwidth is wide (Langevin's KDE).
    Each factor is cut off at ``CUTOFF``·√ε, like the neighbour lists.
    """
    factors = []
    for k, a in enumerate(axes):
        r2 = (a[None, :] - x[:, k, None]) ** 2
        # Same cut-off as the neighbour lists; it also keeps denormals (slow) out of BLAS.
        factors.append(np.where(r2 <= CUTOFF**2 * eps, gaussian(r2, eps, 1), 0.0))
    factors[0] = factors[0] * weights[:, None]
    if len(axes) == 1:
        return factors[0].sum(axis=0)
    if len(axes) == 2:
        # Sparse product: each particle touches ~2·CUTOFF·√ε/h_grid grid lines per axis,
        # and a sparse product stays off the (thread-contended) dense BLAS path.
        left, right = sparse.csr_matrix(factors[0]), sparse.csr_matrix(factors[1])
        return (left.T @ right).toarray().ravel()
    return np.einsum("ia,ib,ic->abc", *factors, optimize=True).ravel()
