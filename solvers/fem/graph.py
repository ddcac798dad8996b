"""The mesh graph of a P1 (or Q1) space: edge transmissibilities from the stiffness matrix.

For the Lagrange space of degree 1 the stiffness matrix K_ij = ∫∇φ_j·∇φ_i has zero row
sums, so

    Σ_j K_ij u_j = Σ_{j≠i} a_ij (u_i - u_j),    a_ij = -K_ij,

and every flux of a finite-element scheme can be written as a sum over the edges of the
graph with the transmissibilities a_ij.  On a non-obtuse simplicial mesh (and on Q1
rectangles of aspect ratio at most √2) every a_ij ≥ 0; on a 2-D Delaunay mesh the summed
a_ij are ≥ 0 although the pieces of single cells need not be.  Taking a_ij from the
*assembled* matrix (not cell by cell) is what makes that last statement usable, and it
serves any cell type the assembler knows.

The graph is stored for the rows a rank owns, in the row layout of the PETSc matrix
(owned dofs, global column numbers).  Without ghost cells a neighbour of an owned vertex
may live on another rank only, so nodal data at the neighbours come by a scatter.
"""

from __future__ import annotations

import dolfinx_solver  # noqa: F401 - must precede dolfinx

import dolfinx.fem
import dolfinx.fem.petsc
import numpy as np
import ufl
from petsc4py import PETSc

from wgf.solvers.acceptance import PECLET_LIMIT  # noqa: F401 - re-exported for the FE solvers

#: Where the Péclet number is looked at: edges whose two ends carry at least this share
#: of the peak density (3σ of a Gaussian), since an unresolved drift where there is no
#: mass does not spoil the answer.
SUPPORT_SHARE = 1e-2


class MeshGraph:
    """Owned rows of the stiffness pattern, with the off-diagonal transmissibilities.

    Attributes:
        indptr: CSR row pointers of the owned rows, (n_owned + 1,).
        columns: Global column of every stored entry (PETSc numbering), (nnz,).
        diagonal: Position in ``columns`` of each row's diagonal entry, (n_owned,).
        edge: Positions of the off-diagonal entries, (n_edges,).
        row: Owned dof of the row of each off-diagonal entry, (n_edges,).
        a: Transmissibility a_ij = -K_ij of each off-diagonal entry, (n_edges,).
        n_owned: Number of owned dofs (rows).
        n_global: Number of dofs of the whole mesh.
    """

    def __init__(
        self,
        stiffness: PETSc.Mat,
        n_owned: int,
        n_global: int,
    ) -> None:
        indptr, columns, values = stiffness.getValuesCSR()
        rows = np.repeat(np.arange(n_owned, dtype=np.int64), np.diff(indptr))
        is_diagonal = columns == rows + stiffness.getOwnershipRange()[0]
        self.diagonal = np.flatnonzero(is_diagonal)
        if len(self.diagonal) != n_owned:  # the assembler always stores the diagonal
            raise RuntimeError("stiffness pattern without a diagonal entry in some row")
        self.edge = np.flatnonzero(~is_diagonal)
        self.indptr = indptr.astype(PETSc.IntType)
        self.columns = columns.astype(PETSc.IntType)
        self.row, self.a = rows[self.edge], -values[self.edge]
        self.n_owned, self.n_global = n_owned, n_global
        # A neighbour of an owned vertex need not be on this rank (no ghost cells): its
        # values come by a PETSc scatter from the rank that owns it.
        comm = stiffness.getComm()
        self._owned = PETSc.Vec().createMPI((n_owned, n_global), comm=comm)
        self._at_edges = PETSc.Vec().createSeq(len(self.edge), comm=PETSc.COMM_SELF)
        index = PETSc.IS().createGeneral(self.columns[self.edge], comm=PETSc.COMM_SELF)
        self._scatter = PETSc.Scatter().create(self._owned, index, self._at_edges, None)

    def at_neighbours(self, owned: np.ndarray) -> np.ndarray:
        """The values of nodal data (given at the owned dofs) at each edge's column end."""
        self._owned.array[:] = owned
        self._scatter.scatter(
            self._owned, self._at_edges, PETSc.InsertMode.INSERT_VALUES, PETSc.ScatterMode.FORWARD
        )
        return self._at_edges.array.copy()

    def matrix(self, values: np.ndarray) -> PETSc.Mat:
        """A PETSc AIJ matrix with this pattern and the given CSR ``values`` (nnz,)."""
        n = (self.n_owned, self.n_global)
        mat = PETSc.Mat().createAIJ(
            (n, n), csr=(self.indptr, self.columns, values), comm=self._owned.getComm()
        )
        mat.assemble()
        return mat

    def set_values(self, mat: PETSc.Mat, values: np.ndarray) -> None:
        """Overwrite the entries of a matrix made by :meth:`matrix` (same pattern)."""
        mat.setValuesCSR(self.indptr, self.columns, values)
        mat.assemble()


def mesh_graph(space: dolfinx.fem.FunctionSpace) -> MeshGraph:
    """The graph of a scalar degree-1 Lagrange ``space`` (see the module docstring)."""
    u, v = ufl.TrialFunction(space), ufl.TestFunction(space)
    stiffness = dolfinx.fem.petsc.assemble_matrix(
        dolfinx.fem.form(ufl.inner(ufl.grad(u), ufl.grad(v)) * ufl.dx)
    )
    stiffness.assemble()
    imap = space.dofmap.index_map
    graph = MeshGraph(stiffness, imap.size_local, imap.size_global)
    stiffness.destroy()
    return graph


def bernoulli(x: np.ndarray) -> np.ndarray:
    """B(x) = x / (e^x - 1), B(0) = 1, without overflow or cancellation.

    Written as B(x) = |x| e^{-max(x, 0)} / (1 - e^{-|x|}): the numerator's exponent is
    never positive and 1 - e^{-|x|} comes from ``expm1``, exact for small |x|.  For
    large x > 0 it underflows to 0, which is its limit; B(-x) = x + B(x) ≈ x stays
    finite.  B(x) > 0 everywhere, and B(-x) = e^x B(x).
    """
    x = np.asarray(x, dtype=float)
    ax = np.abs(x)
    with np.errstate(invalid="ignore", divide="ignore"):  # 0/0 at x = 0, replaced below
        b = ax * np.exp(-np.maximum(x, 0.0)) / -np.expm1(-ax)
    return np.where(ax == 0.0, 1.0, b)
