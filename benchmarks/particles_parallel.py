"""Blob velocity on 2 ranks against 1 rank at N ≈ 10⁵, measured in one run.

    .venv/bin/mpiexec -n 2 .venv/bin/python -m mpi4py benchmarks/particles_parallel.py

Times one blob velocity evaluation (mollified density, kernel sums, allgathers) on
COMM_WORLD and, in the same run, on COMM_SELF of rank 0 alone, for the porous_medium_2d
initial data with about 10⁵ particles; prints both and their ratio, in wall time and in
CPU time of the busiest rank (the latter tells the split of the work apart from other
jobs on the machine: with another process running, two ranks cannot get two cores).
Twice: with the Verlet list reused (most evaluations of a run) and with a fresh list
(each rank builds the list of its block first).  Rank 1 sleeps, rather than spins in a
barrier, while rank 0 times the 1-rank run.
"""

from __future__ import annotations

import time

from mpi4py import MPI
from timing import idle_barrier

from wgf.cases import load_case
from wgf.solvers import solver_tables
from wgf.solvers.particles.blob import Solver

N = 100_000
REPEAT = 3


def seconds_per_velocity(comm: MPI.Comm, fresh: bool) -> tuple[float, float, int]:
    """Mean wall and CPU seconds (the busiest rank's) of one velocity evaluation.

    ``fresh``: rebuild the list before every evaluation.
    """
    case = load_case("porous_medium_2d", [f"solver.blob.particles={N}"], solver_tables())
    solver = Solver(case, comm, case.solver_params("blob"))
    solver.velocity(solver.x)  # warm-up
    comm.Barrier()
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(REPEAT):
        if fresh:  # rebuild as a run does: reuse the old list's workspace
            solver.rebuild_neighbour_list(solver.x)
        solver.velocity(solver.x)
    cpu = comm.allreduce(time.process_time() - c0, op=MPI.MAX)
    comm.Barrier()
    return (time.perf_counter() - t0) / REPEAT, cpu / REPEAT, len(solver.w)


def main() -> None:
    world = MPI.COMM_WORLD
    for fresh in (False, True):
        parallel, parallel_cpu, n = seconds_per_velocity(world, fresh)
        if world.rank == 0:
            serial, serial_cpu, _ = seconds_per_velocity(MPI.COMM_SELF, fresh)
            what = "fresh list" if fresh else "Verlet list reused"
            print(f"blob velocity, porous_medium_2d, {n} particles, {what}")
            print(f"1 rank:  {serial:.3f} s per evaluation (CPU {serial_cpu:.3f} s)")
            print(
                f"{world.size} ranks: {parallel:.3f} s per evaluation "
                f"(CPU {parallel_cpu:.3f} s, busiest rank)"
            )
            print(
                f"speed-up: {serial / parallel:.2f} (wall), "
                f"{serial_cpu / parallel_cpu:.2f} (CPU time, insensitive to other load)"
            )
        idle_barrier(world)


if __name__ == "__main__":
    main()
