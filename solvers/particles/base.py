"""What every particle solver shares: state, diagnostics, sampling, walls and output.

The state is the global position array, replicated on every rank (see
:mod:`wgf.solvers.particles.parallel`), and constant weights w_i summing to the mass.
Diagnostics are computed from these global arrays in global index order, so they are
identical on every rank:

* ``mass`` = Σ w_i (constant: the weights never change);
* ``second_moment`` = Σ w_i |x_i|² (quantile-1d: of its piecewise-constant density);
* ``energy``: each solver's discrete energy (:meth:`ParticleSolver.energy_value`);
* ``l1_error``/``l2_error``: relative errors ‖ρ_h - ρ‖/‖ρ‖ on the case's sample grid
  (midpoint rule), ρ_h the solver's density estimate (:meth:`ParticleSolver.density_at`);
* ``escaped``: how many times a particle left the box so far (see :meth:`reflect`);
* ``interaction_energy`` (cases with ``[energy.interaction]``): ½ Σ_{i≠j} w_i w_j W_δ(x_i - x_j),
  W_δ the kernel mollified at the solver's :attr:`ParticleSolver.interaction_delta`
  (attention sums every pair, i = j included); it is part of ``energy`` too;
* ``peak_density`` and ``resolved_density`` (cases with an interaction kernel singular and
  attracting at the origin, the only term that can concentrate the density in finite time,
  :attr:`~wgf.solvers.energy.FreeEnergy.may_blow_up`, and solvers with a resolution length ℓ,
  :meth:`ParticleSolver.resolution_length`, the width at which their pair force is
  mollified): the peak max_i ρ_ℓ(x_i) of the Gaussian estimate ρ_ℓ = Σ_j w_j φ_{ℓ²}(· − x_j)
  of variance ℓ², and M/(2π(K² + 1)ℓ²)^{d/2}, K = :data:`RESOLVED_WIDTH`, the peak of ρ_ℓ
  for a Gaussian cloud of mass M and standard deviation Kℓ.  A higher peak is a cloud
  narrower than Kℓ, which the particles do not resolve: the driver then stops the run
  (:func:`~wgf.solvers.acceptance.check_resolved`).  A start already narrower than that
  (few particles) is the user's choice, not a blow-up: the limit is then the initial peak,
  and the run stops only when the cloud concentrates beyond its start.  Why K = 2: for a
  Gaussian cloud of standard deviation s the Newtonian attraction mollified at ℓ
  (:mod:`wgf.solvers.energy.interaction`: exact beyond ℓ) keeps the fraction
  E[1 - (1 - r²/ℓ²)⁴₊] of its virial (r the distance of two particles): 0.95 at s = ℓ and
  0.99 at s = 2ℓ, so down to 2ℓ the particles follow the unmollified flow.  The mollified
  supercritical system (χM = 12π) has a spurious steady state where that fraction is 2/3
  (the virial balance 4DM = 2/3·χM²/(2π) of a Gaussian cloud), at s ≈ 0.33ℓ, far beyond
  the limit.  (The Plummer softening used before kept only
  E[r²/(r² + ℓ²)]: 0.67 at s = ℓ, where its steady state sat with a peak near the limit of
  K = 1, which the run then never crossed.)  ρ_ℓ saturates at
  M/(2πℓ²)^{d/2} (every particle in one point), (K² + 1)^{d/2} times the limit, so a
  collapsing cloud does reach it.

Walls: the case box is a no-flux boundary.  A particle that ends a step outside it is
mirrored back across the face it crossed (x → 2·upper - x), which is the particle
version of no flux; each such event is counted in ``escaped``.  The shipped cases make
the box large enough that this never happens; a non-zero count says the box is too small.

Spheres (``domain.shape = "circle" | "sphere"``): velocities and noise are projected on the
tangent space and positions retracted x/|x| (:mod:`wgf.solvers.particles.domains`); the
solvers ask their :attr:`ParticleSolver.domain` and never which one it is.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from mpi4py import MPI

from wgf.cases import Case
from wgf.cases.errors import UserError
from wgf.solvers.base import FlowSolver
from wgf.solvers.energy import FreeEnergy
from wgf.solvers.particles.domains import particle_domain
from wgf.solvers.particles.initial import gaussian_sample
from wgf.solvers.particles.kde import kde_at
from wgf.solvers.particles.parallel import allgather_blocks, block
from wgf.solvers.particles.xdmf import PolyvertexSeries

log = logging.getLogger(__name__)

#: K: a cloud is resolved while it is at least K resolution lengths wide (module docstring).
RESOLVED_WIDTH = 2.0


def positive_param(solver: str, params: dict[str, Any], key: str) -> Any:
    """``params[key]`` if set, checked > 0 (one-line :class:`UserError` otherwise)."""
    value = params.get(key)
    if value is not None and not value > 0:
        raise UserError(f"case key 'solver.{solver}.{key}' must be > 0, got {value}")
    return value


class ParticleSolver(FlowSolver):
    """Base class: weighted particles x_i, w_i in the case's box.

    Subclasses set ``self.x`` (N, d) and ``self.w`` (N,) in their constructor (after
    calling this one) and implement :meth:`step`, :meth:`energy_value` and
    :meth:`density_at`.

    Args:
        case: The validated case.
        comm: The communicator of the run.
        params: The solver's ``[solver.<name>]`` table.
    """

    name = "particles"

    def __init__(self, case: Case, comm: MPI.Comm, params: dict[str, Any]) -> None:
        super().__init__(case, comm, params)
        self.energy = FreeEnergy.from_case(case)
        #: The box (reflecting walls; unbounded for a model) or the sphere.
        self.domain = particle_domain(case)
        self.lower, self.upper = self.domain.lower, self.domain.upper
        self.mass = float(case.section("initial")["mass"])
        self.dt_forced: float | None = None  # a [solver.<name>] dt, for even_substep
        self._clamp_said = False
        self.n_requested = positive_param(self.name, params, "particles")
        self.exact = case.exact_solution()
        self.escaped = 0
        self.x = np.zeros((0, case.dim))
        self.w = np.zeros(0)
        self._points = np.zeros((0, case.dim))
        self._cache: tuple[int, np.ndarray] | None = None
        self._version = 0
        self._series: PolyvertexSeries | None = None
        #: δ of the mollified pair kernel W_δ (0: W itself); subclasses set it by their rule.
        self.interaction_delta = 0.0
        self._pair_energy: tuple[int, float] | None = None
        #: How the pair sums are computed (``[solver.<name>] pair_sum``).
        self.pair_sum = params.get("pair_sum", "auto")

    def model_particles(self, n: int) -> tuple[np.ndarray, np.ndarray] | None:
        """A model's initial neurons: n i.i.d. samples of ``[initial]``, weights 1/n.

        Drawn from ``model.seed`` (not the solver's seed), so that every solver of a model
        starts from the same neurons.  None for a density case (each solver then places its
        particles by its own rule).
        """
        model = self.case.section("model")
        if model is None:
            return None
        ini = self.case.section("initial")
        return gaussian_sample(ini["mean"], ini["cov"], n, model["seed"])

    def set_initial_particles(self, x: np.ndarray, w: np.ndarray) -> None:
        """Start from positions x (N, d) with weights w, where V must be finite."""
        x = self.domain.checked(x, "initial particles")
        self.case.check_potential(x, "at the initial particles")
        self.x, self.w = x, w
        self._start: np.ndarray | None = x.copy()  # for the initial peak (resume-proof)
        self._start_peak: float | None = None

    def even_substep(self, span: float, dt_stable: float, bound: float, what: str) -> float:
        """The substep that divides ``span`` evenly, at most ``dt_stable``.

        A ``dt`` forced in ``[solver.<name>]`` is used when it is within ``bound``; above
        it, ``dt_stable`` is used instead and rank 0 says so, once per run.
        """
        dt = dt_stable
        forced = self.dt_forced
        if forced is not None:
            if forced <= bound:
                dt = forced
            elif not self._clamp_said:
                self._clamp_said = True
                if self.comm.rank == 0:
                    log.info(
                        "[%s] dt = %.3g is above the %s %.3g; clamped to %.3g",
                        self.name,
                        forced,
                        what,
                        bound,
                        dt,
                    )
        return span / max(1.0, np.ceil(span / dt * (1.0 - 1e-12)))

    # -- to implement -------------------------------------------------------------------
    def energy_value(self) -> float:
        """The solver's discrete energy at the current state (same on every rank)."""
        raise NotImplementedError

    def density_at(self, points: np.ndarray) -> np.ndarray:
        """The solver's density estimate at ``points`` (called collectively, any block)."""
        raise NotImplementedError

    # -- the interaction ---------------------------------------------------------------
    def interaction_velocity(self, x: np.ndarray, lo: int, hi: int) -> np.ndarray:
        """The interaction's velocity at the particles ``[lo, hi)`` of positions x.

        -∇(W_δ∗μ), μ = Σ_j w_j δ_{x_j}, for a pair kernel (attention: its velocity field);
        zeros without an interaction.  Each rank passes its own block of targets; every
        source enters every sum, so the result does not depend on the blocks.
        """
        return self.energy.interaction_velocity(
            x[lo:hi], x, self.w, self.interaction_delta, self.pair_sum, self.comm
        )

    def interaction_stiffness(self, x: np.ndarray | None = None) -> float:
        """Bound on the spectral radius of the interaction velocity's Jacobian.

        Without positions, or for a kernel used unmollified: κ M sup‖∇²W_δ‖ over the box (a
        constant of the run).  With the positions x and a mollified kernel, whose global
        bound ~ 1/δ² is far above the truth: the smaller of that and the Gershgorin bound of
        :meth:`~wgf.solvers.energy.interaction.Interaction.local_stiffness` at x (each rank
        sums its block, the maximum is taken over ranks).
        """
        if not self.energy.has_interaction:
            return 0.0
        radius = float(np.linalg.norm(self.upper - self.lower))
        bound = self.energy.interaction_stiffness(self.mass, radius, self.interaction_delta)
        if x is None or not self.energy.interaction_uses_local_stiffness(self.interaction_delta):
            return bound  # e.g. a kernel without a singularity: the global bound is not far off
        lo, hi = self.my_block()
        rows = self.energy.interaction.local_stiffness(
            x[lo:hi], x, self.w, self.interaction_delta, self.pair_sum, self.comm
        )
        local = self.comm.allreduce(float(np.max(rows, initial=0.0)), op=MPI.MAX)
        return min(bound, local)

    def interaction_energy_value(self) -> float:
        """½ Σ_i w_i (W∗μ)(x_i), this rank's rows summed over ranks.

        The pairs the term's ``potential_at`` sums: i ≠ j for a radial kernel W_δ(|x_i - x_j|),
        every (i, j) for attention (its self pair e^β is part of F).
        """
        if not self.energy.has_interaction:
            return 0.0
        if self._pair_energy is None or self._pair_energy[0] != self._version:
            lo, hi = self.my_block()
            phi = self.energy.interaction.potential_at(
                self.x[lo:hi], self.x, self.w, self.interaction_delta, self.pair_sum, self.comm
            )
            value = 0.5 * float(self.w @ allgather_blocks(self.comm, phi))
            self._pair_energy = (self._version, value)
        return self._pair_energy[1]

    # -- resolution (blow-up) -------------------------------------------------------------
    def resolution_length(self) -> float | None:
        """ℓ: the smallest width of a cloud the solver resolves (None: no blow-up check)."""
        return None

    @property
    def resolves(self) -> str:  # type: ignore[override]
        """The blow-up line's rule (see :func:`~wgf.solvers.acceptance.check_resolved`)."""
        length = self.resolution_length() or float("nan")
        return (
            f"the particles resolve ({{limit}}: the larger of the initial peak and "
            f"M/(2π(K² + 1)ℓ²)^{{{{d/2}}}}, K = {RESOLVED_WIDTH:g}, the peak of their Gaussian "
            f"estimate at the resolution length ℓ = {length:.4g} for a Gaussian cloud of the "
            f"same mass and width Kℓ)"
        )

    def peak_density(self, length: float, x: np.ndarray | None = None) -> float:
        """max_i ρ_ℓ(x_i), ρ_ℓ the Gaussian estimate of variance ℓ² (binned, O(N)).

        Args:
            length: ℓ.
            x: The positions (default: the current ones).

        Each rank evaluates its block of particles (and its rows of the bin grid); the
        maximum is taken over ranks.
        """
        x = self.x if x is None else x
        lo, hi = self.my_block()
        local = kde_at(x[lo:hi], x, self.w, length**2, comm=self.comm)
        return self.comm.allreduce(float(np.max(local, initial=-np.inf)), op=MPI.MAX)

    def resolution(self) -> dict[str, float]:
        """``peak_density`` and ``resolved_density`` (empty without a resolution length)."""
        length = self.resolution_length()
        if length is None or not self.energy.may_blow_up:
            return {}
        if self._start_peak is None:
            self._start_peak = self.peak_density(length, self._start)
            self._start = None
        variance = (RESOLVED_WIDTH**2 + 1.0) * length**2
        limit = self.mass / (2.0 * np.pi * variance) ** (self.case.dim / 2)
        return {
            "peak_density": self.peak_density(length),
            "resolved_density": max(limit, self._start_peak),
        }

    # -- helpers -------------------------------------------------------------------------
    @property
    def n(self) -> int:
        """Number of particles."""
        return len(self.w)

    def my_block(self, n: int | None = None) -> tuple[int, int]:
        """This rank's contiguous block of ``n`` items (default: the particles)."""
        return block(self.n if n is None else n, self.comm)

    def set_positions(self, x: np.ndarray) -> None:
        """Replace the positions (a new state: cached densities are stale)."""
        self.x = x
        self._version += 1

    def reflect(self, x: np.ndarray) -> tuple[np.ndarray, int]:
        """The end of a step: back into the box (count the escapes), or onto the sphere."""
        return self.domain.constrain(x)

    def _sampled(self) -> np.ndarray:
        """The density on the sample grid, every rank (computed once per state)."""
        if self._cache is None or self._cache[0] != self._version:
            self._cache = (self._version, self.sample_grid_density())
        return self._cache[1]

    def sample_grid_density(self) -> np.ndarray:
        """The density estimate at all sample points, on every rank (blocks + allgather)."""
        lo, hi = self.my_block(len(self._points))
        return allgather_blocks(self.comm, self.density_at(self._points[lo:hi]))

    def errors(self, t: float) -> dict[str, float]:
        """Relative L1 and L2 errors of the density estimate on the sample grid."""
        if self.exact is None or len(self._points) == 0:
            return {}
        rho_h, rho = self._sampled(), self.exact(t, self._points)
        return {
            "l1_error": float(np.sum(np.abs(rho_h - rho)) / np.sum(np.abs(rho))),
            "l2_error": float(np.sqrt(np.sum((rho_h - rho) ** 2) / np.sum(rho**2))),
        }

    def second_moment(self) -> float:
        """Σ w_i |x_i|²."""
        return float(np.sum(self.w * np.einsum("nk,nk->n", self.x, self.x)))

    # -- FlowSolver -----------------------------------------------------------------------
    def diagnostics(self, t: float) -> dict[str, float]:
        """Energy, mass, second moment, escapes and errors (identical on every rank)."""
        out = {
            "energy": self.energy_value(),
            "mass": float(np.sum(self.w)),
            "second_moment": self.second_moment(),
            "escaped": float(self.escaped),
        }
        if self.energy.has_interaction:
            out["interaction_energy"] = self.interaction_energy_value()
            out.update(self.energy.model_diagnostics(self.x, self.w, out["interaction_energy"]))
        out.update(self.resolution())
        out.update(self.errors(t))
        return out

    def bounding_box(self) -> tuple[np.ndarray, np.ndarray]:
        """The case's box."""
        return self.lower, self.upper

    def prepare_sampling(self, points: np.ndarray) -> None:
        """Remember the sample grid."""
        self._points = np.asarray(points, dtype=float)
        self._cache = None

    def sample(self) -> np.ndarray | None:
        """The density estimate on the sample grid, on rank 0."""
        values = self._sampled()
        return values if self.comm.rank == 0 else None

    def state(self) -> dict[str, np.ndarray]:
        """Positions (and the escape count) on rank 0."""
        if self.comm.rank != 0:
            return {}
        return {"positions": self.x.copy(), "escaped": np.array([self.escaped])}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore positions written by :meth:`state`."""
        x = np.asarray(state["positions"], dtype=float).reshape(-1, self.case.dim)
        x = self.domain.checked(x, "--resume: the checkpoint")
        if x.shape != self.x.shape:
            raise UserError(
                f"--resume: the checkpoint holds {len(x)} particles, this run has {self.n} "
                f"(solver.{self.name}.particles changed?)"
            )
        self.set_positions(x.copy())
        if "escaped" in state:
            self.escaped = int(np.asarray(state["escaped"]).ravel()[0])

    def save(self) -> dict[str, Any]:
        """Positions and the escape count."""
        return {"x": self.x.copy(), "escaped": self.escaped}

    def restore(self, saved: dict[str, Any]) -> None:
        """Undo to :meth:`save`."""
        self.set_positions(saved["x"].copy())
        self.escaped = saved["escaped"]

    def static_arrays(self) -> dict[str, np.ndarray]:
        """``particles/weights``."""
        return {"particles/weights": self.w}

    def snapshot_arrays(self) -> dict[str, np.ndarray]:
        """``particles/positions`` (N, dim)."""
        return {"particles/positions": self.x.copy()}

    def density_at_particles(self) -> np.ndarray:
        """The density estimate at every particle, on every rank (called collectively).

        What ParaView colours the particles by.  By default the estimate of
        :meth:`density_at` at the particles, each rank doing its block: for ``langevin``
        its KDE (self term included, as at any other point).
        """
        lo, hi = self.my_block()
        return allgather_blocks(self.comm, self.density_at(self.x[lo:hi]))

    def open_fields(self, path: Path) -> str | None:
        """Start the Polyvertex XDMF series (rank 0 writes); none above 3-D (a model).

        XDMF geometry has at most three coordinates; a model's neurons are in the results
        file (``particles/positions``).
        """
        if self.case.dim > 3:
            return None
        if self.comm.rank == 0:
            self._series = PolyvertexSeries(path, self.w)
        return path.name

    def write_fields(self, t: float) -> None:
        """Append the positions and the densities at them to the XDMF series.

        Collective: every rank takes part in :meth:`density_at_particles`, rank 0 writes.
        """
        if self.case.dim > 3:  # no series (see open_fields)
            return
        density = self.density_at_particles()
        if self._series is not None:
            self._series.append(t, self.x, density)

    def close(self) -> None:
        """Close the XDMF series."""
        if self._series is not None:
            self._series.close()
            self._series = None
