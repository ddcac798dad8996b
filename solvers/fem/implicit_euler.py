"""``fem-implicit``: implicit Euler on the PDE itself — the baseline.

    ∂_t ρ = div( ρ ∇μ ),    μ = δF/δρ = D·U'(ρ) + V + W∗ρ,    no-flux boundary.

P1 in space with the mass lumped (m_i = ∫φ_i), implicit Euler in time.  Mass is
conserved exactly in both forms below (every flux term vanishes against v = 1), and the
lumped energy F_h(ρ) = Σ_i m_i (D·U(ρ_i) + V_i ρ_i) is what the schemes dissipate.

**Linear diffusion** (entropy, U = ρ log ρ, so ρ∇μ = D∇ρ + ρ∇V): an exponentially
fitted (Scharfetter–Gummel) flux on the edges of the mesh graph,

    m_i (ρ_i - ρ_i^n)/τ + Σ_j a_ij F_ij = 0,
    F_ij = D [ B(δ_ij) ρ_i - B(-δ_ij) ρ_j ],    δ_ij = (V_j - V_i)/D,

with a_ij = -K_ij the transmissibilities of the P1 stiffness matrix
(:mod:`wgf.solvers.fem.graph`) and B(x) = x/(e^x - 1) the Bernoulli function.  In the
Slotboom variable g = ρ e^{V/D}, F_ij = D w_ij (g_i - g_j) where w_ij = B(δ_ij) e^{-V_i/D}
is the *harmonic* mean of e^{-V/D} along the edge (V linear on it): the edge-averaged
finite elements of Xu and Zikatanov (Math. Comp. 68, 1999).  Why this form:

* nothing underflows: the coefficients are D a_ij B(±δ_ij), never the weight e^{-V/D}
  (which is below the smallest double once ΔV/D > 745); B(x) ∈ (0, 1 + |x|] is
  evaluated without overflow or cancellation (:func:`~wgf.solvers.fem.graph.bernoulli`);
* the profile e^{-V/D} is an exact discrete steady state (F_ij = 0 on it), so a
  confining V does not leak mass uphill however small D is — the cell-wise *arithmetic*
  mean of e^{-V/D} used before is dominated by the cell's largest weight, and at
  |∇V| h/D of a few it moved the density against the drift (L1 errors of order one);
* positivity: F_ij = -F_ji, so the matrix M/τ + L of the step has zero column sums
  in L, a positive diagonal and off-diagonal entries -D a_ij B(-δ_ij) ≤ 0 where
  a_ij ≥ 0 (non-obtuse meshes; the summed a_ij of 2-D Delaunay meshes): it is an
  M-matrix, so ρ^{n+1} > 0 for every τ (discrete maximum principle);
* energy: μ_i = D log g_i + const and (g_i - g_j)(log g_i - log g_j) ≥ 0 give
  Σ_i m_i μ_i (ρ_i^{n+1} - ρ_i^n) ≤ 0, and convexity of F_h gives
  F_h(ρ^{n+1}) ≤ F_h(ρ^n) at every step, for any τ (again where a_ij ≥ 0);
* accuracy: for |δ| ≪ 1, B(±δ) = 1 ∓ δ/2 + O(δ²) and the scheme is the centred P1
  one (second order in h); where the cell Péclet number Pe = |∇V| h/D ≈ |δ_ij| exceeds
  2 it turns into upwinding, stable but first order with an artificial diffusion that
  grows with Pe.  The solver then logs one WARNING per run naming the largest Pe on the
  edges where the density is at least ``SUPPORT_SHARE`` of its peak (checked on ρ^n
  before every step until it fires): refine the mesh.

The step is linear in ρ: SNES takes one Newton iteration with the step matrix as its
Jacobian, and the LU factors are reused while τ does not change.

**Power law and no internal energy**: the chemical-potential form, every term
integrated by the vertex rule,

    Σ_i m_i (ρ_i - ρ_i^n)/τ v_i + Σ_K |K| mean_{i∈K}(ρ_i) ∇μ·∇v = 0,
    μ_i = D·U'(ρ_i) + V(x_i)  at every vertex,

so μ is exactly the nodal derivative of F_h and testing with v = μ and convexity give
F_h(ρ^{n+1}) + τ Σ_K |K| mean(ρ) |∇μ|² ≤ F_h(ρ^n).  The unknowns are (ρ, μ); the μ row
being nodal, every Newton system is solved through its exact reduction to ρ
(:class:`_ChemicalPotentialScheme`).  Its residual and matrices are sums over the cells
of the vertex rule's tensors (:mod:`wgf.solvers.fem.vertex_rule`; on quadrilaterals the
mean of ρ above is the rule's vertex-by-vertex sum), a few NumPy passes and one COO
fill per matrix instead of the assembly of UFL forms.  U'(ρ) and the mobility are
evaluated at max(ρ, 0), so Newton iterates that overshoot below zero near the free
boundary stay well defined.  The centred mobility does not guarantee ρ ≥ 0 there;
``min_density`` records the undershoot, and a step whose negative part holds more than
``NEGATIVE_MASS_SHARE`` of the mass is refused (retried with a smaller τ, then exit 3):
near the steady state of a confining potential the drift points into the support and the
cell average drains the vertices just outside it (fem-jko keeps ρ ≥ 0).

**Interaction** (``[energy.interaction]``): semi-implicit, W∗ρ^n explicit.  At the start
of each step W∗ρ^n is evaluated at the vertices
(:class:`~wgf.solvers.fem.interaction.MeshConvolution`) and added to V: the fitted flux
takes the effective potential V + W∗ρ^n in δ_ij (so the step matrix, and its LU
factors, change every step), and the (ρ, μ) form takes μ_i = D·U'(ρ_i) + V_i +
(W∗ρ^n)_i.  The step is then the scheme above for the convex energy
F̃(ρ) = F_h,0(ρ) + ⟨W∗ρ^n, ρ⟩ (F_h,0 without the pair term), which it dissipates, and
with δρ = ρ^{n+1} - ρ^n and the symmetric discrete pair form
F_h(ρ) = F_h,0(ρ) + ½⟨W∗ρ, ρ⟩,

    F_h(ρ^{n+1}) = F_h(ρ^n) + [F̃(ρ^{n+1}) - F̃(ρ^n)] + ½⟨W∗δρ, δρ⟩ ≤ F_h(ρ^n) + ½⟨W∗δρ, δρ⟩.

So the energy decays up to the defect ½⟨W∗δρ, δρ⟩, recorded at every step as the
diagnostic ``interaction_defect`` (as fem-jko records it) and added to the step
acceptance's tolerance (:mod:`wgf.solvers.acceptance`).  It is ≤ 0 for kernels that are
negative semidefinite on mean-zero measures (r²/2, the attractive Newtonian kernel) up
to the positive self-pair averages on the diagonal, O(h^d) small: there the energy
decays outright.  A linear problem stays linear: no Newton on the nonlocal system.
Positivity of the fitted flux does not depend on the potential, so it holds too.

Failures say whether a smaller τ can cure them (:class:`~wgf.cases.errors.SolverError`
``tau_helps``): a Newton or linear solve that does not converge can; a residual that
is not finite before the first iteration (τ only scales ρ - ρ^n, which is zero there)
cannot.

Newton and the free boundary (power law): at a vertex outside the support the
linearisation has neither mobility (ρ⁺ = 0 on its cells) nor a pressure response
(c'(0) = 0), so one Newton step fills only the vertices next to the support, and a step
whose front crosses k cells takes about k + 2 iterations: the counts grow like τ/h
(porous_medium_2d, m = 2: 4 per step at 64², 7-9 at 512²).  A first guess with the front
already moved does not help: the first Newton step empties most of the predicted ring
again (measured: benchmarks/README.md).  fem-jko's unknown ϕ lives everywhere and has no
such limit.

Each step is one PETSc SNES solve (Newton, backtracking line search).  Its linear
solves: MUMPS LU for the fitted flux (the matrix is constant while τ is, so one
factorisation serves every step and each step costs two triangular solves); for the
reduced power-law system, PETSc's LU without pivoting in a nested-dissection ordering on
one rank (a third of MUMPS's cost; its diagonal M/τ dominates) and GMRES + GAMG on
several (no parallel LU of this PETSc build is as fast; MUMPS without diffusion).  A
GAMG solve short of its tolerance is done again by MUMPS LU, that system only; any other
failed solve (a zero pivot, another preconditioner) has the step redone with MUMPS LU.
Both are counted (diagnostic ``lu_fallbacks``).  Every PETSc option
can be changed on the command line under the prefix ``fem_implicit_``, e.g.
``-fem_implicit_snes_monitor`` or ``-fem_implicit_pc_type gamg``.
"""

