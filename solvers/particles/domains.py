"""Where particles live: a box with reflecting walls, or the unit sphere S^{d-1} ⊂ ℝ^d.

A particle solver integrates ẋ = v(x) with explicit stages and asks its domain three
things, without knowing which domain it has:

* :meth:`tangent`: the part of a velocity (or a noise increment) the domain allows —
  all of it in a box, P_x v = v - ⟨x, v⟩x on the sphere (the Riemannian gradient of the
  restriction of a function is the projection of its ambient gradient);
* :meth:`stage`: where an intermediate stage point is evaluated — as it is in a box, the
  retraction x/|x| on the sphere;
* :meth:`constrain`: the end of a step — mirrored back across the face it crossed in a box
  (counted in ``escaped``), retracted x/|x| on the sphere (never an escape).

On the sphere Heun's method with projected velocities and retracted stages is second order:
with v tangent at x the stage value v(x̃) has the normal part -dt|v|²x + O(dt²), so
|x + dt(v + ṽ)/2|² = 1 + O(dt³) and the final retraction moves the point by O(dt³).
Euler–Maruyama with projected drift and noise followed by the retraction is the projected
scheme for dX = v dt - (d-1)D X dt + √(2D) P_X dW, Brownian motion on S^{d-1} in Itô form:
|X + √(2D dt) P ξ|⁻¹ = 1 - D dt|Pξ|² + …, and E|Pξ|² = d - 1 (weak order 1).

Densities on the sphere: the von Mises–Fisher kernel e^{κ(⟨x,y⟩-1)} = e^{-κ|x-y|²/2} (the
ambient Gaussian of variance 1/κ, restricted to the sphere), normalised on S^{d-1}:
C_d(κ) = κ^{d/2-1}/((2π)^{d/2} I_{d/2-1}(κ) e^{-κ}).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from wgf.cases import Case
from wgf.cases.errors import UserError
from wgf.cases.sphere import harmonic, sample_grid, sphere_area
from wgf.solvers.particles.kernels import density_at

#: Positions farther than this from the unit sphere are refused, nearer ones retracted.
ON_SPHERE_TOL = 1e-8
#: Pair entries per chunk of a dense kernel sum.
CHUNK_PAIRS = 1 << 19


class Box:
    """The case's box; its faces are reflecting walls."""

    def __init__(self, lower: np.ndarray, upper: np.ndarray) -> None:
        self.lower, self.upper = np.asarray(lower, float), np.asarray(upper, float)

    def tangent(self, x: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Every direction is allowed: v itself."""
        return v

    def stage(self, x: np.ndarray) -> np.ndarray:
        """Stage points are used as they are."""
        return x

    def constrain(self, x: np.ndarray) -> tuple[np.ndarray, int]:
        """Mirror positions outside the box back inside; return them and the count."""
        below, above = x < self.lower, x > self.upper
        count = int(np.count_nonzero(below.any(axis=1) | above.any(axis=1)))
        if count:
            x = np.where(below, 2.0 * self.lower - x, x)
            x = np.where(above, 2.0 * self.upper - x, x)
            # A particle more than a box width outside is a blow-up, not a wall hit.
            x = np.clip(x, self.lower, self.upper)
        return x, count

    def density(self, points: np.ndarray, x: np.ndarray, w: np.ndarray, var: float) -> np.ndarray:
        """The Gaussian kernel density estimate of variance ``var``."""
        return density_at(points, x, w, var)

    def cell_volumes(self, cells: list[int]) -> np.ndarray:
        """The volume of one cell of the sample grid (all equal)."""
        return np.array([np.prod((self.upper - self.lower) / np.array(cells))])

    def checked(self, x: np.ndarray, where: str) -> np.ndarray:
        """Positions as they are."""
        return x


class Sphere:
    """The unit sphere S^{d-1} ⊂ ℝ^d (the circle for d = 2)."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.lower, self.upper = -np.ones(dim), np.ones(dim)

    def tangent(self, x: np.ndarray, v: np.ndarray) -> np.ndarray:
        """P_x v = v - ⟨x, v⟩x, row by row."""
        return v - np.einsum("nk,nk->n", x, v)[:, None] * x

    def stage(self, x: np.ndarray) -> np.ndarray:
        """The retraction x/|x|."""
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    def constrain(self, x: np.ndarray) -> tuple[np.ndarray, int]:
        """The retraction; nothing escapes a sphere."""
        return self.stage(x), 0

    def spacing(self, n: int) -> float:
        """The mean spacing (|S^{d-1}|/n)^{1/(d-1)} of n tokens spread over the sphere."""
        return (sphere_area(self.dim) / n) ** (1.0 / (self.dim - 1))

    def log_kernel_constant(self, var: float) -> float:
        """The logarithm of C_d(κ), κ = 1/var: the von Mises–Fisher kernel's value at its centre.

        C_d(κ) = κ^{d/2-1}/((2π)^{d/2} I_{d/2-1}(κ) e^{-κ}) makes e^{κ(⟨x,y⟩-1)} integrate
        to 1 over S^{d-1} (arc length on the circle, area on S²), not over ℝ^d.
        """
        kappa = 1.0 / max(var, 1e-12)
        nu = self.dim / 2.0 - 1.0
        log_c = nu * math.log(kappa) - (self.dim / 2.0) * math.log(2.0 * math.pi)
        return log_c - math.log(float(special.ive(nu, kappa)))

    @staticmethod
    def _kernel_sums(points: np.ndarray, x: np.ndarray, w: np.ndarray, var: float) -> np.ndarray:
        """Σ_j w_j e^{κ(⟨p, x_j⟩ - 1)} at each point p, κ = 1/var (the kernel without C_d)."""
        kappa = 1.0 / max(var, 1e-12)
        out = np.empty(len(points))
        chunk = max(1, CHUNK_PAIRS // max(1, len(x)))
        for start in range(0, len(points), chunk):
            e = points[start : start + chunk] @ x.T
            e -= 1.0
            e *= kappa
            np.exp(e, out=e)
            out[start : start + chunk] = e @ w
        return out

    def density(self, points: np.ndarray, x: np.ndarray, w: np.ndarray, var: float) -> np.ndarray:
        """The von Mises–Fisher kernel density estimate, concentration κ = 1/var."""
        return math.exp(self.log_kernel_constant(var)) * self._kernel_sums(points, x, w, var)

    def leave_one_out_entropy(
        self, x: np.ndarray, w: np.ndarray, variances: np.ndarray, targets: np.ndarray
    ) -> tuple[float, float]:
        """The resubstitution estimate of ∫ρ log ρ at the best of several kernel widths.

        For the particles i in ``targets``, ρ₋ᵢ(xᵢ) = M/(M - wᵢ) Σ_{j≠i} w_j K(xᵢ, x_j) is
        the von Mises–Fisher estimate without particle i itself, and

            ∫ρ log ρ = M E_{ρ/M}[log ρ] ≈ M Σ_{i∈S} wᵢ log ρ₋ᵢ(xᵢ) / Σ_{i∈S} wᵢ.

        Leaving i out removes the self term K(0) = C_d(κ), which would bias the sum up by
        log(1 + C_d/(Nρ)).  By Gibbs' inequality the expectation of each candidate is
        ∫ρ log(ρ∗K) ≤ ∫ρ log ρ (up to the O(1/N) of the logarithm), so the largest one —
        likelihood cross-validation — is the tightest estimate, and its width adapts to the
        clusters: a global rule of thumb sees the spread between clusters, not in them.
        The candidates are tried from the widest down and the search stops at the first
        one that is worse than its predecessor: the estimate rises while narrowing resolves
        structure and falls once the kernel sees single neighbours (a uniform cloud stops
        at the second).

        Args:
            x: Positions (N, d) on the sphere.
            w: Weights (N,).
            variances: Candidate kernel variances 1/κ, decreasing.
            targets: Indices of the particles the expectation is taken over.

        Returns:
            The largest estimate and the variance that gave it.
        """
        mass, wt = float(w.sum()), w[targets]
        best = (-np.inf, float(variances[0]))
        for var in variances:
            sums = self._kernel_sums(x[targets], x, w, var) - wt  # minus the self term e^0 wᵢ
            loo = self.log_kernel_constant(var) + np.log(
                np.maximum(sums, 1e-300) * mass / (mass - wt)
            )
            value = mass * float(wt @ loo) / float(wt.sum())
            if value <= best[0]:
                break
            best = (value, float(var))
        return best

    def cell_volumes(self, cells: list[int]) -> np.ndarray:
        """The area of each cell of the sample grid on the sphere."""
        return sample_grid(self.dim, cells)[1]

    def checked(self, x: np.ndarray, where: str) -> np.ndarray:
        """The positions, retracted to the sphere if within round-off of it; refused otherwise.

        Raises:
            UserError: When some |x_i| differs from 1 by more than :data:`ON_SPHERE_TOL`.
        """
        off = float(np.max(np.abs(np.linalg.norm(x, axis=1) - 1.0), initial=0.0))
        if off > ON_SPHERE_TOL:
            raise UserError(
                f"{where}: particles are not on the unit sphere (max ||x| - 1| = {off:.3g})"
            )
        # Already on the sphere to round-off (e.g. a checkpoint): keep it bit for bit.
        return x if off <= 1e-14 else self.stage(x)


def particle_domain(case: Case) -> Box | Sphere:
    """The domain of a case's particles."""
    if case.on_sphere:
        return Sphere(case.dim)
    return Box(*case.bounds())


def tokens(case: Case, n: int | None, default: int) -> tuple[np.ndarray, np.ndarray]:
    """Initial tokens on the sphere (``[initial]`` of a circle/sphere case), equal weights.

    * ``uniform``: n i.i.d. uniform points, normalised standard Gaussians drawn from
      ``Philox(SeedSequence(seed))`` (the same array on every rank);
    * ``equiangular``: n tokens with Gram matrix G = (1 - ρ₀)I + ρ₀11ᵀ, the rows of its
      Cholesky factor padded with zeros to d columns.  G is positive definite for
      ρ₀ ∈ (-1/(n-1), 1), and has rank n, so this needs n ≤ d (default n = d);
    * ``perturbed_uniform``, circle: θ_i = 2πi/n - (a/k) sin(2πik/n), equally spaced angles
      displaced so that the density is (1 + a cos kθ)/2π + O(a²) (the displacement δθ
      gives the density change -∂_θ δθ/2π); sphere: the ``uniform`` tokens with weights
      proportional to 1 + a Re((x₁ + i x₂)^k), the density's (an importance sample).

    Args:
        case: A circle or sphere case.
        n: The requested number (None: ``default``, or d for ``equiangular``).
        default: The solver's default number.
    """
    ini, dim = case.section("initial"), case.dim
    kind, mass = ini["kind"], float(ini["mass"])
    if kind == "equiangular":
        n = dim if n is None else n
        rho0 = ini["rho0"]
        if n > dim or (n > 1 and not rho0 > -1.0 / (n - 1)):
            raise UserError(
                f"case key 'initial.rho0': {n} equiangular tokens with inner products {rho0} "
                f"need n ≤ d = {dim} and rho0 > -1/(n-1) (their Gram matrix has rank n); "
                f"set solver particles ≤ {dim} or domain.dimension ≥ {n}"
            )
        gram = (1.0 - rho0) * np.eye(n) + rho0 * np.ones((n, n))
        x = np.zeros((n, dim))
        x[:, :n] = np.linalg.cholesky(gram)
    elif kind == "perturbed_uniform" and dim == 2:
        n = default if n is None else n
        k, a = ini["mode"], ini["amplitude"]
        theta0 = 2.0 * np.pi * np.arange(n) / n
        theta = theta0 - (a / k) * np.sin(k * theta0)
        x = np.stack([np.cos(theta), np.sin(theta)], axis=1)
    else:
        n = default if n is None else n
        rng = np.random.Generator(np.random.Philox(np.random.SeedSequence(ini["seed"])))
        x = rng.standard_normal((n, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    if kind == "perturbed_uniform" and dim > 2:
        weights = 1.0 + ini["amplitude"] * harmonic(x, ini["mode"])
        return x, mass * weights / weights.sum()
    return x, np.full(n, mass / n)
