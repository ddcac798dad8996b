"""Particles over MPI ranks: contiguous blocks of global indices, replicated positions.

Every rank holds the positions of *all* particles and computes the velocities of its own
block ``[lo, hi)`` only; an allgather then gives every rank the new global arrays.

Why replicate instead of a domain decomposition with halo exchange: at the sizes these
solvers run (N ≤ 10⁵, d ≤ 3) the positions are at most a few MB, and one allgather costs
less than one kernel evaluation.  Every rank then builds the *same* neighbour structure
from the same global array, so each particle's kernel sum is taken over the same
neighbours in the same order whatever the number of ranks: trajectories on 1 and on
2 ranks agree bitwise, not merely to round-off.
"""

from __future__ import annotations

import numpy as np
from mpi4py import MPI


def block(n: int, comm: MPI.Comm) -> tuple[int, int]:
    """The contiguous range ``[lo, hi)`` of global indices owned by this rank."""
    return n * comm.rank // comm.size, n * (comm.rank + 1) // comm.size


def allgather_blocks(comm: MPI.Comm, local: np.ndarray) -> np.ndarray:
    """Concatenate every rank's block (in rank order, i.e. global index order)."""
    if comm.size == 1:
        return local
    return np.concatenate(comm.allgather(np.ascontiguousarray(local)), axis=0)
