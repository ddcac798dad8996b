"""Shared helpers: run a case in-process, or the ``wgf`` command in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
MPIEXEC = VENV_BIN / "mpiexec"


def run_case(
    source: str,
    sets: list[str],
    out: Path,
    comm=None,
    solver: str = "fem-implicit",
    resume: bool = False,
):
    """Run one solver on a case in this process; return the RunSummary."""
    from mpi4py import MPI

    from cases import load_case
    from solvers import get_solver, solver_tables
    from wgf.run import run_flow

    comm = comm or MPI.COMM_WORLD
    case = load_case(source, sets, solver_tables())
    info = get_solver(solver)
    return run_flow(info.load()(case, comm, case.solver_params(solver)), case, out, resume)


def read(path: Path) -> dict:
    """All datasets of a results file as arrays."""
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(
            lambda name, obj: (
                out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None
            )
        )
        out["attrs"] = dict(f.attrs)
    return out


def wgf(*args: str, ranks: int = 0, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``wgf`` in a subprocess (under ``mpiexec -n ranks`` when ranks > 0)."""
    cmd = [sys.executable, "-m", "wgf", *args]
    if ranks:
        cmd = [str(MPIEXEC), "-n", str(ranks), sys.executable, "-m", "mpi4py", "-m", "wgf", *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture
def shared_tmp(tmp_path_factory) -> Path:
    """A temporary directory that every MPI rank agrees on (made by rank 0)."""
    import tempfile

    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    path = tempfile.mkdtemp(prefix="wgf-mpi-") if comm.rank == 0 else None
    return Path(comm.bcast(path, root=0))


def pytest_collection_modifyitems(config, items) -> None:
    """Skip the ``mpi`` tests in a serial run: they compare 1 with 2 ranks."""
    from mpi4py import MPI

    if MPI.COMM_WORLD.size > 1:
        return
    skip = pytest.mark.skip(reason="needs mpiexec -n 2 (make test-mpi)")
    for item in items:
        if "mpi" in item.keywords:
            item.add_marker(skip)
