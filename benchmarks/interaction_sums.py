"""Interaction sums ∇(W_δ∗μ) at N particles: particle-mesh FFT against the direct sum.

Prints, from one run (ratios of timings on this machine, not asserts), for the swarming
kernel W = r²/2 - log r mollified at δ = 0.05 (singular: near-origin cells averaged) and
N standard-normal particles in 2-D with equal weights:

* time(4N)/time(N) of the particle-mesh (PM) sum at N = 2·10⁴ (goal ≤ 5): its grid grows
  with N (:func:`~wgf.solvers.energy.pair_sums.default_cells`), so ≈ 4 is linear;
* the speed-up of the PM sum over the direct sum at N = 10⁵ (goal ≥ 20×).  The direct sum
  over all N targets would take minutes; it is timed on ``BENCH_TARGETS`` targets against
  all N sources and scaled by N/targets (its cost is exactly linear in the targets);
* the accuracy: ‖PM - direct‖/‖direct‖ over those targets, at each N;
* under ``mpiexec -n 2``: the PM sum of each rank's block of targets with the mesh work
  shared over the ranks (``comm``: what a run does), against all targets on rank 0 alone
  (the other rank asleep), as wall time and as the CPU time of the busiest rank (the
  latter is what the split saves when other programs compete for the cores); and the
  machine's ceiling: every rank the whole serial sum at once, 2·t(alone)/t(copies), the
  speed-up a split with no communication and no replicated work would give.

Run:  OPENBLAS_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/interaction_sums.py
(2 ranks: OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 PYTHONPATH=. .venv/bin/mpiexec -n 2
.venv/bin/python -m mpi4py benchmarks/interaction_sums.py)
"""

from __future__ import annotations

import os
import time

import numpy as np
from mpi4py import MPI
from timing import best_of, idle_barrier

from wgf.cases import load_case
from wgf.solvers import solver_tables
from wgf.solvers.energy import FreeEnergy, Interaction
from wgf.solvers.particles.parallel import block

#: Targets of the timed direct sum (scaled to all N).
TARGETS = int(os.environ.get("BENCH_TARGETS", "1000"))
DELTA = 0.05


def kernel() -> Interaction:
    """W = r²/2 - log r of the shipped swarm_2d case."""
    case = load_case("swarm_2d", (), solver_tables())
    term = FreeEnergy.from_case(case).interaction
    assert term is not None
    return term


def cloud(n: int) -> tuple[np.ndarray, np.ndarray]:
    """N standard-normal points in 2-D (seeded) and equal weights of mass 1."""
    x = np.random.default_rng(7).normal(size=(n, 2))
    return x, np.full(n, 1.0 / n)


def shared_call(
    term: Interaction, x: np.ndarray, w: np.ndarray, lo: int, hi: int, comm: MPI.Comm
) -> None:
    """∇(W_δ∗μ) at this rank's block, the mesh work shared over ``comm`` (what a run does)."""
    comm.Barrier()
    term.gradient_at(x[lo:hi], x, w, DELTA, "mesh", comm)
    comm.Barrier()


def cpu_of(fn: object) -> float:
    """The CPU time of this process spent in ``fn()`` (waits in MPI count: MPICH polls)."""
    start = time.process_time()
    fn()  # type: ignore[operator]
    return time.process_time() - start


def main() -> None:
    """Print the ratios (rank 0) described in the module docstring."""
    comm = MPI.COMM_WORLD
    term = kernel()
    say = print if comm.rank == 0 else (lambda *a, **k: None)
    if comm.size > 1:
        x, w = cloud(100_000)
        lo, hi = block(len(x), comm)
        term.gradient_at(x[lo:hi], x, w, DELTA, "mesh")  # warm: the kernel's derivatives

        def whole() -> None:
            term.gradient_at(x, x, w, DELTA, "mesh")

        # 1 rank: rank 0 alone, the other rank asleep (not busy-polling a barrier).
        single = cpu_single = 0.0
        if comm.rank == 0:
            single, cpu_single = best_of(whole), best_of(lambda: cpu_of(whole))
        idle_barrier(comm)
        # The machine's ceiling: every rank the whole serial sum at once, no communication.
        comm.Barrier()
        copies = comm.allreduce(best_of(whole), op=MPI.MAX)
        shared = best_of(shared_blocks := lambda: shared_call(term, x, w, lo, hi, comm))
        cpu_shared = comm.allreduce(best_of(lambda: cpu_of(shared_blocks)), op=MPI.MAX)
        if comm.rank > 0:
            return
        ceiling = comm.size * single / copies
        say(
            f"N = 1e5 PM: 1 rank alone {single:.3f} s; {comm.size} copies of it at once "
            f"{copies:.3f} s each, so a perfect split could give {ceiling:.2f}; shared over "
            f"{comm.size} ranks {shared:.3f} s: speed-up {single / shared:.2f} (wall; "
            f"{single / shared / ceiling:.0%} of the ceiling), {cpu_single / cpu_shared:.2f} "
            f"(CPU time of the busiest rank: {cpu_shared:.3f} s against {cpu_single:.3f} s)"
        )
        return
    pm: dict[int, float] = {}
    for n in (20_000, 80_000, 100_000):
        x, w = cloud(n)
        pm[n] = best_of(lambda x=x, w=w: term.gradient_at(x, x, w, DELTA, "mesh"))
        targets = x[:TARGETS]
        start = time.perf_counter()
        exact = term.gradient_at(targets, x, w, DELTA, "direct")
        direct = (time.perf_counter() - start) * n / len(targets)
        mesh = term.gradient_at(targets, x, w, DELTA, "mesh")
        error = np.linalg.norm(mesh - exact) / np.linalg.norm(exact)
        say(
            f"N = {n:6d}: PM {pm[n]:.3f} s, direct {direct:.1f} s (from {len(targets)} "
            f"targets), speed-up {direct / pm[n]:.0f}x, relative error {error:.2e}"
        )
    say(f"time(4N)/time(N) at N = 2e4 (PM): {pm[80_000] / pm[20_000]:.2f}")


if __name__ == "__main__":
    main()
