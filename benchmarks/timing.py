"""Timing helper shared by the benchmark scripts (they import it from their own folder)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mpi4py import MPI


def best_of(fn: Callable[[], object], repeat: int = 3) -> float:
    """The smallest wall time of ``repeat`` calls of ``fn`` (the least disturbed one)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def idle_barrier(comm: MPI.Comm) -> None:
    """A barrier that sleeps while it waits: a spinning rank 1 would steal a core from the
    1-rank timing on rank 0 (MPI barriers busy-poll)."""
    request = comm.Ibarrier()
    while not request.Test():
        time.sleep(0.01)
