"""Nodal transfer between the P1 spaces of two meshes of one domain (nested iteration).

A step solved first on a coarser mesh hands its solution to the finer one as a first
guess, and the finer one hands its state down: both ways a P1 function is evaluated at
the other mesh's vertices.  When the meshes are nested (one refines the other) the way
down is injection at the shared vertices and the way up is the coarse function itself,
exactly.

Each way is a sparse matrix of barycentric weights, made once: a vertex is looked for in
the source cells on its own rank whose midpoints are nearest to it (a k-d tree), which
finds nearly all of them.  The rest (on several ranks, the vertices whose cell is on
another rank, since the two meshes are partitioned apart) go through DOLFINx's
collective point location, :meth:`dolfinx.fem.Function.interpolate_nonmatching`, on
just their cells: for all vertices of a 512² mesh that took 8 s.
"""

from __future__ import annotations

import dolfinx_solver  # noqa: F401 - must precede dolfinx

import dolfinx.fem
import numpy as np
import scipy.sparse
from mpi4py import MPI
from scipy.spatial import cKDTree

#: Slack of the point location, since round-off may put a vertex on the other mesh's
#: boundary just outside it: barycentric coordinates down to -PADDING count as inside,
#: and DOLFINx pads its bounding boxes by it (a length; our domains are of order 1).
PADDING = 1e-8
#: Source cells tried per vertex, nearest midpoints first.
CANDIDATES = 8


class _Way:
    """One direction of the transfer.

    Weights for the vertices found on this rank, and DOLFINx's interpolation on the cells
    of the others (None if there are none on any rank).
    """

    def __init__(self, to: dolfinx.fem.FunctionSpace, source: dolfinx.fem.FunctionSpace) -> None:
        self.source = dolfinx.fem.Function(source)
        self.to = dolfinx.fem.Function(to)
        points = to.tabulate_dof_coordinates()
        found, cells, weights = _locate(source, points)
        dofs = source.dofmap.list[cells[found]]
        rows = np.repeat(np.flatnonzero(found), dofs.shape[1])
        self.weights = scipy.sparse.csr_matrix(
            (weights[found].ravel(), (rows, dofs.ravel())),
            shape=(len(points), len(self.source.x.array)),
        )
        self.found = found
        self.rest = None
        comm = to.mesh.comm
        if comm.allreduce(int((~found).sum()), op=MPI.SUM):
            # The target cells of the vertices not found here (DOLFINx's call is collective).
            around = np.isin(to.dofmap.list, np.flatnonzero(~found)).any(axis=1)
            mine = np.flatnonzero(around).astype(np.int32)
            data = dolfinx.fem.create_interpolation_data(to, source, mine, padding=PADDING)
            self.rest = (mine, data)

    def __call__(self, values: np.ndarray) -> np.ndarray:
        out = self.weights @ values
        if self.rest is not None:
            self.source.x.array[:] = values
            self.to.interpolate_nonmatching(self.source, *self.rest)
            out[~self.found] = self.to.x.array[~self.found]
        self.to.x.array[:] = out
        self.to.x.scatter_forward()  # the owner's value on the ghosts
        return self.to.x.array.copy()


def _locate(
    space: dolfinx.fem.FunctionSpace, points: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where each point lies in the local cells of ``space``'s mesh.

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
    k = min(CANDIDATES, len(nodes))
    _, near = cKDTree(nodes.mean(axis=1)).query(x, k=k)
    near = near.reshape(len(x), k)
    for column in range(k):
        c = near[:, column]
        todo = ~found
        lam = np.einsum("pij,pj->pi", inverse[c[todo]], x[todo] - nodes[c[todo], 0, :])
        full = np.concatenate([1.0 - lam.sum(axis=1, keepdims=True), lam], axis=1)
        inside = (full >= -PADDING).all(axis=1)
        at = np.flatnonzero(todo)[inside]
        found[at], cells[at], weights[at] = True, c[todo][inside], full[inside]
        if found.all():
            break
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
