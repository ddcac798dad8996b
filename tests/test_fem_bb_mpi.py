"""Run under ``mpiexec -n 2 python -m mpi4py -m pytest -m mpi``: fem-bb on 2 ranks and on
1 rank (COMM_SELF on rank 0) gives the same W2 and the same iteration count."""

import dolfinx_solver  # noqa: F401

import numpy as np
import pytest
from mpi4py import MPI

from tests.conftest import read
from wgf.cases import load_case
from wgf.solvers import get_solver, solver_tables
from wgf.transport import run_transport

pytestmark = pytest.mark.mpi

SETS = ["domain.cells=[8,6]", "solver.fem-bb.time_cells=3"]


def _run(comm, out):
    case = load_case("ot_translated_gaussian_2d", SETS, solver_tables())
    solver = get_solver("fem-bb").load()(case, comm, case.solver_params("fem-bb"))
    return run_transport(solver, case, out)


def test_one_and_two_ranks_agree(shared_tmp):
    comm = MPI.COMM_WORLD
    assert comm.size == 2, "run this file under mpiexec -n 2"
    world = _run(comm, shared_tmp / "world")
    if comm.rank == 0:
        single = _run(MPI.COMM_SELF, shared_tmp / "self")
        a, b = read(world.path), read(single.path)
        assert a["attrs"]["mpi_size"] == 2 and b["attrs"]["mpi_size"] == 1
        assert world.steps == single.steps
        assert abs(a["ot/w2"] - b["ot/w2"]) < 1e-8
        np.testing.assert_allclose(a["diagnostics/residual"], b["diagnostics/residual"], rtol=1e-6)
        np.testing.assert_allclose(a["snapshots/density"], b["snapshots/density"], atol=1e-8)
        np.testing.assert_allclose(a["ot/slab_mass"], b["ot/slab_mass"], atol=1e-10)
        print(
            f"\nW2 1 rank {b['ot/w2']:.15f}, 2 ranks {a['ot/w2']:.15f}, "
            f"difference {abs(a['ot/w2'] - b['ot/w2']):.3e}, iterations {world.steps}"
        )
    comm.Barrier()
