"""``fem-implicit``: implicit Euler and Newton on the PDE itself — the baseline.

    ∂_t ρ = div( ρ ∇μ ),    μ = δF/δρ = D·U'(ρ) + V,    no-flux boundary.

Discretisation: P1 in space, implicit Euler in time, in the chemical-potential form,
with every term integrated by the vertex rule (mass lumping):

    Σ_i m_i (ρ_i - ρ_i^n)/τ v_i + Σ_K |K| mean_{i∈K}(ρ_i) ∇μ·∇v = 0,
    μ_i = D·U'(ρ_i) + V(x_i)  at every vertex.

Why this form: the lumped rule makes μ exactly the nodal derivative of the discrete
energy F_h(ρ) = Σ_i m_i (D·U(ρ_i) + V_i ρ_i), so testing with v = μ and convexity give

    F_h(ρ^{n+1}) + τ Σ_K |K| mean(ρ) |∇μ|² ≤ F_h(ρ^n):

the discrete energy decays at every step, for any τ.  Mass is conserved exactly
(v = 1).  How ρ → 0 is handled:

* entropy: ρ∇μ = D e^{-V/D} ∇g with the Slotboom variable g = ρ e^{V/D}, so the step
  is *linear* in g: Σ m_i (ρ_i - ρ_i^n)/τ v_i + Σ_K |K| mean(D e^{-V/D}) ∇g·∇v = 0.
  On a non-obtuse mesh the weighted stiffness matrix is an M-matrix, hence ρ > 0
  (discrete maximum principle) and, testing with log g, the energy decays; one Newton
  iteration solves the step;
* power law (and no internal energy): the unknowns are (ρ, μ), the nodal relation is a
  second lumped equation, U'(ρ) and the mobility are evaluated at max(ρ, 0), so Newton
  iterates that overshoot below zero near the free boundary stay well defined.  The
  centred mobility does not guarantee ρ ≥ 0 there; ``min_density`` records the undershoot,
  and a step whose negative part holds more than ``NEGATIVE_MASS_SHARE`` of the mass is
  rejected (retried with a smaller τ, then exit 3): near the steady state of a confining
  potential the drift points into the support and the cell average drains the vertices
  just outside it without bound.

Each step is one ``dolfinx.fem.petsc.NonlinearProblem`` solve with PETSc SNES (Newton,
backtracking line search, MUMPS LU by default).  Every PETSc option can be changed on
the command line under the prefix ``fem_implicit_``, e.g. ``-fem_implicit_snes_monitor``
or ``-fem_implicit_ksp_type gmres -fem_implicit_pc_type gamg``.
"""

from __future__ import annotations

import dolfinx_solver  # noqa: F401 - must precede dolfinx

from typing import Any

import basix.ufl
import dolfinx.fem
import dolfinx.fem.petsc
import numpy as np
import ufl
from mpi4py import MPI
from petsc4py import PETSc

from wgf.cases import Case
from wgf.cases.errors import SolverError
from wgf.solvers.fem.base import FEFlowSolver
from wgf.solvers.fem.petsc_options import NEWTON, set_default_options, use_direct_lu

PREFIX = "fem_implicit_"
#: A step is rejected when the negative part of ρ holds more than this share of the mass.
NEGATIVE_MASS_SHARE = 0.05


