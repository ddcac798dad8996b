"""Runs never lose data: the output lock, the ``--out`` check and Ctrl-C (issue 12)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest

from tests.conftest import MPIEXEC, ROOT, assert_user_error, wgf

#: heat_1d at τ = 5e-5: 2000 steps of about 4 ms, a run of several seconds.
LONG = ["heat_1d", "--solver", "fem-implicit", "--set", "time.tau=5e-5"]
STEPS = 2000


def _start(out: Path, ranks: int = 0) -> subprocess.Popen:
    """``wgf run`` of :data:`LONG` in the background (under ``mpiexec -n ranks`` if > 0)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "wgf", "run", *LONG, "--out", str(out), "--quiet"]
    if ranks:
        cmd = [str(MPIEXEC), "-n", str(ranks), sys.executable, "-m", "mpi4py", *cmd[1:]]
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _steps_on_file(path: Path) -> int:
    """Completed levels in a results file being written (0 while it cannot be read)."""
    try:
        with h5py.File(path, "r", locking=False) as f:
            return f["time"].shape[0]
    except (OSError, KeyError):
        return 0


def _wait_for_steps(path: Path, proc: subprocess.Popen, count: int) -> None:
    """Wait until ``path`` holds at least ``count`` levels (the run still going)."""
    deadline = time.monotonic() + 120
    while _steps_on_file(path) < count:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run wrote no steps"
        time.sleep(0.05)


def _series_lengths(path: Path) -> tuple[set[int], set[int]]:
    """The distinct lengths of the step series and of the snapshot series."""
    steps, snaps = set(), set()
    with h5py.File(path, "r") as f:
        steps.add(f["time"].shape[0])
        steps.update(ds.shape[0] for ds in f["diagnostics"].values())
        snaps.add(f["snapshots/time"].shape[0])
        snaps.add(f["snapshots/density"].shape[0])
        snaps.update(ds.shape[0] for ds in f["snapshots/state"].values())
    return steps, snaps


def test_second_run_on_same_out_is_refused_and_first_is_intact(tmp_path):
    """B on A's --out: exit 2, one line with A's pid; A ends with exit 0 and every step."""
    out = tmp_path / "out"
    path = out / "heat_1d_fem-implicit.h5"
    first = _start(out)
    try:
        _wait_for_steps(path, first, 5)
        second = wgf("run", *LONG, "--out", str(out))
        assert_user_error(second, f"is being written by another run (pid {first.pid})")
        assert first.poll() is None, "the first run ended before the second was refused"
        _, stderr = first.communicate(timeout=300)
    finally:
        first.kill()
    assert first.returncode == 0, stderr
    steps, snaps = _series_lengths(path)
    assert steps == {STEPS + 1} and snaps == {6}, (steps, snaps)
    # The lock is released with the run: a third run on the same --out may now start.
    third = wgf("run", "heat_1d", "--solver", "fem-implicit", "--out", str(out), "--quiet")
    assert third.returncode == 0, third.stderr


@pytest.mark.parametrize("ranks", [0, 2])
def test_unwritable_out_is_one_line_before_any_build(ranks, tmp_path):
    """An --out below a regular file: exit 2 and one line, serial and on 2 ranks."""
    blocker = tmp_path / "somefile.txt"
    blocker.write_text("not a directory\n")
    proc = wgf("run", *LONG, "--out", str(blocker / "sub"), ranks=ranks)
    assert_user_error(proc, f"--out: '{blocker / 'sub'}' is not a writable directory")
    assert proc.stdout == ""  # nothing was built or run (no progress, no table)


@pytest.mark.parametrize("ranks", [0, 2])
def test_ctrl_c_stops_cleanly_and_resume_finishes(ranks, tmp_path):
    """SIGINT mid-run: exit 130, one line, equal series; --resume runs to T.

    Under mpiexec the signal goes to the launcher, which forwards it to both ranks; they
    must stop after the same step (else one would hang in the other's next collective).
    """
    out = tmp_path / "out"
    path = out / "heat_1d_fem-implicit.h5"
    proc = _start(out, ranks)
    try:
        _wait_for_steps(path, proc, 20)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stdout + stderr, stderr
    assert lines[0].startswith("wgf: fem-implicit: interrupted at step "), lines[0]
    assert lines[0].endswith("`--resume` continues"), lines[0]
    stopped = int(lines[0].split("at step ")[1].split()[0])
    steps, snaps = _series_lengths(path)
    assert steps == {stopped + 1}, (steps, stopped)  # levels 0..k, every series alike
    assert 20 <= stopped < STEPS and len(snaps) == 1, (stopped, snaps)
    with h5py.File(path, "r") as f:
        assert int(f["checkpoint"].attrs["step"]) == stopped
    resumed = wgf("run", *LONG, "--out", str(out), "--resume", "--quiet", ranks=ranks)
    assert resumed.returncode == 0, resumed.stderr
    steps, snaps = _series_lengths(path)
    assert steps == {STEPS + 1} and snaps == {6}, (steps, snaps)
