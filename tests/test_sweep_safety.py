"""Sweep safety: a point is reused only by the configuration that ran it, and every
grid value (and every converge level) is validated before the first run."""

import csv
import json

import h5py
import pytest

from tests.conftest import assert_user_error, wgf

BASE = ["heat_1d", "--solver", "fem-implicit", "--set", "time.t_end=0.02"]
GRID = ["--grid", "time.tau=0.01,0.005"]


def _summary(out) -> list[dict]:
    with (out / "summary.csv").open() as f:
        return list(csv.DictReader(f))


def test_a_changed_base_case_re_runs_every_point_and_the_summary_follows(tmp_path):
    out = tmp_path / "sw"
    first = wgf("sweep", *BASE, *GRID, "--out", str(out))
    assert first.returncode == 0, first.stderr
    rows = _summary(out)
    assert [r["status"] for r in rows] == ["done", "done"]
    hashes = {
        p.parent.name: json.loads(p.read_text())["config_hash"] for p in out.glob("*/status.json")
    }
    assert len(set(hashes.values())) == 2  # the two τ are two configurations

    same = wgf("sweep", *BASE, *GRID, "--out", str(out))
    assert same.returncode == 0, same.stderr
    assert same.stdout.count("done already, skipped") == 2
    assert "re-running" not in same.stdout
    assert _summary(out) == rows

    changed = wgf("sweep", *BASE, "--set", "domain.cells=[40]", *GRID, "--out", str(out))
    assert changed.returncode == 0, changed.stderr
    assert "done already" not in changed.stdout
    assert changed.stdout.count("configuration changed since it ran: re-running") == 2
    new = _summary(out)
    assert [r["status"] for r in new] == ["done", "done"]
    # Every point's results were recomputed on 40 cells instead of 200.
    for old_row, new_row in zip(rows, new, strict=True):
        assert abs(float(new_row["l1_error"]) / float(old_row["l1_error"]) - 1) > 0.05
    files = sorted(out.glob("p*/heat_1d_fem-implicit.h5"))
    assert len(files) == 2
    for h5 in files:
        with h5py.File(h5) as f:
            assert json.loads(f.attrs["config"])["domain"]["cells"] == [40]
    after = {
        p.parent.name: json.loads(p.read_text())["config_hash"] for p in out.glob("*/status.json")
    }
    assert set(after) == set(hashes) and all(after[k] != hashes[k] for k in hashes)


def test_a_bad_value_late_in_the_grid_is_refused_before_any_point_runs(tmp_path):
    out = tmp_path / "sw"
    proc = wgf("sweep", *BASE, "--grid", "time.tau=0.01,0.005,-1", "--out", str(out))
    assert_user_error(proc, "sweep point p002_time.tau=-1:")
    assert "[sweep]" not in proc.stdout and not out.exists()


def test_converge_refine_particles_without_a_count_is_one_line(tmp_path):
    proc = wgf(
        "converge", "heat_1d", "--solver", "langevin", "--refine", "particles",
        "--levels", "2", "--out", str(tmp_path / "cv"),
    )  # fmt: skip
    assert_user_error(proc, "set solver.langevin.particles=N")
    assert not (tmp_path / "cv").exists()


@pytest.mark.parametrize("factor", ["1", "0.5", "nan"])
def test_converge_refuses_a_factor_that_does_not_refine(tmp_path, factor):
    proc = wgf(
        "converge", "heat_1d", "--refine", "tau", "--factor", factor,
        "--levels", "2", "--out", str(tmp_path / "cv"),
    )  # fmt: skip
    assert_user_error(proc, "--factor must be > 1")


HUGE = [
    ("domain.cells=[3000,3000]", "fem-implicit", "cells 30.6 GB"),
    ("output.sample_cells=[20000,20000]", "fem-implicit", "samples 100 GB"),
    ("solver.blob.particles=50000000", "blob", "particles 600 GB"),
]


@pytest.mark.parametrize(("override", "solver", "term"), HUGE)
def test_memory_estimate_refuses_cases_larger_than_the_machine(override, solver, term):
    from wgf.cases import load_case
    from wgf.cases.errors import UserError
    from wgf.resources import check_memory
    from wgf.solvers import solver_tables

    case = load_case("heat_2d", [override], solver_tables())
    with pytest.raises(
        UserError, match=f"needs about .* GB \\({term}\\) but this machine has 24 GB"
    ):
        check_memory(case, solver, available=24e9)
    check_memory(case, solver, available=1e12)  # a machine that has it: accepted
    small = load_case("heat_2d", [], solver_tables())
    check_memory(small, solver, available=1e9)  # the shipped case needs ~0.2 GB


