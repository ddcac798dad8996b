"""Particles over MPI ranks: contiguous blocks of global indices, replicated positions.

Every rank holds the positions of *all* particles and computes the velocities of its own
block ``[lo, hi)`` only; an allgather then gives every rank the new global arrays.

Why replicate instead of a domain decomposition with halo exchange: at the sizes these
solvers run (N ≤ 10⁵, d ≤ 3) the positions are at most a few MB, and one allgather costs
less than one kernel evaluation.

What each rank computes (blob, :mod:`wgf.solvers.particles.kernels`): the Verlet list of its
own block only — a tree on the particles inside the block's bounding box widened by the
list radius, so no rank queries the whole cloud — and the kernel sums of its own rows.
Nothing is computed twice, and the only serial part left is the allgather.  (Every rank
running ``cKDTree.query_pairs`` on the global array and keeping the pairs touching its
block made the tree query a serial part: measured, see benchmarks/README.md.)

Blocks are contiguous index ranges, and blob particles keep the lattice's row-by-row
numbering, so a block is a compact slab and its widened box holds few other ranks'
particles.

Bitwise rank independence: a particle's sums run over its neighbours in increasing global
index, with exact zeros for list entries beyond the cut-off, whatever the block and
whenever the list was built; trajectories on 1 and on 2 ranks agree bitwise, not merely to
round-off.  Every rank decides to rebuild from the same replicated positions, so the
ranks rebuild together (the allgathers stay matched).
"""

from __future__ import annotations

import numpy as np
from mpi4py import MPI


def block(n: int, comm: MPI.Comm) -> tuple[int, int]:
    """The contiguous range ``[lo, hi)`` of global indices owned by this rank."""
    return n * comm.rank // comm.size, n * (comm.rank + 1) // comm.size


def allgather_blocks(comm: MPI.Comm, local: np.ndarray) -> np.ndarray:
    """Concatenate every rank's block (in rank order, i.e. global index order).

    The blocks agree in dtype and in every axis but the first.  One Allgatherv into the
    result: gathering pickled blocks cost 35 ms against 4 ms for 6 MB on 2 ranks, and
    0.9 against 0.6 ms for the positions of 10⁵ particles in 2-D.
    """
    if comm.size == 1:
        return local
    local = np.ascontiguousarray(local)
    rows = comm.allgather(local.shape[0])
    row = int(np.prod(local.shape[1:]))
    out = np.empty((sum(rows), *local.shape[1:]), local.dtype)
    comm.Allgatherv(local, [out, [r * row for r in rows]])
    return out
