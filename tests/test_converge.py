"""``wgf converge``: self-convergence (``--reference finest``), τ ∝ h² (``--tau-with-h``),
refined mesh files, and the README's example."""

from __future__ import annotations

import dolfinx_solver  # noqa: F401

import json
import re

import h5py
import meshio
import numpy as np
import pytest
from mpi4py import MPI

from tests.conftest import assert_user_error, wgf
from wgf.meshes import bounding_box, build_mesh


def _eoc_table(stdout: str) -> dict[int, list[float]]:
    """Level → the numbers of its table row (errors and EOCs)."""
    rows = {}
    for line in stdout.splitlines():
        match = re.match(r"\s+(\d+) (cells|refinements)=\S+( tau=\S+)?\s+(.*)", line)
        if match:
            rows[int(match.group(1))] = [
                float(v) for v in re.findall(r"\d\.\d+(?:e[-+]\d+)?", match.group(4))
            ]
    return rows


def _l_shape(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Right triangles on [-1, 1]² without the quadrant (0, 1) × (-1, 0): an L-shape."""
    x = np.linspace(-1.0, 1.0, n + 1)
    points = np.array([[xi, yj, 0.0] for yj in x for xi in x])
    triangles = []
    for j in range(n):
        for i in range(n):
            if x[i] >= 0.0 and x[j] < 0.0:
                continue
            v = j * (n + 1) + i
            triangles += [[v, v + 1, v + n + 2], [v, v + n + 2, v + n + 1]]
    return points, np.array(triangles)


@pytest.fixture
def l_shape_file(tmp_path):
    points, triangles = _l_shape(8)
    path = tmp_path / "l_shape.msh"
    meshio.write(
        path, meshio.Mesh(points, [("triangle", triangles)]), file_format="gmsh22", binary=False
    )
    return path


def test_a_refined_mesh_file_has_four_times_the_cells_per_level(l_shape_file):
    cells, areas = [], []
    for refinements in range(3):
        mesh = build_mesh(
            {"shape": "file", "path": str(l_shape_file), "refinements": refinements},
            MPI.COMM_WORLD,
        )
        local = mesh.topology.index_map(2).size_local
        cells.append(MPI.COMM_WORLD.allreduce(local, op=MPI.SUM))
        lower, upper = bounding_box(mesh)
        np.testing.assert_allclose(lower, [-1.0, -1.0])
        np.testing.assert_allclose(upper, [1.0, 1.0])
        import dolfinx.fem
        import ufl

        one = dolfinx.fem.form(1.0 * ufl.dx(domain=mesh))
        areas.append(MPI.COMM_WORLD.allreduce(dolfinx.fem.assemble_scalar(one), op=MPI.SUM))
    assert cells == [96, 384, 1536]  # 8² squares minus a quarter, two triangles each; × 4
    np.testing.assert_allclose(areas, 3.0, rtol=1e-12)  # the L-shape stays the L-shape


def test_quadrilateral_meshes_cannot_be_refined(tmp_path):
    proc = wgf(
        "run", "heat_2d", "--set", "domain.cell_type=hypercube", "--set",
        "domain.refinements=1", "--out", str(tmp_path),
    )  # fmt: skip
    assert_user_error(proc, "a quadrilateral mesh cannot be refined")


def test_self_convergence_on_a_refined_l_shape(tmp_path, l_shape_file):
    """Heat flow on the L-shape from a file, refined twice, against its finest level."""
    case = tmp_path / "l_heat.toml"
    case.write_text(
        f"""name = "l_heat"
[energy]
internal = "entropy"
[domain]
shape = "file"
path = "{l_shape_file.name}"
[initial]
kind = "expression"
density = "exp(-((x + 0.5)**2 + (y - 0.5)**2)/0.1)"
[time]
t_end = 0.02
tau = 0.005
[output]
snapshots = 2
sample_cells = [60, 60]
"""
    )
    out = tmp_path / "conv"
    args = ["converge", str(case), "--refine", "h", "--levels", "3", "--out", str(out)]
    assert_user_error(wgf(*args), "has no exact solution ([exact] kind); use --reference finest")
    proc = wgf(*args, "--reference", "finest")
    assert proc.returncode == 0, proc.stderr
    assert "differences at T to the finest level (2: refinements=2)" in proc.stdout
    for level in range(3):
        with h5py.File(out / f"level{level}" / "l_heat_fem-implicit.h5") as f:
            assert json.loads(f.attrs["config"])["domain"]["refinements"] == level
    with h5py.File(out / "eoc.h5") as f:
        assert f.attrs["reference"] == "finest"
        l1 = f["error/L1"][()]
        np.testing.assert_allclose(f["parameter"][()], [1.0, 0.5, 0.25])
    assert np.isnan(l1[2]) and l1[1] < l1[0] / 3
    # P1 in h: e_k ∝ h_k²(1 - 4^{-(2-k)}), so the one EOC is 2 + log2((15/16)/(3/4)) ≈ 2.32.
    order = np.log(l1[0] / l1[1]) / np.log(2.0)
    assert order == pytest.approx(2.32, abs=0.3)


def test_self_convergence_of_fem_implicit_in_1d_is_second_order(tmp_path):
    """double_well_1d (formula V, no closed form at finite t): EOCs against the finest level.

    With e_k ∝ h_k²(1 - 4^{-(K-k)}) the EOCs of levels 1 and 2 of four are
    2 + log2((1 - 4⁻³)/(1 - 4⁻²)) ≈ 2.07 and 2 + log2((1 - 4⁻²)/(1 - 4⁻¹)) ≈ 2.32.
    """
    out = tmp_path / "dw"
    proc = wgf(
        "converge", "double_well_1d", "--refine", "h", "--levels", "4", "--reference",
        "finest", "--set", "time.t_end=1.0", "--set", "output.sample_cells=[300]",
        "--out", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "note: the sample points" not in proc.stdout
    rows = _eoc_table(proc.stdout)
    assert sorted(rows) == [0, 1, 2, 3] and rows[3] == []  # the reference row has no numbers
    l1_eocs = [rows[1][1], rows[2][1]]
    assert l1_eocs == pytest.approx([2.07, 2.32], abs=0.1)
    assert "over-estimates p by 0.58 for p = 1, 0.32 for p = 2" in proc.stdout


def test_aligned_sample_points_are_pointed_out(tmp_path):
    proc = wgf(
        "converge", "double_well_1d", "--refine", "h", "--levels", "3", "--reference",
        "finest", "--set", "time.t_end=0.1", "--out", str(tmp_path),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "mesh vertices at level(s) 1, 2 only" in proc.stdout


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--reference", "finest", "--levels", "2"], "--levels must be at least 3"),
        (["--tau-with-h", "2", "--refine", "tau"], "--tau-with-h P needs --refine h"),
    ],
)
def test_bad_converge_options(tmp_path, extra, message):
    args = ["converge", "double_well_1d", "--out", str(tmp_path), *extra]
    if "--refine" not in extra:
        args += ["--refine", "h"]
    assert_user_error(wgf(*args), message)


def test_the_readme_example_shows_second_order_in_h(tmp_path):
    """README: ``wgf converge fokker_planck_ou_1d --refine h --levels 4 --tau-with-h 2 --set
    output.sample_cells=[300]``, shortened to three levels."""
    readme = (pytest.importorskip("tests.conftest").ROOT / "README.md").read_text()
    command = (
        "wgf converge fokker_planck_ou_1d --refine h --levels 4 --tau-with-h 2 "
        "--set output.sample_cells=[300]"
    )
    assert command in readme
    args = command.split()[1:]
    args[args.index("--levels") + 1] = "3"
    proc = wgf(*args, "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    rows = _eoc_table(proc.stdout)
    assert [rows[k][1] for k in (1, 2)] == pytest.approx([2.0, 2.0], abs=0.1)  # L1 EOCs
    fitted = re.search(r"fitted order \(np.polyfit\): L1 (\S+),", proc.stdout)
    assert float(fitted.group(1)) == pytest.approx(2.0, abs=0.1)


@pytest.mark.mpi
def test_a_refined_mesh_file_on_two_ranks(l_shape_file):
    """The same counts when the refined cells stay on the ranks of their parents."""
    test_a_refined_mesh_file_has_four_times_the_cells_per_level(l_shape_file)
