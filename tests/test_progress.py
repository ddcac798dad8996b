"""Progress output (bar on a terminal, plain lines otherwise, --quiet), start/finish lines
of converge and sweep, and --solver all's skipping of solvers too costly for a case."""

from __future__ import annotations

import io
import logging
import os
import pty
import subprocess
import sys

import pytest

from tests.conftest import ROOT, wgf
from wgf import progress
from wgf.progress import Progress, clock, note

HEAT_3D = """\
name = "heat_3d"
description = "3-D heat equation, a tiny test case"

[energy]
internal = "entropy"
diffusivity = 1.0

[domain]
shape = "box"
lower = [-3.0, -3.0, -3.0]
upper = [3.0, 3.0, 3.0]
cells = [4, 4, 4]

[initial]
kind = "gaussian"
mean = [0.0, 0.0, 0.0]
cov = [[0.25, 0.0, 0.0], [0.0, 0.25, 0.0], [0.0, 0.0, 0.25]]

[time]
t_end = 0.005
tau = 0.005

[exact]
kind = "gaussian"

[output]
snapshots = 2
sample_cells = [8, 8, 8]
"""


class _Clock:
    """A settable ``time.perf_counter`` for the ETA arithmetic."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fake_time(monkeypatch) -> _Clock:
    clock_ = _Clock()
    monkeypatch.setattr(progress.time, "perf_counter", clock_)
    return clock_


@pytest.fixture(autouse=True)
def _loud():
    """Every test starts and ends with progress on and no bar on screen."""
    progress.set_quiet(False)
    progress._drawn = None
    yield
    progress.set_quiet(False)
    progress._drawn = None


# -- the Progress object -------------------------------------------------------------------
def test_eta_is_the_mean_time_per_step_times_the_steps_left(fake_time):
    p = Progress("[x]", total=110, start=10, stream=io.StringIO(), terminal=False)
    fake_time.now = 5.0  # 10 steps (from the resumed step 10) in 5 s; 90 left
    assert p.eta(20) == pytest.approx(45.0)
    assert "step  20/110 [0:05 < 0:45]" in p.line(20, "t = 1")
    assert p.eta(10) != p.eta(10)  # nothing done yet: unknown (NaN)
    assert clock(3725.0) == "1:02:05" and clock(65.4) == "1:05" and clock(float("nan")) == "?"


def test_plain_lines_at_most_one_a_second_plus_first_and_last(fake_time):
    out = io.StringIO()
    p = Progress("[x]", total=100, stream=out, terminal=False)
    for k in range(1, 101):
        fake_time.now = 0.03 * k  # 3 s in all: lines at 1 (first), ~1.03, ~2.06 s and 100
        p.update(k, f"t = {k}")
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert [line.split()[2] for line in lines] == ["1/100", "35/100", "69/100", "100/100"]
    assert lines[-1] == "[x] step 100/100 [0:03 < 0:00]  t = 100"


def test_terminal_bar_is_one_line_redrawn_and_cut_to_the_width(fake_time, monkeypatch):
    monkeypatch.setattr(progress.shutil, "get_terminal_size", lambda *a: os.terminal_size((80, 20)))
    out = io.StringIO()
    p = Progress("[x]", total=40, stream=out, terminal=True)
    for k in range(1, 41):
        fake_time.now = 0.0625 * k  # a redraw every other step (BAR_EVERY = 0.1 s)
        p.update(k, "t = " + "9" * 80)  # a long text: cut, never wrapped
    text = out.getvalue()
    assert text.endswith("\n") and text.count("\n") == 1  # one line, ended at the last step
    frames = text[:-1].split("\r")[1:]
    assert len(frames) == 21  # steps 1, 3, …, 39 and the last
    assert all(len(f) == 79 for f in frames)
    assert frames[0].startswith("[x]   2% |")
    assert frames[-1].startswith(
        "[x] 100% |" + "█" * progress.BAR_WIDTH + "| step 40/40 [0:02 < 0:00]  t = 99"
    ) and frames[-1].endswith("9999")


def test_a_note_or_log_record_ends_the_bar_line_first(capsys):
    from wgf.cli import configure_logging

    logger = logging.getLogger("wgf")
    saved = (logger.level, logger.propagate, list(logger.handlers))
    try:
        configure_logging(0)
        p = Progress("[x]", total=10, terminal=True)
        p.update(1, "t = 0.1")
        logging.getLogger("wgf.solvers.test").info("a solver note")
        p.update(2, "t = 0.2", last=True)  # redrawn on a fresh line
        note("[converge] level 2/3: done")
        out = capsys.readouterr().out
        first, rest = out.split("\n", 1)
        assert first.startswith("\r[x]  10% |") and "step  1/10" in first
        assert rest.startswith("a solver note\n\r[x]  20% |")
        assert rest.endswith("\n[converge] level 2/3: done\n")
    finally:
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
        logger.handlers[:] = saved[2]


def test_quiet_prints_nothing_and_raises_the_log_level(capsys):
    from wgf.cli import configure_logging

    logger = logging.getLogger("wgf")
    saved = (logger.level, logger.propagate, list(logger.handlers))
    try:
        configure_logging(0, quiet=True)
        Progress("[x]", total=3, terminal=True).update(3, "done")
        Progress("[x]", total=3, terminal=False).update(3, "done")
        note("a note")
        logging.getLogger("wgf.solvers.test").info("an info record")
        logging.getLogger("wgf.solvers.test").warning("a warning")
        assert capsys.readouterr().out == "a warning\n"
    finally:
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
        logger.handlers[:] = saved[2]


# -- the command line ----------------------------------------------------------------------
LANGEVIN_SMALL = ["--solver", "langevin", "--set", "solver.langevin.particles=500"]


def test_run_prints_plain_progress_lines_to_a_pipe_and_none_when_quiet(tmp_path):
    loud = wgf("run", "heat_1d", *LANGEVIN_SMALL, "--out", str(tmp_path))
    assert loud.returncode == 0, loud.stderr
    steps = [line for line in loud.stdout.splitlines() if line.startswith("[langevin] step")]
    assert steps[0].startswith("[langevin] step  1/20 [") and "t = 0.005/0.1" in steps[0]
    assert steps[-1].startswith("[langevin] step 20/20 [") and "< 0:00]" in steps[-1]
    assert "\r" not in loud.stdout
    quiet = wgf("run", "heat_1d", *LANGEVIN_SMALL, "--out", str(tmp_path), "--quiet")
    assert quiet.returncode == 0, quiet.stderr
    assert "[langevin]" not in quiet.stdout
    assert "case heat_1d (1-D)" in quiet.stdout and "langevin           20" in quiet.stdout


def _run_in_terminal(args: list[str]) -> str:
    """Run ``wgf`` with its stdout on a pseudo-terminal; return what it wrote."""
    master, slave = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "wgf", *args], stdout=slave, stderr=subprocess.PIPE, env=env
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    return b"".join(chunks).decode()


def test_run_on_a_terminal_draws_a_bar_with_step_time_and_eta(tmp_path):
    out = _run_in_terminal(["run", "heat_1d", *LANGEVIN_SMALL, "--out", str(tmp_path)])
    bar_line, table = out.split("\n", 1)  # the pty turns \n into \r\n
    frames = [f for f in bar_line.split("\r") if f.strip()]
    assert frames[0].startswith("[langevin]   5% |█") and "step  1/20 [" in frames[0]
    assert frames[-1].startswith("[langevin] 100% |" + "█" * progress.BAR_WIDTH)
    assert "step 20/20 [" in frames[-1] and "t = 0.1/0.1" in frames[-1]
    assert "case heat_1d (1-D)" in table


def test_converge_and_sweep_say_when_each_level_and_point_starts_and_ends(tmp_path):
    conv = wgf(
        "converge", "heat_1d", "--refine", "tau", "--levels", "2",
        "--set", "time.t_end=0.02", "--out", str(tmp_path / "conv"),
    )  # fmt: skip
    assert conv.returncode == 0, conv.stderr
    lines = [line for line in conv.stdout.splitlines() if line.startswith("[converge]")]
    assert len(lines) == 4
    assert lines[0] == "[converge] level 1/2: tau=0.005: running"
    assert lines[1].startswith("[converge] level 1/2: tau=0.005: done in ")
    assert lines[3].startswith("[converge] level 2/2: tau=0.0025: done in ")
    swp = wgf(
        "sweep", "heat_1d", *LANGEVIN_SMALL[:2], "--grid", "time.tau=0.01,0.02",
        "--set", "solver.langevin.particles=200", "--out", str(tmp_path / "swp"), "--quiet",
    )  # fmt: skip
    assert swp.returncode == 0, swp.stderr
    assert "[sweep]" not in swp.stdout and "[langevin]" not in swp.stdout
    assert "done" in swp.stdout.splitlines()[-3]  # the table is still printed
    again = wgf(
        "sweep", "heat_1d", *LANGEVIN_SMALL[:2], "--grid", "time.tau=0.01,0.02,0.05",
        "--set", "solver.langevin.particles=200", "--out", str(tmp_path / "swp"),
    )  # fmt: skip
    lines = [line for line in again.stdout.splitlines() if line.startswith("[sweep]")]
    assert lines[:2] == [
        "[sweep] 1/3 p000_time.tau=0.01: done already, skipped",
        "[sweep] 2/3 p001_time.tau=0.02: done already, skipped",
    ]
    assert lines[2] == "[sweep] 3/3 p002_time.tau=0.05: running"
    assert lines[3].startswith("[sweep] 3/3 p002_time.tau=0.05: done in ")


# -- --solver all and costly solvers ------------------------------------------------------
def test_solver_all_skips_blob_in_3d_with_the_reason_unless_named(tmp_path, capsys):
    from mpi4py import MPI

    from wgf.cases import load_case
    from wgf.cli import selected_solvers
    from wgf.solvers import solver_tables

    path = tmp_path / "heat_3d.toml"
    path.write_text(HEAT_3D)
    case = load_case(str(path), [], solver_tables())
    names = [i.name for i in selected_solvers(["all"], case, MPI.COMM_WORLD)]
    assert names == ["fem-implicit", "fem-jko", "langevin"]
    said = capsys.readouterr().out.splitlines()
    assert said[0].startswith("skipping blob: in 3-D its kernel sums cost minutes and GBs")
    assert said[0].endswith("name it to run it: --solver blob")
    both = selected_solvers(["all", "blob"], case, MPI.COMM_WORLD)
    assert [i.name for i in both] == ["fem-implicit", "fem-jko", "blob", "langevin"]
    assert [i.name for i in selected_solvers(["blob"], case, MPI.COMM_WORLD)] == ["blob"]
    # In 2-D blob is as cheap as the others: `all` keeps it.
    heat_2d = load_case("heat_2d", [], solver_tables())
    assert "blob" in [i.name for i in selected_solvers(["all"], heat_2d, MPI.COMM_WORLD)]


def test_naming_blob_runs_it_in_3d(tmp_path):
    path = tmp_path / "heat_3d.toml"
    path.write_text(HEAT_3D)
    sets = ["--set", "solver.blob.particles=64"]
    proc = wgf("run", str(path), "--solver", "blob", *sets, "--out", str(tmp_path), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "skipping" not in proc.stdout
    assert (tmp_path / "heat_3d_blob.h5").is_file()
    assert "\nblob                1    0.005" in proc.stdout  # its row of the table
