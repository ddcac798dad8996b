"""Weak and strong scaling from 1 to 2 ranks, fem-implicit, fem-jko and blob, in one run.

    .venv/bin/python benchmarks/weak_scaling.py [--case porous_medium_2d] [--cells 128]
        [--particles 5000] [--steps 3] [--solvers fem-implicit,fem-jko,blob]
    .venv/bin/mpiexec -n 2 .venv/bin/python -m mpi4py benchmarks/weak_scaling.py [same options]

Weak scaling keeps the work per rank fixed: one rank on the small problem (``cells``² FE
cells, ``particles`` blob particles) against two ranks on the doubled one (round(√2·cells)
per axis, so the cells stay square and the domain unchanged; twice the particles).  Strong
scaling keeps the problem fixed: one rank against two on the doubled problem.  Under
``mpiexec -n 2`` rank 0 first runs both sizes alone on COMM_SELF (rank 1 sleeps in
``idle_barrier``, so it does not take a core by busy-polling), then both ranks run the
doubled problem on COMM_WORLD; started without mpiexec the script prints the 1-rank rows.
Made for ``-n 2``: with more ranks the last row is still the doubled problem.

Each measurement builds the solver, takes ``--warmup`` untimed steps (linear-solver set-up,
and the first JKO step has no ϕ history to extrapolate from), then times ``--steps``
steps.  Printed: wall and CPU seconds per step (CPU of the busiest rank: the split of
work, less sensitive to other jobs on the machine than wall time), inner iterations per
step (and fem-jko's Newton iterations per step on the coarser meshes of its nested
iteration, "coarse", which the per-iteration figure leaves out), the weak-scaling
efficiency t₁(n)/t₂(2n) (1 is perfect), also per inner iteration (the doubled problem
may take more iterations per step), and the strong-scaling speed-up t₁(2n)/t₂(2n) (2 is
perfect), also in CPU time.  ``--ceiling`` also runs the 1-rank
doubled problem on every rank at once (no communication) and prints p·t₁(2n)/t(copies),
the speed-up a perfect split would reach on this machine (cores that share memory
bandwidth and caches run slower together than alone).  The load average is printed before and after:
other processes on the cores make the 2-rank figures worse.

BLAS/OpenMP get one thread per process (set here before NumPy loads, as ``wgf`` does under
mpiexec), so the 1-rank runs do not use the second core through threads.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import dolfinx_solver  # noqa: E402, F401 - after the thread settings, before petsc4py

import argparse  # noqa: E402
import logging  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402

from mpi4py import MPI  # noqa: E402

# PETSc initialises collectively on COMM_WORLD when petsc4py.PETSc is first imported: left
# to the first FE solver, built on rank 0's COMM_SELF, it would wait forever for rank 1.
from petsc4py import PETSc  # noqa: E402, F401
from timing import idle_barrier  # noqa: E402

from wgf.cases import load_case  # noqa: E402
from wgf.progress import set_quiet  # noqa: E402
from wgf.run import build_solver  # noqa: E402
from wgf.solvers import solver_tables  # noqa: E402

#: Solvers measured, in order.
SOLVERS = ("fem-implicit", "fem-jko", "blob")


@dataclass
class Timing:
    """One measurement: seconds per step (wall, and CPU of the busiest rank), inner
    iterations per step, the problem size (cells or particles), and fem-jko's Newton
    iterations per step on the coarser meshes of its nested iteration (0 without)."""

    wall: float
    cpu: float
    its: float
    size: int
    coarse: float = 0.0


def problem(solver: str, dim: int, cells: int, particles: int, doubled: bool) -> dict:
    """Case overrides for the small problem or the doubled one.

    FE: ``cells`` per axis, or round(2^(1/dim)·cells) per axis (twice the cells, square
    cells, same domain).  blob: ``particles`` or twice as many.
    """
    if solver == "blob":
        return {"solver.blob.particles": particles * (2 if doubled else 1)}
    n = round(cells * 2 ** (1 / dim)) if doubled else cells
    return {"domain.cells": [n] * dim}


def time_steps(
    case_name: str, sets: dict, solver: str, steps: int, warmup: int, comm: MPI.Comm
) -> Timing:
    """Build ``solver`` on ``comm``, take ``warmup`` untimed steps, time ``steps`` steps."""
    case = load_case(case_name, sets, solver_tables())
    s = build_solver(case, solver, comm)
    tau = case.section("time")["tau"]
    for _ in range(warmup):
        s.step(tau)
    its, coarse = 0, getattr(s, "coarse_iterations", 0)
    comm.Barrier()
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        its += s.step(tau)
    cpu = comm.allreduce(time.process_time() - c0, op=MPI.MAX)
    comm.Barrier()
    wall = time.perf_counter() - t0
    coarse = getattr(s, "coarse_iterations", 0) - coarse
    size = problem_size(s, solver, comm)
    s.close()
    return Timing(wall / steps, cpu / steps, its / steps, size, coarse / steps)


def problem_size(s: object, solver: str, comm: MPI.Comm) -> int:
    """Global cell count of an FE solver's mesh, or the blob's particle count."""
    if solver == "blob":
        return int(s.n)
    index_map = s.mesh.topology.index_map(s.mesh.topology.dim)
    return int(index_map.size_global)


def ratios(solver: str, small: Timing, large: Timing, two: Timing) -> tuple:
    """Weak efficiency t₁(n)/t₂(2n), the same per inner iteration, strong speed-up
    t₁(2n)/t₂(2n) in wall time and in CPU time of the busiest rank.

    Per inner iteration: the doubled problem may need more Newton (or blob) iterations
    per step, which is the algorithm's scaling, not the parallel one's.
    """
    per_it = (small.wall / max(small.its, 1.0)) / (two.wall / max(two.its, 1.0))
    return solver, small.wall / two.wall, per_it, large.wall / two.wall, large.cpu / two.cpu


def table_row(solver: str, ranks: int, t: Timing) -> str:
    """One measurement's line of the table."""
    return (
        f"{solver:13s} {ranks:5d} {t.size:8d} {t.wall:10.3f} {t.cpu:10.3f} {t.its:8.1f} "
        f"{t.coarse:6.1f}"
    )


