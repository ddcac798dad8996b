"""Blob velocity on 2 ranks against 1 rank at N ≈ 10⁵, measured in one run.

    .venv/bin/mpiexec -n 2 .venv/bin/python -m mpi4py benchmarks/particles_parallel.py

Times one blob velocity evaluation (neighbour pairs, mollified density, kernel sums,
allgather) on COMM_WORLD and, in the same run, on COMM_SELF of rank 0 alone, for the
porous_medium_2d initial data with about 10⁵ particles; prints both and their ratio.
"""

from __future__ import annotations

import time

import numpy as np
from mpi4py import MPI

from cases import load_case
from solvers import solver_tables
from solvers.particles.blob import Solver

N = 100_000
REPEAT = 3


def seconds_per_velocity(comm: MPI.Comm) -> tuple[float, int]:
    case = load_case("porous_medium_2d", [f"solver.blob.particles={N}"], solver_tables())
    solver = Solver(case, comm, case.solver_params("blob"))
    solver.velocity(solver.x)  # warm-up
    comm.Barrier()
    t0 = time.perf_counter()
    for _ in range(REPEAT):
        solver.velocity(solver.x)
    comm.Barrier()
    return (time.perf_counter() - t0) / REPEAT, len(solver.w)


def main() -> None:
    world = MPI.COMM_WORLD
    parallel, n = seconds_per_velocity(world)
    serial = np.nan
    if world.rank == 0:
        serial, _ = seconds_per_velocity(MPI.COMM_SELF)
        print(f"blob velocity, porous_medium_2d, {n} particles")
        print(f"1 rank:  {serial:.3f} s per evaluation")
        print(f"{world.size} ranks: {parallel:.3f} s per evaluation")
        print(f"speed-up: {serial / parallel:.2f}")


if __name__ == "__main__":
    main()
