"""fem-implicit's Newton solve on 1 rank against p, for each linear solver, in one run.

    .venv/bin/mpiexec -n 2 .venv/bin/python -m mpi4py benchmarks/parallel_lu.py \
        [--cells 512] [--solve 30] [--repeats 3]
    .venv/bin/python benchmarks/parallel_lu.py [same options]              # 1-rank rows only

Why: at 512² fem-implicit is slower on 2 ranks than on 1 (benchmarks/README.md), and
most of its step is the factorisation of S, its Newton matrix reduced to ρ.  This script
takes S and its right-hand side as fem-implicit builds them on porous_medium_2d (m = 2,
``--cells``² cells, the ``--solve``-th reduced solve of the run: by default one of the
second step, whose extrapolated guess is the usual case) and times, for every solver
of S the PETSc build offers:

* PETSc's LU without pivoting in a nested-dissection ordering (fem-implicit's default on
  one rank; sequential only);
* MUMPS LU (its default on several ranks);
* SuperLU_dist LU;
* GMRES + GAMG with fem-implicit's settings (its default on several ranks): its
  tolerance, threshold and restart, the prolongators kept for the set-ups that follow.

"set-up" is a numeric factorisation of a matrix with the analysed pattern (GAMG: a new
Galerkin hierarchy on the kept prolongators), "solve" one solve; both are the least of
``--repeats``.  Under ``mpiexec -n p`` rank 0 first measures alone on COMM_SELF (the
others sleep in ``idle_barrier``), then all ranks measure on COMM_WORLD; the speed-up of
each solver is its own 1-rank set-up + solve over its p-rank one, and "against the best"
divides the fastest 1-rank solver's time instead.  A Newton iteration of fem-implicit
is one set-up and one solve, plus the residual and Jacobian, which split well.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import dolfinx_solver  # noqa: E402, F401 - after the thread settings, before petsc4py

import argparse  # noqa: E402
import logging  # noqa: E402
import time  # noqa: E402

from mpi4py import MPI  # noqa: E402
from petsc4py import PETSc  # noqa: E402 - initialised on COMM_WORLD by all ranks
from timing import idle_barrier  # noqa: E402

from wgf.cases import load_case  # noqa: E402
from wgf.progress import set_quiet  # noqa: E402
from wgf.run import build_solver  # noqa: E402
from wgf.solvers import solver_tables  # noqa: E402
from wgf.solvers.fem.implicit_euler import (  # noqa: E402
    GAMG_THRESHOLD,
    SCHUR_MAX_IT,
    SCHUR_RTOL,
)

PREFIX = "parallel_lu_"
#: name, KSP type, PC options, on one rank only.
SOLVERS = (
    ("PETSc LU (nd)", "preonly", {"pc_type": "lu", "pc_factor_mat_solver_type": "petsc",
                                  "pc_factor_mat_ordering_type": "nd"}, True),
    ("MUMPS LU", "preonly", {"pc_type": "lu", "pc_factor_mat_solver_type": "mumps"}, False),
    ("SuperLU_dist LU", "preonly",
     {"pc_type": "lu", "pc_factor_mat_solver_type": "superlu_dist"}, False),
    ("GMRES + GAMG", "gmres", {"pc_type": "gamg", "pc_gamg_reuse_interpolation": "true",
                               "pc_gamg_threshold": str(GAMG_THRESHOLD),
                               "ksp_gmres_restart": str(SCHUR_MAX_IT)}, False),
)  # fmt: skip


def newton_system(cells: int, solve: int, comm: MPI.Comm) -> tuple[PETSc.Mat, PETSc.Vec]:
    """Copies of S and of its right-hand side at fem-implicit's ``solve``-th reduced solve."""
    case = load_case("porous_medium_2d", {"domain.cells": [cells, cells]}, solver_tables())
    solver = build_solver(case, "fem-implicit", comm)
    scheme = solver._scheme
    solve_reduced, calls, taken = scheme.solve_reduced, [0], []

    def capture(rhs: PETSc.Vec, out: PETSc.Vec) -> bool:
        calls[0] += 1
        if calls[0] == solve:
            taken.extend((scheme.S.copy(), rhs.copy()))
        return solve_reduced(rhs, out)

    scheme.solve_reduced = capture
    tau = case.section("time")["tau"]
    while not taken:
        solver.step(tau)
    S, b = taken
    solver.close()
    return S, b