from __future__ import annotations

import dolfinx_solver  # noqa: F401 - must precede dolfinx

import logging
import math
import weakref
from collections.abc import Callable
from typing import Any

import dolfinx.fem
import dolfinx.fem.petsc
import dolfinx.la
import numpy as np
from mpi4py import MPI
from petsc4py import PETSc

from wgf.cases import Case
from wgf.cases.errors import SolverError, UserError
from wgf.solvers.fem.base import FEFlowSolver
from wgf.solvers.fem.graph import PECLET_LIMIT, SUPPORT_SHARE, bernoulli, mesh_graph
from wgf.solvers.fem.petsc_options import (
    NEWTON,
    set_default_options,
    set_from_options_with,
    use_direct_lu,
)
from wgf.solvers.fem.vertex_rule import VertexRuleStiffness, coo_matrix

log = logging.getLogger(__name__)

PREFIX = "fem_implicit_"
#: A step is refused when the negative part of ρ holds more than this share of the mass.
NEGATIVE_MASS_SHARE = 0.05
#: Relative tolerance and iteration cap of the Krylov solve of S, the Newton systems
#: reduced to ρ (``-fem_implicit_pc_type gamg``): tight enough that Newton converges as
#: with LU.
SCHUR_RTOL = 1e-9
SCHUR_MAX_IT = 100
#: GAMG's strength threshold on S: the exterior's rows hold M/τ and weak couplings, which
#: it drops (512², m = 2: set-up 0.31 s against 0.82 s at the default, 12 GMRES
#: iterations against 12; benchmarks/README.md).
GAMG_THRESHOLD = 0.02
#: GAMG's smoother on S: SOR sweeps (within each rank) in place of PETSc's default,
#: Chebyshev on Jacobi, whose eigenvalue bounds suit S's transport part less (512², m = 2,
#: 2 ranks: GMRES iterations 694 → 390 in the first step, 99 → 65 in a warm one; the first
#: step 10.1 s against 11.4-12.3 s, warm steps alike; benchmarks/README.md).
GAMG_SMOOTHER = {"mg_levels_ksp_type": "richardson", "mg_levels_pc_type": "sor"}
#: Newton iterations in a row that may leave ‖F‖ above its lowest value before the step
#: fails as stalled (:class:`_NewtonTest`).
STALLED_ITERATIONS = 5
#: ρ⁺ counts as positive in the Jacobian above this share of the peak density (round-off).
SWITCH_ABOVE = 1e-14
#: Backtracking by halving, not by PETSc's cubic fit: on the (ρ, μ) form of m = 3 at 512²
#: the fit kept choosing steps of 10⁻²-10⁻⁴ and the first step stalled at ‖R‖ ≈ 0.3 (43
#: iterations, then a failed line search); halving converges in 15.
BACKTRACKING = {"snes_linesearch_order": 1}


