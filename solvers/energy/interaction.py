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

    W_δ(r) = W(r) for r ≥ δ,    W_δ(r) = Σ_{j=0..K} c_j s^{2j}, s = r/δ, for r < δ (K = 4):

the even polynomial that continues W into the ball of radius δ with W and its first K
derivatives matched at δ, so W_δ is C⁴ and its force -∇W_δ is bounded, C³, and 0 at the
centre.  Why this rule: for the Newtonian kernel, in any dimension, it is exactly W∗ψ_δ for
the compactly supported radial mollifier ψ_δ ∝ (1 - |x|²/δ²)³₊ (ΔW_δ is a polynomial in r²
that vanishes to third order at δ, beyond which W_δ is harmonic), and by Newton's theorem a
radial mass acts outside its support as a point mass: only pairs closer than δ feel the
mollification.  The 2-D Keller–Segel virial identity d/dt ∫|x|²ρ = 4DM − κM²/(2π), which
rests on r·W'(r) = κ/(2π) for every pair, is then broken only by those pairs: by
κ/(2π)·Σ_{r_ij<δ} w_i w_j (1 - s_ij²)⁴ ≈ κ/(2π)·(πδ²/5)·∫ρ².  The Plummer softening
W(√(r² + δ²)) used before changes every pair, by W'(r)δ²/(2r) + O(δ⁴); its deficit
κ/(2π)·∬ρ(x)ρ(y) δ²/(|x - y|² + δ²) ≈ κ/(2π)·2πδ² log(σ/δ)·∫ρ² for a cloud of width σ
was the largest error of the blob's Keller–Segel moment law (benchmarks/README.md).  Why
K = 4 rather than 3 (ψ_δ ∝ (1 - |x|²/δ²)²₊): a C² mollifier, a smaller deficit (πδ²/5
against πδ²/4), and derivatives that a finite difference across r = δ checks to its own
accuracy.  For other singular kernels (r^{-a}, r²/2 - log r) the continuation is a smooth
core with the kernel's own tail.  δ is the solver's resolution length
(:meth:`Interaction.mollifier`): the blob's √ε, Silverman's bandwidth for langevin; a
non-singular kernel is used as it is (δ = 0).

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


#: The core of a mollified kernel matches W and its first MATCH_ORDER derivatives at δ.
MATCH_ORDER = 4


def _match_matrix(order: int) -> np.ndarray:
    """Row k, column j: the k-th derivative of s^{2j} at s = 1 (j, k = 0..order)."""
    k, j = np.meshgrid(np.arange(order + 1), np.arange(order + 1), indexing="ij")
    falling = np.ones(k.shape)
    for step in range(order):  # (2j)(2j - 1)…(2j - k + 1), 0 once 2j < k
        falling *= np.where(step < k, 2.0 * j - step, 1.0)
    return falling


