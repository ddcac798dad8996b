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