def load() -> str:
    """The 1, 5 and 15 minute load averages, as ``uptime`` prints them."""
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", default="porous_medium_2d")
    parser.add_argument("--cells", type=int, default=128, help="FE cells per axis on 1 rank")
    parser.add_argument("--particles", type=int, default=5000, help="blob particles on 1 rank")
    parser.add_argument("--steps", type=int, default=3, help="timed steps")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--solvers", default=",".join(SOLVERS))
    parser.add_argument(
        "--ceiling",
        action="store_true",
        help="also run the doubled problem on COMM_SELF on every rank at once: the strong "
        "speed-up a split with no communication would reach on this machine",
    )
    args = parser.parse_args()
    world = MPI.COMM_WORLD
    logging.disable(logging.WARNING)
    set_quiet(True)
    say = print if world.rank == 0 else (lambda *a, **k: None)
    dim = load_case(args.case).dim
    say(f"{args.case}, {args.steps} steps after {args.warmup}, {world.size} rank(s)")
    say(f"load average before: {load()}")
    say(
        f"{'solver':13s} {'ranks':>5s} {'size':>8s} {'wall/step':>10s} {'cpu/step':>10s} "
        f"{'its/step':>8s} {'coarse':>6s}"
    )
    summary = []
    for solver in args.solvers.split(","):
        small, large = (
            problem(solver, dim, args.cells, args.particles, doubled) for doubled in (False, True)
        )
        one: list[Timing] = []
        if world.rank == 0:
            one = [
                time_steps(args.case, sets, solver, args.steps, args.warmup, MPI.COMM_SELF)
                for sets in (small, large)
            ]
            for t in one:
                say(table_row(solver, 1, t))
        idle_barrier(world)
        if world.size == 1:
            continue
        two = time_steps(args.case, large, solver, args.steps, args.warmup, world)
        say(table_row(solver, world.size, two), flush=True)
        ceiling = float("nan")
        if args.ceiling:
            world.Barrier()
            copy = time_steps(args.case, large, solver, args.steps, args.warmup, MPI.COMM_SELF)
            slowest = world.allreduce(copy.wall, op=MPI.MAX)
            say(
                f"{solver:13s} {world.size} copies of the 1-rank doubled problem at once: "
                f"{slowest:.3f} s per step (slowest)"
            )
            ceiling = world.size * one[1].wall / slowest if world.rank == 0 else ceiling
        if world.rank == 0:
            summary.append((*ratios(solver, one[0], one[1], two), ceiling))
    say(f"load average after: {load()}")
    if summary:
        say(
            f"{'solver':13s} {'weak t1(n)/t2(2n)':>17s} {'per inner it.':>13s} "
            f"{'strong t1(2n)/t2(2n)':>20s} {'in CPU':>6s} {'ceiling':>7s}"
        )
        for row in summary:
            say(
                f"{row[0]:13s} {row[1]:17.2f} {row[2]:13.2f} {row[3]:20.2f} {row[4]:6.2f} "
                f"{row[5]:7.2f}"
            )


if __name__ == "__main__":
    main()
