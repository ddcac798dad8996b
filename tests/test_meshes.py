"""Mesh builders: boxes, the gmsh disk and meshio import give the meshes they claim."""

import dolfinx_solver  # noqa: F401

import dolfinx.fem
import meshio
import numpy as np
import pytest
import ufl
from mpi4py import MPI

from tests.conftest import run_case
from wgf.meshes import bounding_box, build_mesh


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
