"""Closed-form solutions (DESIGN §5), as NumPy functions of points ``x`` of shape (n, d).

These are the references every solver is verified against, and the initial data of
the shipped cases.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
from scipy.linalg import sqrtm
from scipy.optimize import brentq
from scipy.special import gammaln, logsumexp, ndtr

Array = npt.NDArray[np.float64]

#: Gauss–Legendre points per panel, and panels per direction, of :func:`box_quadrature`.
GAUSS_POINTS = 4
PANELS = {1: 2000, 2: 300, 3: 30}


def quadratic_potential(x: Array, A: Array, center: Array) -> Array:
    """V(x) = ½(x-c)ᵀA(x-c) at the points ``x`` (n, d)."""
    y = np.atleast_2d(x) - center
    return 0.5 * np.einsum("ni,ij,nj->n", y, A, y)


def gaussian_density(x: Array, mean: Array, cov: Array, mass: float = 1.0) -> Array:
    """Density of ``mass · N(mean, cov)`` at the points ``x`` (n, d)."""
    d = mean.size
    diff = np.atleast_2d(x) - mean
    cinv = np.linalg.inv(cov)
    quad = np.einsum("ni,ij,nj->n", diff, cinv, diff)
    norm = np.sqrt((2.0 * np.pi) ** d * np.linalg.det(cov))
    return mass * np.exp(-0.5 * quad) / norm


def uniform_disk(x: Array, center: Array, radius: float, mass: float = 1.0) -> Array:
    """The uniform density of ``mass`` on the disk |x - center| ≤ radius (2-D).

    The steady state of the swarming flow with W = κ(r²/2 - log r): ΔW = κ(2 - 2πδ), so
    ∇(W∗ρ) = 0 on the support needs 2M = 2πρ, ρ = M/π, and M = ρπR² gives R = 1.
    """
    inside = np.sum((np.atleast_2d(x) - center) ** 2, axis=1) <= radius**2
    return np.where(inside, mass / (np.pi * radius**2), 0.0)


def ou_moments(
    t: float, mean0: Array, cov0: Array, A: Array, center: Array, diffusivity: float
) -> tuple[Array, Array]:
    """Mean and covariance at time t of the linear Fokker–Planck flow with V = ½(x-c)ᵀA(x-c).

    Uses the eigen-decomposition of the symmetric A, so that A = 0 (heat) and a
    semidefinite A need no special case: the factor (1 - e^{-2λt})/λ tends to 2t.
    """
    lam, q = np.linalg.eigh(A)
    decay = q @ np.diag(np.exp(-lam * t)) @ q.T
    with np.errstate(divide="ignore", invalid="ignore"):
        growth = np.where(np.abs(lam * t) > 1e-12, -np.expm1(-2.0 * lam * t) / lam, 2.0 * t)
    mean = center + decay @ (mean0 - center)
    cov = decay @ cov0 @ decay.T + diffusivity * q @ np.diag(growth) @ q.T
    return mean, 0.5 * (cov + cov.T)


def barenblatt_constants(m: float, d: int, mass: float) -> tuple[float, float, float]:
    """Return (alpha, k, C) of the Barenblatt profile of ∂_t ρ = Δρ^m in R^d with mass M."""
    p = 1.0 / (m - 1.0)
    alpha = d / (d * (m - 1.0) + 2.0)
    k = alpha * (m - 1.0) / (2.0 * m * d)
    log_c = (
        np.log(mass)
        + 0.5 * d * np.log(k)
        + gammaln(p + 1.0 + 0.5 * d)
        - 0.5 * d * np.log(np.pi)
        - gammaln(p + 1.0)
    ) / (p + 0.5 * d)
    return alpha, k, float(np.exp(log_c))


def barenblatt(
    x: Array, s: float, m: float, mass: float = 1.0, center: Array | None = None
) -> Array:
    """Barenblatt solution of ∂_t ρ = Δρ^m at time s (s = D·t for diffusivity D).

    ρ = s^{-α} (C - k |x-c|² s^{-2α/d})_+^{1/(m-1)}.
    """
    x = np.atleast_2d(x)
    d = x.shape[1]
    c = np.zeros(d) if center is None else center
    alpha, k, big_c = barenblatt_constants(m, d, mass)
    # Coordinate by coordinate and in place: half the time of einsum on (x - c) at the
    # 1.6 million quadrature points of the 256² error diagnostics, evaluated every step.
    r2 = np.zeros(len(x))
    for axis in range(d):
        r2 += np.square(x[:, axis] - c[axis])
    base = big_c - (k * s ** (-2.0 * alpha / d)) * r2
    np.maximum(base, 0.0, out=base)
    if m != 2.0:
        np.power(base, 1.0 / (m - 1.0), out=base)
    base *= s ** (-alpha)
    return base


def barenblatt_radius(s: float, m: float, d: int, mass: float = 1.0) -> float:
    """Radius of the support of the Barenblatt profile at time s."""
    alpha, k, big_c = barenblatt_constants(m, d, mass)
    return float(np.sqrt(big_c / k) * s ** (alpha / d))


def nonlinear_fp_time(t: float, s0: float, a: float, m: float, d: int, diffusivity: float) -> float:
    """Barenblatt time s(t) of the nonlinear Fokker–Planck solution (DESIGN §5)."""
    rate = (d * (m - 1.0) + 2.0) * a
    return s0 + diffusivity * np.expm1(rate * t) / rate


def nonlinear_fp(
    x: Array,
    t: float,
    s0: float,
    a: float,
    m: float,
    diffusivity: float,
    mass: float = 1.0,
    center: Array | None = None,
) -> Array:
    """Solution of ∂_t ρ = DΔρ^m + a div((x-c)ρ) from the Barenblatt profile at s0.

    ρ(t, x) = e^{dat} u(s(t), e^{at}(x-c)), u the D = 1 Barenblatt solution; this
    scaling needs D = 1 inside u only because D enters through s(t).
    """
    x = np.atleast_2d(x)
    d = x.shape[1]
    c = np.zeros(d) if center is None else center
    s = nonlinear_fp_time(t, s0, a, m, d, diffusivity)
    y = np.exp(a * t) * (x - c)
    return np.exp(d * a * t) * barenblatt(y, s, m, mass)


def w2_gaussians(mean1: Array, cov1: Array, mean2: Array, cov2: Array) -> float:
    """Exact W2 distance between N(mean1, cov1) and N(mean2, cov2)."""
    r2 = np.real(sqrtm(cov2))
    cross = np.real(sqrtm(r2 @ cov1 @ r2))
    w2sq = float(np.sum((mean1 - mean2) ** 2) + np.trace(cov1 + cov2 - 2.0 * cross))
    return float(np.sqrt(max(w2sq, 0.0)))


def gaussian_geodesic(
    t: float, mean1: Array, cov1: Array, mean2: Array, cov2: Array
) -> tuple[Array, Array]:
    """Mean and covariance at t ∈ [0, 1] of the W2 geodesic from N(mean1, cov1) to N(mean2, cov2).

    μ_t = (1-t)μ1 + tμ2, Σ_t = ((1-t)I + tT) Σ1 ((1-t)I + tT) with the optimal map
    T = Σ1^{-½}(Σ1^{½} Σ2 Σ1^{½})^{½} Σ1^{-½}.
    """
    r1 = np.real(sqrtm(cov1))
    r1inv = np.linalg.inv(r1)
    T = r1inv @ np.real(sqrtm(r1 @ cov2 @ r1)) @ r1inv
    L = (1.0 - t) * np.eye(len(mean1)) + t * T
    cov = L @ cov1 @ L
    return (1.0 - t) * mean1 + t * mean2, 0.5 * (cov + cov.T)


def w2_1d(density1, density2, lower: float, upper: float, n: int = 200_001) -> float:
    """W2 between two densities on [lower, upper] (normalised there), by quantile functions.

    W2² = ∫_0^1 |F1^{-1}(u) - F2^{-1}(u)|² du; the CDFs are integrated with the trapezoidal
    rule on n points and inverted by linear interpolation, the u-integral by the midpoint
    rule on n points (accurate to ~1e-8 for smooth densities on the default grid).
    """
    x = np.linspace(lower, upper, n)
    u = (np.arange(n - 1) + 0.5) / (n - 1)
    quantiles = []
    for density in (density1, density2):
        f = np.asarray(density(x[:, None]), dtype=float)
        cdf = np.concatenate([[0.0], np.cumsum(0.5 * (f[1:] + f[:-1]) * np.diff(x))])
        cdf /= cdf[-1]
        keep = np.concatenate([[True], np.diff(cdf) > 0.0])  # strictly increasing for interp
        quantiles.append(np.interp(u, cdf[keep], x[keep]))
    return float(np.sqrt(np.mean((quantiles[0] - quantiles[1]) ** 2)))


def box_quadrature(lower: Array, upper: Array) -> tuple[Array, Array]:
    """Points (n, d) and weights of a composite Gauss–Legendre rule on the box.

    :data:`PANELS` panels per direction with :data:`GAUSS_POINTS` points each: exact to
    ~1e-12 for the smooth integrands of the shipped cases, O(h²) across a kink (the edge
    of a compact support), h the panel width.
    """
    d = len(lower)
    g, gw = np.polynomial.legendre.leggauss(GAUSS_POINTS)
    axes, weights = [], []
    for lo, hi in zip(lower, upper, strict=True):
        edges = np.linspace(lo, hi, PANELS[d] + 1)
        half = 0.5 * np.diff(edges)[:, None]
        axes.append((0.5 * (edges[:-1] + edges[1:])[:, None] + half * g).ravel())
        weights.append((half * gw).ravel())
    grid = np.meshgrid(*axes, indexing="ij")
    w = weights[0]
    for wk in weights[1:]:
        w = np.multiply.outer(w, wk)
    return np.stack([c.ravel() for c in grid], axis=1), np.ravel(w)


def _faces(lower: Array, upper: Array, n: int = 101) -> Array:
    """Points on the faces of the box (n per direction along each face)."""
    d = len(lower)
    axes = [np.linspace(lo, hi, n) for lo, hi in zip(lower, upper, strict=True)]
    grid = np.stack([c.ravel() for c in np.meshgrid(*axes, indexing="ij")], axis=1)
    on = np.zeros(len(grid), dtype=bool)
    for k in range(d):
        on |= np.isclose(grid[:, k], lower[k]) | np.isclose(grid[:, k], upper[k])
    return grid[on]


#: The steady state is "confined" by the box when at its faces it is below this share of
#: its peak (entropy), or zero (power law: the support lies inside).
CONFINED_BELOW = 1e-3


def stationary_density(
    potential: Callable[[Array], Array],
    lower: Array,
    upper: Array,
    diffusivity: float,
    mass: float,
    m: float | None = None,
) -> tuple[Callable[[Array], Array], float]:
    """The steady state of ∂_t ρ = div(ρ∇(D·U'(ρ) + V)) with mass M, confined by the box.

    Entropy (``m`` None): ρ∞ = M e^{-V/D}/Z, Z = ∫ e^{-V/D}.  Power law:
    ρ∞ = ((C - V)(m-1)/(D m))_+^{1/(m-1)}, C fixed by ∫ρ∞ = M (``brentq``).  The integrals
    are over the box (:func:`box_quadrature`), which is also the steady state of the
    no-flux problem on the box.

    Returns:
        ρ∞ as a function of points (n, d), and the ratio of ρ∞ on the box faces to its
        peak (the caller refuses a steady state that the box does not confine).
    """
    points, weights = box_quadrature(lower, upper)
    v = potential(points)
    v_min = float(v.min())
    faces = _faces(lower, upper)
    if m is None:
        z = float(weights @ np.exp(-(v - v_min) / diffusivity))

        def entropy_state(x: Array) -> Array:
            return mass * np.exp(-(potential(np.atleast_2d(x)) - v_min) / diffusivity) / z

        return entropy_state, float(np.exp(-(potential(faces).min() - v_min) / diffusivity))

    k, p = (m - 1.0) / (diffusivity * m), 1.0 / (m - 1.0)

    def profile(c: float, values: Array) -> Array:
        return (k * np.maximum(c - values, 0.0)) ** p

    def excess(c: float) -> float:
        return float(weights @ profile(c, v)) - mass

    top = v_min + 1.0
    while excess(top) < 0.0 and top - v_min < 1e12:
        top = v_min + 2.0 * (top - v_min)
    c = brentq(excess, v_min, top, xtol=1e-14 * max(1.0, abs(top)), rtol=1e-14)
    peak = float((k * (c - v_min)) ** p)
    return (lambda x: profile(c, potential(np.atleast_2d(x)))), float(
        profile(c, potential(faces)).max() / peak
    )


# -- Gaussian mixtures -----------------------------------------------------------------------
def mixture_log_components(x: Array, weights: Array, means: Array, covs: Array) -> Array:
    """log(w_k N(x; μ_k, Σ_k)) for every point and component, shape (n, K).

    Kept in logarithms so that responsibilities and the score stay finite far from every
    component (there each N(x; μ_k, Σ_k) underflows to 0, but their ratios do not).
    """
    x = np.atleast_2d(x)
    d = x.shape[1]
    out = np.empty((len(x), len(weights)))
    for k, (w, mean, cov) in enumerate(zip(weights, means, covs, strict=True)):
        diff = x - mean
        quad = np.einsum("ni,ni->n", diff, np.linalg.solve(cov, diff.T).T)
        _, logdet = np.linalg.slogdet(cov)
        with np.errstate(divide="ignore"):  # a weight 0 is a component that is not there
            out[:, k] = np.log(w) - 0.5 * (quad + logdet + d * np.log(2.0 * np.pi))
    return out


def mixture_density(
    x: Array, weights: Array, means: Array, covs: Array, mass: float = 1.0
) -> Array:
    """Density of ``mass · Σ_k w_k N(μ_k, Σ_k)`` at the points ``x`` (n, d)."""
    logs = mixture_log_components(x, weights, means, covs)
    return mass * np.exp(logsumexp(logs, axis=1))


def mixture_responsibilities(x: Array, weights: Array, means: Array, covs: Array) -> Array:
    """r_k(x) = w_k N(x; μ_k, Σ_k) / Σ_j w_j N(x; μ_j, Σ_j), shape (n, K)."""
    logs = mixture_log_components(x, weights, means, covs)
    return np.exp(logs - logsumexp(logs, axis=1, keepdims=True))


def mixture_score(x: Array, weights: Array, means: Array, covs: Array) -> Array:
    """The score ∇log ρ(x) = -Σ_k r_k(x) Σ_k^{-1}(x - μ_k) of a mixture, shape (n, d)."""
    x = np.atleast_2d(x)
    r = mixture_responsibilities(x, weights, means, covs)
    score = np.zeros_like(x, dtype=float)
    for k, (mean, cov) in enumerate(zip(means, covs, strict=True)):
        score -= r[:, k : k + 1] * np.linalg.solve(cov, (x - mean).T).T
    return score


def mixture_ou(
    t: float, means0: Array, covs0: Array, A: Array, center: Array, diffusivity: float
) -> tuple[Array, Array]:
    """Means (K, d) and covariances (K, d, d) at t of a mixture under the linear FP flow.

    The linear Fokker–Planck equation is linear in ρ, so a mixture evolves component by
    component with unchanged weights, each by :func:`ou_moments`.
    """
    pairs = [
        ou_moments(t, m, s, A, center, diffusivity) for m, s in zip(means0, covs0, strict=True)
    ]
    return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])


def mixture_cdf_1d(x: Array, weights: Array, means: Array, covs: Array) -> Array:
    """CDF of a 1-D mixture at the values ``x`` (any shape): Σ_k w_k Φ((x-μ_k)/σ_k)."""
    x = np.asarray(x, dtype=float)
    sigmas = np.sqrt(np.asarray(covs, dtype=float).reshape(-1))
    mus = np.asarray(means, dtype=float).reshape(-1)
    return sum(w * ndtr((x - m) / s) for w, m, s in zip(weights, mus, sigmas, strict=True))


def mixture_quantile_1d(
    u: Array, weights: Array, means: Array, covs: Array, xtol: float = 1e-13
) -> Array:
    """F^{-1}(u) of a 1-D mixture, by vectorised bisection on the (strictly increasing) CDF.

    The bracket [min μ_k - 40 max σ_k, max μ_k + 40 max σ_k] holds every u that a double
    resolves away from 0 and 1; bisection halves it until it is ``xtol`` wide (about 60
    halvings), all values at once.
    """
    u = np.asarray(u, dtype=float)
    mus = np.asarray(means, dtype=float).reshape(-1)
    spread = 40.0 * float(np.sqrt(np.max(np.asarray(covs, dtype=float))))
    lo = np.full(u.shape, mus.min() - spread)
    hi = np.full(u.shape, mus.max() + spread)
    while np.max(hi - lo) > xtol:
        mid = 0.5 * (lo + hi)
        below = mixture_cdf_1d(mid, weights, means, covs) < u
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return 0.5 * (lo + hi)


def linear_network_moments(theta: Array, weights: Array) -> tuple[Array, Array, float]:
    """M = E[a w], C = E[w wᵀ], s = E[a²] of neurons θ = (a, w) (N, 1+d) with weights."""
    a, w = theta[:, 0], theta[:, 1:]
    p = weights / weights.sum()
    return (p * a) @ w, (w * p[:, None]).T @ w, float(p @ (a * a))


def linear_network_flow(
    t: float, m0: Array, C0: Array, s0: float, beta: Array, lam: float = 0.0, rtol: float = 1e-10
) -> tuple[Array, Array, float]:
    """The moments at t of the gradient flow of a linear two-layer network (docs/two_layer.md).

    With r = β* - m (risk ½|r|² + λE|θ|², time of the flow θ̇ = -∇(δF/δμ)):

        m' = (C + sI) r - 4λm,   C' = r mᵀ + m rᵀ - 4λC,   s' = 2⟨r, m⟩ - 4λs,

    closed for any number of neurons; solved by ``solve_ivp`` (DOP853, ``rtol``, atol
    ``rtol``·1e-2).
    """
    from scipy.integrate import solve_ivp

    d = len(m0)

    def rhs(_: float, y: Array) -> Array:
        m, C, s = y[:d], y[d : d + d * d].reshape(d, d), y[-1]
        r = beta - m
        dm = C @ r + s * r - 4.0 * lam * m
        dC = np.outer(r, m) + np.outer(m, r) - 4.0 * lam * C
        ds = 2.0 * r @ m - 4.0 * lam * s
        return np.concatenate([dm, dC.ravel(), [ds]])

    y0 = np.concatenate([m0, np.asarray(C0).ravel(), [s0]])
    sol = solve_ivp(rhs, (0.0, t), y0, method="DOP853", rtol=rtol, atol=rtol * 1e-2)
    y = sol.y[:, -1]
    return y[:d], y[d : d + d * d].reshape(d, d), float(y[-1])