class Solver(FEFlowSolver):
    """Implicit Euler for the gradient-flow PDE (see the module docstring)."""

    name = "fem-implicit"
    adaptive_tau = True

    def __init__(self, case: Case, comm: MPI.Comm, params: dict[str, Any]) -> None:
        super().__init__(case, comm, params)
        self.tau = dolfinx.fem.Constant(self.mesh, PETSc.ScalarType(case.section("time")["tau"]))
        self.slotboom = self.energy.linear_diffusion
        V = self.V_ufl
        D, dxl = self.energy.diffusivity, self.dx_lumped
        if self.slotboom:
            # Shift V by its minimum so that the weight e^{-V/D} is at most 1.
            self._weight = ufl.exp(-(V - self._potential_min()) / D)
            self.W = self.V
            self.w = dolfinx.fem.Function(self.W, name="slotboom")
            g, v = self.w, ufl.TestFunction(self.W)
            rho = g * self._weight
            residual = (rho - self.rho_old) / self.tau * v * dxl + D * self._weight * ufl.dot(
                ufl.grad(g), ufl.grad(v)
            ) * dxl
        else:
            p1 = basix.ufl.element("Lagrange", self.mesh.basix_cell(), 1)
            self.W = dolfinx.fem.functionspace(self.mesh, basix.ufl.mixed_element([p1, p1]))
            self.w = dolfinx.fem.Function(self.W, name="density_potential")
            rho, mu = ufl.split(self.w)
            v, q = ufl.TestFunctions(self.W)
            residual = (
                (rho - self.rho_old) / self.tau * v * dxl
                + self.xp.maximum(rho, 0.0) * ufl.dot(ufl.grad(mu), ufl.grad(v)) * dxl
                + (mu - self.energy.first_variation(rho, V, self.xp)) * q * dxl
            )
        self._rho_expr = dolfinx.fem.Expression(rho, self.V.element.interpolation_points)
        self._negative_mass = dolfinx.fem.form(self.xp.maximum(-self.rho, 0.0) * dxl)
        set_default_options(PREFIX, NEWTON)
        self.problem = dolfinx.fem.petsc.NonlinearProblem(
            residual, self.w, petsc_options_prefix=PREFIX
        )
        self.snes = self.problem.solver
        # On the object, not in the options database: there they would outlive this solver
        # and override the next one's case keys in the same process (sweeps, notebooks).
        # The command line still wins through setFromOptions.
        self.snes.setTolerances(rtol=params["rtol"], atol=params["atol"], max_it=params["max_it"])
        use_direct_lu(self.snes.getKSP())
        self.snes.setFromOptions()
        self._set_unknowns_from_density()

    def _potential_min(self) -> float:
        """Min V over the vertices (0 for V = 0)."""
        x = self.mesh.geometry.x[:, : self.case.dim]
        return self.comm.allreduce(
            float(self.energy.potential_value(x).min(initial=np.inf)), op=MPI.MIN
        )

    def _set_unknowns_from_density(self) -> None:
        """Nodal g = ρ e^{V/D}, or (ρ, μ = D·U'(ρ) + V), from ``self.rho``."""
        points = self.V.element.interpolation_points
        if self.slotboom:
            self.w.interpolate(dolfinx.fem.Expression(self.rho / self._weight, points))
        else:
            mu = self.energy.first_variation(self.rho, self.V_ufl, self.xp)
            self.w.sub(0).interpolate(self.rho)
            self.w.sub(1).interpolate(dolfinx.fem.Expression(mu, points))
        self.w.x.scatter_forward()

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore the density and re-derive the Newton unknowns from it."""
        super().set_state(state)
        self._set_unknowns_from_density()

    def step(self, tau: float) -> int:
        """One implicit Euler step of size τ; returns the Newton iterations."""
        self.rho_old.x.array[:] = self.rho.x.array
        saved = self.w.x.array.copy()
        self.tau.value = tau
        self.problem.solve()
        self.linear_iterations = self.snes.getLinearSolveIterations()
        reason = self.snes.getConvergedReason()
        if reason <= 0 or not np.all(np.isfinite(self.w.x.array)):
            self.w.x.array[:] = saved
            raise SolverError(
                f"SNES did not converge (reason {_reason_name(reason)}, "
                f"{self.snes.getIterationNumber()} iterations)",
                iterations=self.snes.getIterationNumber(),
            )
        self.rho.interpolate(self._rho_expr)
        self.rho.x.scatter_forward()
        negative = self.integrate(self._negative_mass) / self.integrate(self._forms["mass"])
        if negative > NEGATIVE_MASS_SHARE:
            self.rho.x.array[:] = self.rho_old.x.array
            self.w.x.array[:] = saved
            raise SolverError(
                f"the density went negative on {negative:.2%} of the mass (the power law's "
                "cell-averaged mobility does not keep ρ ≥ 0 where the drift points into the "
                "support; fem-jko does)",
                iterations=self.snes.getIterationNumber(),
            )
        return self.snes.getIterationNumber()

    def invariants(self) -> frozenset[str]:
        """The discrete energy decays for any τ; ρ > 0 too in the linear (Slotboom) case."""
        if self.slotboom:
            return frozenset({"energy_decay", "positivity"})
        return frozenset({"energy_decay"})

    def save(self) -> dict[str, Any]:
        """ρ, ρ_old and the Newton unknowns."""
        return {**super().save(), "w": self.w.x.array.copy()}

    def restore(self, saved: dict[str, Any]) -> None:
        """Undo to :meth:`save`."""
        super().restore(saved)
        self.w.x.array[:] = saved["w"]


def _reason_name(reason: int) -> str:
    names = {v: k for k, v in vars(PETSc.SNES.ConvergedReason).items() if isinstance(v, int)}
    return names.get(reason, str(reason))
