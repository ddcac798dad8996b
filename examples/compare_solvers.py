"""Compare two solvers on one case through the Python API.

Runs the 1-D heat equation from Gaussian data (the exact solution is a Gaussian) with the
finite-element solver and with the Lagrangian JKO solver in quantile coordinates, then
prints, for each, the relative L1 error against the exact solution at T and the final
free energy.  The same calls work on one rank and under MPI:

    .venv/bin/python examples/compare_solvers.py --out runs/compare
    .venv/bin/mpiexec -n 2 .venv/bin/python -m mpi4py examples/compare_solvers.py --quick
"""

import argparse

from mpi4py import MPI

from wgf import api

CASE = "heat_1d"
SOLVERS = ["fem-implicit", "quantile-1d"]
#: --quick: a fifth of the time interval on a coarser mesh (runs in about a second).
QUICK = {"time.t_end": 0.02, "domain.cells": [100], "solver.quantile-1d.particles": 200}


def main() -> None:
    """Run each solver, then print one row per solver on rank 0."""
    parser = argparse.ArgumentParser(description="Compare two solvers on heat_1d.")
    parser.add_argument("--out", default="out/compare_solvers", help="output directory")
    parser.add_argument("--quick", action="store_true", help="a shorter, coarser run")
    args = parser.parse_args()

    case = api.load(CASE, QUICK if args.quick else None)
    runs = {solver: api.run(case, solver, out=args.out) for solver in SOLVERS}

    if MPI.COMM_WORLD.rank == 0:  # every rank has the results; one prints them
        print(f"\n{'solver':14s} {'T':>6s} {'L1 error at T':>18s} {'energy at T':>20s}")
        for solver, res in runs.items():
            l1, energy = res.diagnostics["l1_error"][-1], res.diagnostics["energy"][-1]
            print(f"{solver:14s} {res.time[-1]:6.3g} {l1:18.10e} {energy:20.12e}")


if __name__ == "__main__":
    main()
