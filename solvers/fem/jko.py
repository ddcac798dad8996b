"""``fem-jko``: the JKO scheme with the one-step Benamou–Brenier cost, Newton inner solver.

Each step solves the convex problem

    ρ^{n+1} = argmin_ρ  W̃²(ρ^n, ρ)/(2τ) + F_h(ρ),
    W̃²(ρ^n, ρ) = min_F { τ² Σ_{ij} F_ij²/(a_ij ρ_ij) :  m_i (ρ_i - ρ_i^n)/τ + Σ_j F_ij = 0 },

the linearised (one time step) Benamou–Brenier transport cost with the mobility ρ_ij taken
at the *new* density — the LJKO scheme of Cancès–Gallouët–Todeschi (2020), here on the
graph of a P1 finite-element mesh, with a choice of edge mobility (``mobility``):

* ``"centred"`` (default): ρ_ij = (ρ_i + ρ_j)/2.  Second order in h on our meshes (the
  upwind mobility first order; measured: see benchmarks/README.md), and the Newton matrix
  is symmetric;
* ``"upwind"``: ρ_ij = ρ_i if ϕ_j > ϕ_i else ρ_j, CGT's choice, first order in h.  Its
  switch is smoothed, w = ½(1 + tanh(Δϕ/δ)), δ = ``upwind_smoothing``, so that R below is
  differentiable.

Both are linear in ρ, so the cost F²/(aρ_ij) is jointly convex and each step is a convex
problem.  The price of centring: CGT's upwinding makes the discrete scheme monotone, and
a centred mobility does not (its positivity comes from the elimination of ρ below, not
from an M-matrix).  On nonlinear_fokker_planck_1d the centred error is the larger (the
upwind space and time errors partly cancel there).

Spaces and why.  The unknowns are nodal: ρ_i and the potential ϕ_i at the vertices of the
mesh (P1), with lumped masses m_i = ∫φ_i.  The edges ij carry the transmissibilities
a_ij = -K_ij, K the P1 stiffness matrix: on a non-obtuse (Delaunay) mesh a_ij ≥ 0 and
Σ_j a_ij (ϕ_j - ϕ_i)(v_j - v_i) is exactly ∫∇ϕ·∇v, so the scheme is the mass-lumped P1
discretisation of ∂_t ρ + div(ρ∇ϕ) = 0 with an edge mobility.  Edges rather than cells
because an edge mobility keeps the cost convex and the Hamilton–Jacobi row local to a
vertex, which is what lets ρ be eliminated.  Negative a_ij (obtuse cells of an
unstructured mesh) are clipped to 0, which keeps convexity and positivity at the price
of consistency on those edges.

The optimality system (F_ij = a_ij ρ_ij (ϕ_j - ϕ_i), ρ_ij = w_ij ρ_i + (1 - w_ij) ρ_j):

    m_i (ρ_i - ρ_i^n)/τ + Σ_j F_ij = 0                                  (mass)
    ρ_i [ m_i (μ_i + ϕ_i) - (τ/2) Σ_j w_ij a_ij (ϕ_j - ϕ_i)² ] = ε m_i   (Hamilton–Jacobi)

with μ_i = D·U'(ρ_i) + V(x_i).  The second row is multiplied by ρ_i, as in interior-point
methods; ε is the log-barrier weight (below).  Comparing with the admissible (ρ^n, F = 0)
gives the energy-dissipation inequality F_h(ρ^{n+1}) + W̃²/(2τ) ≤ F_h(ρ^n) up to the
Newton tolerance; the diagnostics ``transport_cost`` (= W̃²) and ``dissipation_gap``
(= F_h(ρ^n) - F_h(ρ^{n+1}) - W̃²/(2τ)) record it at every step.

Newton, on ϕ alone.  The Hamilton–Jacobi row gives ρ_i explicitly as a function of ϕ:
μ_i(ρ_i) - ε/ρ_i = ψ_i(ϕ) := -ϕ_i + (τ/2m_i) Σ_j w_ij a_ij (ϕ_j - ϕ_i)², and the left side
is increasing in ρ > 0 (for the entropy ρ_i = exp((ψ_i - V_i)/D - 1)).  Substituting it
into the mass row leaves one equation per vertex in ϕ, R(ϕ) = 0.  R is τ⁻¹ times the
gradient of the concave dual g(ϕ) = min_ρ Λ(ρ, ϕ) (see :meth:`Solver._dual`), so Newton
maximises g: the exact Jacobian J = (∂R/∂ρ) diag(dρ/dψ) (∂ψ/∂ϕ) + ∂R/∂ϕ (three edge
matrices from PETSc COO assembly and one ``matMult``, MPI-parallel; each edge piece
belongs to the rank owning its cell) is negative definite, and symmetric for the centred
mobility.  The line search backtracks until g or ‖R‖ has decreased enough (Armijo); the
first guess of ϕ is extrapolated linearly from the two previous steps (the first step,
with no history, starts from the Hamilton–Jacobi row at ρⁿ, and if that stalls, follows
the barrier's central path down to ε: :meth:`Solver._cold_newton`).  Newton stops at
‖R‖ ≤ max(atol, rtol·‖Mρⁿ‖/τ), or at the round-off floor of R if that is higher (a
tolerance below what double precision can give R; counted in the diagnostic
``round_off_stops``, see :meth:`Solver._converged`).  Eliminating ρ is
what makes Newton work: ρ > 0 holds by construction at every iterate, so no
fraction-to-the-boundary rule stalls the steps in Gaussian tails, where the (ρ, ϕ)
formulation needed hundreds of damped iterations.  After convergence ρ is rescaled by
M^n/M (a relative change at the level of the tolerance) so that mass is conserved to
round-off.

Linear solver: GMRES + GAMG for the entropy with the centred mobility (it scales over
ranks); for the power law with the centred mobility, GMRES with a Schur factorisation onto
the support and its near field, a MUMPS LDLᵀ factorisation of that block only (on several
ranks, of each rank's part of it with an overlap: additive Schwarz;
:meth:`Solver._reduced_solver`);
MUMPS LU for the upwind mobility (see :meth:`Solver._linear_solver`).  A failed Krylov solve
is redone by LU and counted (diagnostic ``lu_fallbacks``).

Free-boundary vertices (power law).  Vertices at and just outside the support sit on or
near the barrier branch, ρ ≈ ε/(c - ψ), or on the kink between it and the ρ ∝ ψ branch.
Newton's linear model there is poor (dρ/dψ jumps by ~10⁸ across a kink of width
~√(εD) in ψ), early iterates overfill some of them, and Newton on that hyperbola only
halves the excess per step.  So these rows are eliminated nonlinearly (nonlinear
elimination): at every trial point of the line search, when the residual sits mostly
(≥ ``RELAX_WHEN_SHARE_ABOVE``) in the rows of vertices below ``RELAX_BELOW`` × the peak
density, those vertices solve their own mass row (safeguarded Newton in log ρ), by
nonlinear Gauss–Seidel over colour classes of the graph they induce, for
``RELAX_SWEEPS`` sweeps, kept if ‖R‖ fell (:meth:`Solver._relax`).  In a row the
neighbours' ϕ are held, and their ρ follow to first order (where ρ(ψ) is not concave):
ψ_j holds (τ/4m_j) a_ij (ϕ_i - ϕ_j)², so a support neighbour's ρ moves with ϕ_i by
O(τ/h²), and holding it made the sweeps overshoot on fine meshes (rejected in 32 of 44
calls at 512²; porous_medium_2d m = 2 took 68 Newton iterations for 3 steps there,
now 32).  The line search then judges the relaxed point, so the Newton direction of the
other rows is taken with the free boundary already adjusted to it.  The converged step
is unchanged (R = 0 either way; the L1 errors agree to 7 digits).  Before (a Jacobi
sweep after the line search) the Newton step from a relaxed point was cut to α = ½ and
undid half of the relaxation, iteration after iteration (measured: see
benchmarks/README.md).  Where ρ(ψ) is concave (m > 2) a trial point may overfill a
vertex that was dilute at the Newton iterate (up to the peak density just outside ρⁿ's
support); in a warm-started step it stays a candidate of the relaxation
(:meth:`Solver._dilute_rows`).  When relaxing every dilute row with a residual that
matters does not lower ‖R‖, the relaxation is retried on the few rows that hold most of
it (:meth:`Solver._relax`).

Nested iteration (power law, meshes of at least 2ᵈ × ``nested_coarsest`` vertices that
refine a coarser one: an even box, or ``domain.refinements`` ≥ 1).  Each step is first
taken on the mesh with every edge doubled, from this mesh's ρⁿ interpolated to it and
that mesh's own last steps' ϕ (and, recursively, on its own coarser mesh first), and the
coarse ϕ, interpolated back, is the first guess here
(:meth:`Solver._newton_from_coarse`).  From the last steps' ϕ the warm Newton counts
grow with the mesh, because the free boundary crosses more rings of vertices per step;
from the coarse solution they do not (the BFM problem at 512², m = 2: 3 a step against
8-11 and up to 54).  The coarse levels' iterations are counted apart (diagnostic
``coarse_iterations``); the converged step is this mesh's either way.  Where the front
moves slowly the coarse level costs more than it saves on several ranks
(benchmarks/README.md).

ρ → 0.  The entropy keeps ρ > 0 by itself.  For the power law F_h gets the log barrier
-ε Σ_i m_i log ρ_i (interior point) with ε = ``barrier`` × the initial mean density: the
minimiser stays strictly positive and deviates from the barrier-free one by O(ε) where ρ
is small.  Initial densities are floored at ``floor`` × their maximum (1e-10 by default),
so that Gaussian tails do not start at 1e-80, and renormalised to the stated mass; so is
ρⁿ before every step, because the steps drain the far field of a steep potential below
the floor again (see :meth:`Solver._floor_previous_density`).

``inner = "alg2"`` replaces all of the above by ALG2-JKO on the space-time mesh Ω × [0, 1]
(the full Benamou–Brenier step, not the linearised one): see :mod:`wgf.solvers.fem.alg2_jko`.
Its prox is pointwise, so an interaction enters it explicitly, W∗ρⁿ added to V as in
:meth:`Solver._freeze_interaction`, with the same recorded ``interaction_defect``.

PETSc options of the linear solver can be changed on the command line under the prefix
``fem_jko_`` (e.g. ``-fem_jko_ksp_type preonly -fem_jko_pc_type lu``).
"""

from __future__ import annotations

import dolfinx_solver  # noqa: F401 - must precede dolfinx

import logging
from collections.abc import Callable
from typing import Any

import dolfinx.fem
import dolfinx.la
import numpy as np
from mpi4py import MPI
from petsc4py import PETSc

from wgf.cases import Case
from wgf.cases.errors import SolverError, UserError
from wgf.meshes import coarser_domain
from wgf.solvers.fem.base import FEFlowSolver
from wgf.solvers.fem.graph import PECLET_LIMIT, SUPPORT_SHARE
from wgf.solvers.fem.nested import NodalTransfer
from wgf.solvers.fem.petsc_options import (
    DiagonalSchur,
    error_message,
    remove_options,
    set_default_options,
    use_direct_lu,
    use_schur_split,
)
from wgf.solvers.fem.vertex_rule import VertexRuleStiffness, coo_matrix

log = logging.getLogger(__name__)