def measure(
    S: PETSc.Mat, b: PETSc.Vec, ksp_type: str, options: dict[str, str], repeats: int
) -> tuple[float, float, int, float]:
    """Least set-up and solve seconds, Krylov iterations, relative residual."""
    comm, database = S.getComm().tompi4py(), PETSc.Options()
    for key, value in options.items():
        database[PREFIX + key] = value
    ksp = PETSc.KSP().create(comm)
    ksp.setOptionsPrefix(PREFIX)
    ksp.setType(ksp_type)
    ksp.setTolerances(rtol=SCHUR_RTOL, max_it=SCHUR_MAX_IT)
    ksp.setOperators(S)
    ksp.setFromOptions()
    x, r = b.duplicate(), b.duplicate()
    ksp.solve(b, x)  # the symbolic analysis, or GAMG's prolongators, once
    setups, solves = [], []
    for k in range(repeats):
        # A new state of S with the same pattern: the numeric set-up again, as Newton does.
        S.scale(1.0 + (1e-14 if k % 2 == 0 else -1e-14))
        comm.Barrier()
        t0 = time.perf_counter()
        ksp.getPC().setUp()
        comm.Barrier()
        t1 = time.perf_counter()
        ksp.solve(b, x)
        comm.Barrier()
        setups.append(t1 - t0)
        solves.append(time.perf_counter() - t1)
    S.mult(x, r)
    r.axpy(-1.0, b)
    residual = r.norm() / b.norm()
    its = ksp.getIterationNumber()
    ksp.destroy()
    for vec in (x, r):
        vec.destroy()
    for key in options:
        database.delValue(PREFIX + key)
    return min(setups), min(solves), its, residual


def table(cells: int, solve: int, repeats: int, comm: MPI.Comm) -> dict[str, tuple]:
    """Every solver's measurement on ``comm`` (sequential-only solvers on one rank)."""
    S, b = newton_system(cells, solve, comm)
    rows = {
        name: measure(S, b, ksp_type, options, repeats)
        for name, ksp_type, options, sequential in SOLVERS
        if comm.size == 1 or not sequential
    }
    S.destroy()
    b.destroy()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=512, help="cells per axis")
    parser.add_argument(
        "--solve", type=int, default=30, help="which reduced solve of the run to take S from"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timings of each, the least kept")
    args = parser.parse_args()
    world = MPI.COMM_WORLD
    logging.disable(logging.WARNING)
    set_quiet(True)
    say = print if world.rank == 0 else (lambda *a, **k: None)
    say(f"porous_medium_2d, m = 2, {args.cells}², S of reduced solve {args.solve}")
    say(f"load average before: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    one: dict[str, tuple] = {}
    if world.rank == 0:
        one = table(args.cells, args.solve, args.repeats, MPI.COMM_SELF)
    idle_barrier(world)
    many = table(args.cells, args.solve, args.repeats, world) if world.size > 1 else {}
    say(
        f"{'solver':16s} {'ranks':>5s} {'set-up [s]':>10s} {'solve [s]':>9s} {'its':>4s} "
        f"{'residual':>8s} {'speed-up':>8s} {'against the best':>16s}"
    )
    if world.rank != 0:
        return
    best = min(setup + solve for setup, solve, _, _ in one.values())
    for name, (setup, solve, its, residual) in one.items():
        say(f"{name:16s} {1:5d} {setup:10.3f} {solve:9.3f} {its:4d} {residual:8.1e}")
    for name, (setup, solve, its, residual) in many.items():
        own = sum(one[name][:2]) / (setup + solve)
        say(
            f"{name:16s} {world.size:5d} {setup:10.3f} {solve:9.3f} {its:4d} {residual:8.1e} "
            f"{own:8.2f} {best / (setup + solve):16.2f}"
        )
    say(f"load average after: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