class Solver(FEFlowSolver):
    """Implicit Euler for the gradient-flow PDE (see the module docstring)."""

    name = "fem-implicit"
    adaptive_tau = True

    def __init__(self, case: Case, comm: MPI.Comm, params: dict[str, Any]) -> None:
        super().__init__(case, comm, params)
        set_default_options(PREFIX, {**NEWTON, **BACKTRACKING})
        self._negative_mass = dolfinx.fem.form(self.xp.maximum(-self.rho, 0.0) * self.dx_lumped)
        self._scheme: _FittedScheme | _ChemicalPotentialScheme = (
            _FittedScheme(self) if self.energy.linear_diffusion else _ChemicalPotentialScheme(self)
        )
        #: ½⟨W∗δρ, δρ⟩ of the last step: what the energy may rise by (module docstring).
        self.interaction_defect = 0.0
        if self.convolution is not None:  # the first guess of μ includes W∗ρ⁰
            self._freeze_interaction()
            self._scheme.reset()

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore the density and re-derive W∗ρ and the Newton unknowns from it."""
        super().set_state(state)
        self._freeze_interaction()
        self._scheme.reset()

    def invariants(self) -> frozenset[str]:
        """The discrete energy decays for any τ; ρ > 0 too with the fitted flux (M-matrix).

        With an interaction the decay holds up to ``interaction_defect``, which the step
        acceptance adds to its tolerance (module docstring); positivity is unchanged.
        """
        if isinstance(self._scheme, _FittedScheme):
            return frozenset({"energy_decay", "positivity"})
        return frozenset({"energy_decay"})

    def save(self) -> dict[str, Any]:
        """ρ, ρ_old and the last step's interaction defect."""
        saved = super().save()
        saved["interaction_defect"] = self.interaction_defect
        return saved

    def restore(self, saved: dict[str, Any]) -> None:
        """Undo to :meth:`save`'s density; W∗ρ and the Newton unknowns are re-derived from it."""
        super().restore(saved)
        self.interaction_defect = saved["interaction_defect"]
        self._freeze_interaction()
        self._scheme.reset()

    def diagnostics(self, t: float) -> dict[str, float]:
        """FE diagnostics, plus ``interaction_defect`` with an interaction."""
        out = super().diagnostics(t)
        if self.convolution is not None:
            out["interaction_defect"] = self.interaction_defect
        return out

    def _freeze_interaction(self) -> None:
        """W∗ρ at the current density into the scheme's potential (nothing without W)."""
        if self.convolution is not None:
            self._scheme.set_interaction(self.convolution(self.rho.x.array))

    def step(self, tau: float) -> int:
        """One implicit Euler step of size τ; returns the Newton iterations."""
        self.rho_old.x.array[:] = self.rho.x.array
        # W∗ρⁿ of the density the step starts from, whatever happened before (a retry, a
        # resume): explicit in the step (module docstring).
        self._freeze_interaction()
        try:
            its = self._scheme.solve(tau)
        finally:
            self.linear_iterations = self._scheme.linear_iterations()
        negative = self.integrate(self._negative_mass) / self.integrate(self._forms["mass"])
        if negative > NEGATIVE_MASS_SHARE:
            self.rho.x.array[:] = self.rho_old.x.array
            self._scheme.reset()
            raise self._scheme.undershoot(negative, its)
        self._scheme.accepted()
        if self.convolution is not None:
            self.interaction_defect = self.convolution.energy_of(
                self.rho.x.array - self.rho_old.x.array
            )
        return its

    def peclet(self) -> float:
        """The largest cell Péclet number |∇V| h/D where the density lives (0 if not linear)."""
        return self._scheme.peclet() if isinstance(self._scheme, _FittedScheme) else 0.0


class _FittedScheme:
    """The exponentially fitted edge flux of linear diffusion (module docstring)."""

    def __init__(self, solver: Solver) -> None:
        self.solver = weakref.proxy(solver)  # no cycle: see _affine_residual's caller
        comm, energy = solver.comm, solver.energy
        self.graph = graph = mesh_graph(solver.V)
        nodes = solver.V.tabulate_dof_coordinates()[: graph.n_owned, : solver.case.dim]
        #: V at the owned vertices; the step's potential adds W∗ρⁿ to it (interaction).
        self.external = energy.potential_value(nodes)
        # Edges of zero transmissibility (the hypotenuses of right triangles) carry no flux.
        self.resolved = graph.a > 1e-12 * comm.allreduce(
            float(graph.a.max(initial=0.0)), op=MPI.MAX
        )
        self.values = np.zeros(len(graph.columns))  # L in CSR order: (Lρ)_i = Σ_j a_ij F_ij
        self._set_potential(self.external)
        self.masses = solver.lumped_masses()[: graph.n_owned]
        self.A = graph.matrix(self.values)
        self.x, self.b = self.A.createVecRight(), self.A.createVecLeft()
        self.snes = PETSc.SNES().create(comm)
        self.snes.setOptionsPrefix(PREFIX)
        # The callbacks hold the matrix and right-hand side, not self (and self holds
        # the solver weakly): a reference cycle would leave the collective destruction
        # of the PETSc objects (MUMPS's) to the garbage collector, which runs at
        # different moments on different ranks: a deadlock under MPI.
        self.snes.setFunction(_affine_residual(self.A, self.b), self.A.createVecLeft())
        self.snes.setJacobian(_constant_jacobian, self.A, self.A)
        _configure(self.snes, solver.params)
        self.warned, self.steps = False, 0

    def _set_potential(self, potential: np.ndarray) -> None:
        """The flux matrix L and the edge Péclet numbers for a vertex potential (owned)."""
        graph, D = self.graph, self.solver.energy.diffusivity
        delta = (graph.at_neighbours(potential) - potential[graph.row]) / D  # δ_ij, each edge
        flux = D * graph.a
        self.values[graph.edge] = -flux * bernoulli(-delta)
        self.values[graph.diagonal] = np.bincount(
            graph.row, weights=flux * bernoulli(delta), minlength=graph.n_owned
        )
        self.edge_peclet = np.where(self.resolved, np.abs(delta), 0.0)
        self.tau = 0.0  # M/τ + L must be assembled again

    def set_interaction(self, potential: np.ndarray) -> None:
        """Fit the flux to V + W∗ρⁿ (``potential``: W∗ρⁿ at the local dofs, owned first)."""
        self._set_potential(self.external + potential[: self.graph.n_owned])

    def _set_tau(self, tau: float) -> None:
        """Assemble M/τ + L (a new τ or L only: the LU factors are kept otherwise)."""
        if tau == self.tau:
            return
        values = self.values.copy()
        values[self.graph.diagonal] += self.masses / tau
        self.graph.set_values(self.A, values)
        self.tau = tau

    def solve(self, tau: float) -> int:
        """ρ^{n+1} from ρ^n = ``solver.rho_old``; returns the Newton iterations."""
        rho, own = self.solver.rho, slice(0, self.graph.n_owned)
        # Checked on ρ^n, at the step rather than at construction: `wgf run` builds every
        # solver before running any, and the warning belongs with this solver's run.
        self._warn_if_unresolved()
        self._set_tau(tau)
        self.b.array[:] = self.masses / tau * self.solver.rho_old.x.array[own]
        self.x.array[:] = rho.x.array[own]
        self.snes.solve(None, self.x)
        its, reason = self.snes.getIterationNumber(), self.snes.getConvergedReason()
        if reason <= 0 or not np.all(np.isfinite(self.x.array)):
            raise _newton_failure(reason, its, self.solver.comm)
        rho.x.array[own] = self.x.array
        rho.x.scatter_forward()
        return its

    def reset(self) -> None:
        """Nothing besides ρ to restore (ρ is the unknown; L follows W∗ρ, set before)."""

    def linear_iterations(self) -> int:
        """Krylov iterations of the last step (an LU solve counts one)."""
        return self.snes.getLinearSolveIterations()

    def accepted(self) -> None:
        """Count the accepted steps (for the warning's text)."""
        self.steps += 1

    def peclet(self) -> float:
        """The largest |δ_ij| = |V_j - V_i|/D on edges where ρ ≥ SUPPORT_SHARE × its peak."""
        g, comm = self.graph, self.solver.comm
        rho = self.solver.rho.x.array[: g.n_owned]
        peak = comm.allreduce(float(rho.max(initial=0.0)), op=MPI.MAX)
        floor = SUPPORT_SHARE * peak
        on = (rho[g.row] >= floor) & (g.at_neighbours(rho) >= floor)
        return comm.allreduce(float(self.edge_peclet[on].max(initial=0.0)), op=MPI.MAX)

    def _warn_if_unresolved(self) -> None:
        """Log the Péclet warning (rank 0) the first time Pe > PECLET_LIMIT."""
        if self.warned:
            return
        pe = self.peclet()
        if pe <= PECLET_LIMIT:
            return
        self.warned = True
        if self.solver.comm.rank == 0:  # a global number: one line, not one per rank
            log.warning(
                "fem-implicit: the mesh does not resolve the drift: cell Péclet number "
                "|∇V|h/D = %.3g > %g where the density lives (%s); there the fitted flux is "
                "upwinding, positive and stable but first order (artificial diffusion "
                "≈ |∇V|h/2), and the error can be large: refine domain.cells",
                pe,
                PECLET_LIMIT,
                f"{self.steps} steps into the run" if self.steps else "at the start",
            )

    def undershoot(self, share: float, its: int) -> SolverError:
        """ρ < 0 needs negative transmissibilities (obtuse cells); a smaller τ helps."""
        return SolverError(
            f"the density went negative on {share:.2%} of the mass (obtuse cells: the "
            "step matrix is not an M-matrix)",
            iterations=its,
        )