PREFIX = "fem_jko_"
ARMIJO = 1e-4
#: Relative tolerance of the Krylov solve of each Newton system (inexact Newton): the
#: strictest asked for...
LINEAR_RTOL = 1e-6
#: ...and the loosest: Eisenstat–Walker forcing (:meth:`Solver._forcing`) picks one in
#: between from the residual's last decrease.
LINEAR_RTOL_LOOSEST = 1e-3
#: Krylov iterations before a solve counts as failed (10–30 are typical with GAMG).
LINEAR_MAX_IT = 200
#: Power law: the support block of the reduced solver is ρ ≥ this × the peak density...
REDUCED_SUPPORT_BELOW = 1e-6
#: ...grown by this many rings of neighbours (the free boundary's near field)...
REDUCED_HOPS = 2
#: ...and by this many more when a new block is made, so that it holds while the front
#: moves (kept until a vertex within ``REDUCED_HOPS`` rings falls outside it)...
SUPPORT_MARGIN_HOPS = 8
#: ...but this many in a step from the Hamilton–Jacobi guess (the first): there the wider
#: block cost Newton iterations (porous_medium_2d, 512², m = 3: 41, 42 and 96 against
#: 29 and 30 with 3 rings).
COLD_SUPPORT_MARGIN_HOPS = 3
#: ...and into the next step unless it holds more than this × the vertices of a new block
#: (the support shrank).
SUPPORT_CARRY_SIZE = 1.3
#: Several ranks: rings of the support block's graph by which each rank's part of it
#: overlaps its neighbours' in the additive Schwarz preconditioner of that block
#: (:meth:`Solver._sub_solver_defaults`).  porous_medium_2d at 512² on 2 ranks: at m = 2,
#: 4 rings cost Newton iterations (9 a step against 6) and 16 made the local
#: factorisations dearer (5.2 s a step against 4.3-4.8 with 8); at m = 3, with 8 rings one
#: warm step in six took 59 Newton iterations (8-11 with 12 or 16, and the others with 8).
SUPPORT_OVERLAP = 12
#: ...with each rank's part factorised by MUMPS as LDLᵀ (PETSc's Cholesky on AIJ).
SUPPORT_SCHWARZ = {
    "pc_asm_overlap": SUPPORT_OVERLAP,
    "sub_pc_type": "cholesky",
    "sub_pc_factor_mat_solver_type": "mumps",
}
#: GMRES iterations of the reduced solver before its solve counts as failed (~8 typical).
REDUCED_MAX_IT = 50
#: Power law: vertices below this fraction of the peak density get relaxed (the band
#: where the free boundary moves within a step)...
RELAX_BELOW = 1e-1
#: ...in this many Gauss–Seidel sweeps at each trial point of the line search...
RELAX_SWEEPS = 4
#: ...and only their rows with |R_i| above this fraction of max |R|...
RELAX_ROWS_ABOVE = 1e-5
#: ...or, when relaxing those did not lower ‖R‖, only those of them above this fraction
#: at the trial point (:meth:`Solver._relax`).
RELAX_RETRY_ROWS_ABOVE = 1e-3
#: Safeguarded Newton steps of a vertex's own mass row in a relaxation (in log ρ)...
SCALAR_STEPS = 40
#: ...until the bracket or the step is this small (in log ρ: the next step would be ~its square).
SCALAR_XTOL = 1e-8
#: Widenings of a relaxed row's bracket by e³ upwards where the row is still negative at
#: its top (:meth:`Solver._relax_dilute_vertices`); only once ρ(ψ) is concave somewhere
#: (m > 2) and only in warm-started steps (:meth:`Solver._relax`).
BRACKET_WIDENINGS = 5
#: Relax only when the dilute rows hold at least this share of ‖R‖.
RELAX_WHEN_SHARE_ABOVE = 0.5
#: Newton iterations of a warm-started step during which the vertices dilute at the
#: iterate stay relaxation candidates where ρ(ψ) is concave (:meth:`Solver._dilute_rows`).
OVERFILL_ITERATIONS = 20
#: Picard iterates of the Hamilton–Jacobi row for a first guess without history.
HJ_GUESS_ITERATES = 1
#: Power law: a first step whose Newton has not brought ‖R‖ below ``COLD_TRIAL_DECREASE``^k
#: of its first value after k·``COLD_TRIAL_ITERATIONS`` iterations is
#: continued by barrier continuation (:meth:`Solver._cold_newton`)...
COLD_TRIAL_ITERATIONS = 20
COLD_TRIAL_DECREASE = 1e-2
#: ...through the barriers ε·f^k, f = ``BARRIER_CONTINUATION_FACTOR``, k =
#: ``BARRIER_CONTINUATION_LEVELS``, ..., 1, 0...
BARRIER_CONTINUATION_FACTOR = 100.0
BARRIER_CONTINUATION_LEVELS = 3
#: ...each level above ε solved to this many times the step's Newton tolerance.
BARRIER_CONTINUATION_LOOSEN = 1e4


class _Stalled(SolverError):
    """A first step's Newton that made too little progress in its trial iterations."""


