"""What an FE step costs, in Poisson solves on the same mesh, as the mesh grows.

    .venv/bin/python benchmarks/fe_scaling.py [--sizes 64,128,256] [--steps 2] [--alg2-up-to 64]
    .venv/bin/mpiexec -n 2 .venv/bin/python -m mpi4py benchmarks/fe_scaling.py --sizes 256

The unit is one P1 Poisson solve on the case's mesh: −Δu = 1 with u = 0 on the boundary,
CG + GAMG to a relative residual of 1e-8, set-up included (best of 3), timed again before
each timed step: the unit and the step are seconds apart, not minutes.  Against it, one
step of each FE solver — fem-implicit, fem-jko (Newton) and fem-jko with ALG2 — on
porous_medium_2d (m = 2 and m = 3) and fokker_planck_ou_2d, on the same mesh, timed over
``--steps`` steps after one untimed step (the first JKO step has no history to
extrapolate ϕ from).  Printed per row: the step's wall time, the unit's (their means over
the timed steps), the step in Poisson units, the
Newton (or ALG2) iterations per step and the Krylov iterations per step (an LU solve
counts as one), the first (untimed) step's iterations, for fem-jko the round-off floor of
its residual over its tolerance, and the 1-minute load average after the row.  ALG2 runs
only up to ``--alg2-up-to`` cells per axis: its step is thousands of space-time Poisson
solves.  ``--problems`` picks rows by label (e.g. ``"PME m=2,PME m=3"``).
"""

from __future__ import annotations

import dolfinx_solver  # noqa: F401 - must precede dolfinx

import argparse
import logging
import os
import time

import dolfinx.fem
import dolfinx.fem.petsc
import dolfinx.mesh
import numpy as np
import ufl
from mpi4py import MPI
from petsc4py import PETSc

from wgf.cases import load_case
from wgf.progress import set_quiet
from wgf.run import build_solver
from wgf.solvers import solver_tables

#: (label, case, overrides): the problems of the issue.
PROBLEMS = (
    ("PME m=2", "porous_medium_2d", {}),
    ("PME m=3", "porous_medium_2d", {"energy.m": 3.0}),
    ("OU", "fokker_planck_ou_2d", {}),
)
#: (label, solver, overrides).
SOLVERS = (
    ("fem-implicit", "fem-implicit", {}),
    ("fem-jko", "fem-jko", {}),
    ("fem-jko alg2", "fem-jko", {"solver.fem-jko.inner": "alg2"}),
)


class PoissonUnit:
    """One P1 Poisson solve on a mesh: −Δu = 1, u = 0 on the boundary, CG + GAMG to 1e-8."""

    def __init__(self, mesh: dolfinx.mesh.Mesh) -> None:
        V = dolfinx.fem.functionspace(mesh, ("Lagrange", 1))
        u, v = ufl.TrialFunction(V), ufl.TestFunction(V)
        mesh.topology.create_connectivity(mesh.topology.dim - 1, mesh.topology.dim)
        facets = dolfinx.mesh.exterior_facet_indices(mesh.topology)
        dofs = dolfinx.fem.locate_dofs_topological(V, mesh.topology.dim - 1, facets)
        bc = dolfinx.fem.dirichletbc(PETSc.ScalarType(0.0), dofs, V)
        a = dolfinx.fem.form(ufl.inner(ufl.grad(u), ufl.grad(v)) * ufl.dx)
        L = dolfinx.fem.form(v * ufl.dx)
        self.A = dolfinx.fem.petsc.assemble_matrix(a, bcs=[bc])
        self.A.assemble()
        self.b = dolfinx.fem.petsc.assemble_vector(L)
        dolfinx.fem.petsc.apply_lifting(self.b, [a], [[bc]])
        self.b.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
        dolfinx.fem.petsc.set_bc(self.b, [bc])
        self.x = self.b.duplicate()
        self.comm = mesh.comm

    def time(self, repeat: int = 3) -> tuple[float, int]:
        """The least wall time of ``repeat`` solves, set-up included, and their CG iterations."""
        best, its = np.inf, 0
        for _ in range(repeat):
            ksp = PETSc.KSP().create(self.comm)
            ksp.setOperators(self.A)
            ksp.setType("cg")
            ksp.getPC().setType("gamg")
            ksp.setTolerances(rtol=1e-8)
            self.x.set(0.0)
            self.comm.Barrier()
            start = time.perf_counter()
            ksp.setUp()
            ksp.solve(self.b, self.x)
            self.comm.Barrier()
            best = min(best, time.perf_counter() - start)
            its = ksp.getIterationNumber()
            reason = ksp.getConvergedReason()
            ksp.destroy()
            if reason <= 0:
                raise RuntimeError(f"the Poisson unit did not converge ({reason})")
        return best, its


