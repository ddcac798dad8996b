"""Sampling by the reversed Fokker–Planck flow: noise at T → data at 0 (diffusion models).

The linear Fokker–Planck equation ∂_t ρ = div(ρ∇(D log ρ + V)), V = ½(x-c)ᵀA(x-c) with A
positive definite, takes any data law ρ₀ towards its stationary law π = N(c, D A⁻¹) (the
Ornstein–Uhlenbeck flow of diffusion models).  Its Lagrangian velocity is

    v_t(x) = -∇V(x) - D ∇log ρ_t(x),

so the probability-flow ODE ẋ = v_t(x) transports ρ_t to ρ_s for any s, t; run from t = T
down to 0 it turns samples of ρ_T (≈ π) into samples of ρ₀.  Only the score ∇log ρ_t is
unknown; :func:`probability_flow` takes it as a function ``score(t, x)``, from

* :class:`MixtureScore`: the closed form of a Gaussian-mixture case (every ρ_t is a mixture);
* :class:`GridScore`: ∇log ρ_h of densities on a tensor grid at snapshot times (an FE run's
  sampled snapshots), by central differences of log ρ_h, linear in space and time;
* :class:`KernelScore`: ∇log(φ_ε * ρᴺ) of weighted particles at snapshot times (a forward
  blob or Langevin run), the blob method's mollified score.

The stochastic alternative is the reverse-time SDE (Anderson 1982)
dX = [-∇V - 2D ∇log ρ_t] dt + √(2D) dW̄ backward in t (:func:`reverse_sde`).

Every rank integrates *all* samples (the work is small next to the forward run): the
adaptive step of one joint system and the noise streams then do not depend on the number
of ranks, and neither do the samples.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.integrate import solve_ivp
from scipy.interpolate import RegularGridInterpolator
from scipy.spatial import cKDTree

from wgf.cases import Case
from wgf.cases import closed_forms as cf
from wgf.cases.errors import UserError
from wgf.solvers.particles.kernels import CUTOFF

#: A score ∇log ρ_t at points (n, d): ``score(t, x) -> (n, d)``.
Score = Callable[[float, np.ndarray], np.ndarray]

#: Methods of :func:`probability_flow`: SciPy's adaptive pairs, or our fixed-step RK4.
METHODS = ("RK45", "DOP853", "rk4")
#: Nodes per kernel width √ε of a tabulated kernel score (linear interpolation).
NODES_PER_WIDTH = 4


@dataclass(frozen=True)
class OrnsteinUhlenbeck:
    """The forward flow's drift and noise: V = ½(x-c)ᵀA(x-c), diffusivity D.

    Attributes:
        A: The potential's matrix (symmetric positive definite).
        center: Its centre c.
        diffusivity: D.
    """

    A: np.ndarray
    center: np.ndarray
    diffusivity: float

    @classmethod
    def of(cls, case: Case) -> OrnsteinUhlenbeck:
        """The flow of a case; refuses one without linear diffusion and a confining quadratic V."""
        energy = case.config["energy"]
        quadratic = case.potential()
        if energy["internal"] != "entropy" or quadratic is None:
            raise UserError(
                'sample: the case needs energy.internal = "entropy" and a quadratic '
                "[energy.potential] (A, center): the forward flow must be Ornstein–Uhlenbeck"
            )
        A, c = quadratic
        if np.linalg.eigvalsh(A).min() <= 0.0:
            raise UserError(
                "sample: energy.potential.A must be positive definite (the noise law "
                "N(c, D A⁻¹) of the forward flow)"
            )
        return cls(A=A, center=c, diffusivity=float(energy["diffusivity"]))

    def grad_v(self, x: np.ndarray) -> np.ndarray:
        """∇V(x) = A(x - c), points (n, d)."""
        return (x - self.center) @ self.A.T

    @property
    def stationary_cov(self) -> np.ndarray:
        """Covariance D A⁻¹ of the stationary law π."""
        return self.diffusivity * np.linalg.inv(self.A)

    def noise(self, n: int, seed: int) -> np.ndarray:
        """N samples of π = N(c, D A⁻¹) (Philox stream of ``seed``: the same on every rank)."""
        rng = np.random.Generator(np.random.Philox(np.random.SeedSequence(seed)))
        chol = np.linalg.cholesky(self.stationary_cov)
        return self.center + rng.standard_normal((n, len(self.center))) @ chol.T

    def kl_to_noise(self, weights: np.ndarray, means: np.ndarray, covs: np.ndarray) -> float:
        """An upper bound on KL(ρ‖π) for a mixture ρ = Σ w_k N(μ_k, Σ_k).

        KL is jointly convex, so KL(Σ w_k N_k ‖ π) ≤ Σ w_k KL(N_k ‖ π), each term the
        Gaussian formula ½[tr(S⁻¹Σ_k) + (μ_k-c)ᵀS⁻¹(μ_k-c) - d + log(det S/det Σ_k)].
        """
        s = self.stationary_cov
        s_inv, (_, logdet_s) = np.linalg.inv(s), np.linalg.slogdet(s)
        total = 0.0
        for w, mean, cov in zip(weights, means, covs, strict=True):
            diff = mean - self.center
            _, logdet = np.linalg.slogdet(cov)
            total += (
                w
                * 0.5
                * (np.trace(s_inv @ cov) + diff @ s_inv @ diff - len(diff) + logdet_s - logdet)
            )
        return float(max(total, 0.0))


# -- scores --------------------------------------------------------------------------------
@dataclass
class MixtureScore:
    """The exact score of an ``exact.kind = "gaussian_mixture"`` case, ∇log ρ_t in closed form."""

    case: Case

    def __call__(self, t: float, x: np.ndarray) -> np.ndarray:
        """∇log ρ_t(x) = -Σ_k r_k(x) Σ_k(t)⁻¹(x - μ_k(t))."""
        return cf.mixture_score(x, *self.case.mixture(t))


def _time_weights(times: np.ndarray, t: float) -> tuple[int, float]:
    """Index k and weight θ with t = (1-θ) t_k + θ t_{k+1} (clamped to the snapshot range)."""
    t = min(max(t, times[0]), times[-1])
    k = int(np.clip(np.searchsorted(times, t, side="right") - 1, 0, len(times) - 2))
    span = times[k + 1] - times[k]
    return k, float((t - times[k]) / span) if span > 0 else 0.0


class GridScore:
    """∇log ρ_h from densities sampled on a tensor grid at snapshot times.

    At every snapshot, log max(ρ_h, floor) is differenced centrally on the grid (one-sided
    at its edges: ``np.gradient``, second order inside), which is the score at the grid
    points to O(h²); between grid points it is interpolated linearly, between snapshots
    linearly in t.  A point outside the grid takes the score at the nearest grid point:
    the forward run's box must hold the samples (it holds ρ_t by the cases' own rule).
    The floor (``floor`` × the snapshot's maximum) keeps log ρ_h finite where the discrete
    density has underflowed or dipped below zero.

    Args:
        times: Snapshot times (n_snap,), increasing.
        axes: The grid's coordinates along each axis.
        densities: ρ_h at the grid points, (n_snap, n_points), in ``np.meshgrid(...,
            indexing="ij")`` order.
        floor: The relative floor under ρ_h.
    """

    def __init__(
        self,
        times: np.ndarray,
        axes: list[np.ndarray],
        densities: np.ndarray,
        floor: float = 1e-12,
    ) -> None:
        if len(times) < 2:
            raise UserError("sample: the forward run has fewer than 2 snapshots (output.snapshots)")
        self.times = np.asarray(times, dtype=float)
        self.axes = axes
        self.lower = np.array([a[0] for a in axes])
        self.upper = np.array([a[-1] for a in axes])
        shape = tuple(len(a) for a in axes)
        self.interpolants = []
        for rho in densities:
            log_rho = np.log(np.maximum(rho, floor * rho.max())).reshape(shape)
            grads = np.gradient(log_rho, *axes, edge_order=2)
            grads = grads if isinstance(grads, list | tuple) else [grads]
            values = np.stack(grads, axis=-1)
            self.interpolants.append(RegularGridInterpolator(axes, values, method="linear"))

    def __call__(self, t: float, x: np.ndarray) -> np.ndarray:
        """The score at (t, x), linear in space and in t."""
        k, theta = _time_weights(self.times, t)
        inside = np.clip(x, self.lower, self.upper)
        score = (1.0 - theta) * self.interpolants[k](inside)
        if theta > 0.0:
            score += theta * self.interpolants[k + 1](inside)
        return score


def kernel_score(points: np.ndarray, x: np.ndarray, weights: np.ndarray, eps: float) -> np.ndarray:
    """∇log ρ_ε(p) of ρ_ε = Σ_j w_j φ_ε(p - x_j) (φ_ε the Gaussian of variance ε).

    ∇log ρ_ε(p) = -Σ_j w_j φ_ε(p - x_j)(p - x_j) / (ε Σ_j w_j φ_ε(p - x_j)), with the
    pairs within 6√ε (the dropped kernel values are below e⁻¹⁸ of the peak).  A point
    with no particle that near is attracted by the nearest one, -(p - x_near)/ε, the
    limit of the formula far from the cloud.
    """
    radius = 6.0 * np.sqrt(eps)
    tree = cKDTree(x)
    found = cKDTree(points).sparse_distance_matrix(tree, radius, output_type="ndarray")
    i, j, r = found["i"], found["j"], found["v"]
    kern = weights[j] * np.exp(-0.5 * r * r / eps)
    mass = np.bincount(i, weights=kern, minlength=len(points))
    pull = np.stack(
        [np.bincount(i, weights=kern * x[j, a], minlength=len(points)) for a in range(x.shape[1])],
        axis=1,
    )
    score = np.empty_like(points, dtype=float)
    some = mass > 0.0
    score[some] = (pull[some] / mass[some, None] - points[some]) / eps
    if not np.all(some):
        _, nearest = tree.query(points[~some])
        score[~some] = (x[nearest] - points[~some]) / eps
    return score


def mass_spacing(x: np.ndarray, weights: np.ndarray) -> float:
    """The mass-weighted median distance of a particle to its nearest neighbour.

    A weighted lattice (the blob method's start) puts many light particles where ρ₀ is
    small; the forward flow squeezes those into thin sheets between the modes while it
    spreads the heavy particles of the modes apart.  The plain median then measures the
    crowded light particles (it fell from 0.17 to 0.08 along the 2-D benchmark run while
    the heavy particles moved apart), and a kernel that narrow is rough where the mass
    is.  Weighting each distance by the particle's mass measures the spacing of the
    particles that carry the density.
    """
    dist = cKDTree(x).query(x, k=2)[0][:, 1]
    order = np.argsort(dist, kind="stable")
    cumulative = np.cumsum(weights[order])
    return float(dist[order][np.searchsorted(cumulative, 0.5 * cumulative[-1])])


def _axis_factors(
    axis: np.ndarray, coordinate: np.ndarray, eps: float
) -> tuple[sparse.csr_matrix, sparse.csr_matrix]:
    """exp(-(a - x_j)²/2ε) and its a-derivative, (N, n) sparse: cut off at CUTOFF·√ε."""
    diff = axis[None, :] - coordinate[:, None]
    kern = np.where(diff * diff <= CUTOFF**2 * eps, np.exp(-0.5 * diff * diff / eps), 0.0)
    return sparse.csr_matrix(kern), sparse.csr_matrix(-diff / eps * kern)


class TabulatedKernelScore:
    """:func:`kernel_score` of one particle set, tabulated on a grid and interpolated.

    The direct sum costs one kernel per (point, particle) pair within 6√ε, hundreds per
    point, at every evaluation of the ODE's velocity.  The Gaussian factorises over the
    coordinates, so on a tensor grid both ρ_ε and ∇ρ_ε are products of one-dimensional
    kernel matrices (as :func:`~wgf.solvers.particles.kernels.density_on_grid`), made once
    per snapshot; an evaluation is then a linear interpolation, independent of N.

    The grid covers the particles and CUTOFF·√ε around them with ``NODES_PER_WIDTH`` nodes
    per √ε.  The score ∇ρ_ε/ρ_ε (not ρ_ε) is interpolated: it is close to linear where a
    mode dominates, and its interpolation error is O((h/√ε)²) relative to its variation
    over √ε.  Nodes where the cut-off sum vanishes, and points off the grid, use the
    direct :func:`kernel_score` (the nearest-particle pull there).  One- and
    two-dimensional sets only (a 3-D table would cost n³ nodes).

    Args:
        x: Particle positions (N, d), d ≤ 2.
        weights: Their weights (N,).
        eps: The kernel variance ε.
    """

    def __init__(self, x: np.ndarray, weights: np.ndarray, eps: float) -> None:
        if x.shape[1] > 2:
            raise ValueError("TabulatedKernelScore: 1-D and 2-D particle sets only")
        self.x, self.weights, self.eps = x, weights, eps
        width = np.sqrt(eps)
        self.lower = x.min(axis=0) - CUTOFF * width
        self.upper = x.max(axis=0) + CUTOFF * width
        nodes = np.ceil((self.upper - self.lower) / width * NODES_PER_WIDTH).astype(int) + 1
        self.axes = [
            np.linspace(lo, hi, n) for lo, hi, n in zip(self.lower, self.upper, nodes, strict=True)
        ]
        pairs = [_axis_factors(a, x[:, k], eps) for k, a in enumerate(self.axes)]
        weighted = sparse.diags(weights)
        if len(self.axes) == 1:
            ((kern, slope),) = pairs
            rho = kern.T @ weights
            grads = [slope.T @ weights]
        else:
            (kx, sx), (ky, sy) = pairs
            left = (weighted @ kx).T.tocsr()
            rho = (left @ ky).toarray()
            grads = [((weighted @ sx).T @ ky).toarray(), (left @ sy).toarray()]
        shape = tuple(len(a) for a in self.axes)
        rho = np.asarray(rho).reshape(shape)
        score = np.stack([np.asarray(g).reshape(shape) for g in grads], axis=-1)
        empty = rho <= 0.0
        score[~empty] /= rho[~empty][:, None]
        if np.any(empty):
            grid = np.stack(np.meshgrid(*self.axes, indexing="ij"), axis=-1)
            score[empty] = kernel_score(grid[empty], x, weights, eps)
        self.table = RegularGridInterpolator(self.axes, score, method="linear")

    def __call__(self, points: np.ndarray) -> np.ndarray:
        """The score at points (n, d): the table inside its grid, the direct sum outside."""
        inside = np.all((points >= self.lower) & (points <= self.upper), axis=1)
        if np.all(inside):
            return self.table(points)
        score = np.empty_like(points, dtype=float)
        score[inside] = self.table(points[inside])
        score[~inside] = kernel_score(points[~inside], self.x, self.weights, self.eps)
        return score


class KernelScore:
    """The mollified score of a forward particle run, linear in t between snapshots.

    At snapshot k the score is ∇log(φ_ε * ρᴺ) (:func:`kernel_score`) with ε_k = κ h_k²,
    h_k the mass-weighted median nearest-neighbour spacing of the particles then
    (:func:`mass_spacing`): the blob method's own scaling of ε with the spacing (κ = 2,
    its default without the small L^δ factor).  In 1-D and 2-D the score of a snapshot
    is tabulated when first needed (:class:`TabulatedKernelScore`).

    Args:
        times: Snapshot times (n_snap,).
        positions: Particle positions at each snapshot, (n_snap, N, d).
        weights: Particle weights (N,).
        kappa: ε_k = κ h_k².
        tabulate: Tabulate the scores (1-D, 2-D); False: the direct sum at every call.
    """

    def __init__(
        self,
        times: np.ndarray,
        positions: np.ndarray,
        weights: np.ndarray,
        kappa: float = 2.0,
        tabulate: bool = True,
    ) -> None:
        if len(times) < 2:
            raise UserError("sample: the forward run has fewer than 2 snapshots (output.snapshots)")
        self.times = np.asarray(times, dtype=float)
        self.positions, self.weights = positions, weights / weights.sum()
        self.eps = np.array([kappa * mass_spacing(x, self.weights) ** 2 for x in positions])
        self.tabulate = tabulate and positions.shape[2] <= 2
        self._tables: dict[int, TabulatedKernelScore] = {}

    def snapshot_score(self, k: int, x: np.ndarray) -> np.ndarray:
        """The kernel score of snapshot k at points x."""
        if not self.tabulate:
            return kernel_score(x, self.positions[k], self.weights, self.eps[k])
        if k not in self._tables:
            self._tables[k] = TabulatedKernelScore(self.positions[k], self.weights, self.eps[k])
        return self._tables[k](x)

    def __call__(self, t: float, x: np.ndarray) -> np.ndarray:
        """The score at (t, x), linear in t between the snapshots' kernel scores."""
        k, theta = _time_weights(self.times, t)
        score = (1.0 - theta) * self.snapshot_score(k, x)
        if theta > 0.0:
            score += theta * self.snapshot_score(k + 1, x)
        return score


# -- integrators ---------------------------------------------------------------------------
Velocity = Callable[[float, np.ndarray], np.ndarray]


def flow_velocity(flow: OrnsteinUhlenbeck, score: Score) -> Velocity:
    """The probability-flow velocity v_t(x) = -∇V(x) - D score(t, x), points (n, d)."""

    def velocity(t: float, x: np.ndarray) -> np.ndarray:
        return -flow.grad_v(x) - flow.diffusivity * score(t, x)

    return velocity


def rk4(
    velocity: Callable[[float, np.ndarray], np.ndarray],
    x: np.ndarray,
    t_from: float,
    t_to: float,
    steps: int,
) -> np.ndarray:
    """The classical fourth-order Runge–Kutta method, ``steps`` equal steps from t_from to t_to.

    Global error O(Δt⁴) for a smooth velocity; ``t_to < t_from`` integrates backward.
    """
    dt = (t_to - t_from) / steps
    t = t_from
    for n in range(steps):
        k1 = velocity(t, x)
        k2 = velocity(t + 0.5 * dt, x + 0.5 * dt * k1)
        k3 = velocity(t + 0.5 * dt, x + 0.5 * dt * k2)
        k4 = velocity(t + dt, x + dt * k3)
        x = x + dt / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
        t = t_from + (n + 1) * dt
    return x


@dataclass
class Trajectories:
    """Samples along the backward flow.

    Attributes:
        time: The output times, decreasing from T to 0.
        positions: The samples at each, (n_times, N, d); ``positions[-1]`` are the
            generated samples.
        evaluations: How many times the score was evaluated (per sample set).
        method: The integrator.
    """

    time: np.ndarray
    positions: np.ndarray
    evaluations: int
    method: str

    @property
    def samples(self) -> np.ndarray:
        """The samples at t = 0."""
        return self.positions[-1]


def probability_flow(
    flow: OrnsteinUhlenbeck,
    score: Score,
    x_end: np.ndarray,
    t_end: float,
    times: np.ndarray | None = None,
    method: str = "RK45",
    rtol: float = 1e-8,
    atol: float = 1e-8,
    steps: int = 200,
) -> Trajectories:
    """Integrate the probability-flow ODE ẋ = -∇V - D score(t, x) from t_end down to 0.

    Args:
        flow: The forward Ornstein–Uhlenbeck flow.
        score: ∇log ρ_t as ``score(t, x)``.
        x_end: Samples (N, d) at t_end (of ρ_T, or of the noise law π ≈ ρ_T).
        t_end: T.
        times: Output times, decreasing from T to 0 (default: T and 0).
        method: ``"RK45"``/``"DOP853"`` (SciPy, error control by ``rtol``/``atol`` on all
            samples as one system, so the step does not depend on how they are split) or
            ``"rk4"`` (ours, ``steps`` equal steps over [0, T], order 4).
        rtol: Relative tolerance of the adaptive methods.
        atol: Absolute tolerance of the adaptive methods.
        steps: Steps of ``rk4`` over [0, T].

    Returns:
        The trajectories at ``times``.
    """
    if method not in METHODS:
        raise UserError(f"sample: method {method!r} is not one of {', '.join(METHODS)}")
    times = np.array([t_end, 0.0]) if times is None else np.asarray(times, dtype=float)
    x_end = np.asarray(x_end, dtype=float)
    shape = x_end.shape
    calls = 0
    field = flow_velocity(flow, score)

    def velocity(t: float, x: np.ndarray) -> np.ndarray:
        nonlocal calls
        calls += 1
        return field(t, x)

    if method == "rk4":
        out, x, t = [x_end], x_end, t_end
        for t_next in times[1:]:
            n = max(1, round(steps * (t - t_next) / t_end))
            x = rk4(velocity, x, t, t_next, n)
            out.append(x)
            t = t_next
        return Trajectories(times, np.array(out), calls, f"rk4 ({steps} steps)")

    def flat(t: float, y: np.ndarray) -> np.ndarray:
        return velocity(t, y.reshape(shape)).ravel()

    sol = solve_ivp(
        flat, (t_end, times[-1]), x_end.ravel(), method=method, t_eval=times, rtol=rtol, atol=atol
    )
    if not sol.success:
        raise UserError(f"sample: the ODE integrator failed: {sol.message}")
    positions = sol.y.T.reshape(len(times), *shape)
    return Trajectories(times, positions, calls, f"{method} (rtol {rtol:g}, atol {atol:g})")


def sde_noise(seed: int, step: int, shape: tuple[int, ...]) -> np.ndarray:
    """The standard normals of reverse step ``step``: stream Philox(SeedSequence([seed, step])).

    Every rank draws the whole array, so the samples do not depend on the number of ranks
    (as in :mod:`~wgf.solvers.particles.langevin`).
    """
    stream = np.random.Philox(np.random.SeedSequence([seed, step]))
    return np.random.Generator(stream).standard_normal(shape)


def reverse_sde(
    flow: OrnsteinUhlenbeck,
    score: Score,
    x_end: np.ndarray,
    t_end: float,
    steps: int,
    seed: int,
    times: np.ndarray | None = None,
) -> Trajectories:
    """Euler–Maruyama for the reverse-time SDE, from t_end down to 0 in ``steps`` steps.

    In the reverse time s = T - t, Y_s = X_{T-s} solves
    dY = [∇V(Y) + 2D score(T-s, Y)] ds + √(2D) dW_s (Anderson 1982); its law at s is ρ_{T-s}.
    Weak order 1 in the step; each step uses one score evaluation (the ODE's RK4 four).
    The snapshot at each output time is the state at the nearest step.
    """
    times = np.array([t_end, 0.0]) if times is None else np.asarray(times, dtype=float)
    ds = t_end / steps
    keep = {round((t_end - t) / ds): i for i, t in enumerate(times)}
    out = np.empty((len(times), *x_end.shape))
    y = np.asarray(x_end, dtype=float).copy()
    sigma = np.sqrt(2.0 * flow.diffusivity * ds)
    for n in range(steps + 1):
        if n in keep:
            out[keep[n]] = y
        if n == steps:
            break
        t = t_end - n * ds
        drift = flow.grad_v(y) + 2.0 * flow.diffusivity * score(t, y)
        y = y + ds * drift + sigma * sde_noise(seed, n, y.shape)
    return Trajectories(times, out, steps, f"reverse SDE, Euler–Maruyama ({steps} steps)")


def mixture_samples(
    weights: np.ndarray, means: np.ndarray, covs: np.ndarray, n: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """N i.i.d. samples of Σ w_k N(μ_k, Σ_k) and the component each came from.

    Returns:
        The samples (N, d) and their component labels (N,).
    """
    rng = np.random.Generator(np.random.Philox(np.random.SeedSequence(seed)))
    labels = rng.choice(len(weights), size=n, p=weights)
    z = rng.standard_normal((n, means.shape[1]))
    chols = np.linalg.cholesky(covs)
    return means[labels] + np.einsum("nij,nj->ni", chols[labels], z), labels
