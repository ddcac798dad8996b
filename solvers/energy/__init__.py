"""The free energy F(ρ) = ∫ D·U(ρ) dx + ∫ V ρ dx, shared by every solver.

Each formula is written once, against an array namespace ``xp``: NumPy arrays for the
particle solvers (``xp = numpy``) and UFL expressions for the finite-element solvers
(``xp = UFL``).  FE and particle solvers therefore evaluate the very same expressions
and cannot drift apart.

For an internal energy U the pressure is P(ρ) = ρU'(ρ) - U(ρ), so that
ρ∇U'(ρ) = ∇P(ρ) and the flow reads ∂_t ρ = div(D∇P(ρ) + ρ∇V).
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from typing import Any

import numpy as np

#: NumPy face: pass ``xp=NUMPY`` (the default).
NUMPY = types.SimpleNamespace(log=np.log, maximum=np.maximum, zero=np.zeros_like)


def ufl_namespace() -> types.SimpleNamespace:
    """UFL face: ``xp`` for evaluating the energy on UFL expressions (imports UFL lazily)."""
    import ufl

    return types.SimpleNamespace(log=ufl.ln, maximum=ufl.max_value, zero=lambda r: 0.0 * r)


@dataclass(frozen=True)
class Entropy:
    """U(ρ) = ρ log ρ: linear diffusion."""

    name = "entropy"

    def U(self, rho: Any, xp: Any = NUMPY) -> Any:
        """Return the internal energy density ρ log ρ."""
        return rho * xp.log(rho)

    def dU(self, rho: Any, xp: Any = NUMPY) -> Any:
        """First variation U'(ρ)."""
        return xp.log(rho) + 1.0

    def pressure(self, rho: Any, xp: Any = NUMPY) -> Any:
        """P(ρ) = ρU'(ρ) - U(ρ) = ρ."""
        return rho

    def dpressure(self, rho: Any, xp: Any = NUMPY) -> Any:
        """P'(ρ) = ρU''(ρ) = 1."""
        return 1.0 + xp.zero(rho)


@dataclass(frozen=True)
class PowerLaw:
    """U(ρ) = ρ^m/(m-1), m > 1: porous-medium (slow) diffusion."""

    m: float
    name = "power"

    def U(self, rho: Any, xp: Any = NUMPY) -> Any:
        """Return ρ^m/(m-1), with ρ clipped at 0 (a vanishing density has no energy)."""
        return xp.maximum(rho, 0.0) ** self.m / (self.m - 1.0)

    def dU(self, rho: Any, xp: Any = NUMPY) -> Any:
        """First variation U'(ρ) = m ρ^{m-1}/(m-1)."""
        return self.m * xp.maximum(rho, 0.0) ** (self.m - 1.0) / (self.m - 1.0)

    def pressure(self, rho: Any, xp: Any = NUMPY) -> Any:
        """P(ρ) = ρ^m."""
        return xp.maximum(rho, 0.0) ** self.m

    def dpressure(self, rho: Any, xp: Any = NUMPY) -> Any:
        """P'(ρ) = m ρ^{m-1}."""
        return self.m * xp.maximum(rho, 0.0) ** (self.m - 1.0)


@dataclass(frozen=True)
class NoInternal:
    """U = 0: pure transport by the potential."""

    name = "none"

    def U(self, rho: Any, xp: Any = NUMPY) -> Any:
        """Energy density 0."""
        return xp.zero(rho)

    dU = pressure = dpressure = U


@dataclass(frozen=True)
class QuadraticPotential:
    """V(x) = ½ (x-c)ᵀ A (x-c), A symmetric positive semidefinite."""

    A: np.ndarray
    center: np.ndarray

    def value(self, x: np.ndarray) -> np.ndarray:
        """V at points x of shape (n, d)."""
        y = np.atleast_2d(x) - self.center
        return 0.5 * np.einsum("ni,ij,nj->n", y, self.A, y)

    def gradient(self, x: np.ndarray) -> np.ndarray:
        """∇V = A(x-c) at points x of shape (n, d)."""
        return (np.atleast_2d(x) - self.center) @ self.A.T

    def ufl_value(self, x: Any) -> Any:
        """V as a UFL expression of the spatial coordinate ``x``."""
        import ufl

        y = x - ufl.as_vector(self.center.tolist())
        return 0.5 * ufl.dot(y, ufl.as_matrix(self.A.tolist()) * y)


InternalEnergy = Entropy | PowerLaw | NoInternal


@dataclass(frozen=True)
class Energy:
    """F(ρ) = ∫ D·U(ρ) + V ρ.

    Attributes:
        internal: The internal energy U.
        diffusivity: D.
        potential: The confining potential V, or None for V = 0.
    """

    internal: InternalEnergy
    diffusivity: float
    potential: QuadraticPotential | None

    @classmethod
    def from_case(cls, case: Any) -> Energy:
        """Build the energy of a :class:`wgf.cases.Case`."""
        e = case.config["energy"]
        internal: InternalEnergy = {"entropy": Entropy, "none": NoInternal}.get(
            e["internal"], lambda: PowerLaw(e["m"])
        )()
        pot = case.potential()
        return cls(internal, e["diffusivity"], None if pot is None else QuadraticPotential(*pot))

    def density(self, rho: Any, V: Any, xp: Any = NUMPY) -> Any:
        """Integrand D·U(ρ) + Vρ, given V evaluated at the same points."""
        return self.diffusivity * self.internal.U(rho, xp) + V * rho

    def first_variation(self, rho: Any, V: Any, xp: Any = NUMPY) -> Any:
        """δF/δρ = D·U'(ρ) + V."""
        return self.diffusivity * self.internal.dU(rho, xp) + V

    def pressure(self, rho: Any, xp: Any = NUMPY) -> Any:
        """D·P(ρ), so that ρ∇(δF/δρ) = ∇(D·P(ρ)) + ρ∇V."""
        return self.diffusivity * self.internal.pressure(rho, xp)

    def dpressure(self, rho: Any, xp: Any = NUMPY) -> Any:
        """D·P'(ρ): the nonlinear diffusion coefficient."""
        return self.diffusivity * self.internal.dpressure(rho, xp)

    def potential_value(self, x: np.ndarray) -> np.ndarray:
        """V at points x (n, d); zeros for V = 0."""
        x = np.atleast_2d(x)
        return np.zeros(len(x)) if self.potential is None else self.potential.value(x)