def _affine_residual(A: PETSc.Mat, b: PETSc.Vec) -> Callable[..., None]:
    """The SNES function F(x) = A x - b (with A = M/τ + L and b = M ρ^n/τ: the step)."""

    def residual(snes: PETSc.SNES, x: PETSc.Vec, F: PETSc.Vec) -> None:
        A.mult(x, F)
        F.axpy(-1.0, b)

    return residual


def _constant_jacobian(snes: PETSc.SNES, x: PETSc.Vec, J: PETSc.Mat, P: PETSc.Mat) -> None:
    """Nothing to do: the Jacobian is the step matrix, assembled once per τ."""


class _ChemicalPotentialScheme:
    """The chemical-potential form of the power law and of no internal energy (module docstring).

    Newton on (ρ, μ), each of its linear solves reduced to ρ.  The unknowns are the owned
    ρ and μ, one after the other, and the Jacobian is

        [ A   K ]    A = M/τ + ∂_ρK(ρ)[·] μ,   K = K(ρ) the stiffness matrix weighted by ρ⁺,
        [-MC  M ]    M the lumped masses,       C = diag(c'(ρ)), c = D·U' + V (+ W∗ρⁿ),

    whose μ row is diagonal: eliminating μ is exact and local, and leaves
    S = A + K C, with the P1 pattern (:class:`_Elimination`).  S has half the unknowns of
    the mixed matrix and a quarter of its nonzeros; it is the one factorised (PETSc's LU
    without pivoting on one rank, a third of MUMPS's cost) or solved by GMRES + GAMG (on
    several ranks, :func:`_configure_reduced`): every ``fem_implicit_`` KSP/PC option goes
    to the solver of S.  Newton itself stays that of the mixed form: its μ carries the
    linearisation of c, which converges faster than Newton on ρ alone with μ = c(ρ) where
    c is not linear (m = 3, 512²: 49 against 91 iterations in 6 steps; benchmarks/README.md).
    c'(ρ) is taken as 0 where ρ ≤ 0 (U' is evaluated at max(ρ, 0)), so m < 2, whose U''
    is infinite at ρ = 0, is solved too (the mixed Jacobian assembled by UFL held that
    infinity, and its first linear solve failed); where c is concave the step's μ part is
    re-aimed at c (:meth:`_land_on_concave_potential`).  In the Jacobian ρ counts as
    positive above ``SWITCH_ABOVE`` × the peak density: the round-off signs of drained
    vertices (ρ = ±1e-18, which differ with the ranks' summation order) no longer switch
    its columns, and 1 and 2 ranks take the same Newton iterations.
    """

    def __init__(self, solver: Solver) -> None:
        self.solver = weakref.proxy(solver)  # no cycle: see _affine_residual's caller
        V, comm = solver.V, solver.comm
        self.tau = 1.0
        nodes = V.tabulate_dof_coordinates()[:, : solver.case.dim]
        #: V, then V + W∗ρⁿ with an interaction, at the local dofs (ghosts included).
        self.external = solver.energy.potential_value(nodes)
        self.potential = self.external.copy()
        self.mu = dolfinx.fem.Function(V, name="chemical_potential")
        #: ∫ρ⁺∇μ·∇v by the vertex rule, cell by cell: R_ρ, K and ∂_ρK(ρ)[·]μ in NumPy.
        self.cells = VertexRuleStiffness(V, solver.case.dim)
        imap = V.dofmap.index_map
        self.n = n = imap.size_local
        self._flux = dolfinx.la.vector(imap)  # R_ρ's flux rows, ghosts summed into owners
        owned = np.arange(n)
        rows, cols = self.cells.pattern()
        rows, cols = np.concatenate([owned, rows]), np.concatenate([owned, cols])
        # A, K and S: one P1 pattern, the owned diagonal (M/τ) first, then the cells (a
        # duplicate keeps the COO layout, so the preallocation is done once).
        self.A = coo_matrix(imap, rows, cols, comm)
        self.K, self.S = self.A.duplicate(), self.A.duplicate()
        self.masses = solver.lumped_masses()[:n]
        #: c'(ρ) at the owned vertices, set with each Jacobian.
        self.slope = np.zeros(n)
        self.x = PETSc.Vec().createMPI((2 * n, PETSc.DECIDE), comm=comm)
        sizes = (self.x.getSizes(), self.x.getSizes())
        jacobian = PETSc.Mat().createPython(sizes, _MixedJacobian(self), comm=comm)
        jacobian.setUp()
        self.snes = PETSc.SNES().create(comm)
        self.snes.setOptionsPrefix(PREFIX)
        # Bound methods would make a cycle solver → scheme → SNES → scheme (see
        # _affine_residual's caller); the proxies below hold the scheme weakly.
        scheme = weakref.proxy(self)
        self.snes.setFunction(lambda _s, x, F: scheme._residual_at(x, F), self.x.duplicate())
        self.snes.setJacobian(lambda _s, x, J, _P: scheme._jacobian_at(x), jacobian, jacobian)
        self.snes.setLineSearchPreCheck(lambda x, y: scheme._land_on_concave_potential(x, y))
        #: The solver of S (prefix ``fem_implicit_``), and MUMPS once it has failed.
        self.inner = PETSc.KSP().create(comm)
        self.inner.setOptionsPrefix(PREFIX)
        energy = solver.energy
        diffusion = energy.has_internal and energy.diffusivity > 0.0
        #: S is solved by GAMG, whose hierarchy is rebuilt at each step (_configure_reduced).
        self._multigrid = _configure_reduced(self.inner, diffusion and comm.size > 1)
        self.inner.setOperators(self.S)
        _configure(self.snes, solver.params, _Elimination(self).install)
        self.snes.setConvergenceTest(_NewtonTest())
        self._lu: PETSc.KSP | None = None
        self._linear = 0
        #: GAMG: whether the next solve of S makes a new hierarchy (at each step).
        self._rebuild = False
        self.reset()

    def _set_state(self, x: PETSc.Vec) -> None:
        """ρ and μ (ghosts too) from the Newton unknowns x = (ρ, μ) at the owned vertices."""
        n, s = self.n, self.solver
        for function, part in ((s.rho, x.array_r[:n]), (self.mu, x.array_r[n:])):
            function.x.array[:n] = part
            function.x.scatter_forward()

    def _residual_at(self, x: PETSc.Vec, F: PETSc.Vec) -> None:
        self._set_state(x)
        n, rho, flux = self.n, self.solver.rho.x.array, self._flux
        flux.array[:] = self.cells.rows(
            self.cells.flux(np.maximum(rho, 0.0), self.mu.x.array), len(flux.array)
        )
        flux.scatter_reverse(dolfinx.la.InsertMode.add)
        chemical = self.solver.energy.first_variation(rho[:n], self.potential[:n])
        change = rho[:n] - self.solver.rho_old.x.array[:n]
        F.array[:n] = self.masses * change / self.tau + flux.array[:n]
        F.array[n:] = self.masses * (self.mu.x.array[:n] - chemical)

    def _jacobian_at(self, x: PETSc.Vec) -> None:
        """A, K and S = A + K diag(c') at x; the shell matrix and preconditioner use them."""
        self._set_state(x)
        rho, mu, cells = self.solver.rho.x.array, self.mu.x.array, self.cells
        # ρ⁺'s switch at round-off above zero, not at zero: drained vertices hold ρ = ±1e-18
        # from round-off, whose sign (which differs with the ranks' summation order) would
        # switch an O(1) column of the Jacobian and part the Newton paths of 1 and 2 ranks.
        peak = self.solver.comm.allreduce(float(rho[: self.n].max(initial=0.0)), op=MPI.MAX)
        positive = rho > SWITCH_ABOVE * peak
        # c'(ρ) = D·U''(ρ) = D·P'(ρ)/ρ, and 0 where ρ is not positive (U' is taken at
        # max(ρ, 0)); at the ghosts too, which are columns of the cells' blocks.
        floored = np.maximum(rho, np.finfo(float).tiny)
        slope = np.where(positive, self.solver.energy.dpressure(floored) / floored, 0.0)
        self.slope[:] = slope[: self.n]
        diagonal = self.masses / self.tau
        stiffness = cells.weighted(np.maximum(rho, 0.0))
        derivative = cells.derivative(mu, positive.astype(float))
        self.K.setValuesCOO(np.concatenate([np.zeros_like(diagonal), stiffness.ravel()]))
        self.A.setValuesCOO(np.concatenate([diagonal, derivative.ravel()]))
        derivative += stiffness * slope[cells.dofs][None]
        self.S.setValuesCOO(np.concatenate([diagonal, derivative.ravel()]))

    def _land_on_concave_potential(self, x: PETSc.Vec, y: PETSc.Vec) -> None:
        """Where c is concave between ρ and the full step's ρ, aim μ at c of that ρ.

        Newton's μ is c's tangent at ρ.  Where c is concave (U' ∝ ρ^{m-1}, m < 2), the
        tangent overshoots, by far next to ρ = 0 where c' is infinite: the μ row then grew
        10⁴-fold in one step (m = 1.5, 40², DIVERGED_DTOL).  There the step's μ part is
        set so that the full step lands on c(ρ - δρ) (SNES steps to x - λy).
        """
        n, c = self.n, self.solver.energy.first_variation
        rho, new, potential = x.array_r[:n], x.array_r[:n] - y.array_r[:n], self.potential[:n]
        ends = c(rho, potential), c(new, potential)
        middle = c(0.5 * (rho + new), potential)
        scale = np.abs(ends[0]) + np.abs(ends[1]) + np.finfo(float).tiny
        concave = middle - 0.5 * (ends[0] + ends[1]) > 1e-12 * scale
        y.array[n:][concave] = x.array_r[n:][concave] - ends[1][concave]

    def set_interaction(self, potential: np.ndarray) -> None:
        """Use c = D·U'(ρ) + V + W∗ρⁿ from now on (``potential``: W∗ρⁿ at the local dofs)."""
        self.potential = self.external + potential

    def reset(self) -> None:
        """(ρ, μ = c(ρ)) from the solver's density; no step to extrapolate from."""
        rho = self.solver.rho.x.array
        self.mu.x.array[:] = self.solver.energy.first_variation(rho, self.potential)
        self._previous: tuple[np.ndarray, float] | None = None

    def _unknowns(self) -> np.ndarray:
        """(ρ, μ) at the owned vertices, as the Newton unknowns are laid out."""
        n = self.n
        return np.concatenate([self.solver.rho.x.array[:n], self.mu.x.array[:n]])

    def solve(self, tau: float) -> int:
        """ρ^{n+1} from ρ^n = ``solver.rho_old``; returns the Newton iterations.

        Newton starts from (ρ, μ) extrapolated linearly from the last two steps (from the
        last one after :meth:`reset`: a retry, a resume, the first step).

        If a linear solve fails (a zero pivot of the LU that does not pivot, a Krylov solve
        with a preconditioner other than GAMG), the step is redone once with MUMPS LU
        (counted in ``lu_fallbacks``; the iterations of both attempts count).  GAMG's
        failures are handled solve by solve (:meth:`solve_reduced`).
        """
        start = self._unknowns()
        saved = (self.solver.rho.x.array.copy(), self.mu.x.array.copy())
        guess = start
        if self._previous is not None:  # the first guess extrapolated from the last step
            before, tau_prev = self._previous
            guess = start + (tau / tau_prev) * (start - before)
        self.tau = tau
        self._linear = 0
        # The support moves by a few cells a step: prolongators kept from the first step's
        # matrix took 26 GMRES iterations per solve at 512², fresh ones 12.
        self._rebuild = self._multigrid
        its, reason = self._newton(guess)
        if reason == PETSc.SNES.ConvergedReason.DIVERGED_LINEAR_SOLVE and self._can_fall_back():
            more, reason = self._solve_by_lu(guess)
            its += more
        if reason <= 0 or not np.all(np.isfinite(self.x.array)):
            self.solver.rho.x.array[:], self.mu.x.array[:] = saved
            raise _newton_failure(reason, its, self.solver.comm)
        self._set_state(self.x)
        self._previous = (start, tau)
        return its

    def _newton(self, guess: np.ndarray) -> tuple[int, int]:
        """SNES from ``guess`` (owned ρ then μ); its iterations and converged reason."""
        self.x.array[:] = guess
        self.snes.solve(None, self.x)
        return self.snes.getIterationNumber(), self.snes.getConvergedReason()

    def solve_reduced(self, rhs: PETSc.Vec, out: PETSc.Vec) -> bool:
        """S out = rhs by the solver of S; False if it failed.  Every iteration is counted.

        With GAMG the hierarchy is made at the first solve of each step.  A solve that
        fails is done again by MUMPS LU, this one system only (counted in
        ``lu_fallbacks``): the step's other solves keep the multigrid (1024², one rank,
        ``-fem_implicit_pc_type gamg``: the first step in 352 s, against 423 s when its
        failed first solve had the whole step redone by LU).  Not retried on a new
        hierarchy: one made in the middle of the first step's Newton failed where the one
        made at its first iterate took 27 iterations (512², m = 2, 2 ranks).
        """
        if self._rebuild:
            # The levels' smoothers read the options database when the hierarchy is made.
            set_default_options(PREFIX, GAMG_SMOOTHER)
            self.inner.reset()
            self.inner.setOperators(self.S)
            self._rebuild = False
        self.inner.solve(rhs, out)
        self._linear += self.inner.getIterationNumber()
        converged = self.inner.getConvergedReason() > 0
        if converged or not self._multigrid:
            return converged
        self.solver.lu_fallbacks += 1
        if self.solver.comm.rank == 0:
            log.info("  fem-implicit: GMRES + GAMG failed on S; MUMPS LU for this solve")
        lu = self._mumps()
        lu.solve(rhs, out)
        self._linear += 1
        return lu.getConvergedReason() > 0

    def _mumps(self) -> PETSc.KSP:
        if self._lu is None:
            self._lu = use_direct_lu(PETSc.KSP().create(self.solver.comm))
            self._lu.setOperators(self.S)
        return self._lu

    def linear_iterations(self) -> int:
        """Iterations of the solves of S in the last step, failed attempt included (LU: 1)."""
        return self._linear

    def _can_fall_back(self) -> bool:
        pc = self.inner.getPC()
        return pc.getType() != PETSc.PC.Type.LU or pc.getFactorSolverType() != "mumps"

    def _solve_by_lu(self, guess: np.ndarray) -> tuple[int, int]:
        """The step again with MUMPS LU as the solver of S."""
        self.solver.lu_fallbacks += 1
        if self.solver.comm.rank == 0:
            log.info("  fem-implicit: a linear solve failed; this step again with MUMPS LU")
        inner, multigrid = self.inner, self._multigrid
        self.inner, self._multigrid = self._mumps(), False
        try:
            return self._newton(guess)
        finally:
            self.inner, self._multigrid = inner, multigrid

    def accepted(self) -> None:
        """Nothing to do after an accepted step."""

    def undershoot(self, share: float, its: int) -> SolverError:
        """The centred mobility drains the vertices outside the support.

        Power law: a smaller τ lowers the share lost in one step (it did in
        porous_quartic_2d), so the driver may retry; the drain itself is spatial and comes
        back near the steady state.  No internal energy: nothing opposes the drift, the
        mass gathers into ever narrower clusters (point masses in the limit), and once they
        are narrower than the mesh the drain next to them grows whatever τ is — the failure
        time converges as τ → 0 (tokens_circle_usa from a 1 % cos 3θ bump: t = 1.05, 0.905,
        0.8725 for τ = 0.1, 0.02, 0.005) — so no retry.
        """
        head = f"the density went negative on {share:.2%} of the mass"
        energy = self.solver.energy
        if not energy.has_internal or energy.diffusivity == 0.0:
            return SolverError(
                f"{head}: with no internal energy nothing opposes the drift, which gathers "
                "the mass into clusters narrower than the mesh (the density tends to point "
                "masses; beside them the cell-averaged mobility drains the empty vertices); a "
                "finer mesh only postpones it: add diffusion "
                '(energy.internal = "entropy") or follow the clusters with blob or langevin',
                iterations=its,
                tau_helps=False,
            )
        return SolverError(
            f"{head} (the power law's cell-averaged mobility does not keep ρ ≥ 0 where the "
            "drift points into the support; fem-jko does)",
            iterations=its,
        )


