"""Nodal transfer between the P1 spaces of two meshes of one domain (nested iteration).

A step solved first on a coarser mesh hands its solution to the finer one as a first
guess, and the finer one hands its state down: both ways a P1 function is evaluated at
the other mesh's vertices (:meth:`dolfinx.fem.Function.interpolate_nonmatching`).  When
the meshes are nested (one refines the other) the way down is injection at the shared
vertices and the way up is the coarse function itself, exactly.  The meshes may be
partitioned differently over the ranks; DOLFINx finds the owners of the points.
"""

from __future__ import annotations

import dolfinx_solver  # noqa: F401 - must precede dolfinx

import dolfinx.fem
import numpy as np

#: Slack of the point location, relative to the cell size: vertices on the boundary of
#: the other mesh must be found although round-off may put them just outside.
PADDING = 1e-8


class NodalTransfer:
    """Interpolation of P1 nodal values from one space to another and back.

    Args:
        fine: The P1 space of one mesh.
        coarse: The P1 space of another mesh of the same domain.
    """

    def __init__(self, fine: dolfinx.fem.FunctionSpace, coarse: dolfinx.fem.FunctionSpace) -> None:
        self._fine = dolfinx.fem.Function(fine)
        self._coarse = dolfinx.fem.Function(coarse)
        self._up = self._plan(fine, coarse)
        self._down = self._plan(coarse, fine)

    @staticmethod
    def _plan(
        to: dolfinx.fem.FunctionSpace, source: dolfinx.fem.FunctionSpace
    ) -> tuple[np.ndarray, object]:
        mesh = to.mesh
        cell_map = mesh.topology.index_map(mesh.topology.dim)
        cells = np.arange(cell_map.size_local + cell_map.num_ghosts, dtype=np.int32)
        return cells, dolfinx.fem.create_interpolation_data(to, source, cells, padding=PADDING)

    @staticmethod
    def _interpolate(
        values: np.ndarray,
        source: dolfinx.fem.Function,
        to: dolfinx.fem.Function,
        plan: tuple[np.ndarray, object],
    ) -> np.ndarray:
        source.x.array[:] = values
        to.interpolate_nonmatching(source, *plan)
        to.x.scatter_forward()
        return to.x.array.copy()

    def to_coarse(self, values: np.ndarray) -> np.ndarray:
        """Nodal values of the fine space (ghosts included) at the coarse vertices."""
        return self._interpolate(values, self._fine, self._coarse, self._down)

    def to_fine(self, values: np.ndarray) -> np.ndarray:
        """Nodal values of the coarse space (ghosts included) at the fine vertices."""
        return self._interpolate(values, self._coarse, self._fine, self._up)
