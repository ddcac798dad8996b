"""``langevin``: stochastic particles, Euler–Maruyama for dX = -∇V(X) dt + √(2D) dW.

The law of X solves the linear Fokker–Planck equation ∂_t ρ = D Δρ + div(ρ∇V), so this
solver runs the entropy (and ``internal = "none"``: no noise) only; a power law is refused
by :meth:`Solver.check_case`.  It is the sampling baseline the deterministic solvers are
compared with: its errors are Monte-Carlo errors, O(N^{-1/2}).

* Initial particles: N i.i.d. samples of ρ₀ with equal weights
  (:func:`~wgf.solvers.particles.initial.random_sample`), drawn with the seed ``seed``.
* Random numbers: the noise of substep k is drawn for *all* N particles from its own
  stream, ``Philox(SeedSequence([seed, k]))``, and particle i takes row i (its global
  index).  Every rank draws the same array (N normals cost microseconds) and uses its
  block, so the trajectories do not depend on the number of ranks; the substep counter k
  is part of the checkpoint, so a resumed run continues the same streams.
* Substeps: one Euler–Maruyama step per τ, unless ``dt`` is given; the explicit drift is
  stable for dt < 2/‖A‖₂, so substeps never exceed half of that, and a forced ``dt``
  above the bound is clamped (and said so once).  ``step`` returns the substep count.
* Density: a Gaussian kernel density estimate with Silverman's bandwidth
  b = σ̂ (4/((d+2)N))^{1/(d+4)}, σ̂² the mean per-coordinate variance of the particles,
  computed by linear binning (:mod:`~wgf.solvers.particles.kde`): O(N) per evaluation,
  within a relative ~10⁻³ of the exact kernel sum.  The exact sum is N × (sample points)
  at this slowly shrinking bandwidth, and it was most of a step's time; it is kept as
  ``kde_method = "exact"`` (an attribute, for benchmarks and checks).
* Interaction (``[energy.interaction]``): the particles are the McKean–Vlasov system
  dX_i = -∇V(X_i) dt - Σ_j w_j ∇W_δ(X_i - X_j) dt + √(2D) dW_i, W_δ the kernel mollified at
  δ = Silverman's bandwidth of the initial sample when it is singular (the length at which
  the solver resolves a density; fixed for the run, so the system is one fixed SDE, and the
  resolution length of the blow-up check of :mod:`~wgf.solvers.particles.base`); the
  stability bound of the drift adds the interaction's stiffness (the smaller of κ M
  sup‖∇²W_δ‖ and the Gershgorin bound at the step's positions, as for blob).  The energy
  gains ½ Σ_{i≠j} w_i w_j W_δ(X_i - X_j).
* A ``[model]`` (two-layer network, :mod:`wgf.solvers.energy.network`): the neurons start
  i.i.d. from ``[initial]`` with ``model.seed`` (the same neurons as blob's), the noise is
  √(2T) for ``model.temperature`` T (mean-field Langevin, noisy SGD), and with no sample
  grid the energy is the risk + regulariser of the particles (no entropy estimate).
* Energy: D ∫U(ρ_b) over the sample grid (midpoint rule) + Σ w_i V(x_i) — an estimate
  of F (a kernel estimate's entropy at the particles would need ~N neighbours per
  particle at Silverman's bandwidth); it fluctuates and need not decrease.  On the
  sphere, where every sum is dense anyway, the entropy is the leave-one-out mean of
  log ρ₋ᵢ(xᵢ) at the cross-validated width (:meth:`Solver.sphere_fit`).
* On a circle or sphere (``domain.shape``): tokens from ``[initial]``
  (:func:`~wgf.solvers.particles.domains.tokens`), and the projected Euler–Maruyama scheme
  X ← R(X + dt P_X v(X) + √(2D dt) P_X ξ), R(y) = y/|y| the retraction: weak order 1 for
  the Brownian motion with drift on S^{d-1} (:mod:`~wgf.solvers.particles.domains`).  The
  density is the von Mises–Fisher estimate with concentration 1/b², b the width
  that likelihood cross-validation picks among Silverman's bandwidth of the ambient
  coordinates and its fractions, and the energy's entropy is the leave-one-out estimate
  above, not ∫U(ρ_b) on the sample grid.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from mpi4py import MPI

from wgf.cases import Case
from wgf.cases.errors import SolverError, UserError
from wgf.solvers.particles.base import ParticleSolver, positive_param
from wgf.solvers.particles.domains import tokens
from wgf.solvers.particles.initial import random_sample
from wgf.solvers.particles.kde import Method, kde_at, kde_on_grid
from wgf.solvers.particles.kernels import tensor_grid_axes
from wgf.solvers.particles.parallel import allgather_blocks

#: Default number of particles.
DEFAULT_PARTICLES = 10000
#: On the sphere: the particles the entropy's leave-one-out mean runs over (at most) ...
LOO_TARGETS = 1024
#: ... and the number of kernel widths b·2^{-j/2} it tries (down to b/2^{(LOO_WIDTHS-1)/2}).
LOO_WIDTHS = 11


def silverman_bandwidth(x: np.ndarray, w: np.ndarray) -> float:
    """Silverman: σ̂ (4/((d+2)N_eff))^{1/(d+4)}, N_eff = 1/Σ(w/M)² (N for equal weights)."""
    p = w / w.sum()
    mean = p @ x
    sigma = float(np.sqrt(np.mean(p @ (x - mean) ** 2)))
    n_eff = 1.0 / float(np.sum(p * p))
    d = x.shape[1]
    return sigma * (4.0 / ((d + 2) * n_eff)) ** (1.0 / (d + 4))


class Solver(ParticleSolver):
    """Euler–Maruyama Langevin particles (see the module docstring)."""

    name = "langevin"
    #: How the KDE is computed: ``"binned"`` (O(N)) or ``"exact"`` (the kernel sum).
    kde_method: Method = "binned"

    def __init__(self, case: Case, comm: MPI.Comm, params: dict[str, Any]) -> None:
        super().__init__(case, comm, params)
        n = self.n_requested or DEFAULT_PARTICLES
        self.seed = int(params.get("seed", 1))
        if self.seed < 0:
            raise UserError(f"case key 'solver.langevin.seed' must be >= 0, got {self.seed}")
        self.dt_forced = positive_param(self.name, params, "dt")
        if case.on_sphere:
            self.set_initial_particles(*tokens(case, self.n_requested, DEFAULT_PARTICLES))
        elif (start := self.model_particles(n)) is not None:
            self.set_initial_particles(*start)
        else:
            rng = np.random.Generator(np.random.Philox(np.random.SeedSequence(self.seed)))
            self.set_initial_particles(
                *random_sample(case.density("initial"), self.lower, self.upper, n, self.mass, rng)
            )
        self.noise = np.sqrt(2.0 * self.energy.diffusivity) if self.energy.linear_diffusion else 0.0
        self._length = self.bandwidth()
        self.interaction_delta = self.energy.interaction_mollifier(self._length)
        self.counter = 0
        self._fit: tuple[int, tuple[float, float]] | None = None

    def noise_for(self, counter: int) -> np.ndarray:
        """The standard normals (N, d) of substep ``counter`` (same on every rank)."""
        stream = np.random.Philox(np.random.SeedSequence([self.seed, counter]))
        return np.random.Generator(stream).standard_normal(self.x.shape)

    def step(self, tau: float) -> int:
        """Euler–Maruyama substeps over τ; return their number."""
        stiffness = self.energy.potential_hessian_norm(self.x) + self.interaction_stiffness(self.x)
        bound = 2.0 / stiffness if stiffness > 0 else np.inf
        dt = self.even_substep(
            tau, 0.5 * bound, bound, "Euler–Maruyama stability bound 2/(‖∇²V‖ + κM‖∇²W‖)"
        )
        n_sub = round(tau / dt)
        lo, hi = self.my_block()
        x, counter, escaped = self.x, self.counter, 0
        for _ in range(n_sub):
            here, tangent = x[lo:hi], self.domain.tangent
            xi = here.copy()
            xi -= dt * tangent(here, self.energy.potential_gradient(here))
            xi += dt * tangent(here, self.interaction_velocity(x, lo, hi))
            if self.noise:
                kick = self.noise * np.sqrt(dt) * self.noise_for(counter)[lo:hi]
                xi += self.domain.tangent(here, kick)
            counter += 1
            x, hits = self.reflect(allgather_blocks(self.comm, xi))
            escaped += hits
        if not np.all(np.isfinite(x)):
            raise SolverError("langevin: non-finite positions")
        self.set_positions(x)
        self.counter, self.escaped = counter, self.escaped + escaped
        return n_sub

    def save(self) -> dict[str, Any]:
        """Positions, escapes and the noise counter (a retry draws the same noise)."""
        return {**super().save(), "counter": self.counter}

    def restore(self, saved: dict[str, Any]) -> None:
        """Undo to :meth:`save`."""
        super().restore(saved)
        self.counter = saved["counter"]

    def bandwidth(self) -> float:
        """Silverman's bandwidth of the current particles."""
        return silverman_bandwidth(self.x, self.w)

    def resolution_length(self) -> float:
        """ℓ: Silverman's bandwidth of the initial sample (δ of a mollified kernel)."""
        return self._length

    def density_at(self, points: np.ndarray) -> np.ndarray:
        """Gaussian KDE with Silverman's bandwidth; von Mises–Fisher on a sphere.

        On the sphere at the width of :meth:`sphere_fit`, the one its energy uses.
        """
        if self.case.on_sphere:
            return self.domain.density(points, self.x, self.w, self.sphere_fit()[1])
        return kde_at(points, self.x, self.w, self.bandwidth() ** 2, self.kde_method)

    def prepare_sampling(self, points: np.ndarray) -> None:
        """Remember the sample grid and whether it is a tensor grid."""
        super().prepare_sampling(points)
        self._axes = tensor_grid_axes(self._points)

    def sample_grid_density(self) -> np.ndarray:
        """The KDE on the sample grid: factorised over coordinates on a tensor grid.

        Computed whole on every rank (it is cheap), so it does not depend on the ranks.
        """
        if self._axes is None or self.case.on_sphere:
            return super().sample_grid_density()
        return kde_on_grid(self._axes, self.x, self.w, self.bandwidth() ** 2, self.kde_method)

    def sphere_fit(self) -> tuple[float, float]:
        """On the sphere: ∫ρ log ρ and the kernel variance, by likelihood cross-validation.

        Silverman's b is set by the spread of the whole cloud; once the tokens gather into
        clusters much narrower than their distances, the estimate at b smears each cluster
        over ~b and its ∫ρ_b log ρ_b falls far below the clusters' (the energy came out too
        low, the snapshots' peaks a third of the FE solvers').
        :meth:`~wgf.solvers.particles.domains.Sphere.leave_one_out_entropy` takes the best
        of the widths b·2^{-j/2}, j = 0..``LOO_WIDTHS``-1, over at most ``LOO_TARGETS``
        evenly strided particles (the same on every rank); cached per state.

        Returns:
            The leave-one-out estimate of ∫ρ log ρ and the variance 1/κ it chose.
        """
        if self._fit is None or self._fit[0] != self._version:
            widths = self.bandwidth() * 2.0 ** (-0.5 * np.arange(LOO_WIDTHS))
            targets = np.arange(0, self.n, -(-self.n // LOO_TARGETS))
            fit = self.domain.leave_one_out_entropy(self.x, self.w, widths**2, targets)
            self._fit = (self._version, fit)
        return self._fit[1]

    def energy_value(self) -> float:
        """D ∫U(ρ_b) on the sample grid (sphere: at the particles) + Σ w_i V(x_i) + ½ΣΣW."""
        potential = float(np.sum(self.w * self.energy.potential_value(self.x)))
        potential += self.interaction_energy_value()
        if self.case.on_sphere:
            if not self.energy.linear_diffusion or self.energy.diffusivity == 0.0:
                return potential
            return self.energy.diffusivity * self.sphere_fit()[0] + potential
        if len(self._points) == 0:
            return potential
        cells = self.domain.cell_volumes(self.case.sample_cells())
        rho = np.maximum(self._sampled(), 1e-300)  # 0 log 0 = 0
        density = self.energy.density(rho, 0.0)
        if len(cells) == 1:  # equal cells (the box): the sum times the cell, as always
            return float(np.sum(density)) * float(cells[0]) + potential
        return float(np.sum(density * cells)) + potential

    def state(self) -> dict[str, np.ndarray]:
        """Positions, escape count and the noise-stream counter."""
        out = super().state()
        if out:
            out["counter"] = np.array([self.counter])
        return out

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore positions and the noise-stream counter."""
        super().set_state(state)
        if "counter" in state:
            self.counter = int(np.asarray(state["counter"]).ravel()[0])