class _MixedJacobian:
    """The (ρ, μ) Jacobian as a PETSc shell matrix: y = J x (for the line search's slope)."""

    def __init__(self, scheme: _ChemicalPotentialScheme) -> None:
        self.scheme = weakref.proxy(scheme)
        self.halves = _Halves(scheme.A)
        self.a_x, self.k_x = scheme.A.createVecLeft(), scheme.K.createVecLeft()

    def mult(self, _mat: PETSc.Mat, x: PETSc.Vec, y: PETSc.Vec) -> None:
        s, n = self.scheme, self.scheme.n
        x_rho, x_mu = self.halves.of(x)
        s.A.mult(x_rho, self.a_x)
        s.K.mult(x_mu, self.k_x)
        y.array[:n] = self.a_x.array_r + self.k_x.array_r
        y.array[n:] = s.masses * (x_mu.array_r - s.slope * x_rho.array_r)


class _Elimination:
    """The exact solve of the (ρ, μ) Newton system through S = A + K diag(c') (a shell PC).

    J (δρ, δμ) = (b_ρ, b_μ):  δμ = M⁻¹b_μ + c'δρ  and  S δρ = b_ρ - K M⁻¹ b_μ.
    A failed solve of S fails the preconditioner, hence the Newton step (SNES reports a
    failed linear solve, and the step falls back to MUMPS).
    """

    def __init__(self, scheme: _ChemicalPotentialScheme) -> None:
        self.scheme = weakref.proxy(scheme)
        self.halves = _Halves(scheme.A)
        self.rhs, self.d_rho = scheme.K.createVecLeft(), scheme.S.createVecRight()

    def install(self, ksp: PETSc.KSP) -> None:
        """Make ``ksp`` (SNES's) one application of this elimination.

        Its prefix becomes ``fem_implicit_mixed_``: the command line's ``fem_implicit_``
        KSP and PC options are the solver of S's.
        """
        ksp.setOptionsPrefix(f"{PREFIX}mixed_")
        ksp.setType(PETSc.KSP.Type.PREONLY)
        ksp.getPC().setType(PETSc.PC.Type.PYTHON)
        ksp.getPC().setPythonContext(self)

    def apply(self, pc: PETSc.PC, b: PETSc.Vec, x: PETSc.Vec) -> None:
        s, n, rhs, d_rho = self.scheme, self.scheme.n, self.rhs, self.d_rho
        b_rho, b_mu = self.halves.of(b)
        eliminated = b_mu.array_r / s.masses
        b_mu.array[:] = eliminated
        s.K.mult(b_mu, rhs)
        rhs.aypx(-1.0, b_rho)
        # The reason sticks to the PC until set again (a retry reuses it).
        ok = s.solve_reduced(rhs, d_rho)
        pc.setFailedReason(
            PETSc.PC.FailedReason.NOERROR if ok else PETSc.PC.FailedReason.SUBPC_ERROR
        )
        if not ok:  # whatever the failed solve left is no direction
            x.set(0.0)
            return
        x.array[:n] = d_rho.array_r
        x.array[n:] = eliminated + s.slope * d_rho.array_r


