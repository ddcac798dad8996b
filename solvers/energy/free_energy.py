"""The free energy F(ρ) = ∫ D·U(ρ) dx + ∫ V ρ dx + ½∬ W(x-y) ρ(x)ρ(y) as a sum of terms.

:class:`FreeEnergy` holds the terms and answers, for any of them, the questions that the
solvers ask: the energy density, the first variation δF/δρ, the pressure, the potential's
value, gradient, Hessian and UFL face, the pointwise inversion and prox, and the
interaction's nonlocal first variation W∗μ, its gradient and energy for weighted points μ.
Solvers never look at which terms it holds: without a potential or an interaction the
answers are zeros.

A case with ``[model]`` (a two-layer network, :mod:`.network`) fills the potential and the
interaction slots with the network's terms, and its :meth:`FreeEnergy.model_diagnostics`
report the risk and the teacher alignment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from wgf.cases import Case
from wgf.solvers.energy.attention import Attention
from wgf.solvers.energy.backend import NUMPY, ArrayNamespace
from wgf.solvers.energy.interaction import Interaction, Method
from wgf.solvers.energy.internal import INTERNAL_ENERGIES, InternalEnergy, PowerLaw
from wgf.solvers.energy.network import NetworkInteraction, TwoLayerNetwork
from wgf.solvers.energy.potential import POTENTIALS, Potential

if TYPE_CHECKING:
    from mpi4py import MPI

#: The interaction terms, each built by its ``from_case`` (None when the case is not its).
INTERACTIONS: tuple[type[Interaction] | type[Attention], ...] = (Interaction, Attention)


@dataclass(frozen=True)
class FreeEnergy:
    """F(ρ) = ∫ D·U(ρ) + V ρ.

    Attributes:
        internal: The internal energy U.
        diffusivity: D.
        potential: The potential V, or None for V = 0.
        interaction: The pair term: a radial kernel W, attention (:mod:`.attention`) or a
            network's W (:mod:`.network`), or None for none.
        model: The two-layer network whose risk V and W are, or None.
    """

    internal: InternalEnergy
    diffusivity: float
    potential: Potential | None = None
    interaction: Interaction | Attention | NetworkInteraction | None = None
    model: TwoLayerNetwork | None = None

    @classmethod
    def from_case(cls, case: Case) -> FreeEnergy:
        """Build the energy of a validated case (``[energy]``)."""
        e = case.section("energy")
        kind = INTERNAL_ENERGIES[e["internal"]]
        internal = kind(e["m"]) if kind is PowerLaw else kind()
        model = TwoLayerNetwork.from_case(case)
        if model is not None:  # the network's risk is its V and W (validated: no others)
            return cls(internal, e["diffusivity"], model.potential, model.interaction, model)
        selected = (kind.from_case(case) for kind in POTENTIALS)
        potential = next((p for p in selected if p is not None), None)
        terms = (kind.from_case(case) for kind in INTERACTIONS)
        interaction = next((t for t in terms if t is not None), None)
        return cls(internal, e["diffusivity"], potential, interaction)

    # -- local quantities, on NumPy arrays or UFL expressions -----------------------------
    def density(self, rho: Any, V: Any, xp: ArrayNamespace = NUMPY) -> Any:
        """Integrand D·U(ρ) + Vρ, given V evaluated at the same points."""
        return self.diffusivity * self.internal.U(rho, xp) + V * rho

    def first_variation(self, rho: Any, V: Any, xp: ArrayNamespace = NUMPY) -> Any:
        """δF/δρ = D·U'(ρ) + V."""
        return self.diffusivity * self.internal.dU(rho, xp) + V

    def pressure(self, rho: Any, xp: ArrayNamespace = NUMPY) -> Any:
        """D·P(ρ), so that ρ∇(δF/δρ) = ∇(D·P(ρ)) + ρ∇V."""
        return self.diffusivity * self.internal.pressure(rho, xp)

    def dpressure(self, rho: Any, xp: ArrayNamespace = NUMPY) -> Any:
        """D·P'(ρ): the nonlinear diffusion coefficient."""
        return self.diffusivity * self.internal.dpressure(rho, xp)

    @property
    def linear_diffusion(self) -> bool:
        """Whether the internal term is D·ρ log ρ (P(ρ) = ρ: Brownian noise, Slotboom)."""
        return self.internal.linear_pressure

    @property
    def has_internal(self) -> bool:
        """Whether F has an internal term (False for ``internal = "none"``)."""
        return not self.internal.vanishes

    @property
    def gradient_flow(self) -> bool:
        """Whether every term's velocity is a W2 gradient (False for SA attention)."""
        return self.interaction is None or self.interaction.gradient_flow

    @property
    def needs_barrier(self) -> bool:
        """Whether minimisers may vanish on open sets (an interior-point solver needs a barrier)."""
        return self.internal.compact_support

    def invert_first_variation(
        self, y: np.ndarray, barrier: float, start: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """ρ > 0 with D·U'(ρ) - ε/ρ = y at every point, and dρ/dy (y = δF/δρ - V)."""
        return self.internal.invert_first_variation(y, self.diffusivity, barrier, start)

    def prox(self, z: np.ndarray, c: float) -> np.ndarray:
        """argmin_{ρ≥0} c·D·U(ρ) + ½(ρ - z)² at every point."""
        return self.internal.prox(z, c * self.diffusivity)

    # -- the potential ---------------------------------------------------------------------
    def potential_value(self, x: np.ndarray) -> np.ndarray:
        """V at points x (n, d); zeros for V = 0."""
        x = np.atleast_2d(x)
        return np.zeros(len(x)) if self.potential is None else self.potential.value(x)

    def potential_gradient(self, x: np.ndarray) -> np.ndarray:
        """∇V at points x (n, d); zeros for V = 0."""
        x = np.atleast_2d(x)
        return (
            np.zeros_like(x, dtype=float) if self.potential is None else self.potential.gradient(x)
        )

    def potential_hessian(self, x: np.ndarray) -> np.ndarray:
        """∇²V at points x, shape (n, d, d); zeros for V = 0."""
        x = np.atleast_2d(x)
        if self.potential is None:
            return np.zeros((len(x), x.shape[1], x.shape[1]))
        return self.potential.hessian(x)

    def potential_hessian_norm(self, x: np.ndarray) -> float:
        """Max over the points x of the spectral norm of ∇²V (0 for V = 0).

        The explicit particle integrators take it as the stiffness of the drift -∇V.
        """
        return 0.0 if self.potential is None else self.potential.hessian_norm(x)

    def potential_ufl(self, x: Any) -> Any:
        """V as a UFL expression of the spatial coordinate ``x`` (0.0 for V = 0)."""
        return 0.0 if self.potential is None else self.potential.ufl_value(x)

    # -- the interaction -------------------------------------------------------------------
    # What every solver asks, with or without a pair term, is answered here; the sums
    # themselves (potential_at, gradient_at, local_stiffness, energy) are asked of
    # ``self.interaction``, by callers that have checked :attr:`has_interaction`.
    @property
    def has_interaction(self) -> bool:
        """Whether F has a pair term (its diagnostics report ``interaction_energy``)."""
        return self.interaction is not None

    @property
    def may_blow_up(self) -> bool:
        """Whether the flow may concentrate beyond any resolution in finite time.

        Only a pair kernel that is singular and attracts at the origin (log r, -r^{-a}:
        Keller–Segel; r^a with a < 2) can focus mass into a point in finite time; smooth
        kernels (r²/2, attention, a network's) contract at most exponentially, and a token
        cluster or a concentrated neuron cloud is the answer there, not a failure.  A
        singular core that repels (swarming's -log r) keeps the density bounded.  Solvers
        check that they resolve the density only when this holds
        (:func:`~wgf.solvers.acceptance.check_resolved`): at N = 10⁵ the blob's check cost
        0.14 s a time level on 2 ranks in swarm_2d, where it can never fire.
        """
        return (
            self.interaction is not None
            and self.interaction.singular
            and self.interaction.attracts_at_origin
        )

    def interaction_mollifier(self, length: float) -> float:
        """δ of the mollified kernel for a solver resolving ``length`` (0: not mollified)."""
        return 0.0 if self.interaction is None else self.interaction.mollifier(length)

    def interaction_stiffness(self, mass: float, radius: float, delta: float = 0.0) -> float:
        """Bound on the Lipschitz constant of the interaction velocity (0 without one)."""
        if self.interaction is None:
            return 0.0
        return self.interaction.stiffness(mass, radius, delta)

    def interaction_uses_local_stiffness(self, delta: float = 0.0) -> bool:
        """Whether the integrators should compute the local stiffness bound at each step."""
        return self.interaction is not None and self.interaction.uses_local_stiffness(delta)

    def interaction_velocity(
        self,
        points: np.ndarray,
        sources: np.ndarray,
        weights: np.ndarray,
        delta: float = 0.0,
        method: Method = "auto",
        comm: MPI.Comm | None = None,
    ) -> np.ndarray:
        """The interaction's velocity at ``points`` for μ = Σ_j w_j δ_{y_j} (zeros without one).

        -∇(W_δ∗μ) for a gradient term; attention's (ambient) velocity field for attention,
        which for SA is not a gradient.
        """
        if self.interaction is None:
            return np.zeros_like(points, dtype=float)
        return self.interaction.velocity_at(points, sources, weights, delta, method, comm)

    # -- a model's own diagnostics ----------------------------------------------------------
    def model_diagnostics(
        self, x: np.ndarray, w: np.ndarray, pair_energy: float | None = None
    ) -> dict[str, float]:
        """The model's diagnostics at particles x, weights w ({} without ``[model]``).

        For a two-layer network: ``risk`` and ``alignment``; ``pair_energy`` (½E[f²], the
        interaction energy the solver already summed) saves the O(N²) sum.
        """
        if self.model is None:
            return {}
        norm2 = None if pair_energy is None else 2.0 * pair_energy
        return self.model.diagnostics(x, w, norm2)
