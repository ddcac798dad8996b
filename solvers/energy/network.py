"""The population risk of a two-layer network as energy terms (``[model] kind = "two_layer"``).

A neuron is a particle θ = (a, w) ∈ ℝ^{1+d}; a probability measure μ on neurons is the
network f_μ(x) = ∫ a σ(⟨w, x⟩) dμ(θ) (for N neurons of weight 1/N, the mean-field
scaling f = (1/N) Σ_i a_i σ(⟨w_i, x⟩)).  Its population risk against the teacher
y(x) = Σ_k a*_k σ(⟨w*_k, x⟩), x ~ N(0, I_d), is

    R(μ) = ½ E[(f_μ(x) - y(x))²] = ½E[y²] + ∫ V₀ dμ + ½∬ W dμ dμ,

    V₀(θ) = -a E[y σ(⟨w, x⟩)] = -a Σ_k a*_k K(w, w*_k),     W(θ, θ') = a a' K(w, w'),

with the kernel K(u, v) = E[σ(⟨u, x⟩) σ(⟨v, x⟩)] of the activation.  W is not radial, so
it is not an :class:`~wgf.solvers.energy.interaction.Interaction`; the two terms here answer
the same questions as the radial ones (value, gradient, pair sums), so the particle solvers
run them unchanged.  The regulariser λ|θ|² joins the potential, and so does the constant
½E[y²] (the measure has mass 1), so the energy of the particles is R + λ∫|θ|² exactly:

    V(θ) = ½E[y²] - a Σ_k a*_k K(w, w*_k) + λ|θ|².

The pair sums keep the self pair j = i: it is part of the finite network's risk, and with
it the particle velocity -∇V(θ_i) - Σ_j w_j ∇₁W(θ_i, θ_j) is exactly the gradient flow of
R in the metric Σ_i w_i|θ̇_i|² (the flow that gradient descent on the network follows,
time rescaled by N).

The kernels (:data:`KERNELS`), with ρ = ⟨u, v⟩ and the Gaussian pair (⟨u, x⟩, ⟨v, x⟩):

* ``linear``: K = ⟨u, v⟩;
* ``relu``: the arc-cosine kernel of order 1 (Cho–Saul 2009),
  K = |u||v| (sin φ + (π - φ) cos φ)/(2π), cos φ = ρ/(|u||v|), whose gradient in u is
  ((π - φ) v + |v| sin φ · u/|u|)/(2π);
* ``erf``: K = (2/π) arcsin(2ρ/√((1 + 2|u|²)(1 + 2|v|²))) (Williams 1997);
* ``tanh`` (no closed form): the mean over a fixed sample x_1..x_M ~ N(0, I_d) drawn from
  ``model.seed``; the risk is then the empirical risk on that sample, and the sums over
  neurons factorise through the sample (O(M(n + m)d) instead of O(nmd)).

For the explicit integrators: W has no global Lipschitz bound (it grows with |θ|²), so
:meth:`NetworkInteraction.stiffness` is 0 and the case's τ (or the solver's ``dt``) is the
step; ∇²V is taken by central differences of the closed-form ∇V.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import product
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np

from wgf.solvers.energy.potential import largest_hessian_norm

if TYPE_CHECKING:
    from wgf.cases import Case

#: Pair-matrix entries held at once by the chunked closed-form sums (16 MB of float64).
CHUNK = 2_000_000


class GaussianKernel(Protocol):
    """K(u, v) = E[σ(⟨u, x⟩)σ(⟨v, x⟩)], x ~ N(0, I_d), summed against weights."""

    def sum(self, u: np.ndarray, v: np.ndarray, c: np.ndarray) -> np.ndarray:
        """Σ_j c_j K(u_i, v_j) for rows u (n, d), v (m, d); shape (n,)."""
        ...

    def sum_and_grad(
        self, u: np.ndarray, v: np.ndarray, c: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Σ_j c_j K(u_i, v_j) (n,) and Σ_j c_j ∇_u K(u_i, v_j) (n, d), in one pass."""
        ...