class _Halves:
    """The ρ and μ halves of a Newton vector, copied into two vectors made once."""

    def __init__(self, matrix: PETSc.Mat) -> None:
        self.first, self.second = matrix.createVecRight(), matrix.createVecRight()

    def of(self, x: PETSc.Vec) -> tuple[PETSc.Vec, PETSc.Vec]:
        """The halves of ``x``, in ``matrix``'s column layout (valid until the next call)."""
        n = self.first.getLocalSize()
        self.first.array[:] = x.array_r[:n]
        self.second.array[:] = x.array_r[n:]
        return self.first, self.second


def _configure(
    snes: PETSc.SNES,
    params: dict[str, Any],
    linear: Callable[[PETSc.KSP], object] = use_direct_lu,
) -> None:
    """The case's Newton tolerances and the linear solver, then the command line's options.

    ``linear`` sets up SNES's KSP: MUMPS LU by default.  On the object, not in the
    options database: there they would outlive this solver and override the next one's
    case keys in the same process (sweeps, notebooks).
    """
    snes.setTolerances(rtol=params["rtol"], atol=params["atol"], max_it=params["max_it"])
    linear(snes.getKSP())
    snes.setFromOptions()


def _configure_reduced(ksp: PETSc.KSP, multigrid: bool) -> bool:
    """The solver of S = A + K diag(c'), then the command line's options.

    By default on one rank PETSc's LU without pivoting (S's diagonal M/τ dominates; a
    third of MUMPS's cost, :func:`use_direct_lu`).  On several ranks no LU in this PETSc
    build is as fast as that one on one rank (512², ``benchmarks/parallel_lu.py``: MUMPS
    on 2 ranks at 0.5× its speed, SuperLU_dist 0.13×), so with ``multigrid`` (the power
    law on several ranks) S is solved by GMRES + GAMG to ``SCHUR_RTOL`` (2.4× it there).
    GAMG keeps its prolongators across a step's Newton iterations (the pattern is fixed),
    drops couplings below ``GAMG_THRESHOLD`` and smooths by SOR (``GAMG_SMOOTHER``); its
    hierarchy is rebuilt at each step (:meth:`_ChemicalPotentialScheme.solve_reduced`).
    On several ranks without diffusion (S is then a transport matrix, where GAMG was not
    measured) MUMPS LU.  Every
    ``-fem_implicit_`` KSP/PC option wins: ``-fem_implicit_pc_type lu`` or ``gamg``, or
    another preconditioner (GMRES to ``SCHUR_RTOL`` with it).  A failed solve is redone
    with MUMPS: GAMG's alone (:meth:`_ChemicalPotentialScheme.solve_reduced`), the others'
    with their step (:meth:`_ChemicalPotentialScheme.solve`).

    Gathering S onto one rank for PETSc's LU, the rest of the step still split, is
    ``-fem_implicit_pc_type telescope -fem_implicit_pc_telescope_reduction_factor
    <ranks> -fem_implicit_telescope_pc_type lu
    -fem_implicit_telescope_pc_factor_mat_solver_type petsc`` (512², 2 ranks: 0.91× of
    one rank); one rank then holds the whole factor, which does not scale.

    Returns:
        Whether S is solved by GAMG.
    """
    prefix = ksp.getOptionsPrefix() or ""
    default = PETSc.PC.Type.GAMG if multigrid else PETSc.PC.Type.LU
    chosen = PETSc.Options().getString(f"{prefix}pc_type", default)
    if chosen == PETSc.PC.Type.FIELDSPLIT:  # S is one field; the option was (ρ, μ)'s
        raise UserError(
            f"-{prefix}pc_type fieldsplit: fem-implicit's linear systems are reduced to ρ "
            f"and have one field; use -{prefix}pc_type gamg (GMRES + GAMG) or the default LU"
        )
    if chosen == PETSc.PC.Type.LU:
        use_direct_lu(ksp, pivoting=False)
        ksp.setFromOptions()
        return False
    ksp.setType(PETSc.KSP.Type.GMRES)
    ksp.setTolerances(rtol=SCHUR_RTOL, max_it=SCHUR_MAX_IT)
    # No restart within the cap (GMRES allocates its basis as it grows): the first solve
    # of a run took 89 iterations with restarts every 30, 46 without (512², one rank).
    ksp.setGMRESRestart(SCHUR_MAX_IT)
    ksp.getPC().setType(chosen)
    gamg = chosen == PETSc.PC.Type.GAMG
    defaults = (
        {"pc_gamg_reuse_interpolation": "true", "pc_gamg_threshold": GAMG_THRESHOLD} if gamg else {}
    )
    set_from_options_with(ksp, defaults)
    return gamg


