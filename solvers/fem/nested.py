"""Nodal transfer between the P1 spaces of two meshes of one domain (nested iteration).

A step solved first on a coarser mesh hands its solution to the finer one as a first
guess, and the finer one hands its state down: both ways a P1 function is evaluated at
the other mesh's vertices.  When the meshes are nested (one refines the other) the way
down is injection at the shared vertices and the way up is the coarse function itself,
exactly.

Each way is a sparse matrix of barycentric weights, made once: a vertex is looked for in
the source cells on its own rank whose midpoints are nearest to it (a k-d tree), which
finds nearly all of them.  On several ranks the two meshes are partitioned apart, and
about half of the vertices lie in a cell of another rank.  DOLFINx's point ownership
(:func:`dolfinx.geometry.determine_point_ownership`) names that rank once; the rank
computes their weights in its cells, and at every transfer evaluates them there and
sends the values back, in one ``Alltoallv``.  DOLFINx's ``interpolate_nonmatching`` on
those vertices, which this replaces, took 8 s of set-up and 0.3 s a transfer at
512² ↔ 256² on 2 ranks.
"""

from __future__ import annotations

import dolfinx_solver  # noqa: F401 - must precede dolfinx

import dolfinx.fem
import dolfinx.geometry
import numpy as np
import scipy.sparse
from mpi4py import MPI
from scipy.spatial import cKDTree

#: Slack of the point location, since round-off may put a vertex on the other mesh's
#: boundary just outside it: barycentric coordinates down to -PADDING count as inside,
#: and DOLFINx pads its bounding boxes by it (a length; our domains are of order 1).
PADDING = 1e-8
#: Source cells tried per vertex, nearest midpoints first, on the vertex's own rank; the
#: rank that owns a vertex's cell then tries this many more for those it did not find (a
#: vertex near a long cell's end).  Trying more on every rank first cost 2.7 s at 512² on 2
#: ranks, where half of the vertices are not on the rank at all.
CANDIDATES = (8, 64)


class _Remote:
    """Values at points that lie in other ranks' cells, evaluated by those ranks.

    Args:
        source: The space whose functions are evaluated.
        points: The points (rows, 3 coordinates) that this rank needs and cannot
            evaluate itself.

    Raises:
        ValueError: A point lies in no cell of any rank, or the rank that DOLFINx names
            its owner does not find it in its cells.
    """

    def __init__(self, source: dolfinx.fem.FunctionSpace, points: np.ndarray) -> None:
        comm = self.comm = source.mesh.comm
        owners = dolfinx.geometry.determine_point_ownership(source.mesh, points, PADDING)
        owner = np.asarray(owners.src_owner)
        if comm.allreduce(bool((owner < 0).any()), op=MPI.LOR):
            raise ValueError("a vertex of one mesh lies in no cell of the other")
        # The points go to their owners again, with their order ours: DOLFINx has sent
        # them already, but its documentation promises no order of ``dest_points``.
        self.order = np.argsort(owner, kind="stable")
        self.asked = np.bincount(owner, minlength=comm.size).astype(np.int64)
        self.served = np.empty_like(self.asked)
        comm.Alltoall(self.asked, self.served)
        sent = np.ascontiguousarray(points[self.order])
        received = np.empty((self.served.sum(), 3))
        comm.Alltoallv([sent, 3 * self.asked], [received, 3 * self.served])
        found, cells, weights = _locate(source, received, CANDIDATES)
        if comm.allreduce(not found.all(), op=MPI.LOR):
            raise ValueError("a vertex's owning rank did not find it in its cells")
        self.weights = _weight_matrix(source, cells, weights)

    def __call__(self, values: np.ndarray) -> np.ndarray:
        """The values at the points, in the order given (collective)."""
        mine = np.ascontiguousarray(self.weights @ values)
        back = np.empty(self.asked.sum())
        self.comm.Alltoallv([mine, self.served], [back, self.asked])
        out = np.empty_like(back)
        out[self.order] = back
        return out


