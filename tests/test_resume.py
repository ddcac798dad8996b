"""Interrupted runs keep their completed steps; --resume continues to the same answer."""

import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from tests.conftest import ROOT, read, run_case


def _series(path):
    r = read(path)
    return r["time"], {
        k: v for k, v in r.items() if k.startswith("diagnostics/") and k != "diagnostics/wall_time"
    }


def test_resume_continues_to_the_straight_answer(tmp_path):
    straight = run_case("porous_medium_2d", [], tmp_path / "a")
    run_case("porous_medium_2d", ["time.t_end=0.05"], tmp_path / "b")
    resumed = run_case("porous_medium_2d", [], tmp_path / "b", resume=True)
    t1, d1 = _series(straight.path)
    t2, d2 = _series(resumed.path)
    np.testing.assert_allclose(t2, t1, rtol=0, atol=1e-14)
    for key in d1:
        np.testing.assert_allclose(d2[key], d1[key], rtol=1e-12, atol=1e-14, err_msg=key)
    assert read(resumed.path)["diagnostics/wall_time"][-1] > 0.0


def test_sigkill_leaves_a_readable_file_and_resume_finishes(tmp_path):
    args = [
        "porous_medium_2d",
        "--solver",
        "fem-implicit",
        "--set",
        "domain.cells=[96, 96]",
        "--set",
        "time.tau=0.001",
        "--out",
        str(tmp_path),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "wgf", "run", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    # Progress lines come once a second: the second one means several steps are done.
    seen = 0
    deadline = time.monotonic() + 120
    while seen < 2 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        seen += line.startswith("[fem-implicit] step")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert seen == 2, "the run ended before it could be interrupted"
    path = tmp_path / "porous_medium_2d_fem-implicit.h5"
    with h5py.File(path, "r") as f:  # readable, with the completed steps
        done = f["time"].shape[0]
        assert 1 < done < 101
        assert f["checkpoint"].attrs["step"] >= done - 2
    resumed = subprocess.run(
        [sys.executable, "-m", "wgf", "run", *args, "--resume"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr
    t, d = _series(path)
    assert t[-1] == pytest.approx(0.1) and len(t) == 101
    np.testing.assert_allclose(np.diff(t), 0.001, rtol=1e-9)
    assert np.all(np.diff(d["diagnostics/energy"]) <= 1e-12)
    assert abs(d["diagnostics/mass"][-1] - 1.0) < 1e-10
    # The ParaView file is rebuilt on resume: every snapshot, before and after the kill.
    snaps = read(path)["snapshots/time"]
    np.testing.assert_allclose(snaps, np.linspace(0.0, 0.1, 6), atol=1e-12)
    with h5py.File(tmp_path / "porous_medium_2d_fem-implicit_fields.h5", "r") as f:
        assert len(f["Function/density"]) == len(snaps)