class _NewtonTest:
    """SNES's tolerance test, stopping also when ‖F‖ has stopped falling.

    Backtracking accepts its last trial when the step has shrunk below its minimum; then
    ‖F‖ has not decreased, and Newton may have stalled: its direction is no descent
    direction of ‖F‖² (the Jacobian's ρ⁺ and c' switch near ρ = 0 while the step crosses
    it).  At porous_medium_2d, m = 1.5, 512² the first step repeated the same
    ‖F‖ = 0.547 to 12 digits from its 6th to its 100th iteration, then was retried at
    τ/2; now the step fails (``DIVERGED_LINE_SEARCH``) once ``STALLED_ITERATIONS``
    iterations in a row have not gone below the lowest ‖F‖ so far, and the retry comes
    at once.  Not at the first such iteration: on the same 40² problem on 2 ranks
    (MUMPS's parallel factorisation is not bitwise reproducible) Newton had such
    iterations now and then and recovered from them; failing there retried a step that
    converges (4 runs of 16 at the first such iteration, about 1 run of 18 of the MPI
    tests at 3 in a row; those paths parted on the round-off signs that ``SWITCH_ABOVE``
    now ignores).  PETSc's step-length stop (``CONVERGED_SNORM_RELATIVE``) is left out on
    purpose: a tiny step is what a stall takes, and it would be accepted as converged.
    """

    def __init__(self) -> None:
        self.first = self.lowest = math.inf
        self.stalled = 0

    def __call__(self, snes: PETSc.SNES, it: int, norms: tuple[float, float, float]) -> int:
        fnorm = norms[2]
        rtol, atol, _stol, max_it = snes.getTolerances()
        reason = PETSc.SNES.ConvergedReason
        if it == 0:
            self.first, self.lowest, self.stalled = fnorm, math.inf, 0
        if not math.isfinite(fnorm):
            return reason.DIVERGED_FUNCTION_NANORINF
        if fnorm <= atol:
            return reason.CONVERGED_FNORM_ABS
        if fnorm <= rtol * self.first:
            return reason.CONVERGED_FNORM_RELATIVE
        if fnorm > snes.getDivergenceTolerance() * self.first:
            return reason.DIVERGED_DTOL
        self.stalled = 0 if fnorm < self.lowest else self.stalled + 1
        self.lowest = min(self.lowest, fnorm)
        if self.stalled >= STALLED_ITERATIONS:
            return reason.DIVERGED_LINE_SEARCH
        return reason.DIVERGED_MAX_IT if it >= max_it else reason.CONVERGED_ITERATING


def _newton_failure(reason: int, its: int, comm: MPI.Comm) -> SolverError:
    """The error of a SNES solve that failed after ``its`` iterations.

    A residual that is not finite at the start of the step cannot be cured by τ (at the
    start ρ = ρ^n, and τ only divides ρ - ρ^n); any other failure may be.
    """
    name = _reason_name(reason)
    if reason == PETSc.SNES.ConvergedReason.DIVERGED_FUNCTION_NANORINF and its == 0:
        return SolverError(
            f"the residual is not finite at the current density (SNES {name}); a smaller "
            "τ cannot change that",
            iterations=its,
            tau_helps=False,
        )
    return SolverError(f"SNES did not converge (reason {name}, {its} iterations)", iterations=its)


def _reason_name(reason: int) -> str:
    names = {v: k for k, v in vars(PETSc.SNES.ConvergedReason).items() if isinstance(v, int)}
    return names.get(reason, str(reason))
