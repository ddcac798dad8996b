"""Shared helpers: run a case in-process, or the ``wgf`` command in a subprocess."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

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

    from wgf.cases import load_case
    from wgf.run import run_flow
    from wgf.solvers import get_solver, solver_tables

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


PVBATCH = shutil.which("pvbatch")

#: Reads an XDMF file with Xdmf3ReaderS at its last time step and prints what it found.
PVBATCH_READER = """
import sys
from paraview.simple import Xdmf3ReaderS, UpdatePipeline
r = Xdmf3ReaderS(FileName=[sys.argv[1]])
r.UpdatePipelineInformation()
times = list(r.TimestepValues)
UpdatePipeline(time=times[-1], proxy=r)
info = r.GetDataInformation()
print("TIMES", len(times), times[-1])
print("POINTS", info.GetNumberOfPoints())
print("CELLS", info.GetNumberOfCells())
print("ARRAYS", ",".join(r.PointData.keys()))
print("BOUNDS", *info.GetBounds())
for name in r.PointData.keys():
    print("RANGE_" + name, *r.PointData[name].GetRange())
"""


def pvbatch_read(xdmf: Path, workdir: Path) -> dict[str, str]:
    """Open ``xdmf`` in ``pvbatch`` (Xdmf3ReaderS); return its printed facts by key."""
    script = workdir / "pvbatch_read.py"
    script.write_text(PVBATCH_READER)
    proc = subprocess.run(
        [PVBATCH, str(script), str(xdmf)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    return dict(line.split(" ", 1) for line in proc.stdout.splitlines() if " " in line)


def benchmark(name: str) -> ModuleType:
    """The script ``benchmarks/<name>.py`` as a module: a test measures what its figure does."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    if str(path.parent) not in sys.path:  # the scripts import their siblings (timing)
        sys.path.append(str(path.parent))
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_same_on_1_and_2_ranks(
    case: str,
    solver: str,
    sets: list[str],
    shared_tmp: Path,
    keys: list[str],
    atol: float,
    counts: list[str] = (),
    counts_rtol: float = 0.0,
) -> None:
    """Run on COMM_WORLD (2 ranks) and, in the same run, on rank 0 alone; compare ``keys``.

    ``counts`` (iteration diagnostics) are compared by their sums, to ``counts_rtol``: for
    solvers whose iteration path amplifies round-off, where equal physics to ``atol`` is
    what 1 and 2 ranks can promise, and equal work only in total.
    """
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    assert comm.size == 2, "run this under mpiexec -n 2"
    world = run_case(case, sets, shared_tmp / "world", comm=comm, solver=solver)
    failure = None
    if comm.rank == 0:
        try:
            single = run_case(case, sets, shared_tmp / "self", comm=MPI.COMM_SELF, solver=solver)
            a, b = read(world.path), read(single.path)
            assert a["attrs"]["mpi_size"] == 2 and b["attrs"]["mpi_size"] == 1
            for key in keys:
                np.testing.assert_allclose(a[key], b[key], rtol=0, atol=atol, err_msg=key)
            for key in counts:
                total_a, total_b = a[key].sum(), b[key].sum()
                assert abs(total_a - total_b) <= counts_rtol * total_b, (key, a[key], b[key])
        except Exception as err:  # rank 1 must fail too, or it waits in the next test forever
            failure = f"{type(err).__name__}: {err}"
    failure = comm.bcast(failure, root=0)
    assert failure is None, failure


def jko_newton_matrix_error(solver, tau: float) -> float:
    """max |-J v - (R(ϕ + hv) - R(ϕ - hv))/2h| / max |that difference|, over the ranks.

    ``solver`` is a fem-jko solver after a step; v is random, the same on a vertex's
    owner and its ghosts; h = 10⁻⁸ max |ϕ| (the truncation error falls as h² down to
    there: 5·10⁻⁴ at 10⁻⁶, 5·10⁻⁸ at 10⁻⁸ on porous_medium_2d, 12²).
    """
    from mpi4py import MPI

    comm, n = solver.comm, solver.n_owned
    phi = solver.phi.array.copy()
    solver.work.array[:] = 0.0
    solver.work.array[:n] = np.random.default_rng(3 + comm.rank).standard_normal(n)
    solver.work.scatter_forward()
    direction = solver.work.array.copy()
    h = 1e-8 * comm.allreduce(float(np.abs(phi).max()), op=MPI.MAX)

    def residual(x: np.ndarray) -> np.ndarray:
        solver.phi.array[:] = x
        solver._residual_norm(tau)
        return solver.r.array[:n].copy()

    central = (residual(phi + h * direction) - residual(phi - h * direction)) / (2.0 * h)
    residual(phi)
    J = solver._assemble_jacobian(tau)
    v, Jv = J.createVecs()
    v.array[:] = direction[:n]
    J.mult(v, Jv)
    error = comm.allreduce(float(np.abs(-Jv.array - central).max()), op=MPI.MAX)
    return error / comm.allreduce(float(np.abs(central).max()), op=MPI.MAX)


def assert_user_error(proc: subprocess.CompletedProcess, message: str) -> None:
    """The contract for bad input: exit 2, one ``wgf: error:`` line naming it, no traceback."""
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("wgf: error:") and message in lines[0], lines[0]
    assert "Traceback" not in proc.stdout + proc.stderr
