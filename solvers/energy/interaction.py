"""The interaction energy ½∬ W(x - y) ρ(x) ρ(y) dx dy of a radial kernel W(r), r = |x - y|.

Its first variation is W∗ρ and its velocity -∇(W∗ρ); for an empirical measure
μ = Σ_j w_j δ_{y_j} these are the sums Σ_j w_j W(|x - y_j|) and Σ_j w_j ∇W(x - y_j)
(:mod:`.pair_sums`).  The kernel comes from ``[energy.interaction]``: a formula w(r) in r
(:meth:`wgf.cases.Case.interaction_kernel`; ``kind = "newtonian"`` is the formula of
:data:`wgf.cases.case.NEWTONIAN`) times ``strength`` κ, W = κ w.  Sign convention: W is the
energy density of a pair, so a W that increases with r attracts; the Newtonian kind is
W = -N_d with -ΔN_d = δ (|x|/2 in 1-D, log r/(2π) in 2-D): Keller–Segel with sensitivity κ.

Singular kernels.  A kernel is *singular* when its Hessian is unbounded at r → 0 (log r,
r^{-a}, and r^a with a < 2 in d ≥ 2 for the transverse part W'(r)/r; in 1-D |x| is not
singular: its force is bounded and the ordering of particles never needs its curvature).
Particles then use the mollified kernel

    W_δ(r) = W(√(r² + δ²)),

which is smooth, differs from W by W'(r)δ²/(2r) + O(δ⁴) for r ≫ δ, has ∇W_δ(z) = W'(s) z/s,
s = √(|z|² + δ²): the rule is the Plummer softening of gravitational N-body codes, applied to
any radial W.  δ is the solver's resolution length (:meth:`Interaction.mollifier`): the
blob's √ε, Silverman's bandwidth for langevin; a non-singular kernel is used as it is (δ = 0).

For the particle integrators the term also gives bounds on the stiffness of its velocity
field: κ·M·sup_r ‖∇²W_δ‖ (the eigenvalues of ∇²W(z) are W''(r) along z and W'(r)/r across),
and the Gershgorin row sums 2Σ_j w_j‖∇²W_δ(x_i - x_j)‖ at given positions.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from wgf.solvers.energy.pair_sums import direct_sum, mesh_sum

if TYPE_CHECKING:
    from mpi4py import MPI

    from wgf.cases import Case
    from wgf.cases.expressions import SymbolicFunction

#: Above this many sources the sums go through the particle mesh (O(N log N)).
DIRECT_MAX = 20_000
#: How a sum is computed: by size (``auto``), exactly, or by the particle mesh.
Method = Literal["auto", "direct", "mesh"]
#: Probe radii (relative to 1) for the singularity test: the Hessian grows > 10× from the
#: larger to the smaller, or is not finite.
_PROBES = (1e-6, 1e-12)


def _soft(r: np.ndarray, delta: float) -> np.ndarray:
    """The softened distance s = √(r² + δ²) (r itself for δ = 0)."""
    return np.sqrt(r * r + delta * delta) if delta > 0.0 else np.asarray(r, dtype=float)


def _radial(f: SymbolicFunction, r: np.ndarray) -> np.ndarray:
    """A formula in r at an array of radii of any shape."""
    r = np.asarray(r, dtype=float)
    return f(r.reshape(-1)).reshape(r.shape)


@dataclass(frozen=True)
class Interaction:
    """W = κ·w(r), a radial pair kernel (see the module docstring).

    Attributes:
        function: w(r), a formula in the variable ``r``.
        strength: κ.
        dim: The space dimension.
    """

    function: SymbolicFunction
    strength: float
    dim: int

    @classmethod
    def from_case(cls, case: Case) -> Interaction | None:
        """``[energy.interaction]`` of a validated case, or None without one (or attention)."""
        inter = case.section("energy")["interaction"]
        if inter is not None and inter["kind"] == "attention":
            return None  # its own term (.attention), though USA has a radial kernel too
        kernel = case.interaction_kernel()
        return None if kernel is None else cls(kernel, case.interaction_strength(), case.dim)

    # -- the radial profile ----------------------------------------------------------------
    @functools.cached_property
    def _dw(self) -> SymbolicFunction:
        return self.function.diff("r")

    @functools.cached_property
    def _d2w(self) -> SymbolicFunction:
        return self._dw.diff("r")

    def W(self, r: np.ndarray, delta: float = 0.0) -> np.ndarray:
        """W_δ(r) = κ w(√(r² + δ²))."""
        return self.strength * _radial(self.function, _soft(r, delta))

    def dW(self, r: np.ndarray, delta: float = 0.0) -> np.ndarray:
        """W_δ'(r) = κ w'(s) r/s, s = √(r² + δ²)."""
        s = _soft(r, delta)
        return self.strength * _radial(self._dw, s) * (r / s if delta > 0.0 else 1.0)

    def d2W(self, r: np.ndarray, delta: float = 0.0) -> np.ndarray:
        """W_δ''(r) = κ (w''(s) r²/s² + w'(s) δ²/s³) (the delta mass of a kink is dropped)."""
        s = _soft(r, delta)
        if delta == 0.0:
            return self.strength * _radial(self._d2w, s)
        along = _radial(self._d2w, s) * (r / s) ** 2
        return self.strength * (along + _radial(self._dw, s) * delta**2 / s**3)

    def force_factor(self, r: np.ndarray, delta: float = 0.0) -> np.ndarray:
        """W_δ'(r)/r = κ w'(s)/s, so that ∇W_δ(z) = (W_δ'(|z|)/|z|) z."""
        s = _soft(r, delta)
        return self.strength * _radial(self._dw, s) / s

    def pair_force(self, z: np.ndarray, delta: float = 0.0) -> np.ndarray:
        """-∇W_δ(z) for offsets z = x - y (n, d): the force of y on x (0 at z = 0).

        Odd in z, so the forces of a pair are equal and opposite.
        """
        r = np.sqrt(np.einsum("nk,nk->n", z, z))
        with np.errstate(all="ignore"):
            f = self.force_factor(np.where(r > 0.0, r, 1.0), delta)
        return -np.where(r > 0.0, f, 0.0)[:, None] * z

    def hessian_norm(self, r: np.ndarray, delta: float = 0.0) -> np.ndarray:
        """‖∇²W_δ(z)‖₂ at |z| = r: max(|W_δ''|, |W_δ'/r|), the second only for d ≥ 2."""
        with np.errstate(all="ignore"):
            norm = np.abs(self.d2W(r, delta))
            if self.dim >= 2:
                norm = np.maximum(norm, np.abs(self.force_factor(r, delta)))
        return np.where(np.isfinite(norm), norm, np.inf)

    #: Its direct sums skip pairs at distance 0 (W may be infinite there): a mesh's
    #: convolution adds the self pair's average over the vertex's own cell.
    includes_self_pair = False

    @functools.cached_property
    def singular(self) -> bool:
        """Whether ∇²W is unbounded as r → 0 (then particles mollify it)."""
        big, small = self.hessian_norm(np.array(_PROBES))
        return bool(not np.isfinite(small) or small > 10.0 * max(big, 1e-300))

    @functools.cached_property
    def linear_coefficient(self) -> float | None:
        """The a if W(r) = a·r + b (the 1-D force is then a·(mass left - mass right)), else None."""
        import sympy

        (r,) = self.function.symbols
        try:
            poly = sympy.Poly(sympy.expand(self.function.expr), r)
        except sympy.PolynomialError:
            return None
        if poly.degree() > 1:
            return None
        coeffs = poly.all_coeffs()
        return self.strength * float(coeffs[0]) if poly.degree() == 1 else 0.0

    #: A radial W always gives a W2 gradient flow.
    gradient_flow = True

    def uses_local_stiffness(self, delta: float) -> bool:
        """Whether the particle integrators should pay for :meth:`local_stiffness`.

        Only for a mollified kernel (δ > 0), whose global bound ~ 1/δ² is far above the
        truth; otherwise :meth:`stiffness` is close enough and costs nothing per step.
        """
        return delta > 0.0

    def mollifier(self, length: float) -> float:
        """δ for a solver whose resolution length is ``length``: length if singular, else 0."""
        return float(length) if self.singular else 0.0

    def stiffness(self, mass: float, radius: float, delta: float = 0.0) -> float:
        """κ M sup_{0 < r ≤ radius} ‖∇²W_δ‖: a bound on the Lipschitz constant of -∇W_δ∗μ.

        The supremum is taken on 2000 geometric radii down to 10⁻⁹·radius (and ∞ for an
        unmollified singular kernel).
        """
        r = np.geomspace(1e-9 * radius, radius, 2000)
        return float(mass * np.max(self.hessian_norm(r, delta)))

    def local_stiffness(
        self,
        points: np.ndarray,
        sources: np.ndarray,
        weights: np.ndarray,
        delta: float = 0.0,
        method: Method = "auto",
        comm: MPI.Comm | None = None,
    ) -> np.ndarray:
        """2 Σ_j w_j ‖∇²W_δ(x_i - y_j)‖ at each point (pairs at distance 0 skipped).

        With the sources the particles themselves, the largest value bounds the spectral
        radius of the Jacobian of the velocities -Σ_j w_j ∇W_δ(x_i - x_j): block i of a row
        of that Jacobian is -Σ_j w_j ∇²W_δ(x_i - x_j), block j is w_j ∇²W_δ(x_i - x_j), and
        the row sums of norms bound the spectral radius (Gershgorin).  Unlike
        :meth:`stiffness` it sees how much mass is near: for the mollified -log r it is
        O(M log(1/δ)) where the global bound is M/δ².
        """
        if self._method(method, len(sources)) == "direct":
            value, _ = direct_sum(
                points, sources, weights, value=lambda r: self.hessian_norm(r, delta)
            )
            assert value is not None
            return 2.0 * value
        (value,) = mesh_sum(
            points,
            sources,
            weights,
            lambda z: [self.hessian_norm(np.sqrt(np.einsum("nk,nk->n", z, z)), delta)],
            self.singular,
            parity=[(1,) * points.shape[1]],
            comm=comm,
        )
        return 2.0 * value

    # -- sums over weighted points ---------------------------------------------------------
    def _method(self, method: Method, n_sources: int) -> str:
        if method != "auto":
            return method
        return "direct" if n_sources <= DIRECT_MAX else "mesh"

    def potential_at(
        self,
        points: np.ndarray,
        sources: np.ndarray,
        weights: np.ndarray,
        delta: float = 0.0,
        method: Method = "auto",
        comm: MPI.Comm | None = None,
    ) -> np.ndarray:
        """(W_δ∗μ)(x) = Σ_j w_j W_δ(|x - y_j|) at ``points`` (pairs at distance 0 skipped).

        ``comm``: the particle mesh shares its work over the ranks (collective; each rank
        passes its own points), see :func:`~wgf.solvers.energy.pair_sums.mesh_sum`.
        """
        if self._method(method, len(sources)) == "direct":
            value, _ = direct_sum(points, sources, weights, value=lambda r: self.W(r, delta))
            assert value is not None
            return value
        (value,) = mesh_sum(
            points,
            sources,
            weights,
            lambda z: [self.W(np.sqrt(np.einsum("nk,nk->n", z, z)), delta)],
            self.singular,
            parity=[(1,) * points.shape[1]],
            comm=comm,
        )
        return value

    def gradient_at(
        self,
        points: np.ndarray,
        sources: np.ndarray,
        weights: np.ndarray,
        delta: float = 0.0,
        method: Method = "auto",
        comm: MPI.Comm | None = None,
    ) -> np.ndarray:
        """∇(W_δ∗μ)(x) = Σ_j w_j ∇W_δ(x - y_j) at ``points``, shape (n, d).

        The velocity of a particle at x is minus this.  ``comm`` as for
        :meth:`potential_at`; component k is odd in z_k and even in the other coordinates.
        """
        if self._method(method, len(sources)) == "direct":
            _, grad = direct_sum(
                points, sources, weights, factor=lambda r: self.force_factor(r, delta)
            )
            assert grad is not None
            return grad

        def sample(z: np.ndarray) -> list[np.ndarray]:
            r = np.sqrt(np.einsum("nk,nk->n", z, z))
            f = self.force_factor(np.where(r > 0.0, r, 1.0), delta)
            f[r == 0.0] = 0.0  # the odd kernel's value at the origin
            return [f * z[:, k] for k in range(z.shape[1])]

        d = points.shape[1]
        parity = [tuple(-1 if j == k else 1 for j in range(d)) for k in range(d)]
        sums = mesh_sum(points, sources, weights, sample, self.singular, parity=parity, comm=comm)
        return np.stack(sums, axis=1)

    def velocity_at(
        self,
        points: np.ndarray,
        sources: np.ndarray,
        weights: np.ndarray,
        delta: float = 0.0,
        method: Method = "auto",
        comm: MPI.Comm | None = None,
    ) -> np.ndarray:
        """The velocity -∇(W_δ∗μ) at ``points`` that the term gives a particle there."""
        return -self.gradient_at(points, sources, weights, delta, method, comm)

    def energy(
        self, x: np.ndarray, w: np.ndarray, delta: float = 0.0, method: Method = "auto"
    ) -> float:
        """½ Σ_i w_i (W_δ∗μ)(x_i): ½ Σ_{i≠j} w_i w_j W_δ(|x_i - x_j|) by the direct sum.

        (By the mesh the smoothed self pair is included: a constant of the run.)
        """
        return 0.5 * float(w @ self.potential_at(x, x, w, delta, method))
