"""fem-jko (and fem-implicit) on 2 ranks against 1 rank, measured in one run.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \
    .venv/bin/mpiexec -n 2 .venv/bin/python -m mpi4py benchmarks/jko_parallel.py \
        [--case fokker_planck_ou_2d] [--cells 256] [--steps 5]

(One BLAS thread per rank, as ``wgf`` sets under mpiexec — see :mod:`wgf` — but this
script loads NumPy before ``wgf`` can.)

Times ``--steps`` steps of each solver on COMM_WORLD, then the same steps on COMM_SELF
of rank 0 alone (rank 1 sleeps in ``idle_barrier``), on a ``cells``² mesh (256² =
131 072 cells), and prints the wall time per step and the speed-up.  PETSc options go
in the environment, e.g. ``PETSC_OPTIONS="-fem_jko_ksp_type preonly -fem_jko_pc_type lu"``.
"""

from __future__ import annotations

import argparse

from jko_cost import time_steps
from mpi4py import MPI
from timing import idle_barrier

from wgf.cases import load_case


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", default="fokker_planck_ou_2d")
    parser.add_argument("--cells", type=int, default=256)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    world = MPI.COMM_WORLD
    dim = load_case(args.case).dim
    sets = [f"domain.cells={[args.cells] * dim}"]
    rows = []
    for solver in ("fem-jko", "fem-implicit"):
        parallel, d = time_steps(args.case, sets, solver, args.steps, world)
        serial = float("nan")
        if world.rank == 0:
            serial, _ = time_steps(args.case, sets, solver, args.steps, MPI.COMM_SELF)
        idle_barrier(world)
        rows.append((solver, serial, parallel, d["its"]))
    if world.rank == 0:
        print(f"{args.case}, {args.cells}^{dim} cells, {args.steps} steps")
        for solver, serial, parallel, its in rows:
            print(
                f"{solver:13s} 1 rank {serial * 1e3:8.1f} ms/step, {world.size} ranks "
                f"{parallel * 1e3:8.1f} ms/step, speed-up {serial / parallel:.2f} "
                f"(Newton its {its:.2f})"
            )


if __name__ == "__main__":
    main()
