"""Mesh builders: boxes, the gmsh disk and meshio import give the meshes they claim."""

import dolfinx_solver  # noqa: F401

import dolfinx.fem
import meshio
import numpy as np
import pytest
import ufl
from mpi4py import MPI

from tests.conftest import assert_user_error, run_case, wgf
from wgf.meshes import bounding_box, build_mesh, coarser_domain


def _area(mesh):
    return MPI.COMM_WORLD.allreduce(
        dolfinx.fem.assemble_scalar(dolfinx.fem.form(1.0 * ufl.dx(domain=mesh))), op=MPI.SUM
    )


@pytest.mark.parametrize("cell_type", ["simplex", "hypercube"])
def test_box_meshes(cell_type):
    for lower, upper, cells in [
        ([-1.0], [2.0], [7]),
        ([-1.0, 0.0], [2.0, 1.0], [6, 4]),
        ([0.0, 0.0, 0.0], [1.0, 2.0, 0.5], [2, 3, 2]),
    ]:
        mesh = build_mesh(
            {
                "shape": "box",
                "lower": lower,
                "upper": upper,
                "cells": cells,
                "cell_type": cell_type,
            },
            MPI.COMM_WORLD,
        )
        assert _area(mesh) == pytest.approx(np.prod(np.subtract(upper, lower)), rel=1e-12)
        lo, hi = bounding_box(mesh)
        np.testing.assert_allclose(lo, lower)
        np.testing.assert_allclose(hi, upper)


def test_coarser_domain_is_refined_back_into_the_same_vertices(monkeypatch):
    """One refinement fewer, or half the cells of an even box; none for an odd box, a file
    mesh without refinements or a manifold.  The coarse box's vertices are the fine one's."""
    box = {"shape": "box", "lower": [0.0, 0.0], "upper": [1.0, 2.0], "cells": [8, 6]}
    box["cell_type"] = "simplex"
    coarse = coarser_domain(box)
    assert coarse["cells"] == [4, 3] and box["cells"] == [8, 6]
    assert coarser_domain({**box, "cells": [8, 5]}) is None
    assert coarser_domain({**box, "refinements": 2})["refinements"] == 1
    assert coarser_domain({"shape": "file", "path": "m.msh", "refinements": 0}) is None
    assert coarser_domain({"shape": "sphere", "cells": [8], "refinements": 1}) is None
    fine_V, coarse_V = _p1_space(box["cells"]), _p1_space(coarse["cells"])
    check_nodal_transfer(fine_V, coarse_V)
    # The vertices that the first search misses go to the rank that owns their cell,
    # here this one: the same values.
    from wgf.solvers.fem import nested

    monkeypatch.setattr(nested, "CANDIDATES", (1, 64))
    assert check_nodal_transfer(fine_V, coarse_V) > 0


def _p1_space(cells, upper=(1.0, 2.0), comm=MPI.COMM_WORLD):
    box = {"shape": "box", "lower": [0.0, 0.0], "upper": list(upper), "cells": cells}
    mesh = build_mesh({**box, "cell_type": "simplex"}, comm)
    return dolfinx.fem.functionspace(mesh, ("Lagrange", 1))


def check_nodal_transfer(fine_V, coarse_V):
    """P1 interpolation both ways, on however many ranks: exact between nested meshes,
    DOLFINx's own ``interpolate_nonmatching`` between others; a vertex outside the other
    mesh is an error.  Returns how many vertices of the pair that is not nested the first
    search did not find on their own rank (summed over the ranks and both ways)."""
    from wgf.solvers.fem.nested import NodalTransfer

    transfer = NodalTransfer(fine_V, coarse_V)
    # P1 functions of the coarse mesh are P1 on the fine one (nested): up and down exactly.
    x, y = coarse_V.tabulate_dof_coordinates()[:, :2].T
    up = transfer.to_fine(1.0 + 2.0 * x - 3.0 * y)
    xf, yf = fine_V.tabulate_dof_coordinates()[:, :2].T
    assert np.abs(up - (1.0 + 2.0 * xf - 3.0 * yf)).max() < 1e-12
    down = transfer.to_coarse(np.sin(3 * xf) * yf**2)
    assert np.abs(down - np.sin(3 * x) * y**2).max() < 1e-12
    # Meshes that are not nested: 7 × 5 against 8 × 6, a curved function.
    other_V = _p1_space([7, 5], comm=fine_V.mesh.comm)
    transfer = NodalTransfer(fine_V, other_V)
    for source, target, way in ((other_V, fine_V, "to_fine"), (fine_V, other_V, "to_coarse")):
        f = dolfinx.fem.Function(source)
        f.interpolate(lambda p: np.sin(3 * p[0]) * p[1] ** 2)
        expected = dolfinx.fem.Function(target)
        cells = np.arange(target.mesh.topology.index_map(2).size_local, dtype=np.int32)
        data = dolfinx.fem.create_interpolation_data(target, source, cells, padding=1e-8)
        expected.interpolate_nonmatching(f, cells, data)
        expected.x.scatter_forward()
        got = getattr(transfer, way)(f.x.array)
        assert np.abs(got - expected.x.array).max() < 1e-12, way
    with pytest.raises(ValueError, match="lies in no cell of the other"):
        NodalTransfer(fine_V, _p1_space([4, 3], upper=(0.5, 2.0), comm=fine_V.mesh.comm))
    comm = fine_V.mesh.comm
    return comm.allreduce(len(transfer._up.rest) + len(transfer._down.rest), op=MPI.SUM)