class Solver(FEFlowSolver):
    """LJKO steps on the P1 mesh graph (see the module docstring)."""

    name = "fem-jko"

    @classmethod
    def check_case(cls, case: Case) -> None:
        """The capabilities (simplex cells, an internal energy); ALG2 needs a 1-D/2-D box."""
        super().check_case(case)
        params = case.solver_params("fem-jko")
        if params.get("nested_coarsest", 0) < 0:
            raise UserError(
                "case key 'solver.fem-jko.nested_coarsest' must be >= 0 (0: no nested "
                f"iteration), got {params['nested_coarsest']}"
            )
        if params.get("inner", "newton") == "alg2":
            shape = case.section("domain")["shape"]
            if shape != "box" or case.dim not in (1, 2):
                raise UserError(
                    "case key 'solver.fem-jko.inner': \"alg2\" needs a 1-D or 2-D "
                    f'domain.shape = "box" (the space-time mesh is Ω × [0, 1]), got {case.dim}-D '
                    f'"{shape}"'
                )
            for key in ("alg2_time_cells", "alg2_max_it"):
                if not params[key] > 0:
                    raise UserError(f"case key 'solver.fem-jko.{key}' must be > 0")
            for key in ("alg2_r", "alg2_tol"):
                if not params[key] > 0.0:
                    raise UserError(f"case key 'solver.fem-jko.{key}' must be > 0")
            if not 0.0 < params["alg2_relaxation"] < 2.0:
                raise UserError("case key 'solver.fem-jko.alg2_relaxation' must be in (0, 2)")

    def __init__(self, case: Case, comm: MPI.Comm, params: dict[str, Any]) -> None:
        super().__init__(case, comm, params)
        self.inner = params["inner"]
        self.adaptive_tau = self.inner == "newton"  # ALG2's counts are in the hundreds anyway
        self.transport_cost, self.energy_before, self._last_tau = 0.0, np.nan, 1.0
        self.interaction_defect, self._peclet_warned = 0.0, False
        self._mass_old = dolfinx.fem.form(self.rho_old * self.dx_lumped)
        self.mass_target = case.section("initial")["mass"]
        if self.inner == "alg2":
            self._init_alg2(params)
            return
        imap = self.V.dofmap.index_map
        self.n_owned = imap.size_local
        self.masses = self.lumped_masses()
        self.V_external = self._nodal_potential()
        self.V_nodes = self.V_external
        self.edge_i, self.edge_j, self.edge_a = self._edges()
        self._edge_ends = np.concatenate([self.edge_i, self.edge_j])
        self.barrier = 0.0
        if self.energy.needs_barrier:
            mean_density = case.section("initial")["mass"] / self.integrate(1.0 * self.dx)
            self.barrier = params["barrier"] * mean_density
        # The Newton unknown ϕ, its update, the residual and a scratch vector, with ghosts.
        self.phi = dolfinx.la.vector(imap)
        self.dphi = dolfinx.la.vector(imap)
        self.r = dolfinx.la.vector(imap)
        self.work = dolfinx.la.vector(imap)
        peak = self.comm.allreduce(float(self.rho.x.array.max(initial=0.0)), op=MPI.MAX)
        floor = max(self.barrier, params["floor"] * peak)
        self.rho.x.array[:] = np.maximum(self.rho.x.array, floor)
        self.rho.x.array[:] *= case.section("initial")["mass"] / self.integrate(self._forms["mass"])
        self.rho_old.x.array[:] = self.rho.x.array
        self._phi_prev: np.ndarray | None = None
        self._tau_prev = 0.0
        self._reset_newton_state()
        self.Psi = self._edge_matrix(imap)
        self.Rrho = self.Psi.duplicate()  # the COO layout too
        self.J: PETSc.Mat | None = None
        #: ∂R/∂ϕ on J's pattern (made with J), and its COO values: the edge pieces' part,
        #: J's zeros put in front by :meth:`_on_pattern_of`.
        self.Rphi: PETSc.Mat | None = None
        pieces = 4 * len(self.edge_i)
        self._rphi_values = np.zeros(pieces, dtype=PETSc.ScalarType)
        #: The COO values of Psi and Rrho (Psi's diagonal part is -1 for good); 1/m at the
        #: edge pieces' ends.
        self._coo_values = np.empty((2, self.n_owned + pieces), dtype=PETSc.ScalarType)
        self._coo_values[0, : self.n_owned] = -1.0
        self._inverse_mass_at = 1.0 / self.masses[self.edge_i], 1.0 / self.masses[self.edge_j]
        self._lu: PETSc.KSP | None = None
        centred = params["mobility"] == "centred"
        self.ksp = self._linear_solver(multigrid=centred and not self.energy.needs_barrier)
        #: Power law, centred: the support/exterior splitting of :meth:`_reduced_solver`.
        self._reduced = centred and self.energy.needs_barrier
        self._support: np.ndarray | None = None
        self._mesh_colours: np.ndarray | None = None  # of the relaxation, made once
        #: Owned vertices dilute at the current Newton iterate (relaxed at its trial points).
        self._dilute_at_iterate: np.ndarray | None = None
        self._schur: DiagonalSchur | None = None  # the support block's Schur complement
        self._pending_defaults: list[str] = []  # see _sub_solver_defaults
        self._support_grows = False  # False at the first Newton solve of a step
        self._whole_block = False  # the whole mesh is the support block (see _cold_newton)
        #: Steps whose Newton stopped at the round-off floor, and the last floor/tolerance.
        self.round_off_stops, self.round_off_floor = 0, 0.0
        #: Nested iteration: the solver of the next coarser mesh, which takes each step
        #: first (:meth:`_newton_from_coarse`), and the Newton iterations spent on the
        #: coarser meshes since the start (all of them, in failed attempts too).
        self.coarse, self._transfer = self._coarse_level(case, params)
        self.coarse_iterations = 0

    def _coarse_level(
        self, case: Case, params: dict[str, Any]
    ) -> tuple[Solver | None, NodalTransfer | None]:
        """The solver of the mesh this one refines, if it has ``nested_coarsest`` vertices.

        It is a solver of the same case and parameters on :func:`coarser_domain`, with
        its own coarser level in turn, quiet (no monitor, no Péclet warning: the finest
        mesh's is the one that matters).  The power law only: its free boundary is what
        makes warm Newton counts grow with the mesh.  The default, 5·10⁴ vertices, makes
        a 512² mesh start from 256² (a warm step there takes 3-5 iterations, as from a
        coarse solution, so coarser levels only add their cost: the BFM problem at 256²,
        m = 2, 20 steps: 38 s with a 128² level against 23 s without).
        """
        domain = coarser_domain(case.section("domain"))
        coarse_vertices = self.V.dofmap.index_map.size_global / 2**case.dim
        least = params["nested_coarsest"]
        if self.barrier == 0.0 or domain is None or least <= 0 or coarse_vertices < least:
            return None, None
        coarse_case = Case({**case.config, "domain": domain}, case.path, case.dim)
        coarse = Solver(coarse_case, self.comm, {**params, "monitor": False})
        coarse._peclet_warned = True
        return coarse, NodalTransfer(self.V, coarse.V)

    def _linear_solver(self, multigrid: bool) -> PETSc.KSP:
        """GMRES + GAMG, or MUMPS LU; set on the object, so ``-fem_jko_*`` options win.

        GAMG where it was measured to work: the centred Newton matrix of the entropy (a
        symmetric weighted Laplacian plus a positive diagonal).  With the power-law
        barrier, rows outside the support are ~10⁻⁸ of those inside and GAMG stalls
        (KSP_DIVERGED_ITS in porous_medium_1d), and the upwind matrix is nonsymmetric.
        """
        ksp = PETSc.KSP().create(self.comm)
        ksp.setOptionsPrefix(PREFIX)
        pc = ksp.getPC()
        if multigrid:
            ksp.setType("gmres")
            pc.setType("gamg")
            ksp.setTolerances(rtol=LINEAR_RTOL, max_it=LINEAR_MAX_IT)
        else:
            use_direct_lu(ksp)
        ksp.setFromOptions()
        return ksp

    def _support_vertices(self) -> np.ndarray:
        """The owned vertices of the support block of :meth:`_reduced_solver`.

        Those with ρ ≥ ``REDUCED_SUPPORT_BELOW`` × peak, grown by ``REDUCED_HOPS`` rings
        and by ``SUPPORT_MARGIN_HOPS`` more when a new block is made.  The block is kept
        while it holds the vertices that need it, within a step and across steps: a new
        block is a new factorisation pattern (a new MUMPS analysis, the cost of about two
        numeric factorisations of the block, and a new KSP set-up), and the margin
        lets the front move several cells before one is due.  Measured on the BFM problem
        (benchmarks/bfm_side_by_side.py), 256², m = 3, 20 steps: 43 analyses and 54 CPU
        s with a margin of 3 rings and a new block at every step, 21 and 48 s carried
        across steps, 8 and 44 s with 8 rings; 12 rings cost more in the larger
        factorisations than they save.
        """
        if self._whole_block:
            return np.arange(self.n_owned)
        rho = self.rho_v
        peak = self.comm.allreduce(float(rho[: self.n_owned].max(initial=0.0)), op=MPI.MAX)
        inside = self._grown((rho >= REDUCED_SUPPORT_BELOW * peak).astype(float), REDUCED_HOPS)
        if self._support is None:
            return self._with_margin(inside)
        held = np.zeros(self.n_owned, dtype=bool)
        held[self._support] = True
        holds = self.comm.allreduce(bool(np.all(held[inside[: self.n_owned] > 0.0])), op=MPI.LAND)
        if self._support_grows:
            # Within a step the support only grows: vertices that just left it sit on the
            # kink of ρ(ψ), where the near-null modes are (measured: a shrinking support
            # cost a failed solve in 1 of 4 steps on porous_medium_2d, none growing).
            return self._support if holds else np.union1d(self._with_margin(inside), self._support)
        fresh = self._with_margin(inside)
        sizes = self.comm.allreduce(np.array([len(self._support), len(fresh)]), op=MPI.SUM)
        return self._support if holds and sizes[0] <= SUPPORT_CARRY_SIZE * sizes[1] else fresh

    def _with_margin(self, inside: np.ndarray) -> np.ndarray:
        """The owned vertices of ``inside`` grown by the block's margin."""
        rings = SUPPORT_MARGIN_HOPS if self._phi_prev is not None else COLD_SUPPORT_MARGIN_HOPS
        return np.flatnonzero(self._grown(inside, rings)[: self.n_owned] > 0.0)

    def _grown(self, inside: np.ndarray, rings: int) -> np.ndarray:
        """A vertex mark (owned + ghost, > 0 inside) grown by ``rings`` rings, across ranks."""
        i, j = self.edge_i, self.edge_j
        for _ in range(rings):
            inside = inside + self._accumulate(inside[j], inside[i])
        return inside

    def _reduced_solver(self) -> None:
        """GMRES on -J with the Schur factorisation onto the support (power law, centred).

        The Newton matrix of the power law has near-null modes at the free boundary:
        vertices at 10⁻⁵-10⁻⁹ of the peak, on and off the kink of ρ(ψ) between the
        ρ ∝ ψ branch and the barrier branch, whose rows nearly cancel.  The smallest
        eigenvalue of the Jacobi-scaled matrix falls to ~5·10⁻⁵, held by a handful of
        vertices, and GAMG, ICC and GAMG on the Jacobi-scaled matrix all stall in the
        middle of Newton (measured: benchmarks/README.md).  Those vertices are few and
        next to the support, so the split is: the support and its near field (ρ above
        ``REDUCED_SUPPORT_BELOW`` × peak, plus ``REDUCED_HOPS`` rings of neighbours),
        eliminated by a MUMPS factorisation of its Schur complement (``selfp``: with the
        exterior block's diagonal, which dominates there), and the exterior, far on the
        barrier branch, by incomplete Cholesky.  GMRES then converges in ~8 iterations,
        and the factorisation is of the support block only.  A new KSP and Schur matrix
        are built only when the support changes, so MUMPS keeps its symbolic analysis
        while it does not.  The centred -J is symmetric, so is its Schur complement, and
        MUMPS factorises it as LDLᵀ (symmetric indefinite, with pivoting: ``selfp`` need
        not be definite) from its upper triangle: the same GMRES iterations as its LU,
        for 30 % less factorisation time and 10 % less triangular-solve time
        (benchmarks/README.md).  On several ranks each rank factorises its own part of
        the block, grown by an overlap (:meth:`_sub_solver_defaults`).
        """
        support = self._support_vertices()
        n_support = self.comm.allreduce(len(support), op=MPI.SUM)
        n_total = self.V.dofmap.index_map.size_global
        same = self._support is not None and self.comm.allreduce(
            len(support) == len(self._support) and bool(np.all(support == self._support)),
            op=MPI.LAND,
        )
        if same:
            return
        self._support = support
        self.ksp.destroy()
        if self._schur is not None:
            self._schur.destroy()
            self._schur = None
        ksp = PETSc.KSP().create(self.comm)
        ksp.setOptionsPrefix(PREFIX)
        ksp.setOperators(self.J)
        if n_support == n_total:  # no exterior left: the whole matrix is the support block
            use_direct_lu(ksp)
            ksp.setFromOptions()
            self.ksp = ksp
            return
        outside = np.ones(self.n_owned, dtype=bool)
        outside[support] = False
        exterior = np.flatnonzero(outside)
        imap = self.V.dofmap.index_map
        sets = [
            PETSc.IS().createGeneral(
                imap.local_to_global(idx.astype(np.int32)).astype(PETSc.IntType), comm=self.comm
            )
            for idx in (exterior, support)
        ]
        # Upper triangular: the exterior block once per application, not twice as the full
        # factorisation does, for the same GMRES iterations (measured: 256², m = 3, 6 steps,
        # 98 Newton solves in 11.4 s of KSPSolve against 102 in 13.4 s).
        self._schur = use_schur_split(
            ksp,
            self.J,
            ("exterior", sets[0]),
            ("support", sets[1]),
            LINEAR_RTOL,
            REDUCED_MAX_IT,
            PETSc.PC.FieldSplitSchurFactType.UPPER,
        )
        if not PETSc.Options().hasName(f"{PREFIX}pc_type"):
            self._sub_solver_defaults()
        ksp.setFromOptions()
        self.ksp = ksp

    def _sub_solver_defaults(self) -> None:
        """Our defaults of the split's sub-solvers, in the options database until set-up.

        PETSc makes the sub-solvers only when the first solve sets the split up, so the
        defaults wait in the database (under ``fem_jko_fieldsplit_*``, where the command
        line's options win) and :meth:`_solve_linear` takes them out after that solve:
        they depend on the number of ranks, and a solver on another communicator in the
        same process (a 1-rank reference next to a 2-rank run) must not inherit them as
        if given.  A block given another preconditioner on the command line gets none of
        the defaults that belong to ours (PETSc would warn about them, unused, at exit).

        The support block: MUMPS LDLᵀ of the whole block on one rank; on several,
        additive Schwarz (restricted), each rank's part grown by ``SUPPORT_OVERLAP`` rings
        and factorised by MUMPS LDLᵀ on that rank alone.  MUMPS's distributed
        factorisation and triangular solves of the whole block gained only 1.15× on 2
        ranks at 512²; the local ones need no communication, and GMRES took as many
        iterations (porous_medium_2d at 512², m = 2: a step on 2 ranks 4.2-5.4 s against
        5.6-6.8 s; benchmarks/README.md).  On one rank the Schwarz wrapper would only copy the
        block (MatCreateSubMatrices) for the same factorisation.
        """
        if self.comm.size == 1:
            support = ("cholesky", {"pc_factor_mat_solver_type": "mumps"})
        else:
            support = ("asm", SUPPORT_SCHWARZ)
        for block, (pc, sub) in (
            ("exterior", ("bjacobi", {"sub_pc_type": "icc"})),
            ("support", support),
        ):
            prefix = f"{PREFIX}fieldsplit_{block}_"
            added = set_default_options(prefix, {"ksp_type": "preonly", "pc_type": pc})
            if PETSc.Options().getString(f"{prefix}pc_type") == pc:
                added += set_default_options(prefix, sub)
            self._pending_defaults += added

    def _forcing(self, norm: float, previous: float, tol: float) -> float | None:
        """The Krylov tolerance of the next Newton solve (Eisenstat–Walker, choice 2).

        0.9 (‖R_k‖/‖R_{k-1}‖)², kept within [``LINEAR_RTOL``, ``LINEAR_RTOL_LOOSEST``]
        and no stricter than the Newton tolerance needs: early iterations, far from the
        root, get loose solves.  Measured, porous_medium_2d, 6 steps, against a fixed
        1e-6: half the triangular solves, and Newton iterations (m = 3, 96²-256²) 78,
        91, 132, 120, 99 against 78, 80, 150, 129, 98 (m = 2: 35, 41 against 35, 40); the
        m = 3 counts move by ±15 % with round-off at the free boundary either way.

        Power law only (the support/exterior split, :meth:`_reduced_solver`).  GAMG's
        aggregates depend on the partition, and loose GAMG solves made the Newton counts
        of keller_segel_2d differ on 1 and 2 ranks (18, 5, 4 against 18, 6, 5), where the
        tight ones agree; its solves are cheap anyway.  None (the KSP's own tolerance)
        then, and when ``-fem_jko_ksp_rtol`` is on the command line.
        """
        if not self._reduced or PETSc.Options().hasName(f"{PREFIX}ksp_rtol"):
            return None
        eta = 0.9 * (norm / previous) ** 2 if np.isfinite(previous) else LINEAR_RTOL_LOOSEST
        return max(LINEAR_RTOL, min(LINEAR_RTOL_LOOSEST, eta), 0.1 * tol / norm)

    def _solve_linear(self, rtol: float | None = None) -> None:
        """(-J) dϕ = R to ``rtol``; if the Krylov solve fails, once more by MUMPS LU (counted).

        GAMG can stall where the Newton matrix is badly scaled (densities at the 1e-10
        floor in the corners of fokker_planck_ou_2d on 512², power-law exteriors).
        """
        if self._reduced:
            self._reduced_solver()
            self._support_grows = True
        if rtol is not None:
            self.ksp.setTolerances(rtol=rtol)
        try:
            self.ksp.solve(self.r.petsc_vec, self.dphi.petsc_vec)
        finally:  # set up: the sub-solvers have read their defaults (_sub_solver_defaults)
            remove_options(self._pending_defaults)
            self._pending_defaults = []
        self.linear_iterations += self.ksp.getIterationNumber()
        if (reason := self.ksp.getConvergedReason()) >= 0:
            return
        if self.ksp.getPC().getType() == "lu":
            raise SolverError(f"linear solve failed (KSP reason {reason})")
        if self._lu is None:
            if self.comm.rank == 0:
                log.info(
                    "  fem-jko: Krylov solve failed (KSP reason %d); "
                    "MUMPS LU for the solves that fail from now on",
                    reason,
                )
            self._lu = use_direct_lu(PETSc.KSP().create(self.comm))
        self._lu.setOperators(self.J)
        self.lu_fallbacks += 1
        try:
            self._lu.solve(self.r.petsc_vec, self.dphi.petsc_vec)
        except PETSc.Error as err:  # MUMPS gives up on a numerically singular matrix
            raise SolverError(f"linear solve failed (LU: {error_message(err)})") from None
        self.linear_iterations += 1
        if (reason := self._lu.getConvergedReason()) < 0:
            raise SolverError(f"linear solve failed (LU, KSP reason {reason})")

    # -- the mesh graph ----------------------------------------------------------------------
    def _nodal_potential(self) -> np.ndarray:
        coords = self.V.tabulate_dof_coordinates()[:, : self.case.dim]
        return self.energy.potential_value(coords)

    def _freeze_interaction(self) -> np.ndarray | None:
        """V ← V + W∗ρⁿ at the vertices: the interaction, explicit in the step.

        The step then minimises F₀(ρ) + ⟨W∗ρⁿ, ρ⟩ + W̃²/(2τ) (F₀ the internal and potential
        energy), a convex problem for any W, and comparing with ρ = ρⁿ gives
        F(ρⁿ⁺¹) + W̃²/(2τ) ≤ F(ρⁿ) + ½⟨W∗δρ, δρ⟩, δρ = ρⁿ⁺¹ − ρⁿ: the dissipation
        inequality up to ``interaction_defect``, which is ≤ 0 for a kernel that is negative
        semidefinite on mean-zero measures (attractive Newtonian, r²/2).

        Returns:
            W∗ρⁿ at the vertices (None without an interaction), for the energy of ρⁿ.
        """
        if self.convolution is None:
            return None
        potential = self.convolution(self.rho.x.array)
        self.V_nodes = self.V_external + potential
        return potential

    def _warn_if_unresolved(self) -> None:
        """Log once (rank 0) when the cell Péclet number |ΔV|/D exceeds ``PECLET_LIMIT``.

        Linear diffusion only, on edges whose ends carry ``SUPPORT_SHARE`` of the peak
        density: there the mesh does not resolve the drift and the centred mobility's
        error is large (the Newton step may also fail, and a smaller τ does not help).
        """
        if self._peclet_warned or not self.energy.linear_diffusion:
            return
        rho, i, j = self.rho.x.array, self.edge_i, self.edge_j
        peak = self.comm.allreduce(float(rho.max(initial=0.0)), op=MPI.MAX)
        on = (rho[i] >= SUPPORT_SHARE * peak) & (rho[j] >= SUPPORT_SHARE * peak)
        drop = np.abs(self.V_external[i] - self.V_external[j])[on]
        pe = self.comm.allreduce(float(drop.max(initial=0.0)), op=MPI.MAX)
        pe /= self.energy.diffusivity
        self._peclet_warned = pe > PECLET_LIMIT
        if self._peclet_warned and self.comm.rank == 0:
            log.warning(
                "fem-jko: the mesh does not resolve the drift: cell Péclet number "
                "|∇V|h/D = %.3g > %g where the density lives; expect a large error: refine "
                "domain.cells",
                pe,
                PECLET_LIMIT,
            )

    def _interaction_defect(self) -> float:
        """½⟨W∗δρ, δρ⟩ of the step just taken (0 without an interaction)."""
        if self.convolution is None:
            return 0.0
        change = self.rho.x.array - self.rho_old.x.array
        return self.convolution.energy_of(change)

    def _edges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Edge pieces (i, j, a > 0), one per owned cell and pair of its vertices.

        a = -K^T_ij is the element stiffness entry of cell T: summed over the cells around
        an edge it is the P1 transmissibility.  Fluxes and costs are linear in a, so the
        pieces can be kept apart — which puts every piece on the rank owning its cell,
        where both endpoints are local (an owned vertex's neighbours need not be).  Each
        piece is clipped at 0 (exact on non-obtuse meshes).
        """
        cells = VertexRuleStiffness(self.V, self.case.dim)
        stiffness = cells.weighted(np.ones_like(self.rho.x.array))
        k = len(cells.dofs)
        pairs = [(p, q) for p in range(k) for q in range(p + 1, k)]
        i = np.concatenate([cells.dofs[p] for p, _ in pairs])
        j = np.concatenate([cells.dofs[q] for _, q in pairs])
        a = np.concatenate([-stiffness[p, q] for p, q in pairs])
        keep = a > 1e-14 * np.abs(a).max(initial=1.0)
        return i[keep], j[keep], a[keep]

    def _edge_matrix(self, imap: dolfinx.common.IndexMap) -> PETSc.Mat:
        """AIJ matrix with the COO pattern [owned diagonal, (i,i), (i,j), (j,i), (j,j)]."""
        owned = np.arange(self.n_owned)
        i, j = self.edge_i, self.edge_j
        rows = np.concatenate([owned, i, i, j, j])
        cols = np.concatenate([owned, i, j, i, j])
        return coo_matrix(imap, rows, cols, self.comm)

    # -- state -------------------------------------------------------------------------------
    def _reset_newton_state(self) -> None:
        """Newton's state from the density alone (start, resume): no step history.

        ϕ = -μ(ρ) (barrier included), the τ → 0 limit of the Hamilton–Jacobi row; the
        power-law inversion starts from ρ; no previous ϕ to extrapolate from.
        """
        rho = self.rho.x.array
        self._freeze_interaction()
        self.phi.array[:] = -(self._mu(rho) - self.barrier / rho)
        self.rho_v = rho.copy()
        self._phi_prev = None

    def invariants(self) -> frozenset[str]:
        """Newton: ρ > 0 by construction and the energy–dissipation inequality (see above).

        ALG2 solves the step only to its tolerance on the space-time mesh, so its
        ``dissipation_gap`` is recorded but not enforced.
        """
        if self.inner == "alg2":
            return frozenset()
        return frozenset({"positivity", "dissipation"})

    def save(self) -> dict[str, Any]:
        """ρ, ρ_old and the inner solver's state (ϕ and its history, or ALG2's fields)."""
        saved = super().save()
        saved["scalars"] = (
            self.transport_cost,
            self.energy_before,
            self._last_tau,
            self.interaction_defect,
        )
        if self.inner == "alg2":
            saved["alg2"] = (self.alg2.save(), self.alg2._carry, self._alg2_first)
        else:
            saved["newton"] = (self.phi.array.copy(), self.rho_v.copy(), self._phi_prev)
            saved["tau_prev"] = self._tau_prev
        return saved

    def restore(self, saved: dict[str, Any]) -> None:
        """Undo to :meth:`save`."""
        super().restore(saved)
        self.transport_cost, self.energy_before, self._last_tau, self.interaction_defect = saved[
            "scalars"
        ]
        if self.inner == "alg2":
            state, self.alg2._carry, self._alg2_first = saved["alg2"]
            self.alg2.restore(state)
        else:
            phi, self.rho_v, self._phi_prev = saved["newton"]
            self.phi.array[:] = phi
            self._tau_prev = saved["tau_prev"]

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore the density and re-derive the potential from it (Newton)."""
        super().set_state(state)
        if self.inner == "alg2":
            self._alg2_first = True
            return
        self._reset_newton_state()

    # -- the ALG2 inner solver (solvers/fem/alg2_jko.py) ---------------------------------------
    def _init_alg2(self, params: dict[str, Any]) -> None:
        from wgf.solvers.fem.alg2_jko import JKOSpaceTime, lattice_index

        core = {
            "time_cells": params["alg2_time_cells"],
            "degree": 2,
            "r": params["alg2_r"],
            "adapt_r": False,
            "relaxation": params["alg2_relaxation"],
            "max_it": params["alg2_max_it"],
            "tol": params["alg2_tol"],
        }
        self.alg2 = JKOSpaceTime(self.case, self.comm, core, self.energy)
        coords = self.V.tabulate_dof_coordinates()[:, : self.case.dim]
        self._lat = lattice_index(coords, self.alg2.lower, self.alg2.h, self.alg2.cells)
        self._alg2_first = True
        self.mass_rescale = 0.0

    def _on_lattice(self, values: np.ndarray) -> np.ndarray:
        """Nodal P1 values (owned first) on the global vertex lattice, on every rank."""
        glob = np.zeros(self.alg2.n_lattice)
        own = slice(0, self._owned)
        glob[self._lat[own]] = values[own]
        self.comm.Allreduce(MPI.IN_PLACE, glob, op=MPI.SUM)
        return glob

    def _density_lattice(self) -> np.ndarray:
        return self._on_lattice(self.rho.x.array)

    def _alg2_interaction(self) -> np.ndarray | None:
        """W∗ρⁿ into the prox's potential (explicit, as in Newton); returns it at the vertices.

        ALG2's prox is pointwise, so the nonlocal term enters only explicitly: the step
        minimises W2²/(2τ) + F₀(ρ) + ⟨W∗ρⁿ, ρ⟩ with W∗ρⁿ evaluated on the P1 mesh and
        interpolated (P1) to the P2 dofs of the t = 1 face.  The dissipation bound then
        holds up to ``interaction_defect`` (:meth:`_freeze_interaction`).
        """
        if self.convolution is None:
            return None
        potential = self.convolution(self.rho.x.array)
        self.alg2.set_interaction(self._on_lattice(potential))
        return potential

    def _alg2_step(self, tau: float) -> int:
        """One JKO step by ALG2; ρ(1) → the P1 density, rescaled to the stated mass."""
        self.rho_old.x.array[:] = self.rho.x.array
        self.energy_before = self.energy_value(self._alg2_interaction())
        self.alg2.set_initial(self._density_lattice(), self._alg2_first, self.mass_target)
        its = self.linear_iterations = self.alg2.solve_step(tau)
        self.alg2.carry_terminal()
        self._alg2_first = False
        self.rho.x.array[:] = self.alg2.terminal_lattice()[self._lat]
        mass = self.integrate(self._forms["mass"])
        self.rho.x.array[:] *= self.mass_target / mass
        self.mass_rescale = abs(self.mass_target / mass - 1.0)
        self.transport_cost = self.alg2.w2sq_primal()
        self._last_tau = tau
        self.interaction_defect = self._interaction_defect()
        return its

    def _mu(self, rho: np.ndarray) -> np.ndarray:
        return self.energy.first_variation(rho, self.V_nodes)

    def _density_of(
        self, psi: np.ndarray, at: np.ndarray | slice = slice(None)
    ) -> tuple[np.ndarray, np.ndarray]:
        """Invert μ(ρ) - ε/ρ = ψ at the vertices ``at``: ρ and dρ/dψ (the Hamilton–Jacobi row).

        Iterative inversions start from the last evaluation: consecutive ψ differ little.
        """
        last = self.rho_v[at]
        start = np.where(np.isfinite(last) & (last > 0.0), last, self.rho.x.array[at])
        return self.energy.invert_first_variation(psi - self.V_nodes[at], self.barrier, start)

    def _edge_density(
        self, e: dict[str, np.ndarray], pieces: np.ndarray | slice = slice(None)
    ) -> np.ndarray:
        """The mobility ρ_ij = w ρ_i + (1 - w) ρ_j of the edge ``pieces`` (edge terms ``e``)."""
        w, rho = e["w"][pieces], self.rho_v
        return w * rho[self.edge_i[pieces]] + (1.0 - w) * rho[self.edge_j[pieces]]

    # -- the reduced system R(ϕ) = 0 ----------------------------------------------------------
    def _edge_terms(self, tau: float) -> dict[str, np.ndarray]:
        """Per-edge Δϕ, the smoothed upwind weight w (ρ_ij = wρ_i + (1-w)ρ_j) and w'."""
        phi = self.phi.array
        dphi = phi[self.edge_j] - phi[self.edge_i]
        if self.params["mobility"] == "centred":
            return {"dphi": dphi, "w": np.full_like(dphi, 0.5), "dw": np.zeros_like(dphi)}
        th = np.tanh(dphi / self.params["upwind_smoothing"])
        return {
            "dphi": dphi,
            "w": 0.5 * (1.0 + th),
            "dw": 0.5 * (1.0 - th**2) / self.params["upwind_smoothing"],
        }

    def _accumulate(
        self,
        at_i: np.ndarray,
        at_j: np.ndarray,
        ends: np.ndarray | None = None,
        complete: bool = True,
    ) -> np.ndarray:
        """Σ per vertex of ``at_i`` to each edge piece's i and ``at_j`` to its j.

        ``ends``: the pieces' i then j, concatenated, for a subset of the pieces (default:
        all of them); ``complete``: summed across ranks too.
        """
        if ends is None:
            ends = self._edge_ends
        n = len(self.work.array)
        # bincount: the same sums as np.add.at, an order of magnitude faster.
        self.work.array[:] = np.bincount(ends, weights=np.concatenate([at_i, at_j]), minlength=n)
        if complete:
            self.work.scatter_reverse(dolfinx.la.InsertMode.add)
            self.work.scatter_forward()
        return self.work.array.copy()

    def _sums_at(
        self, k: np.ndarray, i: np.ndarray, j: np.ndarray
    ) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        """Σ over the edge pieces (i, j) of (``at_i``, ``at_j``), at the vertices ``k``.

        The relaxation takes eleven such sums per colour class at a few vertices each, so
        only the pieces that end in ``k`` or in a ghost are summed, into a compact array
        in the order :meth:`_accumulate` sums them: the same floating-point result,
        without its pass over every vertex.  Across ranks the ghosts' parts are then added
        to their owners and sent back to the ghosts, as :meth:`_accumulate` does.  So each
        rank's pieces must include those that end in another rank's ``k``, and a ghost in
        ``k`` must be in its owner's ``k`` too.
        """
        n = len(self.work.array)
        slot = np.full(n, -1)
        slot[k] = np.arange(len(k))
        ghosts = np.arange(self.n_owned, n)
        rest = ghosts[slot[ghosts] < 0]  # the ghosts outside k: their parts go to the owners
        slot[rest] = len(k) + np.arange(len(rest))
        slot = slot[np.concatenate([i, j])]
        hit = np.flatnonzero(slot >= 0)
        slot = slot[hit]

        def compact(at_i: np.ndarray, at_j: np.ndarray) -> np.ndarray:
            """The local sums at k, then at the ghosts outside k."""
            weights = np.concatenate([at_i, at_j])[hit]
            return np.bincount(slot, weights=weights, minlength=len(k) + len(rest))

        if self.comm.size == 1:  # no ghosts: the local sums are the sums at k
            return compact
        work = self.work.array

        def sums(at_i: np.ndarray, at_j: np.ndarray) -> np.ndarray:
            local = compact(at_i, at_j)
            work[k], work[rest] = local[: len(k)], local[len(k) :]
            self.work.scatter_reverse(dolfinx.la.InsertMode.add)
            self.work.scatter_forward()
            return work[k]

        return sums

    def _psi(self, tau: float) -> dict[str, np.ndarray]:
        """The edge terms and ψ(ϕ) = -ϕ + (τ/2m) Σ_j w a (ϕ_j - ϕ_i)² (Hamilton–Jacobi row)."""
        e = self._edge_terms(tau)
        a, dphi, w = self.edge_a, e["dphi"], e["w"]
        half = 0.5 * tau * a * dphi**2
        G = self._accumulate(w * half, (1.0 - w) * half)
        e["psi"] = -self.phi.array + G / self.masses
        return e

    def _update_density(self, tau: float) -> dict[str, np.ndarray]:
        """ψ(ϕ) from the Hamilton–Jacobi row, then ρ = (μ - ε/ρ)^{-1}(ψ) at every vertex."""
        e = self._psi(tau)
        self.rho_v, self.drho = self._density_of(e["psi"])
        return e

    def _residual_norm(self, tau: float) -> float:
        return self._mass_residual(tau, self._update_density(tau))

    def _mass_residual(self, tau: float, e: dict[str, np.ndarray]) -> float:
        """The mass row R at the current ϕ (edge terms ``e``) and ρ = ``rho_v``; ‖R‖."""
        rho, own = self.rho_v, slice(0, self.n_owned)
        flux = self.edge_a * self._edge_density(e) * e["dphi"]
        self.r.array[:] = 0.0
        self.r.array[own] = self.masses[own] * (rho[own] - self.rho_old.x.array[own]) / tau
        self.r.array[:] += self._accumulate(flux, -flux, complete=False)
        self.r.scatter_reverse(dolfinx.la.InsertMode.add)
        owned = self.r.array[own]
        self._edges_now = e
        return float(np.sqrt(self.comm.allreduce(owned @ owned, op=MPI.SUM)))

    def _dual(self, tau: float) -> float:
        """g(ϕ) = min_ρ Λ(ρ, ϕ) at the current ϕ (after :meth:`_residual_norm`).

        Λ(ρ, ϕ) = Σ_i m_i [D U(ρ_i) + V_i ρ_i - ε log ρ_i + ϕ_i (ρ_i - ρ_i^n)]
        - (τ/2) Σ_ij a_ij ρ_ij (ϕ_j - ϕ_i)² is the Lagrangian of the step; the minimiser in
        ρ is the Hamilton–Jacobi row, so ∇g = τ R and g is concave: Newton on R = 0
        maximises g.
        """
        rho, phi, own = self.rho_v, self.phi.array, slice(0, self.n_owned)
        e = self._edges_now
        nodal = self.energy.density(rho[own], self.V_nodes[own]) + phi[own] * (
            rho[own] - self.rho_old.x.array[own]
        )
        if self.barrier > 0.0:
            nodal -= self.barrier * np.log(rho[own])
        rho_e = self._edge_density(e)
        local = self.masses[own] @ nodal - 0.5 * tau * np.sum(self.edge_a * rho_e * e["dphi"] ** 2)
        return float(self.comm.allreduce(local, op=MPI.SUM))

    def _assemble_jacobian(self, tau: float) -> PETSc.Mat:
        """J = (∂R/∂ρ) diag(dρ/dψ) (∂ψ/∂ϕ) + ∂R/∂ϕ, from edge COO values.

        The COO values of ∂ψ/∂ϕ and ∂R/∂ρ follow :meth:`_edge_matrix`'s layout, [owned
        diagonal, (i,i), (i,j), (j,i), (j,j)], those of ∂R/∂ϕ the edge pieces' part of it
        (:meth:`_on_pattern_of`); all are written in place into buffers made once, not
        concatenated from temporaries at every call.
        """
        e, rho = self._edges_now, self.rho_v
        i, a = self.edge_i, self.edge_a
        dphi, w, dw = e["dphi"], e["w"], e["dw"]
        n = self.n_owned
        psi, r_rho = (v[n:].reshape(4, -1) for v in self._coo_values)
        r_phi = self._rphi_values[len(self._rphi_values) - 4 * len(i) :].reshape(4, -1)
        inv_m_i, inv_m_j = self._inverse_mass_at
        # ∂ψ/∂ϕ: -I + (1/m) ∂G/∂ϕ, with c_i = τ a (w Δϕ + dw Δϕ²/2) and c_j likewise.
        flux_i = a * dphi  # a Δϕ, then its shares w and 1 - w
        np.multiply(flux_i, w, out=r_rho[0])
        np.subtract(flux_i, r_rho[0], out=r_rho[1])
        curve = 0.5 * tau * flux_i * dphi * dw  # 0 for the centred mobility
        c_i = tau * r_rho[0] + curve
        c_j = tau * r_rho[1] - curve
        np.multiply(c_i, inv_m_i, out=psi[1])
        np.negative(psi[1], out=psi[0])
        np.multiply(c_j, inv_m_j, out=psi[3])
        np.negative(psi[3], out=psi[2])
        # ∂R/∂ρ at fixed ϕ: M/τ on the diagonal, ±a w Δϕ and ±a (1 - w) Δϕ.
        self._coo_values[1, :n] = self.masses[:n] / tau
        np.negative(r_rho[0], out=r_rho[2])
        np.negative(r_rho[1], out=r_rho[3])
        # ∂R/∂ϕ at fixed ρ.
        d = self._edge_density(e) + dphi * dw * (rho[i] - rho[self.edge_j])
        np.multiply(a, d, out=r_phi[1])
        np.negative(r_phi[1], out=r_phi[0])
        r_phi[2] = r_phi[1]
        r_phi[3] = r_phi[0]
        for mat, values in zip((self.Psi, self.Rrho), self._coo_values, strict=True):
            mat.zeroEntries()
            mat.setValuesCOO(values, addv=PETSc.InsertMode.ADD_VALUES)
        scale = self.Psi.createVecLeft()
        scale.array[:] = self.drho[:n]
        self.Psi.diagonalScale(L=scale)
        # Reuse J: same sparsity every iteration, so MUMPS keeps its symbolic analysis.
        if self.J is None:
            self.J = self.Rrho.matMult(self.Psi)
            self.ksp.setOperators(self.J)
            self.Rphi = self._on_pattern_of(self.J)
        else:
            self.Rrho.matMult(self.Psi, result=self.J)
        self.Rphi.zeroEntries()
        self.Rphi.setValuesCOO(self._rphi_values, addv=PETSc.InsertMode.ADD_VALUES)
        self.J.axpy(1.0, self.Rphi, structure=PETSc.Mat.Structure.SAME_NONZERO_PATTERN)
        # -J is the (positive definite) Hessian of -τg: the sign CG and GAMG expect.
        self.J.scale(-1.0)
        return self.J

    def _on_pattern_of(self, J: PETSc.Mat) -> PETSc.Mat:
        """An empty matrix of J's nonzero pattern, COO-preallocated for ∂R/∂ϕ's edge pieces.

        ∂R/∂ϕ has the edge pattern and J its square's: added to J as a matrix of the edge
        pattern, PETSc's MatAXPY inserted it row by row (4.2 of the assembly's 22.6 ms
        at 256²); on J's pattern it is one vector update.  The COO layout is J's
        entries (explicit zeros, which fix the pattern) followed by the edge pieces';
        ``_rphi_values`` grows to it, zeros in front.
        """
        first, _ = J.getOwnershipRange()
        indptr, columns, _ = J.getValuesCSR()
        rows = first + np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
        l2g = self.V.dofmap.index_map.local_to_global
        i, j = (l2g(x.astype(np.int32)) for x in (self.edge_i, self.edge_j))
        mat = PETSc.Mat().createAIJ(J.getSizes(), comm=self.comm)
        mat.setPreallocationCOO(
            np.concatenate([rows, i, i, j, j]).astype(PETSc.IntType),
            np.concatenate([columns, i, j, i, j]).astype(PETSc.IntType),
        )
        self._rphi_values = np.concatenate([np.zeros(len(columns)), self._rphi_values])
        return mat

    def _floor_previous_density(self) -> bool:
        """Raise ρⁿ to the initial floor, max(ε, ``floor`` × its peak); whether it changed.

        The initial density is floored so that Gaussian tails do not start at 1e-80; the
        steps drain the far field of a confining potential below that floor again
        (ρ ≈ 1e-28 in the corners of a ±8 box under a stiff potential).  Their mass rows are
        then 10⁻²⁸ of the others, the Newton direction there is set by those rows alone
        and overshoots, and ρ = e^{ψ/D}-ish comes back down by one unit of log ρ per
        iteration: 20-35 iterations per step of a rotated anisotropic OU problem, 3 with
        the floor (measured: benchmarks/README.md).  The mass added (at most the floor times
        the domain's measure) is taken out by the rescaling of ρ to the stated mass.
        """
        rho_n = self.rho_old.x.array
        peak = self.comm.allreduce(float(rho_n.max(initial=0.0)), op=MPI.MAX)
        floor = max(self.barrier, self.params["floor"] * peak)
        low = self.comm.allreduce(bool((rho_n < floor).any()), op=MPI.LOR)
        if low:
            np.maximum(rho_n, floor, out=rho_n)
        return low

    def _hamilton_jacobi_guess(self, tau: float, norm: float, sweeps: int) -> float:
        """Picard iterates of ψ(ϕ) = y := μ(ρⁿ) - ε/ρⁿ, kept while ‖R‖ falls; returns ‖R‖.

        ϕ ← -y + (τ/2m) Σ_j w a (ϕ_j - ϕ_i)²: the first guess whose density is about ρⁿ
        once the transport term τ|∇ϕ|²/2 of the Hamilton–Jacobi row is counted.  The
        plain guess ϕ = -y leaves it out, which overfills by e^{τ|∇ϕ|²/2D}: 10¹⁴ in the
        far field of a steep potential, and Newton then removes one unit of log ρ per
        iteration.  Each iterate is kept only if it lowers ‖R‖ (on a compact support the
        plain guess is the better one).
        """
        rho_n = self.rho_old.x.array
        y = self._mu(rho_n) - self.barrier / rho_n
        for _ in range(sweeps):
            keep = self.phi.array.copy()
            G = self._psi(tau)["psi"] + self.phi.array  # (1/m) Σ w a Δϕ² at the current ϕ
            self.phi.array[:] = -y + G
            with np.errstate(over="ignore", invalid="ignore"):
                trial = self._residual_norm(tau)
            if not trial < norm:
                self.phi.array[:] = keep
                return self._residual_norm(tau)
            norm = trial
        return norm

    def _relax_dilute_vertices(
        self,
        tau: float,
        update: np.ndarray,
        near: np.ndarray,
        kappa: np.ndarray,
        widen: bool,
    ) -> None:
        """Each owned vertex of ``update`` solves its own mass row (one colour of a sweep).

        ``update`` marks owned vertices of one colour of :meth:`_colours`: no two are
        neighbours, so solving their rows at once is exact coordinate-wise (nonlinear
        Gauss–Seidel over the colours), not Jacobi.  With the neighbours' ϕ and ρ fixed,
        vertex i's mass row is a scalar equation in s = log ρ_i (ψ_i = μ(ρ_i) - ε/ρ_i
        gives ϕ_i by a quadratic, the τ-term of ψ being quadratic in ϕ_i), solved by
        Newton in s safeguarded by bisection, bracketed above the ρ below which no ϕ_i
        reaches ψ_i (the parabola's vertex).  ``near`` holds the edges that touch a
        relaxed vertex (on any rank): the sums need no others.  ``kappa`` is τ(dρ/dψ)/4m
        at the vertices (owned and ghost) whose ρ is taken to follow a relaxed
        neighbour's ϕ to first order, and 0 at those held.  The bracket is [log ρ, log ρⁿ]
        widened by 3 each way; with ``widen`` its top is widened further while the row is
        still negative there.  Centred mobility only.
        """
        i, j, a = self.edge_i[near], self.edge_j[near], self.edge_a[near]
        k = np.flatnonzero(update)
        at_k = self._sums_at(k, i, j)
        phi_i, phi_j = self.phi.array[i], self.phi.array[j]
        rho_i, rho_j = self.rho_v[i], self.rho_v[j]
        sq_i, sq_j = phi_i * phi_i, phi_j * phi_j
        # Σ_j a_ij·(1, ϕ_j, ϕ_j², ρ_j, ρ_j ϕ_j) at the relaxed vertices, completed across ranks.
        A, B, C, Qr, Qrp = (
            at_k(a, a),
            at_k(a * phi_j, a * phi_i),
            at_k(a * sq_j, a * sq_i),
            at_k(a * rho_j, a * rho_i),
            at_k(a * (rho_j * phi_j), a * (rho_i * phi_i)),
        )
        # A neighbour's ρ_j moves with ϕ_i = x through the τ-term of ψ_j, by
        # κ_ij [(x - ϕ_j)² - (x₀ - ϕ_j)²] to first order, κ_ij = (dρ/dψ)_j τ a_ij/(4 m_j).
        # That is O(τ/h²) on a support neighbour, so it enters the row where the first
        # order does not overshoot (``kappa``, see :meth:`_relax`): Σ_j a_ij κ_ij·(1,
        # ϕ_j, ϕ_j², ϕ_j³) and, with x₀ = ϕ_i now, Σ_j a_ij κ_ij (x₀ - ϕ_j)²·(1, ϕ_j).
        ak_j, ak_i = a * a * kappa[j], a * a * kappa[i]
        d2 = (phi_i - phi_j) ** 2  # (x₀ - ϕ_j)² for row i, (x₀ - ϕ_i)² for row j
        S0, S1, S2, S3, T0, T1 = (
            at_k(f_j, f_i)
            for f_j, f_i in (
                (ak_j, ak_i),
                (ak_j * phi_j, ak_i * phi_i),
                (ak_j * sq_j, ak_i * sq_i),
                # x*x*x, not x**3: NumPy's pow took a fifth of the relaxation.
                (ak_j * (sq_j * phi_j), ak_i * (sq_i * phi_i)),
                (ak_j * d2, ak_i * d2),
                (ak_j * d2 * phi_j, ak_i * d2 * phi_i),
            )
        )
        m, V, rho_n = self.masses[k], self.V_nodes[k], self.rho_old.x.array[k]
        # ψ_i = -ϕ_i + (τ/4m_i) Σ_j a_ij (ϕ_j - ϕ_i)² (centred: half of each edge's term):
        # c2 ϕ_i² - c1 ϕ_i + c0 = 0 with c0 = τC/4m - (μ(ρ_i) - ε/ρ_i).
        c2, c1 = tau * A / (4.0 * m), 1.0 + tau * B / (2.0 * m)

        def discriminant(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            """c0 at ρ = r and the quadratic's discriminant c1² - 4c2c0 (rising with r)."""
            c0 = tau * C / (4.0 * m) - (self.energy.first_variation(r, V) - self.barrier / r)
            return c0, c1 * c1 - 4.0 * c2 * c0

        def phi_of(s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            """ρ = e^s, ϕ_i (the root that tends to -ψ as τ → 0) and dϕ_i/ds."""
            r = np.exp(s)
            c0, disc = discriminant(r)
            disc = np.sqrt(np.maximum(disc, 1e-300))
            dc0 = -(self.energy.diffusivity * self.energy.internal.dpressure(r) + self.barrier / r)
            return r, 2.0 * c0 / (c1 + disc), dc0 / disc

        def mass_row(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            """Vertex i's mass row as a function of s = log ρ_i, and its slope."""
            r, x, dx = phi_of(s)
            # Σ_j a_ij κ_ij [(x - ϕ_j)² - (x₀ - ϕ_j)²](ϕ_j - x): the neighbours' response
            moved = -(((S0 * x - 3.0 * S1) * x + 3.0 * S2) * x - S3) + x * T0 - T1
            d_moved = -((3.0 * S0 * x - 6.0 * S1) * x + 3.0 * S2) + T0
            row = m * (r - rho_n) / tau + 0.5 * r * (B - x * A) + 0.5 * (Qrp - x * Qr + moved)
            slope = m * r / tau + 0.5 * r * (B - x * A) - 0.5 * (r * A + Qr - d_moved) * dx
            return row, slope

        s_now, s_old = np.log(self.rho_v[k]), np.log(np.maximum(rho_n, 1e-300))
        lo, hi = np.minimum(s_now, s_old) - 3.0, np.maximum(s_now, s_old) + 3.0
        # ψ_i(ϕ_i) is a parabola: no ϕ_i reaches ψ below its vertex value τC/4m - c1²/4c2,
        # so below the ρ of that value the row has no meaning (the clipped root would
        # give spurious roots, ϕ_i ≈ 2c0/c1).  That ρ (where the discriminant vanishes)
        # is inverted for only where it lies above the bracket's low end, from ε/(-y): the
        # barrier's branch, where that ρ lies (10⁻⁴ of ρ_i, typically).
        short = discriminant(np.exp(lo))[1] < 0.0
        if short.any():
            y = tau * C[short] / (4.0 * m[short]) - c1[short] ** 2 / (4.0 * c2[short]) - V[short]
            start = np.where(y < 0.0, self.barrier / np.maximum(-y, 1e-300), self.rho_v[k[short]])
            low = self.energy.invert_first_variation(y, self.barrier, start)[0]
            lo[short] = np.maximum(lo[short], np.log(low) + 1e-12)
        # A front vertex can fill from the barrier's floor to a share of the peak in one
        # step (m = 3, 256²: from 10⁻⁶ to 10⁻² of it): e³ above ρ and ρⁿ does not bracket
        # its row, and unrelaxed it held ‖R‖ at 10⁻⁴ for five Newton iterations in a row.
        row_hi = mass_row(hi)[0]
        for _ in range(BRACKET_WIDENINGS if widen else 0):
            low_top = row_hi <= 0.0
            if not low_top.any():
                break
            hi = np.where(low_top, hi + 3.0, hi)
            row_hi = mass_row(hi)[0]
        bracketed = (row_hi > 0.0) & (mass_row(lo)[0] < 0.0)
        k, lo, hi, s = k[bracketed], lo[bracketed], hi[bracketed], s_now[bracketed]
        A, B, C, Qr, Qrp, m, V, rho_n, c1, c2, S0, S1, S2, S3, T0, T1 = (
            x[bracketed] for x in (A, B, C, Qr, Qrp, m, V, rho_n, c1, c2, S0, S1, S2, S3, T0, T1)
        )
        for _ in range(SCALAR_STEPS):
            row, slope = mass_row(s)
            above = row > 0.0
            hi, lo = np.where(above, s, hi), np.where(above, lo, s)
            with np.errstate(divide="ignore", invalid="ignore"):
                step = row / slope
            # Converged: a Newton step below the tolerance (the next would be its square).
            small = np.abs(step) < SCALAR_XTOL
            inside = small | (np.isfinite(step) & (s - step > lo) & (s - step < hi))
            s = np.where(inside, s - step, 0.5 * (lo + hi))
            done = bool(np.all(small | (hi - lo < SCALAR_XTOL)))
            # One rank: no allreduce, ten per relaxed colour class (a thirtieth of its time).
            if self.comm.allreduce(done, op=MPI.LAND) if self.comm.size > 1 else done:
                break
        self.phi.array[k] = phi_of(s)[1]
        self.phi.scatter_forward()

    def _convex_response(self) -> np.ndarray:
        """Vertices (owned and ghost) where ρ(ψ) is convex or linear: dρ/dψ not falling.

        A relaxed vertex's row counts its neighbours' ρ to first order in ψ
        (:meth:`_relax_dilute_vertices`).  Where ρ(ψ) is concave (the power branch of
        m > 2: ρ ∝ ψ^{1/(m-1)}) the tangent overstates how a filling neighbour gains, and
        the relaxation did worse than holding ρ (m = 3, 6 steps, 128²/256²: 144/136 Newton
        iterations against 91/99); where it is linear (m = 2) or convex (the barrier
        branch) the tangent is exact or an underestimate.  Tested by dρ/dψ = ρ/(D·P'(ρ) +
        ε/ρ) at ρ + 10⁻³|ψ - V|·dρ/dψ, the image of ψ + 10⁻³|ψ - V| to first order: no
        second inversion at every vertex.
        """
        y = self._edges_now["psi"] - self.V_nodes
        up = self.rho_v + 1e-3 * np.maximum(np.abs(y), np.finfo(float).tiny) * self.drho
        slope = up / (self.energy.dpressure(up) + self.barrier / up)
        return slope >= (1.0 - 1e-6) * self.drho

    def _dilute_rows(self, concave: np.ndarray) -> np.ndarray:
        """Owned vertices below ``RELAX_BELOW`` × the peak density with |R_i| that matters.

        Also those that were below it at the Newton iterate and are now where ρ(ψ) is
        ``concave`` (owned; the power branch of m > 2): there a full Newton step overfills
        vertices just outside ρⁿ's support through the τ-term of ψ.  At porous_medium_2d,
        m = 3, 256², trial points put ρ = 0.6-1.0 × the peak at vertices whose ρⁿ is 10⁻⁸
        of it (‖R‖ 0.06 → 3, all in those rows); no longer dilute, they were not relaxed,
        and the line search cut the step to α = ¼-⅛ for ten iterations in a row.  Where
        ρ(ψ) is linear (m = 2) relaxing them did not pay (512²: 73 Newton iterations in
        3 steps against 32).  Only in a warm-started step (from the last steps' ϕ, not the
        Hamilton–Jacobi guess of a first step) and for its first ``OVERFILL_ITERATIONS``
        iterations: there a vertex that fills from dilute to the peak at a trial point
        overshoots, while from a first guess mass moves into dilute vertices for real.
        porous_quartic_2d with m = 3 (a paraboloid cap drawn into a quartic well) took
        91-97 Newton iterations in its first step before, and with the candidates in every
        step none of τ, τ/2, τ/4 converged within 100 (4 runs of 4).
        """
        own = slice(0, self.n_owned)
        rho, R = self.rho_v[own], np.abs(self.r.array[own])
        peak = self.comm.allreduce(float(rho.max(initial=0.0)), op=MPI.MAX)
        big = self.comm.allreduce(float(R.max(initial=0.0)), op=MPI.MAX)
        dilute = rho < RELAX_BELOW * peak
        if self._dilute_at_iterate is not None:
            dilute |= self._dilute_at_iterate & concave
        # Most dilute vertices (far outside the support) have R ≈ 0: leave them.
        return (R > RELAX_ROWS_ABOVE * big) & dilute

    def _on_ghosts(self, owned: np.ndarray) -> np.ndarray:
        """A mark of the owned vertices, extended to the ghosts (owned + ghost length)."""
        self.work.array[:] = 0.0
        self.work.array[: self.n_owned] = owned
        self.work.scatter_forward()
        return self.work.array > 0.5

    def _colours(self, mark: np.ndarray) -> np.ndarray:
        """Colours of the graph induced on ``mark`` (owned + ghost), -1 off it: the mesh's."""
        if self._mesh_colours is None:
            self._mesh_colours = self._colour_mesh()
        return np.where(mark, self._mesh_colours, -1)

    def _colour_mesh(self) -> np.ndarray:
        """A colouring of the mesh graph (owned + ghost) with few colours, made once.

        Jones–Plassmann with the smallest free colour: in each round, the uncoloured
        vertices with no uncoloured neighbour of higher priority (a hash of the global
        number) take the smallest colour that none of their neighbours has.  Every count
        is a sum over the edge pieces, completed across ranks, so every rank agrees on the
        colours; they depend on the partition through the global numbering.  At most one
        more colour than the largest vertex degree, and the relaxation's cost is per
        colour class: the round numbers, used as colours before, made 21 classes per
        relaxation at 256² (37 on 2 ranks).
        """
        n = len(self.work.array)
        glob = self.V.dofmap.index_map.local_to_global(np.arange(n, dtype=np.int32))
        priority = (glob.astype(np.int64) * 2654435761) % 4294967291
        i, j = self.edge_i, self.edge_j
        above = (priority[j] > priority[i]).astype(float), (priority[i] > priority[j]).astype(float)
        colour = np.full(n, -1)
        while self.comm.allreduce(bool((colour[: self.n_owned] < 0).any()), op=MPI.LOR):
            left = colour < 0
            live = (left[i] & left[j]).astype(float)
            higher = self._accumulate(above[0] * live, above[1] * live)
            waiting, k = left & (higher == 0.0), 0
            while self.comm.allreduce(bool(waiting[: self.n_owned].any()), op=MPI.LOR):
                has = self._accumulate(
                    (colour[j] == k).astype(float), (colour[i] == k).astype(float)
                )
                take = waiting & (has == 0.0)
                colour[take], waiting, k = k, waiting & ~take, k + 1
        return colour

    def _psi_on(
        self,
        tau: float,
        edges: np.ndarray,
        at: np.ndarray,
        sums: Callable[[np.ndarray, np.ndarray], np.ndarray],
    ) -> np.ndarray:
        """ψ(ϕ) of the centred mobility at the vertices ``at``.

        Every edge piece of the vertices ``at`` is in ``edges``; ``sums`` is
        :meth:`_sums_at` of those pieces at ``at``.
        """
        i, j, phi = self.edge_i[edges], self.edge_j[edges], self.phi.array
        quarter = 0.25 * tau * self.edge_a[edges] * (phi[j] - phi[i]) ** 2
        return -phi[at] + sums(quarter, quarter) / self.masses[at]

    def _relax(self, tau: float, norm: float) -> float:
        """``RELAX_SWEEPS`` Gauss–Seidel sweeps of the dilute rows, kept if ‖R‖ fell.

        The rows are the dilute ones with |R_i| above ``RELAX_ROWS_ABOVE`` × max |R|
        (:meth:`_dilute_rows`), and if relaxing them did not lower ‖R‖, only those among
        them that held more than ``RELAX_RETRY_ROWS_ABOVE`` × max |R| at the trial point
        (:meth:`_relaxation_sweeps`).  Why the retry: late in a step at m = 3 the residual
        sits in a few dozen vertices just outside the support, overfilled on the barrier's
        branch ρ ≈ ε/(c - ψ), where Newton only halves the excess per iteration; relaxing
        them alone drains them, but relaxing them with the thousands of front rows that
        hold 10⁻⁵-10⁻³ of max |R| raised ‖R‖ tenfold (each exact row solve disturbs its
        neighbours' rows), so nothing was kept (porous_medium_2d, 256², m = 3: a step of 16
        Newton iterations, ‖R‖ halving from 10⁻⁶ to 10⁻¹⁰, now 7).  Only as a retry: as
        the first choice the larger threshold cost Newton iterations in every step
        (benchmarks/README.md).  Called at every trial point of Newton's line search.

        Returns ‖R‖ at the kept ϕ (and leaves ρ, R and the edge terms evaluated there).
        """
        responsive = self._convex_response()
        concave = ~responsive[: self.n_owned]
        # Wider brackets for the front vertices that fill (see _relax_dilute_vertices), where
        # ρ(ψ) is concave somewhere: where it is linear on the support (m = 2) they cost
        # Newton iterations at 512² (20 against 17 in 3 steps).  Not from the first step's
        # Hamilton–Jacobi guess, where mass moves into dilute vertices for real (see
        # _dilute_rows): 43 Newton iterations against 18 at 256², m = 3.
        widen = self._phi_prev is not None and self.comm.allreduce(bool(concave.any()), op=MPI.LOR)
        dilute = self._dilute_rows(concave)
        rows = self.r.array[: self.n_owned][dilute]
        share = np.sqrt(self.comm.allreduce(float(rows @ rows), op=MPI.SUM)) / norm
        if share < RELAX_WHEN_SHARE_ABOVE:
            return norm  # the residual is not the dilute vertices' this time
        before = self.phi.array.copy()
        within = None
        for retry in (False, True):
            if retry:  # the rows that hold the residual at the trial point, restored
                R = np.abs(self.r.array[: self.n_owned])
                big = self.comm.allreduce(float(R.max(initial=0.0)), op=MPI.MAX)
                within = R > RELAX_RETRY_ROWS_ABOVE * big
                dilute = self._dilute_rows(concave) & within
            relaxed = self._relaxation_sweeps(tau, dilute, within, concave, responsive, widen)
            if relaxed < norm:
                return relaxed
            self.phi.array[:] = before
            norm = self._residual_norm(tau)
        return norm

    def _relaxation_sweeps(
        self,
        tau: float,
        dilute: np.ndarray,
        within: np.ndarray | None,
        concave: np.ndarray,
        responsive: np.ndarray,
        widen: bool,
    ) -> float:
        """``RELAX_SWEEPS`` sweeps from the ``dilute`` rows; ‖R‖ after them.

        Each sweep takes the dilute rows of the current ρ and R (:meth:`_dilute_rows`;
        only those ``within`` if given), colours them with the mesh's colouring
        (:meth:`_colours`) and relaxes one colour after the other
        (:meth:`_relax_dilute_vertices`), updating ρ at the relaxed vertices and their
        neighbours in between.
        """
        for sweep in range(RELAX_SWEEPS):
            if sweep:
                dilute = self._dilute_rows(concave)  # of the new ρ and R
                if within is not None:
                    dilute &= within
            mark = self._on_ghosts(dilute)
            colour = self._colours(mark)
            i, j = self.edge_i, self.edge_j
            near = np.flatnonzero(mark[i] | mark[j])
            n_colours = self.comm.allreduce(int(colour.max(initial=-1)) + 1, op=MPI.MAX)
            counts = np.bincount(colour[: self.n_owned][dilute], minlength=n_colours)
            present = np.flatnonzero(self.comm.allreduce(counts, op=MPI.SUM))
            # A colour's sums need ρ only at the relaxed vertices and their neighbours (on
            # any rank), and ψ there needs only the edges around those.
            near_i, near_j = i[near], j[near]
            ones = np.ones(len(near))
            touched = self._accumulate(ones, ones, np.concatenate([near_i, near_j])) > 0.0
            around = np.flatnonzero(touched[i] | touched[j])
            touched = np.flatnonzero(touched)
            psi_sums = self._sums_at(touched, i[around], j[around])
            colour_i, colour_j = colour[near_i], colour[near_j]
            # dρ/dψ is that of the last evaluation for the whole sweep.
            kappa = np.where(responsive, self.drho * tau / (4.0 * self.masses), 0.0)
            for c in present:
                if c != present[0]:  # ρ at the ϕ the previous colour left
                    psi = self._psi_on(tau, around, touched, psi_sums)
                    self.rho_v[touched] = self.energy.invert_first_variation(
                        psi - self.V_nodes[touched], self.barrier, self.rho_v[touched]
                    )[0]
                self._relax_dilute_vertices(
                    tau,
                    dilute & (colour[: self.n_owned] == c),
                    near[(colour_i == c) | (colour_j == c)],
                    kappa,
                    widen,
                )
            # ρ and R after the sweep: the next sweep's rows, and the merit.
            relaxed = self._residual_norm_near(tau, near, touched, around, psi_sums)
        return relaxed

    def _residual_norm_near(
        self,
        tau: float,
        near: np.ndarray,
        touched: np.ndarray,
        around: np.ndarray,
        psi_sums: Callable[[np.ndarray, np.ndarray], np.ndarray],
    ) -> float:
        """‖R‖ after a sweep, ψ, ρ and R evaluated again only where the sweep moved them.

        The sweep moved ϕ at the relaxed vertices alone, so Δϕ changed on their edges
        (``near``), ψ and ρ at those edges' ends (``touched``, whose edges are ``around``;
        ``psi_sums`` sums over those at them), and R in the rows at and next to ``touched``.
        On one rank those are summed in the order of the full evaluation (:meth:`_sums_at`);
        at the other vertices the full evaluation would only redo the inversion of an
        unchanged ψ, whose result moves by its tolerance (10⁻¹³ in log ρ).  On several ranks
        a row's edge pieces may lie on another rank's cells, so the rows are marked across
        ranks and summed there.  A full evaluation is 8 ms at 256² and a relaxation takes
        four.
        """
        e, phi, rho = self._edges_now, self.phi.array, self.rho_v
        i, j = self.edge_i, self.edge_j
        e["dphi"][near] = phi[j[near]] - phi[i[near]]
        psi = self._psi_on(tau, around, touched, psi_sums)
        e["psi"][touched] = psi
        rho[touched], self.drho[touched] = self._density_of(psi, touched)
        ends = np.concatenate([i[around], j[around]])
        if self.comm.size > 1:
            ones = np.ones(len(around))
            row = self._accumulate(ones, ones, ends) > 0.0
        else:
            row = np.zeros(len(phi), dtype=bool)
            row[ends] = True
        pieces = np.flatnonzero(row[i] | row[j])
        rows = np.flatnonzero(row[: self.n_owned])
        flux = self.edge_a[pieces] * self._edge_density(e, pieces) * e["dphi"][pieces]
        mass = self.masses[rows] * (rho[rows] - self.rho_old.x.array[rows]) / tau
        self.r.array[rows] = mass + self._sums_at(rows, i[pieces], j[pieces])(flux, -flux)
        owned = self.r.array[: self.n_owned]
        return float(np.sqrt(self.comm.allreduce(owned @ owned, op=MPI.SUM)))

    # -- Newton --------------------------------------------------------------------------------
    def _residual_scale(self, tau: float) -> float:
        """‖Mρⁿ‖/τ, the size of the mass row's terms: what the Newton tolerance is relative to.

        Not the first residual, as before: a tolerance relative to ‖R₀‖ grows stricter the
        better the first guess is (an extrapolated ϕ starts 10-100 times closer, and then
        had to be pushed 10-100 times further), and near round-off it cannot be met.
        Relative to ‖Mρⁿ‖/τ it asks the same relative accuracy of every step's mass
        balance, whatever the guess.
        """
        own = slice(0, self.n_owned)
        mass_row = self.masses[own] * self.rho_old.x.array[own]
        return float(np.sqrt(self.comm.allreduce(float(mass_row @ mass_row), op=MPI.SUM))) / tau

    def _round_off_floor(self, tau: float) -> float:
        """‖R‖ that round-off alone leaves at the current ϕ: the attainable precision.

        Row i of R is a sum of terms that cancel at the solution; each carries a relative
        error of about the unit round-off u, so |δR_i| ≲ u × (the sizes of its terms):

        * m_i(ρ_i + ρ_iⁿ)/τ, the mass term;
        * Σ_j a_ij ρ_ij (|Δϕ_ij| + |ϕ_i| + |ϕ_j|), the fluxes: ϕ itself is only known to
          u|ϕ| (the last bit of an update ϕ + dϕ), and Δϕ_ij = ϕ_j - ϕ_i ~ h|∇ϕ| is a
          difference of two such numbers, which is why the floor grows as h falls;
        * |∂R_i/∂ρ_i| (dρ/dψ)_i (|ϕ_i| + |ψ_i + ϕ_i| + |V_i|): ρ_i from ψ_i, whose sum
          -ϕ_i + G_i/m_i and the inversion's μ - V are rounded too.

        Summed in absolute value, row by row: a bound, not an estimate of the (partly
        cancelling) actual noise, so Newton can reach it.  Evaluated at the current iterate
        from the arrays the residual evaluation left (one more edge sum).
        """
        e, rho, phi = self._edges_now, self.rho_v, self.phi.array
        i, j, a = self.edge_i, self.edge_j, self.edge_a
        dphi = np.abs(e["dphi"])
        rho_e = self._edge_density(e)
        flux = a * rho_e * (dphi + np.abs(phi[i]) + np.abs(phi[j]))
        slope = a * dphi  # bounds |∂F_ij/∂ρ_i| and |∂F_ij/∂ρ_j|
        own = slice(0, self.n_owned)
        fluxes = self._accumulate(flux, flux)[own]
        slopes = self._accumulate(slope, slope)[own]
        m, rho_n = self.masses[own], self.rho_old.x.array[own]
        psi_sum = np.abs(phi) + np.abs(e["psi"] + phi) + np.abs(self.V_nodes)
        drho_row = (m / tau + slopes) * self.drho[own] * psi_sum[own]
        bound = m * (rho[own] + rho_n) / tau + fluxes + drho_row
        total = self.comm.allreduce(float(bound @ bound), op=MPI.SUM)
        return float(np.finfo(float).eps * np.sqrt(total))

    def _newton(
        self,
        tau: float,
        norm: float | None = None,
        loosen: float = 1.0,
        max_it: int | None = None,
        stall_check: bool = False,
    ) -> int:
        """Newton on R(ϕ) = 0 from the current ϕ; ``norm``: ‖R‖ there, if just evaluated.

        Stops at ‖R‖ ≤ max(atol, rtol·‖Mρⁿ‖/τ) (:meth:`_residual_scale`; times
        ``loosen``), or at the round-off floor of R when that is higher
        (:meth:`_converged`).  A failure raises :class:`SolverError` with the iterations
        spent, so that the driver can count them: after ``max_it`` iterations (default:
        the ``max_it`` parameter), or, with ``stall_check``, as :class:`_Stalled` when
        k·``COLD_TRIAL_ITERATIONS`` have not lowered ‖R‖ by ``COLD_TRIAL_DECREASE``^k.  ρⁿ
        has been floored by :meth:`step` (:meth:`_floor_previous_density`).
        """
        rtol, atol = self.params["rtol"], self.params["atol"]
        max_it = self.params["max_it"] if max_it is None else max_it
        norm = self._residual_norm(tau) if norm is None else norm
        warm = self._phi_prev is not None  # else from the Hamilton–Jacobi first guess
        if not np.isfinite(norm):
            raise SolverError("the first Newton residual is not finite")
        first, tol = norm, loosen * max(atol, rtol * self._residual_scale(tau))
        dual = self._dual(tau)
        phi0 = np.empty_like(self.phi.array)
        relaxing = self.barrier > 0.0 and self.params["mobility"] == "centred"
        previous = np.inf
        for it in range(1, max_it + 1):
            if self._converged(tau, norm, tol):
                return it - 1
            self._assemble_jacobian(tau)
            try:
                self._solve_linear(self._forcing(norm, previous, tol))
            except SolverError as err:
                raise SolverError(str(err), iterations=it) from None
            self.dphi.scatter_forward()
            phi0[:] = self.phi.array
            self._dilute_at_iterate = None
            if relaxing and warm and it <= OVERFILL_ITERATIONS:  # see _dilute_rows
                rho = self.rho_v[: self.n_owned]
                peak = self.comm.allreduce(float(rho.max(initial=0.0)), op=MPI.MAX)
                self._dilute_at_iterate = rho < RELAX_BELOW * peak
            # The ascent of g along dϕ: τ R·dϕ = τ R·(-J)⁻¹R > 0.
            own = slice(0, self.n_owned)
            slope = tau * self.comm.allreduce(
                float(self.r.array[own] @ self.dphi.array[own]), op=MPI.SUM
            )
            alpha = 1.0
            while True:
                self.phi.array[:] = phi0 + alpha * self.dphi.array
                with np.errstate(over="ignore", invalid="ignore"):  # rejected below
                    trial = self._residual_norm(tau)
                    if relaxing and np.isfinite(trial) and trial > tol:
                        # The free-boundary rows eliminated nonlinearly at the trial point,
                        # which the merit then judges (see the module docstring).  Not at a
                        # trial point that ends Newton anyway: there it only lowered a
                        # converged ‖R‖ further, for a twentieth of the step's time.
                        trial = self._relax(tau, trial)
                    trial_dual = self._dual(tau)
                # Armijo on the dual g, the natural merit of a concave maximisation, or on
                # ‖R‖, which still decides near convergence where g changes below round-off.
                if np.isfinite(trial) and (
                    (slope > 0.0 and trial_dual >= dual + ARMIJO * alpha * slope)
                    or trial <= (1.0 - ARMIJO * alpha) * norm
                ):
                    dual = trial_dual
                    break
                alpha *= 0.5
                if alpha < 1e-10:
                    self.phi.array[:] = phi0
                    raise SolverError(f"line search failed at Newton iteration {it}", iterations=it)
            if self.params["monitor"]:
                floor = self._round_off_floor(tau)  # on every rank: it sums over them
                if self.comm.rank == 0:
                    log.info(
                        "    newton %d: |R| %.3e -> %.3e, step %g, round-off floor %.1e",
                        it,
                        norm,
                        trial,
                        alpha,
                        floor,
                    )
            norm, previous = trial, norm
            trials, left = divmod(it, COLD_TRIAL_ITERATIONS)
            if stall_check and not left and norm > COLD_TRIAL_DECREASE**trials * first:
                raise _Stalled(f"‖R‖ {norm:.3e} from {first:.3e} in {it} iterations", iterations=it)
        if self._converged(tau, norm, tol):
            return max_it
        raise SolverError(
            f"Newton did not converge in {max_it} iterations (residual {norm:.3e}, "
            f"initial {first:.3e}, tolerance {tol:.3e}, round-off floor "
            f"{self.round_off_floor * tol:.3e})",
            iterations=max_it,
        )

    def _converged(self, tau: float, norm: float, tol: float) -> bool:
        """‖R‖ ≤ max(tol, the round-off floor): the stop rule; a stop at the floor is counted.

        A tolerance below the floor (:meth:`_round_off_floor`) cannot be met: Newton
        would spin at the floor until ``max_it`` and the step would be retried at τ/2,
        where the floor is no lower.  Below the floor the iterate is as converged as
        double precision allows, so the step is accepted, and ``round_off_stops`` counts
        it.  ``round_off_floor`` keeps floor/tol at the last check (the margin a finer
        mesh or a stricter rtol eats into).
        """
        floor = self._round_off_floor(tau)
        self.round_off_floor = floor / tol
        if norm <= tol:
            return True
        if norm > floor:
            return False
        if self.round_off_stops == 0 and self.comm.rank == 0:
            log.info(
                "  fem-jko: Newton stopped at the round-off floor %.3e of the residual, above "
                "its tolerance %.3e (counted in the diagnostic round_off_stops)",
                floor,
                tol,
            )
        self.round_off_stops += 1
        return True

    def step(self, tau: float) -> int:
        """One JKO step of size τ; returns the Newton (or ALG2) iterations."""
        if self.inner == "alg2":
            return self._alg2_step(tau)
        self.rho_old.x.array[:] = self.rho.x.array
        self.linear_iterations = 0
        self._support_grows = False
        saved = self.phi.array.copy()
        # ρⁿ floored and put back to the stated mass before anything is evaluated, so that
        # the energy, W∗ρⁿ and Newton all see the state the step starts from (the floor adds
        # up to floor × |Ω| of mass, which the rescaling after the step would remove).
        if self._floor_previous_density():
            self.rho_old.x.array[:] *= self.mass_target / self.integrate(self._mass_old)
            self.rho.x.array[:] = self.rho_old.x.array
        potential = self._freeze_interaction()
        self.energy_before = self.energy_value(potential) + self._barrier_value(
            self.rho_old.x.array
        )
        self._warn_if_unresolved()
        try:
            if self.coarse is not None:
                its = self._newton_from_coarse(tau)
            elif self._phi_prev is not None:
                its = self._newton(tau, self._extrapolate(tau))
            else:
                its = self._cold_newton(tau)
        except SolverError:
            self.phi.array[:] = saved
            raise
        self._phi_prev, self._tau_prev = saved, tau
        mass = self.comm.allreduce(
            float(self.masses[: self.n_owned] @ self.rho_v[: self.n_owned]), op=MPI.SUM
        )
        self.rho.x.array[:] = self.rho_v * (self.mass_target / mass)
        e = self._edges_now
        rho_e = self._edge_density(e)
        self.transport_cost = self.comm.allreduce(
            float(np.sum(tau**2 * self.edge_a * rho_e * e["dphi"] ** 2)), op=MPI.SUM
        )
        self._last_tau = tau
        self.interaction_defect = self._interaction_defect()
        return its

    def _extrapolate(self, tau: float) -> float | None:
        """The warm first guess: ϕ extrapolated linearly from the last two steps, if better.

        Saves about one Newton iteration per step.  Not where ρ spans many decades (a
        density leaving its floor): there the extrapolated log ρ overshoots by decades, so
        it is kept only if ‖R‖ is smaller there than at the last step's ϕ.

        Returns:
            ‖R‖ at the extrapolated ϕ (R, ρ and the edge terms are then those of it), or
            None when ϕ stays the last step's (a change of τ, or a larger ‖R‖).
        """
        if self._tau_prev != tau:
            return None
        last = self.phi.array.copy()
        with np.errstate(over="ignore", invalid="ignore"):
            plain = self._residual_norm(tau)
            self.phi.array[:] = 2.0 * last - self._phi_prev
            extrapolated = self._residual_norm(tau)
        if extrapolated <= plain:
            return extrapolated
        self.phi.array[:] = last
        return None

    def _newton_from_coarse(self, tau: float) -> int:
        """Newton from the coarser mesh's solution of the same step (nested iteration).

        The coarser level starts from this level's ρⁿ, interpolated to its vertices, and
        its own first guess (:meth:`start_step_from`), and takes the step with its own
        coarser level first; its ϕ, interpolated back, is this level's first guess.  Why:
        from the last steps' ϕ, Newton's iterations grow with the mesh, because the free
        boundary crosses more rings of vertices per step and Newton's linear model sees
        one ring at a time (the BFM problem at 512², m = 2: a warm step 9-11 iterations
        and up to 54; from the 256² solution 3-4).  From the coarse solution the front is
        already within a cell of its place.  A coarse step that fails costs its
        iterations (counted) and this level goes on from its own guess; so does a first
        step that stalls from the coarse guess, by :meth:`_cold_newton`.
        """
        warm = self._phi_prev is not None
        coarse, transfer = self.coarse, self._transfer
        coarse.start_step_from(transfer.to_coarse(self.rho_old.x.array), first=not warm)
        below = coarse.coarse_iterations
        try:
            spent = coarse.step(tau)
        except SolverError as err:
            self.coarse_iterations += err.iterations + coarse.coarse_iterations - below
            return self._newton(tau, self._extrapolate(tau)) if warm else self._cold_newton(tau)
        spent += coarse.coarse_iterations - below
        self.coarse_iterations += spent
        guess = self.phi.array.copy()
        self.phi.array[:] = transfer.to_fine(coarse.phi.array)
        if self.params["monitor"] and self.comm.rank == 0:
            log.info("    nested: %d Newton iterations on the coarser meshes", spent)
        if warm:
            return self._newton(tau)
        try:
            return self._newton(tau, stall_check=True)
        except _Stalled as stalled:
            self.phi.array[:] = guess
            return stalled.iterations + self._cold_newton(tau)

    def start_step_from(self, rho: np.ndarray, first: bool) -> None:
        """The next step starts from the density ``rho`` (a finer level's ρⁿ, interpolated).

        Its first guess of ϕ is this level's own: its last steps' ϕ, extrapolated, or in a
        ``first`` step the Hamilton–Jacobi guess at ``rho``.  Not the finer level's
        guess interpolated: from that, a 256² level's second step of porous_medium_2d
        (m = 2, τ = 0.005) crawled for 29 iterations (9 from its own), and 8 steps of the
        BFM problem took 90 at 256² against 58 (at m = 3 57 against 67).
        """
        self.rho.x.array[:] = rho
        if first or self._phi_prev is None:
            self._reset_newton_state()

    def _cold_newton(self, tau: float) -> int:
        """Newton from the Hamilton–Jacobi first guess, on by barrier continuation if it stalls.

        A first step has no history to start from, and from the first guess some are slow
        to find the new free boundary: porous_quartic_2d at m = 3 (a cap drawn into a
        steep well) took 82-89 Newton iterations or failed at 100, in runs of one build on
        one machine that differ only by round-off, and τ/2 and τ/4 did no better; at 96²
        it did not converge in 400.  Such a step is recognised by its progress
        (``COLD_TRIAL_ITERATIONS``, :class:`_Stalled`) and continued from where it stopped
        along the central path of the barrier: ε·f^k down to ε, the levels above ε to a
        loose tolerance, each started from the last (45 iterations at 48², 50 at 96², the
        trial's included).  The levels above ε take the whole mesh as the support block
        (one LU): with the support/exterior split GMRES took 40-50 iterations there, and
        one solve fell back to LU (the BFM problem at 512², m = 3: 83 s against 62 s for
        the levels ε·100² and ε·100).  Not as the first choice: on the steps that
        converge anyway (porous_medium_2d at 256², m = 2: 12) the levels cost more (26).
        ``max_it`` bounds the iterations of all of it together.
        """
        guess = self._hamilton_jacobi_guess(tau, self._residual_norm(tau), HJ_GUESS_ITERATES)
        if self.barrier == 0.0:
            return self._newton(tau, guess)
        try:
            return self._newton(tau, guess, stall_check=True)
        except _Stalled as stalled:
            spent, why = stalled.iterations, str(stalled)
        if self.comm.rank == 0:
            log.info("  fem-jko: first step continued by barrier continuation (%s)", why)
        target, max_it = self.barrier, self.params["max_it"]
        try:
            for k in range(BARRIER_CONTINUATION_LEVELS, -1, -1):
                self.barrier = target * BARRIER_CONTINUATION_FACTOR**k
                self._support_grows = False  # the support block may shrink with ε
                self._whole_block = k > 0
                loosen = BARRIER_CONTINUATION_LOOSEN if k else 1.0
                if self.params["monitor"] and self.comm.rank == 0:
                    log.info("    barrier continuation: ε = %.3e", self.barrier)
                try:
                    spent += self._newton(tau, None, loosen, max_it - spent)
                except SolverError as err:
                    spent += err.iterations
                    raise SolverError(
                        f"first step by barrier continuation, at ε = {self.barrier:.1e} after "
                        f"{spent} iterations in all: {err}",
                        iterations=spent,
                        tau_helps=err.tau_helps,
                    ) from None
        finally:
            self.barrier = target
            self._whole_block = False
        return spent

    def _barrier_value(self, rho: np.ndarray) -> float:
        """-ε Σ_i m_i log ρ_i over the owned vertices (0 without a barrier)."""
        if self.inner == "alg2" or self.barrier == 0.0:
            return 0.0
        own = slice(0, self.n_owned)
        local = -self.barrier * float(self.masses[own] @ np.log(rho[own]))
        return self.comm.allreduce(local, op=MPI.SUM)

    def diagnostics(self, t: float) -> dict[str, float]:
        """FE diagnostics plus the transport cost W̃² and the dissipation gap of the step.

        The gap is that of the functional the step minimises, F_h plus the log barrier of
        the power law, which the barrier's share of F (O(ε) per vertex) would otherwise
        hide in dilute vertices.
        """
        out = super().diagnostics(t)
        out["transport_cost"] = self.transport_cost
        gap = 0.0
        if np.isfinite(self.energy_before):
            after = out["energy"] + self._barrier_value(self.rho.x.array)
            gap = self.energy_before - after - self.transport_cost / (2 * self._last_tau)
        out["dissipation_gap"] = gap
        if self.convolution is not None:
            out["interaction_defect"] = self.interaction_defect
        if self.inner == "alg2":
            out["mass_rescale"] = self.mass_rescale
        else:
            out["round_off_stops"] = float(self.round_off_stops)
            out["round_off_floor"] = self.round_off_floor
            out["coarse_iterations"] = float(self.coarse_iterations)
        return out
