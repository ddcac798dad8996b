"""Blob velocity on 2 ranks against 1 rank at N ≈ 10⁵, measured in one run.

    .venv/bin/mpiexec -n 2 .venv/bin/python -m mpi4py benchmarks/particles_parallel.py

Times one blob velocity evaluation (mollified density, kernel sums, allgathers) on
COMM_WORLD and, in the same run, on COMM_SELF of rank 0 alone, for the porous_medium_2d
initial data with about 10⁵ particles; prints both and their ratio.  Twice: with the
Verlet list reused (most evaluations of a run) and with a fresh list (each rank builds
the list of its block first).
"""

from __future__ import annotations

import time

import numpy as np
from mpi4py import MPI

from cases import load_case
from solvers import solver_tables
from solvers.particles.blob import Solver
from solvers.particles.kernels import neighbour_list

N = 100_000
REPEAT = 3


def seconds_per_velocity(comm: MPI.Comm, fresh: bool) -> tuple[float, int]:
    """Mean seconds of one velocity evaluation; ``fresh``: rebuild the list every time."""
    case = load_case("porous_medium_2d", [f"solver.blob.particles={N}"], solver_tables())
    solver = Solver(case, comm, case.solver_params("blob"))
    solver.velocity(solver.x)  # warm-up
    comm.Barrier()
    t0 = time.perf_counter()
    for _ in range(REPEAT):
        if fresh:  # rebuild as a run does: reuse the old list's workspace
            lo, hi = solver.my_block()
            solver._list = neighbour_list(solver.x, solver.eps, lo, hi, solver._list.workspace)
        solver.velocity(solver.x)
    comm.Barrier()
    return (time.perf_counter() - t0) / REPEAT, len(solver.w)


def main() -> None:
    world = MPI.COMM_WORLD
    for fresh in (False, True):
        parallel, n = seconds_per_velocity(world, fresh)
        serial = np.nan
        if world.rank == 0:
            serial, _ = seconds_per_velocity(MPI.COMM_SELF, fresh)
            what = "fresh list" if fresh else "Verlet list reused"
            print(f"blob velocity, porous_medium_2d, {n} particles, {what}")
            print(f"1 rank:  {serial:.3f} s per evaluation")
            print(f"{world.size} ranks: {parallel:.3f} s per evaluation")
            print(f"speed-up: {serial / parallel:.2f}")
        world.Barrier()


if __name__ == "__main__":
    main()
