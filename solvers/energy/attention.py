"""Self-attention as an interaction term: tokens on the unit sphere S^{d-1} ⊂ ℝ^d.

Tokens x_i with weights w_i (Σ w_i = M) move by

    ẋ_i = κ P_{x_i}( Σ_j w_j e^{β⟨x_i,x_j⟩} x_j / Z_i ),    P_x = I - x xᵀ,

(Geshkovski–Letrouit–Polyanskiy–Rigollet), with ``normalization``

* ``"usa"``, Z_i = 1: the W2 gradient flow on the sphere of
  F(μ) = -(κ/2β)∬ e^{β⟨x,y⟩} dμ dμ (gradient *ascent* of ½β⁻¹∬e^{β⟨x,y⟩}).  On the sphere
  ⟨x,y⟩ = 1 - r²/2 with r = |x - y| the chord, so F = ½∬W with the radial
  W(r) = -κβ⁻¹e^{β(1 - r²/2)} (:func:`wgf.cases.case.attention_kernel`), whose
  -∇_x W(|x - y|) = e^{β⟨x,y⟩}(y - x) differs from e^{β⟨x,y⟩}y by a multiple of x only:
  after the projection the radial term of :mod:`.interaction` gives the same velocity (a
  test checks it).  For M = 1 and w_i = 1/n this is Z_i = n in the survey's notation.
* ``"sa"``, Z_i = Σ_j w_j e^{β⟨x_i,x_j⟩}: softmax attention, the weighted average of the
  tokens (with the survey's weights 1/n: Σ_j e^{β⟨x_i,x_j⟩}x_j / Σ_j e^{β⟨x_i,x_j⟩}).  It
  is not a W2 gradient flow: its velocity is the USA velocity divided by the positive
  per-token factor Z_i, i.e. the gradient flow of the same F in the metric
  Σ_i w_i Z_i |ẋ_i|².  So F is still non-increasing along SA, and F is what the ``energy``
  diagnostic reports for both normalisations (for SA: a Lyapunov function, not the energy
  of a W2 flow).  Only particle solvers take SA (:attr:`Attention.gradient_flow` is False;
  the FE solvers refuse it).

The term answers in ambient coordinates; the particle solver projects the velocity on the
tangent space and retracts the positions (:mod:`wgf.solvers.particles.domains`).

Sums are dense, O(n·N): the inner products of a chunk of targets with all sources are one
matrix product (BLAS), the weights e^{β(⟨x,y⟩-1)} ≤ 1 are scaled by e^{-β} so that large β
does not overflow, and every source, the token itself included, enters every sum (the self
pair of SA's Z_i is part of attention; in F it is the constant -κ e^β Σ_i w_i²/(2β)).
Each rank passes its own block of targets (:mod:`wgf.solvers.particles.parallel`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    from wgf.cases import Case

#: Pair entries per chunk of targets × sources (each float temporary 4 MB).
CHUNK_PAIRS = 1 << 19

Normalization = Literal["usa", "sa"]


@dataclass(frozen=True)
class Attention:
    """The attention interaction (see the module docstring).

    Attributes:
        beta: The inverse temperature β > 0.
        normalization: ``"usa"`` (Z_i = 1) or ``"sa"`` (softmax).
        strength: κ, a factor on the velocity (and on F).
        dim: The ambient dimension d.
    """

    beta: float
    normalization: Normalization
    strength: float
    dim: int

    #: Attention is smooth: particles use it as it is.  Every sum method takes the radial
    #: term's ``delta``, ``method`` and ``comm`` and ignores them (dense sums, no grid).
    singular = False
    #: Its sums take every source, the token itself included (a smooth kernel's self pair
    #: is the value e^β at 0); a mesh's convolution adds no self-pair average to them.
    includes_self_pair = True

    @classmethod
    def from_case(cls, case: Case) -> Attention | None:
        """``[energy.interaction] kind = "attention"`` of a validated case, or None."""
        inter = case.section("energy")["interaction"]
        if inter is None or inter["kind"] != "attention":
            return None
        return cls(inter["beta"], inter["normalization"], inter["strength"], case.dim)

    @property
    def gradient_flow(self) -> bool:
        """Whether the velocity is a W2 gradient (USA), so that Eulerian solvers may take it."""
        return self.normalization == "usa"

    def _sums(
        self, points: np.ndarray, sources: np.ndarray, weights: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """S_i = Σ_j w_j e^{β(⟨x_i,y_j⟩-1)} (n,) and T_i = Σ_j w_j e^{β(⟨x_i,y_j⟩-1)} y_j (n, d)."""
        n = len(points)
        scalar, vector = np.empty(n), np.empty((n, sources.shape[1]))
        columns = np.concatenate([weights[:, None], weights[:, None] * sources], axis=1)
        chunk = max(1, CHUNK_PAIRS // max(1, len(sources)))
        for start in range(0, n, chunk):
            e = points[start : start + chunk] @ sources.T
            e -= 1.0
            e *= self.beta
            np.exp(e, out=e)
            sums = e @ columns
            scalar[start : start + chunk] = sums[:, 0]
            vector[start : start + chunk] = sums[:, 1:]
        return scalar, vector

    # -- what the particle solvers ask -----------------------------------------------------
    def velocity_at(
        self,
        points: np.ndarray,
        sources: np.ndarray,
        weights: np.ndarray,
        delta: float = 0.0,
        method: str = "auto",
        comm: object = None,
    ) -> np.ndarray:
        """κ Σ_j w_j e^{β⟨x,y_j⟩} y_j / Z at ``points`` (ambient; the solver projects it).

        ``delta``, ``method`` and ``comm`` are those of the radial term's sums (unused:
        attention is smooth and its dense sums need no split grid).
        """
        scalar, vector = self._sums(points, sources, weights)
        if self.normalization == "usa":
            return self.strength * math.exp(self.beta) * vector
        return self.strength * vector / scalar[:, None]

    def gradient_at(
        self,
        points: np.ndarray,
        sources: np.ndarray,
        weights: np.ndarray,
        delta: float = 0.0,
        method: str = "auto",
        comm: object = None,
    ) -> np.ndarray:
        """∇(δF/δμ) = -κ Σ_j w_j e^{β⟨x,y_j⟩} y_j (USA only: SA is not a gradient)."""
        if not self.gradient_flow:
            raise TypeError("SA attention is not a W2 gradient: ask for velocity_at")
        return -self.velocity_at(points, sources, weights)

    def potential_at(
        self,
        points: np.ndarray,
        sources: np.ndarray,
        weights: np.ndarray,
        delta: float = 0.0,
        method: str = "auto",
        comm: object = None,
    ) -> np.ndarray:
        """δF/δμ(x) = -κβ⁻¹ Σ_j w_j e^{β⟨x,y_j⟩} (every source, self pair included)."""
        scalar, _ = self._sums(points, sources, weights)
        return -self.strength * math.exp(self.beta) / self.beta * scalar

    def energy(
        self, x: np.ndarray, w: np.ndarray, delta: float = 0.0, method: str = "auto"
    ) -> float:
        """F = -(κ/2β) Σ_{i,j} w_i w_j e^{β⟨x_i,x_j⟩} (USA's energy; SA's Lyapunov function)."""
        return 0.5 * float(w @ self.potential_at(x, x, w))

    def mollifier(self, length: float) -> float:
        """0: attention is smooth, no particle solver mollifies it."""
        return 0.0

    def stiffness(self, mass: float, radius: float, delta: float = 0.0) -> float:
        """A bound on the Lipschitz constant of the projected velocity (a constant of the run).

        With u_i = κΣ_j w_j e^{β⟨x_i,x_j⟩}x_j and |u_i| ≤ U: ∂u_i/∂x_i is bounded by βU,
        Σ_j ‖∂u_i/∂x_j‖ by (1 + β)U, and the projection P_x u adds 2U: (3 + 2β)U, with
        U = κMe^β for USA and U = κ for SA (whose softmax derivative adds another βU).
        """
        if self.normalization == "usa":
            return (3.0 + 2.0 * self.beta) * self.strength * mass * math.exp(self.beta)
        return (3.0 + 3.0 * self.beta) * self.strength

    def uses_local_stiffness(self, delta: float) -> bool:
        """True: the local bound sees the actual Z_i (e^β only in a cluster), at one GEMM."""
        return self.normalization == "usa"

    def local_stiffness(
        self,
        points: np.ndarray,
        sources: np.ndarray,
        weights: np.ndarray,
        delta: float = 0.0,
        method: str = "auto",
        comm: object = None,
    ) -> np.ndarray:
        """The bound of :meth:`stiffness` with U replaced by κΣ_j w_j e^{β⟨x_i,x_j⟩} per token."""
        if self.normalization == "sa":
            return np.full(len(points), self.stiffness(0.0, 0.0))
        scalar, _ = self._sums(points, sources, weights)
        return (3.0 + 2.0 * self.beta) * self.strength * math.exp(self.beta) * scalar