def test_disk_area_converges():
    errors = []
    for h in (0.4, 0.2, 0.1):
        mesh = build_mesh(
            {"shape": "disk", "center": [0.5, -0.5], "radius": 2.0, "h": h}, MPI.COMM_WORLD
        )
        errors.append(abs(_area(mesh) - 4.0 * np.pi))
    # Polygonal approximation of the circle: the area error is O(h²).
    slope = np.polyfit(np.log([0.4, 0.2, 0.1]), np.log(errors), 1)[0]
    assert 1.7 < slope < 2.3


def _grid_triangles(n, a):
    x = np.linspace(-a, a, n + 1)
    pts = np.array([[xi, yj, 0.0] for yj in x for xi in x])
    tris = []
    for j in range(n):
        for i in range(n):
            v = j * (n + 1) + i
            tris += [[v, v + 1, v + n + 2], [v, v + n + 2, v + n + 1]]
    return pts, np.array(tris)


@pytest.mark.parametrize("suffix", [".msh", ".vtu", ".xdmf"])
def test_imported_mesh_solves_like_the_box(tmp_path, suffix):
    pts, tris = _grid_triangles(32, 3.0)
    path = tmp_path / f"grid{suffix}"
    kwargs = {"file_format": "gmsh22", "binary": False} if suffix == ".msh" else {}
    meshio.write(path, meshio.Mesh(pts, [("triangle", tris)]), **kwargs)
    from_file = run_case(
        "heat_2d", ['domain.shape="file"', f'domain.path="{path}"'], tmp_path / "file"
    )
    box = run_case("heat_2d", [], tmp_path / "box")
    assert from_file.diagnostics["mass"] == pytest.approx(1.0, rel=1e-12)
    # Same vertices, same kind of right-triangle mesh: the errors agree closely.
    assert from_file.diagnostics["l1_error"] == pytest.approx(box.diagnostics["l1_error"], rel=0.05)


def _square_mixed(path):
    """[0, 2] x [0, 1]: two triangles on the left half, one quad on the right."""
    pts = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [2, 0, 0], [2, 1, 0]], float)
    cells = [
        ("triangle", np.array([[0, 1, 2], [0, 2, 3]])),
        ("quad", np.array([[1, 4, 5, 2]])),
        ("line", np.array([[0, 1], [1, 4]])),  # boundary lines: ignored, not "mixed"
    ]
    meshio.write(path, meshio.Mesh(pts, cells), file_format="gmsh22", binary=False)


def _square_triangle6(path):
    """The unit square as two second-order triangles (corners, then mid-edge nodes)."""
    pts = np.array(
        [[0, 0], [1, 0], [1, 1], [0, 1], [0.5, 0], [1, 0.5], [0.5, 0.5], [0.5, 1], [0, 0.5]],
        float,
    )
    cells = [("triangle6", np.array([[0, 1, 2, 4, 5, 6], [0, 2, 3, 6, 7, 8]]))]
    meshio.write(path, meshio.Mesh(pts, cells), file_format="gmsh22", binary=False)


@pytest.mark.parametrize(
    ("write", "message"),
    [
        (_square_mixed, "mixed quad and triangle cells: DOLFINx meshes have one cell type"),
        (_square_triangle6, "triangle6: second-order cells are not supported, export linear"),
    ],
)
@pytest.mark.parametrize("ranks", [0, 2])
def test_mixed_and_second_order_mesh_files_are_refused_with_the_reason(
    tmp_path, write, message, ranks
):
    path = tmp_path / "square.msh"
    write(path)
    proc = wgf(
        "run",
        "heat_2d",
        "--solver",
        "fem-implicit",
        "--set",
        'domain.shape="file"',
        "--set",
        f'domain.path="{path}"',
        "--out",
        str(tmp_path / "out"),
        ranks=ranks,
    )
    assert_user_error(proc, f"mesh file '{path}': {message}")


def test_a_file_with_boundary_lines_and_one_triangle_type_is_read_whole(tmp_path):
    path = tmp_path / "tri.msh"
    pts = np.array([[0, 0, 0], [2, 0, 0], [2, 1, 0], [0, 1, 0]], float)
    cells = [("line", np.array([[0, 1]])), ("triangle", np.array([[0, 1, 2], [0, 2, 3]]))]
    meshio.write(path, meshio.Mesh(pts, cells), file_format="gmsh22", binary=False)
    mesh = build_mesh({"shape": "file", "path": str(path)}, MPI.COMM_WORLD)
    assert _area(mesh) == pytest.approx(2.0, rel=1e-12)