def _horner(c: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Σ_j c_j q^j."""
    out = np.full(q.shape, c[-1])
    for coefficient in c[-2::-1]:
        out = out * q + coefficient
    return out


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
    def _derivatives(self) -> list[SymbolicFunction]:
        """w, w', …, w^(MATCH_ORDER)."""
        out = [self.function]
        for _ in range(MATCH_ORDER):
            out.append(out[-1].diff("r"))
        return out

    @functools.cached_property
    def _cores(self) -> dict[float, np.ndarray]:
        return {}

    def core(self, delta: float) -> np.ndarray:
        """c₀..c_K of W_δ(r) = Σ_j c_j (r/δ)^{2j} in the ball r < δ (κ included, K = 4).

        The solution of the match p⁽ᵏ⁾(1) = δᵏ W⁽ᵏ⁾(δ), k = 0..K (module docstring).
        """
        if delta not in self._cores:
            at = np.array([delta])
            jet = [float(f(at)[0]) * delta**k for k, f in enumerate(self._derivatives)]
            coefficients = np.linalg.solve(_match_matrix(MATCH_ORDER), jet)
            self._cores[delta] = self.strength * coefficients
        return self._cores[delta]

    def _piecewise(
        self, r: np.ndarray, delta: float, order: int, per_r: bool = False
    ) -> np.ndarray:
        """The ``order``-th derivative (0, 1, 2) of W_δ at radii r, divided by r if ``per_r``.

        Outside the ball the kernel's formula; inside, the core's polynomial in q = (r/δ)²,
        so the formula is never evaluated where it may be singular (it is evaluated at δ
        there and overwritten: the ball holds few of the radii, so this costs less than
        gathering the others).
        """
        r = np.asarray(r, dtype=float)
        if delta <= 0.0:
            value = self.strength * _radial(self._derivatives[order], r)
            return value / r if per_r else value
        ball = r < delta
        safe = np.where(ball, delta, r)
        out = self.strength * _radial(self._derivatives[order], safe)
        if per_r:
            out /= safe
        c, q = self.core(delta), (r[ball] / delta) ** 2
        j = np.arange(len(c))
        if order == 0:  # Σ c_j s^{2j}
            out[ball] = _horner(c, q)
        elif order == 1:  # Σ 2j c_j s^{2j-1}/δ, over r = sδ: Σ 2j c_j s^{2j-2}/δ²
            scale = 1.0 / delta**2 if per_r else np.sqrt(q) / delta
            out[ball] = scale * _horner((2 * j * c)[1:], q)
        else:  # Σ 2j(2j-1) c_j s^{2j-2}/δ²
            out[ball] = _horner((2 * j * (2 * j - 1) * c)[1:], q) / delta**2
        return out

    def W(self, r: np.ndarray, delta: float = 0.0) -> np.ndarray:
        """W_δ(r): κ w(r) for r ≥ δ, Σ_j c_j s^{2j} (s = r/δ) inside."""
        return self._piecewise(r, delta, 0)

    def dW(self, r: np.ndarray, delta: float = 0.0) -> np.ndarray:
        """W_δ'(r): κ w'(r) for r ≥ δ, Σ_j 2j c_j s^{2j-1}/δ inside."""
        return self._piecewise(r, delta, 1)

    def d2W(self, r: np.ndarray, delta: float = 0.0) -> np.ndarray:
        """W_δ''(r): κ w''(r) for r ≥ δ, Σ_j 2j(2j-1) c_j s^{2j-2}/δ² inside.

        (The delta mass of a kink is dropped.)
        """
        return self._piecewise(r, delta, 2)

    def force_factor(self, r: np.ndarray, delta: float = 0.0) -> np.ndarray:
        """W_δ'(r)/r, so that ∇W_δ(z) = (W_δ'(|z|)/|z|) z: Σ_j 2j c_j s^{2j-2}/δ² inside.

        Finite at r = 0 when δ > 0: the force of the core is linear there.
        """
        return self._piecewise(r, delta, 1, per_r=True)

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
    def attracts_at_origin(self) -> bool:
        """Whether W increases with r near 0 (W' > 0 at r = 10⁻⁶, the larger probe radius).

        A pair then pulls together at short range: log r and -r^{-a} (Keller–Segel), r^a
        with a < 2 (aggregation).  A core that repels (-log r in swarming, r^{-a}) keeps
        mass from focusing into a point: the energy of a point mass would be +∞.
        """
        with np.errstate(all="ignore"):
            return bool(self.force_factor(np.array([_PROBES[0]]))[0] > 0.0)

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
            cache=self._mesh_cache("hessian_norm", delta),
        )
        return 2.0 * value

    # -- sums over weighted points ---------------------------------------------------------
    @functools.cached_property
    def _mesh_caches(self) -> dict[tuple[str, float], dict]:
        return {}

    def _mesh_cache(self, sum_name: str, delta: float) -> dict:
        """The particle mesh's kernel transforms of one sum at one δ, kept between calls."""
        return self._mesh_caches.setdefault((sum_name, delta), {})

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
            cache=self._mesh_cache("potential", delta),
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
        cache = self._mesh_cache("gradient", delta)
        sums = mesh_sum(
            points, sources, weights, sample, self.singular, parity=parity, comm=comm, cache=cache
        )
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