def poisson_unit(mesh: dolfinx.mesh.Mesh, repeat: int = 3) -> tuple[float, int]:
    """Wall time and CG iterations of one P1 Poisson solve (the least of ``repeat``)."""
    return PoissonUnit(mesh).time(repeat)


def step_cost(case_name: str, overrides: dict, solver: str, steps: int, comm: MPI.Comm):
    """Wall time, inner and Krylov iterations per step after one untimed step; its extras.

    Before each timed step the Poisson unit is timed again on the same mesh, so that the
    step's cost in units compares times taken seconds apart: this machine's speed moves
    by 10-25 % over minutes.  The extras: the mean unit, the untimed first step's inner
    iterations, and for fem-jko (Newton) the largest round-off floor of the residual over
    its tolerance seen in the timed steps (above 1 the stop rule stopped at the floor,
    counted in ``round_off_stops``).
    """
    case = load_case(case_name, overrides, solver_tables())
    s = build_solver(case, solver, comm)
    unit = PoissonUnit(s.mesh)
    tau = case.section("time")["tau"]
    first = s.step(tau)
    coarse = getattr(s, "coarse_iterations", 0)
    inner = krylov = 0
    floor, wall, units = 0.0, 0.0, 0.0
    for _ in range(steps):
        units += unit.time()[0]
        comm.Barrier()
        start = time.perf_counter()
        inner += s.step(tau)
        comm.Barrier()
        wall += time.perf_counter() - start
        krylov += s.linear_iterations
        floor = max(floor, getattr(s, "round_off_floor", np.nan))
    extras = {
        "unit": units / steps,
        "first": first,
        "floor": floor,
        "stops": getattr(s, "round_off_stops", 0),
        "coarse": (getattr(s, "coarse_iterations", 0) - coarse) / steps,
    }
    s.close()
    return wall / steps, inner / steps, krylov / steps, extras


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="64,128,256", help="cells per axis, comma-separated")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per solver")
    parser.add_argument("--alg2-up-to", type=int, default=64, help="largest size for ALG2")
    parser.add_argument("--solvers", default="fem-implicit,fem-jko,fem-jko alg2")
    parser.add_argument("--problems", default=",".join(p[0] for p in PROBLEMS))
    args = parser.parse_args()
    comm = MPI.COMM_WORLD
    logging.disable(logging.WARNING)
    set_quiet(True)
    chosen = [s for s in SOLVERS if s[0] in args.solvers.split(",")]
    problems = [p for p in PROBLEMS if p[0] in args.problems.split(",")]
    say = print if comm.rank == 0 else (lambda *a, **k: None)
    say(f"{comm.size} rank(s); one Poisson solve = CG + GAMG, rtol 1e-8, set-up included")
    say(f"load average at the start: {os.getloadavg()[0]:.2f}")
    say(
        f"{'cells':>5s} {'problem':9s} {'solver':13s} {'step [s]':>9s} {'unit [s]':>8s} "
        f"{'Poisson':>8s} {'its/step':>8s} {'lin/step':>8s} {'1st its':>7s} {'floor/tol':>9s} "
        f"{'load':>5s}"
    )
    for n in (int(x) for x in args.sizes.split(",")):
        for label, case_name, over in problems:
            for solver_label, solver, extra in chosen:
                if "alg2" in solver_label and n > args.alg2_up_to:
                    continue
                sets = {**over, **extra, "domain.cells": [n, n]}
                wall, inner, krylov, extras = step_cost(case_name, sets, solver, args.steps, comm)
                unit = extras["unit"]
                floor = f"{extras['floor']:9.1e}" if solver_label == "fem-jko" else f"{'':9s}"
                if extras["stops"]:
                    floor += f" ({extras['stops']} round-off stops)"
                if extras["coarse"]:
                    floor += f" (+{extras['coarse']:.1f} its/step on coarser meshes)"
                say(
                    f"{n:5d} {label:9s} {solver_label:13s} {wall:9.4f} {unit:8.4f} "
                    f"{wall / unit:8.1f} {inner:8.1f} {krylov:8.1f} {extras['first']:7d} "
                    f"{floor} {os.getloadavg()[0]:5.2f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
