"""Weighted stiffness of a degree-1 space under the vertex quadrature rule, cell by cell.

The lumped schemes integrate a mobility ρ at the vertices:

    ∫_T ρ ∇μ·∇φ_i  ≈  Σ_q w_q ρ_q ∇μ(x_q)·∇φ_i(x_q)  =  Σ_q r_q (B_q μ)_i,
    B_{q,ij} = w_q ∇φ_j(x_q)·∇φ_i(x_q),

the sum over the vertices x_q of the cell T with the rule's weights w_q = |T̂|/#vertices
times |det J(x_q)|.  On a simplex ∇φ is constant, so the B_q are all K^T/(d+1), K^T the
element stiffness matrix: one tensor serves, weighted by the vertex mean of ρ
(r = P ρ with P a row of 1/(d+1)); on quadrilaterals and hexahedra there is one B_q per
vertex (P = I).  Kept as NumPy arrays, the residual, the weighted stiffness matrix and its
derivative in ρ are a few array passes over the cells and one COO fill per matrix
(:func:`coo_matrix`), where assembling the same UFL forms costs a kernel call and a
``MatSetValues`` per cell (at 512² four times as long; benchmarks/README.md).

The cells are the rank's owned ones; their rows at ghost vertices belong to other ranks,
and reach them through a reverse scatter (vectors) or the COO fill (matrices).  The mesh
geometry is linear (:mod:`wgf.meshes` refuses curved cells), so the dof coordinates of
the P1/Q1 space are the cell's vertices, in the reference element's order.
"""

from __future__ import annotations

import dolfinx_solver  # noqa: F401 - must precede dolfinx

import basix
import dolfinx.common
import dolfinx.fem
import numpy as np
from mpi4py import MPI
from petsc4py import PETSc


class VertexRuleStiffness:
    """The tensors B and P of a P1/Q1 space ``V`` (module docstring), cell by cell.

    The cells run along the last axis of every array, so that each (i, j) entry of the
    k × k blocks is one contiguous pass (k ≤ 8 vertices).

    Attributes:
        dofs: (k, cells) local dofs of the rank's owned cells.
        B: (k, k, Q, cells), B[i, j, q] = w_q ∇φ_j·∇φ_i at the cell's vertex q (Q = 1:
            the element stiffness matrix of a simplex).
        P: (Q, k), the vertex weights r = P ρ of the B_q.
    """

    def __init__(self, V: dolfinx.fem.FunctionSpace, gdim: int) -> None:
        mesh = V.mesh
        tdim = mesh.topology.dim
        cells = mesh.topology.index_map(tdim).size_local
        dofs = V.dofmap.list[:cells].astype(np.int64)
        x = V.tabulate_dof_coordinates()[:, :gdim][dofs]  # (cells, k, gdim)
        cell = basix.CellType[mesh.topology.cell_type.name]
        k = dofs.shape[1]
        simplex = k == tdim + 1
        points = basix.geometry(cell)[:1] if simplex else basix.geometry(cell)
        reference = basix.create_element(basix.ElementFamily.P, cell, 1).tabulate(1, points)
        dphi = reference[1 : tdim + 1, :, :, 0]  # (tdim, points, k)
        jacobian = np.einsum("cjg,dqj->cqgd", x, dphi)  # (cells, points, gdim, tdim)
        gram = np.einsum("cqgd,cqge->cqde", jacobian, jacobian)
        # ∇φ_j = J (JᵀJ)⁻¹ ∇̂φ_j: J⁻ᵀ∇̂φ on full-dimensional cells, the tangential
        # gradient on the cells of a manifold mesh.
        grads = np.einsum("cqgd,cqde,eqj->cqjg", jacobian, np.linalg.inv(gram), dphi)
        weight = basix.cell.volume(cell) / k * np.sqrt(np.abs(np.linalg.det(gram)))
        if simplex:
            weight = weight * k  # the whole cell: B is K^T, weighted by the vertex mean
        B = weight[:, :, None, None] * np.einsum("cqig,cqjg->cqij", grads, grads)
        self.B = np.ascontiguousarray(B.transpose(2, 3, 1, 0))
        self.dofs = np.ascontiguousarray(dofs.T)
        self.P = np.full((1, k), 1.0 / k) if simplex else np.eye(k)

    def weights(self, rho: np.ndarray) -> np.ndarray:
        """The weights r = P ρ per cell, (Q, cells), from ρ at the local dofs."""
        return self.P @ rho[self.dofs]

    def _gradients(self, mu: np.ndarray) -> np.ndarray:
        """(B_q μ)_i: (k, Q, cells)."""
        local = mu[self.dofs]
        return sum(self.B[:, j] * local[j] for j in range(len(local)))

    def flux(self, rho: np.ndarray, mu: np.ndarray) -> np.ndarray:
        """Σ_q r_q (B_q μ)_i per row and cell: (k, cells), ∫ρ∇μ·∇φ_i by the vertex rule."""
        return np.einsum("qc,iqc->ic", self.weights(rho), self._gradients(mu))

    def weighted(self, rho: np.ndarray) -> np.ndarray:
        """Σ_q r_q B_q: (k, k, cells), the stiffness matrix weighted by ρ, cell by cell."""
        r = self.weights(rho)
        return sum(self.B[:, :, q] * r[q] for q in range(len(r)))

    def derivative(self, mu: np.ndarray, drho: np.ndarray) -> np.ndarray:
        """∂/∂ρ_j of the flux, (k, k, cells): Σ_q (B_q μ)_i P_qj ``drho``_j (dρ⁺/dρ)."""
        gradient = self._gradients(mu)
        return np.einsum("iqc,qj->ijc", gradient, self.P) * drho[self.dofs][None]

    def rows(self, values: np.ndarray, size: int) -> np.ndarray:
        """Per-cell row values (k, cells) summed into the local dofs (length ``size``)."""
        return np.bincount(self.dofs.ravel(), weights=values.ravel(), minlength=size)

    def pattern(self) -> tuple[np.ndarray, np.ndarray]:
        """Local (rows, columns) of the cells' k × k blocks, in the order of ``weighted``."""
        k = len(self.dofs)
        return np.repeat(self.dofs, k, axis=0).ravel(), np.tile(self.dofs, (k, 1)).ravel()


def coo_matrix(
    imap: dolfinx.common.IndexMap, rows: np.ndarray, cols: np.ndarray, comm: MPI.Comm
) -> PETSc.Mat:
    """AIJ matrix on ``imap``'s layout, preallocated for entries at local (rows, cols).

    Fill it with ``setValuesCOO`` (values in the same order, duplicates summed): entries
    in rows of ghost dofs are sent to their owners.  ``duplicate()`` keeps the COO
    layout, so matrices of one pattern need this preallocation once.
    """
    owned, n_glob = imap.size_local, imap.size_global
    local = np.arange(owned + imap.num_ghosts, dtype=np.int32)
    l2g = imap.local_to_global(local).astype(PETSc.IntType)
    lgmap = PETSc.LGMap().create(l2g, comm=comm)
    A = PETSc.Mat().createAIJ(((owned, n_glob), (owned, n_glob)), comm=comm)
    A.setLGMap(lgmap, lgmap)
    A.setPreallocationCOOLocal(rows.astype(PETSc.IntType), cols.astype(PETSc.IntType))
    return A
