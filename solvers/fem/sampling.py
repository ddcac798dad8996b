"""Point evaluation of a finite-element function on a distributed mesh.

The sample points are located once (:class:`PointSampler`), then any function on the
mesh is evaluated there as often as needed.  Every point inside the domain is evaluated
by exactly one rank, the one that ``dolfinx.geometry.determine_point_ownership`` assigns
(the lowest rank owning a cell that contains it), and the values are gathered on rank 0.
A point on a face shared by two ranks is therefore counted once, which is what makes the
sampled densities independent of the number of ranks.

Points outside the domain sample as 0.  ``determine_point_ownership`` extrapolates a point
that lies outside every cell but inside some cell's bounding box (near the polygonal
boundary of a disk mesh) to its nearest cell; such points are recognised by their distance
to that cell and kept at 0, as the density is zero outside the domain.

On a manifold mesh (the unit circle's chords, the unit sphere's flat triangles: cells of
a lower dimension than the space, about the origin) the sample points lie on the smooth
circle or sphere, off the cells by up to the sagitta h²/8.  There every point is taken
to its nearest cell within the largest cell diameter (``determine_point_ownership``'s
padding), and evaluated where the ray from the origin through it meets that cell's
plane (:func:`central_projection`): an O(h²) move, the order of P1 itself.  The central
projection, unlike the orthogonal one, is continuous across cells (a point equidistant
from two cells lies on the ray through their common edge, where the P1 function is one
value), so the sample does not depend on which of them a rank picks.
"""

from __future__ import annotations

import dolfinx_solver  # noqa: F401 - must precede dolfinx

import dolfinx.fem
import dolfinx.geometry
import dolfinx.mesh
import numpy as np
from mpi4py import MPI

#: A point within this distance of a cell counts as inside it (squared, as dolfinx's
#: ``compute_colliding_cells`` decides it: round-off on the boundary stays inside).
INSIDE_SQUARED_DISTANCE = 1e-12


class PointSampler:
    """The points of a sample grid, located on a distributed mesh.

    Collective: every rank of the mesh's communicator constructs it with the same points.

    Args:
        mesh: The mesh the functions live on.
        points: The sample points, shape (n, gdim) with gdim ≤ 3 (the same on all ranks;
            only rank 0's copy is used).
    """

    def __init__(self, mesh: dolfinx.mesh.Mesh, points: np.ndarray) -> None:
        self.mesh = mesh
        self.comm = mesh.comm
        self.n_points = len(points)
        # Rank 0 asks, every rank answers for the points in its cells.
        asked = points if self.comm.rank == 0 else points[:0]
        xyz = np.zeros((len(asked), 3))
        xyz[:, : points.shape[1]] = asked
        tdim = mesh.topology.dim
        self.manifold = tdim < mesh.geometry.dim
        padding = cell_diameter(mesh) if self.manifold else 0.0
        own = dolfinx.geometry.determine_point_ownership(mesh, xyz, padding)
        self._owner = np.asarray(own.src_owner)
        cells = np.asarray(own.dest_cells, dtype=np.int32)
        pts = np.asarray(own.dest_points).reshape(-1, 3)
        if self.manifold and len(cells):
            pts = central_projection(mesh, cells, pts)
        inside = self._inside(cells, pts)
        self._cells, self._points, self._inside_mask = cells, pts, inside

    def _inside(self, cells: np.ndarray, points: np.ndarray) -> np.ndarray:
        """Which of the points lie in (not only next to) their cells."""
        if not len(cells):
            return np.zeros(0, dtype=bool)
        if self.manifold:  # every point found is on the surface (within the padding)
            return np.ones(len(cells), dtype=bool)
        tdim = self.mesh.topology.dim
        d2 = dolfinx.geometry.squared_distance(self.mesh, tdim, cells, points)
        return d2 < INSIDE_SQUARED_DISTANCE

    def evaluate(self, function: dolfinx.fem.Function) -> np.ndarray | None:
        """The values of a scalar function at the points, 0 outside the domain.

        Collective.

        Returns:
            The values, shape (n,), on rank 0; ``None`` on the other ranks.
        """
        local = np.zeros(len(self._cells))
        inside = self._inside_mask
        if np.any(inside):
            local[inside] = function.eval(self._points[inside], self._cells[inside]).ravel()
        parts = self.comm.gather(local, root=0)
        if parts is None:
            return None
        values = np.zeros(self.n_points)
        for rank, part in enumerate(parts):
            values[self._owner == rank] = part
        return values


def cell_diameter(mesh: dolfinx.mesh.Mesh) -> float:
    """The largest cell diameter of the mesh, over all ranks."""
    tdim = mesh.topology.dim
    cells = np.arange(mesh.topology.index_map(tdim).size_local, dtype=np.int32)
    local = float(mesh.h(tdim, cells).max(initial=0.0))
    return mesh.comm.allreduce(local, op=MPI.MAX)


def central_projection(
    mesh: dolfinx.mesh.Mesh, cells: np.ndarray, points: np.ndarray
) -> np.ndarray:
    """Where the ray from the origin through each point meets the plane of its cell.

    With the cell's first node x₀ and edge vectors E (rows), y = s x = x₀ + Eᵀc is a
    square system in (s, c) for a cell of dimension gdim - 1 (the circle's chords, the
    sphere's triangles).

    Args:
        mesh: A manifold mesh about the origin.
        cells: Local cell of each point, (n,).
        points: The points, (n, 3).

    Returns:
        The projected points, (n, 3).
    """
    gdim = mesh.geometry.dim
    nodes = mesh.geometry.x[mesh.geometry.dofmaps[0][cells]][:, :, :gdim]  # (n, gdim, gdim)
    x0, edges = nodes[:, 0], nodes[:, 1:] - nodes[:, :1]
    x = points[:, :gdim]
    system = np.concatenate([x[:, :, None], -edges.transpose(0, 2, 1)], axis=2)
    s = np.linalg.solve(system, x0[:, :, None])[:, 0, 0]
    out = np.zeros_like(points)
    out[:, :gdim] = s[:, None] * x
    return out
