"""``fem-implicit``: implicit Euler and Newton on the PDE itself — the baseline.

    ∂_t ρ = div( D∇P(ρ) + ρ∇V ),    P(ρ) = ρU'(ρ) - U(ρ),    no-flux boundary.

Discretisation: P1 density, mass-lumped time derivative, and the pressure form of the
flux, written as D·P'(ρ)∇ρ + ρ∇V:

    Σ_i m_i (ρ_i - ρ_i^n)/τ v_i + ∫ (D·P'(ρ)∇ρ + ρ∇V)·∇v dx = 0   for all v ∈ P1.

Why this form: for the entropy P'(ρ) = 1 and the step is linear; for the power law
P'(ρ) = mρ^{m-1} vanishes with ρ and is evaluated at max(ρ, 0), so the residual stays
defined where Newton iterates overshoot below zero at the free boundary.  The lumped
mass gives exact mass conservation (v = 1 kills the flux term) and, on non-obtuse
meshes, a monotone (M-matrix) diffusion part, so ρ stays non-negative up to the drift.
``min_density`` records how far that holds.

Each step is one ``dolfinx.fem.petsc.NonlinearProblem`` solve with PETSc SNES (Newton,
backtracking line search, MUMPS LU by default).  Every PETSc option can be changed on
the command line under the prefix ``fem_implicit_``, e.g. ``-fem_implicit_snes_monitor``
or ``-fem_implicit_ksp_type gmres -fem_implicit_pc_type gamg``.
"""

from __future__ import annotations

from typing import Any

from mpi4py import MPI
from petsc4py import PETSc

import dolfinx_solver  # noqa: F401, I001 - must precede dolfinx
import dolfinx.fem
import dolfinx.fem.petsc
import ufl

from cases import Case
from solvers.fem.base import FEFlowSolver
from solvers.fem.petsc_options import NEWTON_LU, set_default_options
from wgf.errors import SolverError

PREFIX = "fem_implicit_"


class Solver(FEFlowSolver):
    """Implicit Euler for the gradient-flow PDE (see the module docstring)."""

    name = "fem-implicit"

    def __init__(self, case: Case, comm: MPI.Comm, params: dict[str, Any]) -> None:
        super().__init__(case, comm, params)
        rho, v = self.rho, ufl.TestFunction(self.V)
        self.tau = dolfinx.fem.Constant(self.mesh, PETSc.ScalarType(case.section("time")["tau"]))
        flux = self.energy.dpressure(rho, self.xp) * ufl.grad(rho)
        if self.V_ufl is not None:
            flux = flux + rho * ufl.grad(self.V_ufl)
        residual = ((rho - self.rho_old) / self.tau * v * self.dx_lumped
                    + ufl.dot(flux, ufl.grad(v)) * self.dx)
        set_default_options(PREFIX, {
            **NEWTON_LU,
            "snes_rtol": params["rtol"],
            "snes_atol": params["atol"],
            "snes_max_it": params["max_it"],
        })
        self.problem = dolfinx.fem.petsc.NonlinearProblem(
            residual, rho, petsc_options_prefix=PREFIX)
        self.snes = self.problem.solver
        self.snes.setFromOptions()

    def step(self, tau: float) -> int:
        """One implicit Euler step of size τ; returns the Newton iterations."""
        self.rho_old.x.array[:] = self.rho.x.array
        self.tau.value = tau
        self.problem.solve()
        reason = self.snes.getConvergedReason()
        if reason <= 0:
            self.rho.x.array[:] = self.rho_old.x.array
            raise SolverError(f"SNES did not converge (reason {_reason_name(reason)}, "
                              f"{self.snes.getIterationNumber()} iterations)")
        return self.snes.getIterationNumber()


def _reason_name(reason: int) -> str:
    names = {v: k for k, v in vars(PETSc.SNES.ConvergedReason).items() if isinstance(v, int)}
    return names.get(reason, str(reason))
