"""Run under ``mpiexec -n 2 python -m mpi4py -m pytest -m mpi``: ``wgf sample`` (the API
behind it, forward run included) gives the same samples on 2 ranks as on 1 rank."""

import h5py
import numpy as np
import pytest
from mpi4py import MPI

from tests.conftest import ROOT
from wgf.cases import load_case
from wgf.sample import sample, write
from wgf.solvers import solver_tables

pytestmark = pytest.mark.mpi

CASES = ROOT / "benchmarks" / "cases"


@pytest.mark.parametrize(
    ("score", "case", "sets", "method", "atol"),
    [
        # Every rank integrates all samples from the same noise stream: bit for bit.
        ("exact", "gaussian_mixture_2d", [], "RK45", 0.0),
        # The forward blob run agrees to 1e-12 on 1 and 2 ranks (test_particles_mpi), and
        # the kernel score of its particles is computed on every rank alike.
        (
            "blob",
            "gaussian_mixture_2d",
            ["solver.blob.particles=400", "time.t_end=1.0", "output.snapshots=6"],
            "RK45",
            1e-10,
        ),
        # The forward FE solves differ at round-off between partitions (1e-9 in the density,
        # test_fem_implicit_mpi); fixed RK4 steps keep an adaptive step choice from
        # amplifying that.
        (
            "fem",
            "gaussian_mixture_1d",
            ["domain.cells=[200]", "time.tau=0.02", "time.t_end=1.0", "output.snapshots=11"],
            "rk4",
            1e-8,
        ),
    ],
)
def test_samples_agree_on_one_and_two_ranks(score, case, sets, method, atol, shared_tmp):
    comm = MPI.COMM_WORLD
    assert comm.size == 2, "run this under mpiexec -n 2"
    problem = load_case(CASES / f"{case}.toml", sets, solver_tables())
    options = {"samples": 300, "snapshots": 3, "method": method, "steps": 100}
    out = shared_tmp / score
    world = sample(problem, score, comm=comm, out=out / "world", **options)
    world_path = write(world, problem, out / "world", comm)
    # Both ranks hold the same samples.
    other = comm.sendrecv(world.trajectories.positions, dest=1 - comm.rank, source=1 - comm.rank)
    np.testing.assert_array_equal(world.trajectories.positions, other)
    if comm.rank == 0:
        single = sample(problem, score, comm=MPI.COMM_SELF, out=out / "self", **options)
        single_path = write(single, problem, out / "self", MPI.COMM_SELF)
        with h5py.File(world_path, "r") as a, h5py.File(single_path, "r") as b:
            assert a.attrs["mpi_size"] == 2 and b.attrs["mpi_size"] == 1
            x2, x1 = a["sampling/positions"][...], b["sampling/positions"][...]
        assert x2.shape == (3, 300, problem.dim)
        np.testing.assert_allclose(x2, x1, rtol=0.0, atol=atol)
        # The samples moved (a test of identical start points alone could not fail).
        assert np.abs(x1[-1] - x1[0]).max() > 0.5
    comm.Barrier()
