"""``blob``: the deterministic blob method (Carrillo–Craig–Patacchini 2019).

Particles x_i with fixed weights w_i (:func:`~wgf.solvers.particles.initial.lattice`) follow
the gradient flow of the *mollified* energy

    F_ε(x) = Σ_i w_i D·G(ρ_ε(x_i)) + Σ_i w_i V(x_i),    ρ_ε(x) = Σ_j w_j φ_ε(x - x_j),

with G(ρ) = U(ρ)/ρ, i.e. ∫ log(φ_ε*ρᴺ) dρᴺ for the entropy and
(1/(m-1)) ∫ (φ_ε*ρᴺ)^{m-1} dρᴺ for the power law, φ_ε the Gaussian of variance ε
(:mod:`~wgf.solvers.particles.kernels`).  In the metric Σ w_i |ẋ_i|² the flow is
ẋ_k = -(1/w_k) ∂F_ε/∂x_k, and both places where x_k enters the double sum contribute:

    ẋ_k = -D Σ_j w_j [G'(ρ_ε(x_k)) + G'(ρ_ε(x_j))] ∇φ_ε(x_k - x_j) - ∇V(x_k),

with G'(ρ) = P(ρ)/ρ² (P the pressure of :mod:`wgf.solvers.energy`: 1/ρ for the entropy,
ρ^{m-2} for the power law).

Choices (all in the solver's ``[solver.blob]`` table):

* ε (``epsilon``): by default ε = κ h^{2-δ} L^δ with κ = 2, δ = 0.1, h the initial lattice
  spacing and L the largest side of the initial effective support (so the rule is
  scale-free): √ε/h = √2 (L/h)^{δ/2} ≈ 1.9 at N = 400 in 1-D.  Why κ = 2: the particles spread as
  the solution does (about 2× in the shipped cases) while ε stays, and the lattice sum
  Σ w_j φ_ε(x - x_j) is only smooth while √ε ≳ 0.8 × spacing (its relative ripple is
  ≈ 2 exp(-2π² ε/h²)).  With κ = 1 the heat_1d error stalled at O(h^0.6); with κ = 2 it is
  O(ε) = O(h^{1.9}) as CCP's ε ∝ h^{2-δ} predicts (κ = 4 gave the same rate, twice the error).
* Time stepping: Heun's method (explicit RK2).  Linearising the velocity about a uniform
  state gives the symbol -D·P'(ρ)|ξ|²(2φ̂ - φ̂²), φ̂ = e^{-ε|ξ|²/2}, whose largest modulus is
  1.23·D·P'(ρ)/ε; with a safety margin λ = 1.5·max_i D·P'(ρ_ε(x_i))/ε + ‖A‖₂.  Heun is stable
  for real eigenvalues down to -2, so the stability bound is dt ≤ 2/λ; each substep uses
  dt = ``cfl``·2/λ (``cfl`` = 0.5), recomputed from the current ρ_ε at every substep, the
  remaining time split into equal substeps.  ``step`` returns the number of substeps.
  A forced step ``dt`` above the bound 2/λ is clamped to cfl·2/λ (and said so once).
* Interaction (``[energy.interaction]``): the energy gains ½ Σ_{i≠j} w_i w_j W_δ(x_i - x_j)
  and the velocity -Σ_j w_j ∇W_δ(x_k - x_j), W_δ the kernel mollified at δ = √ε when it is
  singular (:mod:`wgf.solvers.energy.interaction`: W_δ = W beyond δ, a polynomial core
  within; for the Newtonian kernel W∗ψ_δ, ψ_δ ∝ (1 - |x|²/δ²)³₊), so the blob and its
  interaction resolve the same length.  The sums are direct up to 2·10⁴ particles and
  by the particle mesh above; λ gains a bound on the interaction's stiffness, the smaller of
  κ M sup‖∇²W_δ‖ and the Gershgorin bound max_i 2Σ_j w_j‖∇²W_δ(x_i - x_j)‖ at the substep's
  positions (the latter sees the mass actually near, so a mollified singular kernel does
  not force substeps ~δ²; figures in benchmarks/README.md).
* Without an internal energy (``internal = "none"``, and every ``[model]``, which runs at
  temperature 0 here) the velocity is -∇V - Σ_j w_j ∇W_δ(x_k - x_j) alone: no kernel sums
  and no neighbour lists (ρ_ε then serves only the density estimate).  A model's neurons
  start i.i.d. from ``[initial]`` (``model.seed``), not on a lattice (ℝ^{1+d} has no box),
  and ε defaults to Silverman's bandwidth² of that sample.
* The discrete energy F_ε is what ``energy`` reports; the test suite checks it never
  increases.  The density on the sample grid is ρ_ε itself (a Gaussian kernel density
  estimate of bandwidth √ε).
* On a circle or sphere (``domain.shape``): tokens from ``[initial]``
  (:func:`~wgf.solvers.particles.domains.tokens`, equal weights), velocities projected on
  the tangent space, the Heun stage and the end of each substep retracted x/|x|
  (:mod:`~wgf.solvers.particles.domains`: second order).  Only ``internal = "none"`` (the
  mollified internal energy is not built on the sphere: for noise use ``langevin``);
  ε follows the rule above with h the mean token spacing and L = π, and serves the
  density estimate only (the von Mises–Fisher kernel of concentration 1/ε).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from mpi4py import MPI

from wgf.cases import Case
from wgf.cases.errors import SolverError, UserError
from wgf.solvers.acceptance import PECLET_LIMIT
from wgf.solvers.particles.base import ParticleSolver, positive_param
from wgf.solvers.particles.domains import tokens
from wgf.solvers.particles.initial import lattice
from wgf.solvers.particles.kde import kde_at
from wgf.solvers.particles.kernels import (
    CUTOFF,
    KernelSums,
    NeighbourList,
    kernel_sums,
    mean_neighbours,
    mollified_density,
    neighbour_list,
)
from wgf.solvers.particles.langevin import silverman_bandwidth
from wgf.solvers.particles.parallel import allgather_blocks

log = logging.getLogger(__name__)

#: ε = h^{2-δ} L^δ.
DELTA = 0.1
#: ε = KAPPA·h^{2-δ} L^δ.
KAPPA = 2.0
#: Bound on the modulus of the velocity Jacobian's eigenvalues, in units D·P'(ρ)/ε.
STIFFNESS = 1.5
#: Substeps per τ beyond which a step fails (the state is left unchanged).
MAX_SUBSTEPS = 10**6
#: Default particle numbers (lattice cells) by dimension: runs of a few seconds.
DEFAULT_PARTICLES = {1: 200, 2: 1600, 3: 4096}
#: Default number of tokens on a circle or sphere.
DEFAULT_TOKENS = 1000
#: Default number of neurons of a ``[model]``.
DEFAULT_NEURONS = 1000


def default_epsilon(h: float, length: float) -> float:
    """The ε rule: ε = h^{2-δ} L^δ."""
    return KAPPA * h ** (2.0 - DELTA) * length**DELTA


class Solver(ParticleSolver):
    """The blob method (see the module docstring)."""

    name = "blob"

    def __init__(self, case: Case, comm: MPI.Comm, params: dict[str, Any]) -> None:
        super().__init__(case, comm, params)
        eps = positive_param(self.name, params, "epsilon")
        self.cfl = positive_param(self.name, params, "cfl")
        if self.cfl > 1.0:
            raise UserError(
                f"case key 'solver.blob.cfl' must be in (0, 1] (the fraction of the stability "
                f"bound a substep uses), got {self.cfl}"
            )
        self.dt_forced = positive_param(self.name, params, "dt")
        if case.on_sphere:
            x, w = tokens(case, self.n_requested, DEFAULT_TOKENS)
            self.h = self.domain.spacing(len(w))
            default_eps = default_epsilon(self.h, np.pi)
        elif (start := self.model_particles(self.n_requested or DEFAULT_NEURONS)) is not None:
            x, w = start  # a model's i.i.d. neurons: no lattice, the KDE length is Silverman's
            self.h = silverman_bandwidth(x, w)
            default_eps = self.h**2
        else:
            n = self.n_requested or DEFAULT_PARTICLES[case.dim]
            x, w, self.h, length = lattice(
                case.density("initial"), self.lower, self.upper, n, self.mass
            )
            default_eps = default_epsilon(self.h, length)
        self.set_initial_particles(x, w)
        self._peclet_warned = False
        self.eps = eps if eps is not None else default_eps
        # Without an internal energy the velocity needs no kernel sums (only the density
        # estimate does), so too few neighbours is no error then.
        neighbours = mean_neighbours(self.x, self.eps) if self.energy.has_internal else np.inf
        if neighbours < 2.0:
            raise UserError(
                f"case key 'solver.blob.epsilon' = {self.eps:.3g} is too small for "
                f"{self.n} particles (spacing {self.h:.3g}): the neighbour lists (cut-off "
                f"{CUTOFF:g}√ε) would hold {neighbours:.2g} < 2 neighbours per particle"
            )
        self.interaction_delta = self.energy.interaction_mollifier(np.sqrt(self.eps))
        self.last_dt = float("nan")
        self._list: NeighbourList | None = None
        self.list_builds = 0

    # -- the velocity ---------------------------------------------------------------------
    def kernels(self, x: np.ndarray, moments: bool = True) -> KernelSums:
        """Kernel sums of this rank's block at ``x``, on the Verlet list (rebuilt if stale).

        Every rank decides from the same global positions, so they rebuild together; the
        sums do not depend on when the list was built (see :mod:`.kernels`).
        """
        if self._list is None or not self._list.valid_for(x):
            self.rebuild_neighbour_list(x)
        return kernel_sums(self._list, x, self.eps, moments)

    @property
    def neighbour_list(self) -> NeighbourList | None:
        """The Verlet list the next kernel sums reuse while it is valid (None: none yet).

        Assigning a list makes the next sums start from it; assigning None makes them
        build a fresh one.
        """
        return self._list

    @neighbour_list.setter
    def neighbour_list(self, value: NeighbourList | None) -> None:
        self._list = value

    def rebuild_neighbour_list(self, x: np.ndarray) -> NeighbourList:
        """Build the Verlet list of this rank's block at ``x`` now.

        As a run does when the list goes stale: in the old list's workspace (no new
        allocation).
        """
        lo, hi = self.my_block()
        workspace = None if self._list is None else self._list.workspace
        self._list = neighbour_list(x, self.eps, lo, hi, workspace)
        self.list_builds += 1
        return self._list

    @classmethod
    def check_case(cls, case: Case) -> None:
        """The capabilities; no internal energy on a sphere, no noise in a model.

        The blob's mollified entropy needs a lattice of the initial support: it is not
        built on the sphere, nor in a model's parameter space ℝ^{1+d}.
        """
        super().check_case(case)
        if case.on_sphere and case.section("energy")["internal"] != "none":
            raise UserError(
                "case key 'energy.internal': blob runs the sphere with internal = \"none\" "
                "only (its mollified internal energy is not built there); for noise run "
                "langevin"
            )
        model = case.section("model")
        if model is not None and model["temperature"] > 0.0:
            raise UserError(
                f"case key 'model.temperature': blob runs the noiseless gradient flow of the "
                f"neurons (temperature 0), got {model['temperature']:g}: run langevin"
            )

    def velocity(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Velocities of all particles and ρ_ε at them (global arrays, every rank).

        Without an internal energy (U = 0) the velocity is -∇V - ∇W∗μ alone (projected on
        the sphere): no kernel sums, and ρ_ε is not computed (zeros are returned).
        """
        lo, hi = self.my_block()
        if not self.energy.has_internal:
            v = self.interaction_velocity(x, lo, hi) - self.energy.potential_gradient(x[lo:hi])
            v = self.domain.tangent(x[lo:hi], v)
            return allgather_blocks(self.comm, v), np.zeros(len(x))
        sums = self.kernels(x)
        rho = allgather_blocks(self.comm, mollified_density(sums, self.w))
        # D·G'(ρ) = D·P(ρ)/ρ²: the derivative of the particle's energy density per mass.
        dg = self.energy.pressure(rho) / rho**2
        # -∇φ_ε(x_i - x_j) = φ_ε (x_i - x_j)/ε, so
        # v_i = Σ_j w_j (dg_i + dg_j) φ_ε(x_i - x_j)(x_i - x_j)/ε, split into two row sums.
        # Both sums of a coordinate in one pass over its matrix (a two-column product).
        both = np.stack([self.w, self.w * dg], axis=1)
        v = np.stack(
            [dg[lo:hi] * pair[:, 0] + pair[:, 1] for pair in (m @ both for m in sums.moments)],
            axis=1,
        )
        v /= self.eps
        v -= self.energy.potential_gradient(x[lo:hi])
        v += self.interaction_velocity(x, lo, hi)
        return allgather_blocks(self.comm, self.domain.tangent(x[lo:hi], v)), rho

    def stability_bound(self, x: np.ndarray, rho: np.ndarray) -> float:
        """Heun's stability bound 2/λ for the current positions and densities at them."""
        stiffness = self.energy.potential_hessian_norm(x) + self.interaction_stiffness(x)
        lam = STIFFNESS * float(np.max(self.energy.dpressure(rho))) / self.eps + stiffness
        return 2.0 / lam if lam > 0 else np.inf

    # -- FlowSolver -----------------------------------------------------------------------
    def _warn_if_unresolved(self) -> None:
        """Log once (rank 0) when the particle spacing does not resolve the drift.

        The blob Péclet number |∇V| h/D over the particles (h their initial spacing),
        the particle analogue of the FE cell Péclet number and with its limit: above it the
        mollified diffusion ε smooths a density narrower than the spacing resolves.
        """
        if self._peclet_warned or not self.energy.linear_diffusion:
            return
        self._peclet_warned = True
        drift = np.linalg.norm(self.energy.potential_gradient(self.x), axis=1).max(initial=0.0)
        pe = drift * self.h / self.energy.diffusivity
        if pe > PECLET_LIMIT and self.comm.rank == 0:
            log.warning(
                "blob: the particles do not resolve the drift: |∇V|h/D = %.3g > %g (spacing "
                "h = %.3g); expect a large error: raise solver.blob.particles",
                pe,
                PECLET_LIMIT,
                self.h,
            )

    def step(self, tau: float) -> int:
        """Advance by τ with Heun substeps; return their number."""
        self._warn_if_unresolved()
        x, left, count, escaped = self.x, tau, 0, 0
        while left > 0.0:
            v1, rho = self.velocity(x)
            bound = self.stability_bound(x, rho)
            dt = self.even_substep(left, self.cfl * bound, bound, "stability bound")
            v2, _ = self.velocity(self.domain.stage(x + dt * v1))
            x, hits = self.reflect(x + 0.5 * dt * (v1 + v2))
            escaped += hits
            count += 1
            if not np.all(np.isfinite(x)):
                raise SolverError(f"blob: non-finite positions after {count} substeps")
            if count >= MAX_SUBSTEPS and left - dt > 1e-14 * tau:
                raise SolverError(f"blob: more than {MAX_SUBSTEPS} substeps (dt = {dt:.3g})")
            left = left - dt if left - dt > 1e-14 * tau else 0.0
            self.last_dt = dt
        self.set_positions(x)
        self.escaped += escaped
        return count

    def invariants(self) -> frozenset[str]:
        """A model's flow declares energy decay; other cases nothing beyond the defaults.

        A network's pair term has no Lipschitz bound (:mod:`wgf.solvers.energy.network`), so
        no stability bound chooses the substep: the risk must fall at every step of its
        gradient flow, and a step where it rises was too long.  Declaring it lets the
        driver's acceptance rule retry such a step with τ/2 instead of recording it.
        """
        return (
            frozenset({"energy_decay"}) if self.case.section("model") is not None else frozenset()
        )

    def restore(self, saved: dict[str, Any]) -> None:
        """Undo to :meth:`save`; the neighbour list is rebuilt at the restored positions."""
        super().restore(saved)
        self.neighbour_list = None

    def energy_value(self) -> float:
        """F_ε(x) = Σ w_i (D·G(ρ_ε(x_i)) + V(x_i)) + ½ Σ_{i≠j} w_i w_j W_δ(x_i - x_j).

        (Attention: its F, :mod:`wgf.solvers.energy.attention`.)
        """
        potential = float(np.sum(self.w * self.energy.potential_value(self.x)))
        if not self.energy.has_internal:  # U = 0: no ρ_ε needed
            return potential + self.interaction_energy_value()
        sums = self.kernels(self.x, moments=False)
        rho = allgather_blocks(self.comm, mollified_density(sums, self.w))
        internal = self.energy.density(rho, 0.0) / rho  # D·U(ρ)/ρ = D·G(ρ)
        return float(np.sum(self.w * internal)) + potential + self.interaction_energy_value()

    def density_at_particles(self) -> np.ndarray:
        """ρ_ε(x_i) at every particle: from the velocity's neighbour lists if it keeps any.

        Without an internal energy the velocity needs no lists, and one built for this
        estimate alone would cost more than the flow: at N = 10⁵ (swarm_2d) √ε holds 3600
        neighbours at the peak, and the build took 10.5 s against 0.18 s for the binned
        estimate of the same Gaussian (:func:`~wgf.solvers.particles.kde.kde_at`, 2.5·10⁻⁴
        relative at the peak), which serves then.
        """
        if self.case.on_sphere:  # no neighbour list on the sphere: the dense estimate
            return super().density_at_particles()
        if not self.energy.has_internal:
            lo, hi = self.my_block()
            binned = kde_at(self.x[lo:hi], self.x, self.w, self.eps, comm=self.comm)
            return allgather_blocks(self.comm, binned)
        sums = self.kernels(self.x, moments=False)
        return allgather_blocks(self.comm, mollified_density(sums, self.w))

    def resolution_length(self) -> float:
        """ℓ = √ε: the blob's width, at which the interaction is mollified too."""
        return float(np.sqrt(self.eps))

    def peak_density(self, length: float, x: np.ndarray | None = None) -> float:
        """max_i ρ_ε(x_i) (ℓ² = ε): from the velocity's lists, if it keeps any.

        Otherwise (at other positions ``x``, or without an internal energy) the binned
        estimate of the base class, as :meth:`density_at_particles` explains.
        """
        if x is not None or not self.energy.has_internal:
            return super().peak_density(length, x)
        return float(np.max(self.density_at_particles(), initial=-np.inf))

    def density_at(self, points: np.ndarray) -> np.ndarray:
        """ρ_ε at points: the Gaussian KDE of bandwidth √ε (von Mises–Fisher on a sphere)."""
        return self.domain.density(points, self.x, self.w, self.eps)
