"""Interrupted runs keep their completed steps; --resume continues to the same answer."""

import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
from mpi4py import MPI

from tests.conftest import ROOT, read, run_case
from wgf.run import run_flow
from wgf.solvers.base import FlowSolver


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


class Killed(Exception):
    """Stands in for a kill between a snapshot's series and the step's checkpoint."""


class Decay(FlowSolver):
    """A solver-like object: x' = -x, with a per-snapshot array in a group of its own."""

    name = "decay"

    def __init__(self, case, comm, kill_at_snapshot=None):
        super().__init__(case, comm, {})
        self.x, self.kill_at, self.snapshots = np.array([1.0, 2.0, 3.0]), kill_at_snapshot, 0

    def step(self, tau):
        self.x = self.x * np.exp(-tau)
        return 1

    def diagnostics(self, t):
        return {"energy": float(self.x.sum()), "mass": 1.0}

    def bounding_box(self):
        return np.array([-3.0]), np.array([3.0])

    def prepare_sampling(self, points):
        self.n_samples = len(points)

    def sample(self):
        return np.full(self.n_samples, self.x[0])

    def state(self):
        return {"x": self.x.copy()}

    def set_state(self, state):
        self.x = np.array(state["x"], dtype=float)

    def snapshot_arrays(self):
        return {"extra/foo": 10.0 * self.x}

    def write_fields(self, t):
        if self.snapshots == self.kill_at:
            raise Killed(t)
        self.snapshots += 1


def _decay_case():
    from wgf.cases import load_case
    from wgf.solvers import solver_tables

    return load_case("heat_1d", {"time.tau": 0.005, "output.snapshots": 6}, solver_tables())


def _interrupted(out):
    """A run killed at snapshot 3 (t = 0.06, step 12) after the snapshot's series."""
    case = _decay_case()
    with pytest.raises(Killed):
        run_flow(Decay(case, MPI.COMM_SELF, kill_at_snapshot=3), case, out)
    path = out / "heat_1d_decay.h5"
    with h5py.File(path, "r") as f:  # the state the kill left: one level past the checkpoint
        assert f["checkpoint"].attrs["step"] == 11 and f["time"].shape == (13,)
        assert f["snapshots/time"].shape == (4,) and f["extra/foo"].shape == (4, 3)
    return path


def _lengths(path):
    """The length of every dataset by its series attribute."""
    out = {"step": {}, "snapshot": {}}
    with h5py.File(path, "r") as f:
        f.visititems(
            lambda name, obj: (
                out[obj.attrs["series"]].__setitem__(name, obj.shape[0])
                if isinstance(obj, h5py.Dataset) and "series" in obj.attrs
                else None
            )
        )
    return out


def test_resume_cuts_every_series_back_wherever_it_sits(tmp_path):
    case = _decay_case()
    straight = run_flow(Decay(case, MPI.COMM_SELF), case, tmp_path / "a").path
    path = _interrupted(tmp_path / "b")
    run_flow(Decay(case, MPI.COMM_SELF), case, tmp_path / "b", resume=True)
    lengths = _lengths(path)
    assert set(lengths["step"].values()) == {21}, lengths["step"]
    assert set(lengths["snapshot"].values()) == {6}, lengths["snapshot"]
    assert {"time", "diagnostics/energy", "snapshots/density", "extra/foo"} <= {
        *lengths["step"],
        *lengths["snapshot"],
    }
    a, b = read(straight), read(path)
    for key in ("time", "diagnostics/energy", "snapshots/time", "snapshots/density", "extra/foo"):
        np.testing.assert_allclose(b[key], a[key], rtol=1e-12, atol=1e-15, err_msg=key)
    np.testing.assert_allclose(b["extra/foo"][:, 0], 10.0 * np.exp(-a["snapshots/time"]))


def test_resume_reads_files_without_series_attributes(tmp_path):
    """Files from before the attribute: /time, diagnostics and snapshots/ are cut as before."""
    case = _decay_case()
    straight = read(run_flow(Decay(case, MPI.COMM_SELF), case, tmp_path / "a").path)
    path = _interrupted(tmp_path / "b")
    with h5py.File(path, "a") as f:
        del f["checkpoint"].attrs["snapshots"]
        for name in _lengths(path)["step"] | _lengths(path)["snapshot"]:
            del f[name].attrs["series"]
    assert _lengths(path) == {"step": {}, "snapshot": {}}
    run_flow(Decay(case, MPI.COMM_SELF), case, tmp_path / "b", resume=True)
    b = read(path)
    for key in ("time", "diagnostics/energy", "snapshots/time", "snapshots/density"):
        np.testing.assert_allclose(b[key], straight[key], rtol=1e-12, atol=1e-15, err_msg=key)
