"""The vertex-rule tensors against DOLFINx's assembly of the same UFL forms.

∫ρ⁺∇μ·∇v with the vertex quadrature rule (fem-implicit's flux), its derivatives in μ and
in ρ, on intervals, triangles (a distorted mesh with obtuse cells), quadrilaterals
(non-affine ones), tetrahedra, hexahedra and a manifold mesh (the circle in ℝ²), on
every rank.
"""

import dolfinx_solver  # noqa: F401 - must precede dolfinx

import dolfinx.fem
import dolfinx.fem.petsc
import dolfinx.mesh
import numpy as np
import pytest
import ufl
from mpi4py import MPI

from wgf.meshes import circle_mesh
from wgf.solvers.fem.vertex_rule import VertexRuleStiffness, coo_matrix


def _distorted(mesh: dolfinx.mesh.Mesh) -> dolfinx.mesh.Mesh:
    """The mesh with its interior vertices moved by a smooth field (obtuse, non-affine cells)."""
    x = mesh.geometry.x
    x[:, 0] += 0.15 * np.sin(np.pi * x[:, 0]) * np.sin(2 * np.pi * x[:, 1])
    x[:, 1] += 0.1 * np.sin(2 * np.pi * x[:, 0]) * np.sin(np.pi * x[:, 1])
    return mesh


def _meshes(comm: MPI.Comm) -> dict[str, tuple[dolfinx.mesh.Mesh, int]]:
    triangle, quadrilateral = dolfinx.mesh.CellType.triangle, dolfinx.mesh.CellType.quadrilateral
    return {
        "interval": (dolfinx.mesh.create_unit_interval(comm, 17), 1),
        "triangle": (_distorted(dolfinx.mesh.create_unit_square(comm, 9, 7, triangle)), 2),
        "quadrilateral": (
            _distorted(dolfinx.mesh.create_unit_square(comm, 6, 8, quadrilateral)),
            2,
        ),
        "tetrahedron": (dolfinx.mesh.create_unit_cube(comm, 3, 4, 3), 3),
        "hexahedron": (
            dolfinx.mesh.create_unit_cube(comm, 3, 2, 3, dolfinx.mesh.CellType.hexahedron),
            3,
        ),
        "circle": (circle_mesh(comm, 40), 2),
    }


def _dense(A) -> np.ndarray:
    """A PETSc matrix as a dense array on every rank (small test matrices)."""
    A.assemble()
    rows = A.getOwnershipRange()
    local = A.getValues(range(*rows), range(A.getSize()[1]))
    return np.vstack(A.getComm().tompi4py().allgather(local))


CELLS = ["interval", "triangle", "quadrilateral", "tetrahedron", "hexahedron", "circle"]


@pytest.mark.parametrize("name", CELLS)
def test_vertex_rule_matches_the_ufl_forms(name):
    _compare(name, MPI.COMM_WORLD)


@pytest.mark.mpi
@pytest.mark.parametrize("name", CELLS)
def test_vertex_rule_matches_the_ufl_forms_with_ghosts(name):
    """The rows of ghost vertices reach their owners (scatter, COO fill)."""
    assert MPI.COMM_WORLD.size > 1
    _compare(name, MPI.COMM_WORLD)


def _compare(name: str, comm: MPI.Comm) -> None:
    mesh, gdim = _meshes(comm)[name]
    V = dolfinx.fem.functionspace(mesh, ("Lagrange", 1))
    rho, mu = dolfinx.fem.Function(V), dolfinx.fem.Function(V)
    rng = np.random.default_rng(7)
    x = V.tabulate_dof_coordinates()
    # ρ negative on a band (ρ⁺ and its derivative switch off there), μ smooth and rough.
    rho.x.array[:] = np.cos(3.0 * x[:, 0]) + 0.3 * x[:, 1] - 0.2
    mu.x.array[:] = np.sin(2.0 * x[:, 0] + x[:, 1]) + 0.01 * rng.standard_normal(len(x))
    if gdim > 1:
        mu.x.array[:] += x[:, 1] ** 2
    rho.x.scatter_forward()
    mu.x.scatter_forward()
    dxl = ufl.Measure("dx", mesh, metadata={"quadrature_rule": "vertex", "quadrature_degree": 1})
    v, du = ufl.TestFunction(V), ufl.TrialFunction(V)
    flux = ufl.max_value(rho, 0.0) * ufl.dot(ufl.grad(mu), ufl.grad(v)) * dxl

    rule = VertexRuleStiffness(V, gdim)
    imap = V.dofmap.index_map
    n, size = imap.size_local, imap.size_local + imap.num_ghosts
    plus, step = np.maximum(rho.x.array, 0.0), (rho.x.array > 0.0).astype(float)

    expected = dolfinx.fem.assemble_vector(dolfinx.fem.form(flux))
    expected.scatter_reverse(dolfinx.la.InsertMode.add)
    ours = dolfinx.la.vector(imap)
    ours.array[:] = rule.rows(rule.flux(plus, mu.x.array), size)
    ours.scatter_reverse(dolfinx.la.InsertMode.add)
    scale = np.abs(expected.array[:n]).max()
    assert scale > 1e-2
    assert np.abs(ours.array[:n] - expected.array[:n]).max() < 1e-12 * scale

    rows, cols = rule.pattern()
    for values, direction in (
        (rule.weighted(plus), mu),
        (rule.derivative(mu.x.array, step), rho),
    ):
        reference = dolfinx.fem.petsc.assemble_matrix(
            dolfinx.fem.form(ufl.derivative(flux, direction, du))
        )
        A = coo_matrix(imap, rows, cols, comm)
        A.setValuesCOO(values.ravel())
        want, got = _dense(reference), _dense(A)
        assert np.abs(want).max() > 1e-2
        assert np.abs(got - want).max() < 1e-12 * np.abs(want).max()