def _chunks(n: int, m: int) -> list[slice]:
    """Row slices of an (n, m) pair matrix with at most ~CHUNK entries each."""
    rows = max(1, CHUNK // max(m, 1))
    return [slice(i, min(i + rows, n)) for i in range(0, max(n, 1), rows)]


@dataclass(frozen=True)
class LinearKernel:
    """σ(s) = s: K = ⟨u, v⟩ (the sums are rank one: O((n + m) d))."""

    def sum(self, u: np.ndarray, v: np.ndarray, c: np.ndarray) -> np.ndarray:
        """Σ_j c_j ⟨u_i, v_j⟩ = ⟨u_i, Σ_j c_j v_j⟩."""
        return u @ (c @ v)

    def sum_and_grad(
        self, u: np.ndarray, v: np.ndarray, c: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The sum and Σ_j c_j v_j at every row."""
        cv = c @ v
        return u @ cv, np.broadcast_to(cv, u.shape).copy()


def _norms(u: np.ndarray) -> np.ndarray:
    return np.sqrt(np.einsum("nk,nk->n", u, u))


#: Pair-matrix entries of one block of the ReLU sums, small enough for the dozen passes
#: over a block to run from cache (measured, one core, n = 2000 against 10⁵ neurons:
#: 4.9-5.5 ns per pair for 32k-128k entries and 2k-8k columns; 17.2 ns with the
#: 2·10⁶-entry row chunks before).
RELU_BLOCK = 131_072
#: At most this many columns (neurons v_j) in one block, so that a block has many rows.
RELU_BLOCK_COLUMNS = 2_048


def _units(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """|u_i| and u_i/|u_i| (0 for a zero row: its cos φ is 0, i.e. φ = π/2)."""
    norms = _norms(u)
    return norms, u / np.where(norms > 0.0, norms, 1.0)[:, None]


@dataclass(frozen=True)
class ReluKernel:
    """σ(s) = max(s, 0): the arc-cosine kernel (see the module docstring).

    The pair sums run over blocks of the pair matrix small enough to stay in cache
    (``RELU_BLOCK``, ``RELU_BLOCK_COLUMNS``), with every pass in place: the sums are bound by memory
    traffic, not by the arc cosine.
    """

    @staticmethod
    def _angles(
        unit_u: np.ndarray, unit_v: np.ndarray
    ) -> Iterator[tuple[slice, slice, np.ndarray, np.ndarray, np.ndarray]]:
        """Cos φ, sin φ and π - φ of the pairs, block by block of the pair matrix.

        Yields (rows, columns, cos, sin, rest) per block; the three arrays are views of
        work arrays reused by the next block, which the caller may overwrite.
        """
        n, m = len(unit_u), len(unit_v)
        width = min(max(m, 1), RELU_BLOCK_COLUMNS)
        height = min(max(n, 1), max(1, RELU_BLOCK // width))
        work = [np.empty(height * width) for _ in range(3)]
        for i, j in product(range(0, n, height), range(0, m, width)):
            rows, cols = slice(i, min(i + height, n)), slice(j, min(j + width, m))
            shape = (rows.stop - rows.start, cols.stop - cols.start)
            cos, sin, rest = (w[: shape[0] * shape[1]].reshape(shape) for w in work)
            np.matmul(unit_u[rows], unit_v[cols].T, out=cos)
            np.clip(cos, -1.0, 1.0, out=cos)
            np.multiply(cos, cos, out=sin)
            np.subtract(1.0, sin, out=sin)
            np.sqrt(sin, out=sin)
            np.arccos(cos, out=rest)
            np.subtract(np.pi, rest, out=rest)
            yield rows, cols, cos, sin, rest

    def sum(self, u: np.ndarray, v: np.ndarray, c: np.ndarray) -> np.ndarray:
        """Σ_j c_j |u_i||v_j|(sin φ + (π - φ) cos φ)/(2π)."""
        (nu, unit_u), (nv, unit_v) = _units(u), _units(v)
        cnv = c * nv
        out = np.zeros(len(u))
        for rows, cols, cos, sin, rest in self._angles(unit_u, unit_v):
            np.multiply(rest, cos, out=rest)
            np.add(sin, rest, out=sin)
            out[rows] += sin @ cnv[cols]
        return nu * out / (2.0 * np.pi)

    def sum_and_grad(
        self, u: np.ndarray, v: np.ndarray, c: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The sum and Σ_j c_j ((π - φ) v_j + |v_j| sin φ · u_i/|u_i|)/(2π)."""
        (nu, unit_u), (nv, unit_v) = _units(u), _units(v)
        cnv = c * nv
        sin_sum, cos_sum = np.zeros(len(u)), np.zeros(len(u))
        grad = np.zeros_like(u, dtype=float)
        for rows, cols, cos, sin, rest in self._angles(unit_u, unit_v):
            sin_sum[rows] += sin @ cnv[cols]
            np.multiply(rest, c[cols], out=rest)  # c_j (π - φ_ij)
            grad[rows] += rest @ v[cols]
            np.multiply(rest, cos, out=rest)
            cos_sum[rows] += rest @ nv[cols]
        grad += sin_sum[:, None] * unit_u
        return nu * (sin_sum + cos_sum) / (2.0 * np.pi), grad / (2.0 * np.pi)


@dataclass(frozen=True)
class ErfKernel:
    """σ(s) = erf(s): K = (2/π) arcsin(2⟨u, v⟩/√((1 + 2|u|²)(1 + 2|v|²)))."""

    def _z(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Z of every pair, and √(1 + 2|u|²), √(1 + 2|v|²)."""
        su = np.sqrt(1.0 + 2.0 * np.einsum("nk,nk->n", u, u))
        sv = np.sqrt(1.0 + 2.0 * np.einsum("nk,nk->n", v, v))
        return np.clip(2.0 * (u @ v.T) / np.outer(su, sv), -1.0, 1.0), su, sv

    def sum(self, u: np.ndarray, v: np.ndarray, c: np.ndarray) -> np.ndarray:
        """Σ_j c_j (2/π) arcsin z_ij."""
        out = np.empty(len(u))
        for rows in _chunks(len(u), len(v)):
            z, _, _ = self._z(u[rows], v)
            out[rows] = np.arcsin(z) @ c
        return out * (2.0 / np.pi)

    def sum_and_grad(
        self, u: np.ndarray, v: np.ndarray, c: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The sum and Σ_j c_j (2/π)(1 - z²)^{-½} ∇_u z_ij.

        ∇_u z = 2(v - 2⟨u, v⟩ u/(1 + 2|u|²))/(s_u s_v).
        """
        value, grad = np.empty(len(u)), np.empty_like(u, dtype=float)
        for rows in _chunks(len(u), len(v)):
            ur = u[rows]
            z, su, sv = self._z(ur, v)
            value[rows] = np.arcsin(z) @ c
            g = c / np.sqrt(np.maximum(1.0 - z * z, 1e-300)) * (2.0 / np.outer(su, sv))
            rho = ur @ v.T
            grad[rows] = g @ v - ((g * rho).sum(axis=1) * 2.0 / su**2)[:, None] * ur
        return value * (2.0 / np.pi), grad * (2.0 / np.pi)


@dataclass(frozen=True)
class SampledKernel:
    """K(u, v) = (1/M) Σ_s σ(⟨u, x_s⟩)σ(⟨v, x_s⟩) on a fixed sample (tanh)."""

    samples: np.ndarray

    @staticmethod
    def sigma(s: np.ndarray) -> np.ndarray:
        """The activation, tanh."""
        return np.tanh(s)

    @staticmethod
    def dsigma(s: np.ndarray) -> np.ndarray:
        """1 - tanh²."""
        return 1.0 - np.tanh(s) ** 2

    def _output(self, v: np.ndarray, c: np.ndarray) -> np.ndarray:
        """g(x_s) = Σ_j c_j σ(⟨v_j, x_s⟩) on the sample."""
        return self.sigma(self.samples @ v.T) @ c

    def sum(self, u: np.ndarray, v: np.ndarray, c: np.ndarray) -> np.ndarray:
        """(1/M) Σ_s σ(⟨u_i, x_s⟩) g(x_s)."""
        return self.sigma(self.samples @ u.T).T @ self._output(v, c) / len(self.samples)

    def sum_and_grad(
        self, u: np.ndarray, v: np.ndarray, c: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The sum and (1/M) Σ_s σ'(⟨u_i, x_s⟩) g(x_s) x_s."""
        g, pre = self._output(v, c), self.samples @ u.T
        m = len(self.samples)
        return self.sigma(pre).T @ g / m, (self.dsigma(pre) * g[:, None]).T @ self.samples / m


def make_kernel(activation: str, d: int, samples: int, seed: int) -> GaussianKernel:
    """The kernel of an activation; ``tanh`` draws its M × d sample from ``seed``."""
    if activation == "linear":
        return LinearKernel()
    if activation == "relu":
        return ReluKernel()
    if activation == "erf":
        return ErfKernel()
    assert activation == "tanh", activation  # the schema's choices
    rng = np.random.Generator(np.random.Philox(np.random.SeedSequence([seed, 1])))
    return SampledKernel(rng.standard_normal((samples, d)))


#: The activations of ``model.activation``.
ACTIVATIONS = ("linear", "relu", "tanh", "erf")


def teacher(model: dict) -> tuple[np.ndarray, np.ndarray]:
    """The teacher's output weights a* (K,) and neurons w* (K, d) of a validated ``[model]``.

    ``beta`` (linear only) is the teacher y = ⟨β*, x⟩, i.e. one neuron a* = 1, w* = β*.
    """
    if model["beta"] is not None:
        return np.ones(1), np.asarray(model["beta"], dtype=float)[None, :]
    w = np.asarray(model["teacher_w"], dtype=float).reshape(-1, model["d"])
    return np.asarray(model["teacher_a"], dtype=float), w


@dataclass(frozen=True)
class TwoLayerNetwork:
    """The model: kernel, teacher and regulariser; the terms and diagnostics derive from it.

    Attributes:
        kernel: K of the activation.
        teacher_a: a* (K,).
        teacher_w: w* (K, d).
        lam: λ of λ|θ|².
    """

    kernel: GaussianKernel
    teacher_a: np.ndarray
    teacher_w: np.ndarray
    lam: float

    @classmethod
    def from_case(cls, case: Case) -> TwoLayerNetwork | None:
        """``[model]`` of a validated case, or None without one."""
        model = case.section("model")
        if model is None:
            return None
        kernel = make_kernel(model["activation"], model["d"], model["samples"], model["seed"])
        a, w = teacher(model)
        return cls(kernel, a, w, model["lambda"])

    @functools.cached_property
    def teacher_norm2(self) -> float:
        """E[y²] = Σ_kl a*_k a*_l K(w*_k, w*_l)."""
        return float(
            self.teacher_a @ self.kernel.sum(self.teacher_w, self.teacher_w, self.teacher_a)
        )

    def correlation(self, theta: np.ndarray) -> np.ndarray:
        """E[y σ(⟨w, x⟩)] at each neuron θ = (a, w)."""
        return self.kernel.sum(theta[:, 1:], self.teacher_w, self.teacher_a)

    def output_norm2(self, theta: np.ndarray, weights: np.ndarray) -> float:
        """E[f_μ²] = Σ_ij w_i w_j a_i a_j K(w_i, w_j)."""
        c = weights * theta[:, 0]
        return float(c @ self.kernel.sum(theta[:, 1:], theta[:, 1:], c))

    def diagnostics(
        self, theta: np.ndarray, weights: np.ndarray, output_norm2: float | None = None
    ) -> dict[str, float]:
        """``risk`` R(μ) and ``alignment`` ⟨f_μ, y⟩/(‖f_μ‖‖y‖) in L²(N(0, I_d)).

        Args:
            theta: The neurons (N, 1+d).
            weights: Their weights (summing to 1).
            output_norm2: E[f_μ²] if already known (= 2 × the pair energy), else computed.
        """
        ff = self.output_norm2(theta, weights) if output_norm2 is None else output_norm2
        fy = float((weights * theta[:, 0]) @ self.correlation(theta))
        yy = self.teacher_norm2
        denom = np.sqrt(max(ff, 0.0) * yy)
        return {
            "risk": 0.5 * (yy - 2.0 * fy + ff),
            "alignment": fy / denom if denom > 0.0 else 0.0,
        }

    @property
    def potential(self) -> NetworkPotential:
        """The potential term V."""
        return NetworkPotential(self)

    @property
    def interaction(self) -> NetworkInteraction:
        """The pair term W."""
        return NetworkInteraction(self)


#: Relative step of the central differences of ∇V.
_FD_STEP = 1e-5


@dataclass(frozen=True)
class NetworkPotential:
    """V(θ) = ½E[y²] - a E[y σ(⟨w, x⟩)] + λ|θ|² (see the module docstring)."""

    network: TwoLayerNetwork

    @classmethod
    def from_case(cls, case: Case) -> NetworkPotential | None:
        """The potential of ``[model]``, or None without one."""
        network = TwoLayerNetwork.from_case(case)
        return None if network is None else network.potential

    def value(self, x: np.ndarray) -> np.ndarray:
        """V at neurons x (n, 1+d)."""
        x = np.atleast_2d(x)
        net = self.network
        reg = net.lam * np.einsum("nk,nk->n", x, x)
        return 0.5 * net.teacher_norm2 - x[:, 0] * net.correlation(x) + reg

    def gradient(self, x: np.ndarray) -> np.ndarray:
        """∇V = (-E[yσ], -a E[y σ'(⟨w, x⟩) x]) + 2λθ."""
        x = np.atleast_2d(x)
        net = self.network
        value, grad_w = net.kernel.sum_and_grad(x[:, 1:], net.teacher_w, net.teacher_a)
        grad = np.empty_like(x, dtype=float)
        grad[:, 0], grad[:, 1:] = -value, -x[:, :1] * grad_w
        return grad + 2.0 * net.lam * x

    def hessian(self, x: np.ndarray) -> np.ndarray:
        """∇²V (n, D, D) by central differences of ∇V, symmetrised."""
        x = np.atleast_2d(x).astype(float)
        n, dim = x.shape
        h = _FD_STEP * (1.0 + np.abs(x).max(initial=0.0))
        out = np.empty((n, dim, dim))
        for k in range(dim):
            e = np.zeros(dim)
            e[k] = h
            out[:, :, k] = (self.gradient(x + e) - self.gradient(x - e)) / (2.0 * h)
        return 0.5 * (out + out.transpose(0, 2, 1))

    def hessian_norm(self, x: np.ndarray) -> float:
        """Max over the neurons of ‖∇²V‖₂ (0 for no neurons)."""
        return largest_hessian_norm(self, x)

    def ufl_value(self, x: Any) -> Any:
        """Not on a mesh: the FE solvers refuse ``[model]`` cases."""
        raise NotImplementedError("a network potential lives in parameter space, not on a mesh")


@dataclass(frozen=True)
class NetworkInteraction:
    """W(θ, θ') = a a' K(w, w'), summed with the self pair (see the module docstring).

    The ``delta`` and ``method`` arguments of the radial interface are accepted and ignored:
    W is smooth (no mollifier) and the sums are exact.
    """

    network: TwoLayerNetwork
    singular: ClassVar[bool] = False
    gradient_flow: ClassVar[bool] = True
    #: The last (inputs, sums) of :meth:`_kernel_sums`, or empty.
    _memo: list = field(default_factory=list, compare=False, repr=False)

    def uses_local_stiffness(self, delta: float) -> bool:
        """False: :meth:`local_stiffness` has nothing to offer (no bound exists)."""
        return False

    def velocity_at(
        self, points: np.ndarray, sources: np.ndarray, weights: np.ndarray, *_: Any
    ) -> np.ndarray:
        """The velocity -Σ_j w_j ∇₁W(θ_i, θ_j) that the risk's pair term gives neuron i."""
        return -self.gradient_at(points, sources, weights)

    def mollifier(self, length: float) -> float:
        """0: W is smooth."""
        return 0.0

    def stiffness(self, mass: float, radius: float, delta: float = 0.0) -> float:
        """0: no global Lipschitz bound exists; the case's τ (or ``dt``) is the step."""
        return 0.0

    def local_stiffness(
        self, points: np.ndarray, sources: np.ndarray, weights: np.ndarray, *_: Any
    ) -> np.ndarray:
        """Zeros (see :meth:`stiffness`)."""
        return np.zeros(len(points))

    def _kernel_sums(
        self, points: np.ndarray, sources: np.ndarray, weights: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Σ_j c_j K(w_i, w_j) and Σ_j c_j ∇_u K(w_i, w_j), c_j = w_j a_j, at ``points``.

        The last call's inputs and sums are kept: the energy at the end of a step and
        the velocity at the start of the next are taken at the same neurons, so the
        O(N²) pass is done once for both (a third of the ReLU teacher's cost per step).
        """
        memo = self._memo
        if memo and all(
            np.array_equal(x, y) for x, y in zip(memo[0], (points, sources, weights), strict=True)
        ):
            return memo[1]
        c = weights * sources[:, 0]
        sums = self.network.kernel.sum_and_grad(points[:, 1:], sources[:, 1:], c)
        memo[:] = [(points.copy(), sources.copy(), weights.copy()), sums]
        return sums

    def potential_at(
        self, points: np.ndarray, sources: np.ndarray, weights: np.ndarray, *_: Any
    ) -> np.ndarray:
        """Σ_j w_j W(θ_i, θ_j) = a_i Σ_j w_j a_j K(w_i, w_j) at ``points``."""
        return points[:, 0] * self._kernel_sums(points, sources, weights)[0]

    def gradient_at(
        self, points: np.ndarray, sources: np.ndarray, weights: np.ndarray, *_: Any
    ) -> np.ndarray:
        """Σ_j w_j ∇₁W(θ_i, θ_j) = (Σ_j w_j a_j K, a_i Σ_j w_j a_j ∇_u K) at ``points``."""
        value, grad_w = self._kernel_sums(points, sources, weights)
        grad = np.empty_like(points, dtype=float)
        grad[:, 0], grad[:, 1:] = value, points[:, :1] * grad_w
        return grad

    def energy(self, x: np.ndarray, w: np.ndarray, *_: Any) -> float:
        """½ Σ_ij w_i w_j W(θ_i, θ_j) = ½E[f_μ²]."""
        return 0.5 * float(w @ self.potential_at(x, x, w))