class _Way:
    """One direction of the transfer: local weights, and the rest from other ranks."""

    def __init__(self, to: dolfinx.fem.FunctionSpace, source: dolfinx.fem.FunctionSpace) -> None:
        self.to = dolfinx.fem.Function(to)
        self.n_owned = to.dofmap.index_map.size_local
        points = to.tabulate_dof_coordinates()[: self.n_owned]
        found, cells, weights = _locate(source, points, CANDIDATES[:1])
        self.found = np.flatnonzero(found)
        self.weights = _weight_matrix(source, cells[found], weights[found])
        self.rest = np.flatnonzero(~found)
        self.remote = None
        if to.mesh.comm.allreduce(len(self.rest), op=MPI.SUM):
            self.remote = _Remote(source, points[self.rest])

    def __call__(self, values: np.ndarray) -> np.ndarray:
        own = self.to.x.array[: self.n_owned]
        own[self.found] = self.weights @ values
        if self.remote is not None:
            own[self.rest] = self.remote(values)
        self.to.x.scatter_forward()  # the owner's value on the ghosts
        return self.to.x.array.copy()


def _weight_matrix(
    space: dolfinx.fem.FunctionSpace, cells: np.ndarray, weights: np.ndarray
) -> scipy.sparse.csr_matrix:
    """Row k: the barycentric ``weights[k]`` at the (local) dofs of ``cells[k]``."""
    dofs = space.dofmap.list[cells]
    rows = np.repeat(np.arange(len(cells)), dofs.shape[1])
    imap = space.dofmap.index_map
    shape = (len(cells), imap.size_local + imap.num_ghosts)
    return scipy.sparse.csr_matrix((weights.ravel(), (rows, dofs.ravel())), shape=shape)


def _locate(
    space: dolfinx.fem.FunctionSpace, points: np.ndarray, candidates: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where each point lies in the local cells of ``space``'s mesh.

    Args:
        space: The space whose cells are searched.
        points: The points (rows, 3 coordinates).
        candidates: Cells tried per point, nearest midpoints first, in rounds: the
            points a round leaves are tried again with the next count.

    Returns:
        Whether a local cell holds it, which, and its vertices' barycentric weights there.
    """
    mesh = space.mesh
    tdim, gdim = mesh.topology.dim, mesh.geometry.dim
    nodes = mesh.geometry.x[mesh.geometry.dofmaps[0]][:, :, :gdim]  # (cells, tdim + 1, gdim)
    x = points[:, :gdim]
    found = np.zeros(len(x), dtype=bool)
    cells = np.zeros(len(x), dtype=np.int64)
    weights = np.zeros((len(x), tdim + 1))
    if len(nodes) == 0 or len(x) == 0:
        return found, cells, weights
    # x = x₀ + Eᵀλ' with the edge vectors E (rows); tdim = gdim (no manifold is nested).
    inverse = np.linalg.inv((nodes[:, 1:, :] - nodes[:, :1, :]).transpose(0, 2, 1))
    tree = cKDTree(nodes.mean(axis=1))
    tried = 0
    for k in candidates:
        k = min(k, len(nodes))
        todo = np.flatnonzero(~found)
        if len(todo) == 0 or k <= tried:
            break
        near = tree.query(x[todo], k=k)[1].reshape(len(todo), k)
        for column in range(tried, k):
            left = ~found[todo]
            if not left.any():
                break
            at, c = todo[left], near[left, column]
            lam = np.einsum("pij,pj->pi", inverse[c], x[at] - nodes[c, 0, :])
            full = np.concatenate([1.0 - lam.sum(axis=1, keepdims=True), lam], axis=1)
            inside = (full >= -PADDING).all(axis=1)
            at = at[inside]
            found[at], cells[at], weights[at] = True, c[inside], full[inside]
        tried = k
    return found, cells, weights


class NodalTransfer:
    """Interpolation of P1 nodal values from one space to another and back.

    Args:
        fine: The P1 space of one mesh.
        coarse: The P1 space of another mesh of the same domain.
    """

    def __init__(self, fine: dolfinx.fem.FunctionSpace, coarse: dolfinx.fem.FunctionSpace) -> None:
        self._up = _Way(fine, coarse)
        self._down = _Way(coarse, fine)

    def to_coarse(self, values: np.ndarray) -> np.ndarray:
        """Nodal values of the fine space (ghosts included) at the coarse vertices."""
        return self._down(values)

    def to_fine(self, values: np.ndarray) -> np.ndarray:
        """Nodal values of the coarse space (ghosts included) at the fine vertices."""
        return self._up(values)
