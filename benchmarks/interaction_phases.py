"""The phases of one particle-mesh gradient sum at N = 10⁵, timed between barriers.

The same steps as :func:`wgf.solvers.energy.pair_sums.mesh_sum` (grid; the kernels sampled
on the non-negative offsets, reflected and transformed, which a cached sum skips; the
deposit, summed into row slabs; the masses' inner transform and the all-to-all to spectrum
columns; the first-axis transform, the product with the kernels and its inverse; the
all-to-all back to rows and the inner inverse; the field all-gather and the interpolation
at this rank's block), each between two barriers, so that a 1-rank and a 2-rank run show
which phases the ranks share and how long each takes when both ranks are busy.  Prints the
mean of 9 per rank.

Run:  OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/mpiexec -n 2 .venv/bin/python -m mpi4py \\
      benchmarks/interaction_phases.py   (and -n 1)
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from interaction_sums import DELTA, cloud, kernel
from mpi4py import MPI

from wgf.solvers.energy import pair_sums as ps
from wgf.solvers.particles.parallel import block

REPEAT = 9


def main() -> None:
    """Print this rank's mean time per phase."""
    comm = MPI.COMM_WORLD
    term = kernel()
    x, w = cloud(100_000)
    lo, hi = block(len(x), comm)

    def sample(z: np.ndarray) -> list[np.ndarray]:
        r = np.sqrt(np.einsum("nk,nk->n", z, z))
        f = term.force_factor(np.where(r > 0.0, r, 1.0), DELTA)
        f[r == 0.0] = 0.0
        return [f * z[:, k] for k in range(z.shape[1])]

    term.gradient_at(x[:10], x, w, DELTA, "mesh")  # warm: the kernel's derivatives
    parity = [(-1, 1), (1, -1)]
    spent: dict[str, float] = {}

    def tick(name: str, fn: Callable[[], object]) -> object:
        comm.Barrier()
        start = time.perf_counter()
        out = fn()
        comm.Barrier()
        spent[name] = spent.get(name, 0.0) + time.perf_counter() - start
        return out

    shared = comm if comm.size > 1 else None

    def one_sum() -> None:
        grid = tick("grid", lambda: ps._Grid(x, ps.default_cells(len(x), 2)))
        kernel_hats = tick(
            "kernel sampling + FFT",
            lambda: ps._kernels_transformed(grid, sample, True, parity, shared),
        )
        rows = ps._shares(grid.shape[0], shared)
        mass = tick("deposit + reduce-scatter", lambda: ps._mass_rows(grid, x, w, shared))
        masses = tick(
            "mass inner FFT + all-to-all",
            lambda: ps._columns(mass[None], grid.padded, rows, shared),
        )
        kept = tick(
            "first-axis FFT, product, inverse",
            lambda: ps._convolved(masses, kernel_hats, grid.shape[0]),
        )
        fields = tick(
            "all-to-all + inner inverse",
            lambda: ps._rows(kept, grid.shape, grid.padded, shared),
        )
        gathered = tick(
            "field all-gather", lambda: ps._rows_to_all(fields, grid.shape, rows, shared)
        )
        tick("interpolation", lambda: grid.interpolate(list(gathered), x[lo:hi]))

    for _ in range(REPEAT):
        one_sum()
    mean = {name: round(value / REPEAT, 4) for name, value in spent.items()}
    print(f"rank {comm.rank}/{comm.size}: {mean}, total {sum(mean.values()):.3f} s", flush=True)


if __name__ == "__main__":
    main()