def test_memory_estimate_knows_hexahedra_take_more_than_triangles():
    """Measured peak RSS per cell (fem-implicit, porous medium): 1.7 kB per triangle, 3.6 kB
    per quadrilateral and per tetrahedron, 19.6 kB per hexahedron.  With one constant for
    every cell a 120³ hexahedral box (34 GB) was estimated at 3 GB and accepted on a
    24 GB machine, for the OOM killer to end it."""
    from wgf.cases import load_case
    from wgf.cases.errors import UserError
    from wgf.resources import check_memory, estimate
    from wgf.solvers import solver_tables

    box = [
        "domain.lower=[-2, -2, -2]",
        "domain.upper=[2, 2, 2]",
        "domain.cells=[120, 120, 120]",
        "output.sample_cells=[20, 20, 20]",
    ]
    hexes = load_case("porous_medium_2d", [*box, 'domain.cell_type="hypercube"'], solver_tables())
    with pytest.raises(UserError, match="cells"):
        check_memory(hexes, "fem-implicit", available=24e9)
    tets = load_case("porous_medium_2d", box, solver_tables())
    per_hex = estimate(hexes, "fem-implicit")["cells"] / 120**3
    per_tet = estimate(tets, "fem-implicit")["cells"] / (6 * 120**3)
    assert per_hex >= 19.6e3 and per_tet >= 3.6e3
    quads = load_case("porous_medium_2d", ['domain.cell_type="hypercube"'], solver_tables())
    triangles = load_case("porous_medium_2d", [], solver_tables())
    assert estimate(quads, "fem-implicit")["cells"] >= 3.6e3 * 32 * 32
    assert estimate(triangles, "fem-implicit")["cells"] >= 1.7e3 * 2 * 32 * 32


def test_mem_total_reads_proc_meminfo(tmp_path):
    from wgf.resources import mem_total

    info = tmp_path / "meminfo"
    info.write_text("MemFree:  100 kB\nMemTotal:       24684084 kB\n")
    assert mem_total(info) == 24684084 * 1024
    assert mem_total(tmp_path / "missing") is None


@pytest.mark.parametrize(("override", "solver", "term"), HUGE)
def test_sweep_refuses_a_point_that_cannot_fit_before_running(tmp_path, override, solver, term):
    from wgf.resources import mem_total

    if (mem_total() or 0) > 100e9:
        pytest.skip("this machine has the memory for some of these cases")
    key, value = override.split("=", 1)
    out = tmp_path / "sw"
    grid = f"{key}=[32,32],{value}" if key != "solver.blob.particles" else f"{key}=400,{value}"
    sw = wgf("sweep", "heat_2d", "--solver", solver, "--grid", grid, "--out", str(out))
    assert_user_error(sw, "sweep point p001_")
    assert term in sw.stderr and not out.exists()


@pytest.mark.parametrize(("override", "solver", "term"), HUGE)
def test_run_refuses_a_case_that_cannot_fit_before_building_it(tmp_path, override, solver, term):
    from wgf.resources import mem_total

    if (mem_total() or 0) > 100e9:
        pytest.skip("this machine has the memory for some of these cases")
    out = tmp_path / "o"
    proc = wgf("run", "heat_2d", "--solver", solver, "--set", override, "--out", str(out))
    assert_user_error(proc, term)
    assert not out.exists()


def test_converge_refuses_a_level_that_cannot_fit_before_the_first_runs(tmp_path):
    from wgf.resources import mem_total

    if (mem_total() or 0) > 50e9:
        pytest.skip("this machine has the memory for level 2 (about 55 GB)")
    out = tmp_path / "cv"
    proc = wgf(
        "converge", "heat_2d", "--refine", "h", "--levels", "3",
        "--set", "domain.cells=[1000,1000]", "--out", str(out),
    )  # fmt: skip
    assert_user_error(proc, "converge level 2 (cells=[4000, 4000]): heat_2d with fem-implicit")
    assert "[converge]" not in proc.stdout and not out.exists()
