"""Particles from the initial density.

All three solvers start from the case's initial density ρ₀ restricted to its *effective
support*: the bounding box of the probe cells where ρ₀ ≥ ``NEGLIGIBLE``·max ρ₀ (a fine
uniform probe grid on the case's box), widened by one probe cell.  Spending particles
only there matters: a Gaussian of width 0.22 in the box [-3, 3] would otherwise leave 90 %
of a uniform lattice in its tails.  The dropped tails carry a relative mass ≲ 10⁻⁶ (for a
Gaussian: 2Φ(-5.3) ≈ 10⁻⁷), and every initialisation renormalises to the stated mass, as
the FE solvers do.

* :func:`lattice` (blob): the midpoints of a uniform lattice of about N cells on the
  effective support, with weights w_i = ρ₀(x_i)·|cell| (the midpoint quadrature rule);
  cells with ρ₀ < ``NEGLIGIBLE``·max ρ₀ are dropped, so the particle count is ≤ N.
* :func:`random_sample` (langevin): N independent samples with equal weights, drawn from
  the piecewise-constant density of a fine probe lattice (cell by weight, then a uniform
  point in the cell).
* :func:`gaussian_sample` (a ``[model]``'s neurons, any dimension): N i.i.d. samples of
  N(mean, cov) with equal weights 1/N, no probe grid (parameter space ℝ^{1+d} has no box).
* :func:`quantiles_1d` (quantile-1d): N points at the mass levels q_i = i/(N-1) of the
  cumulative distribution (trapezoid rule on the fine probe grid, inverted by linear
  interpolation), so that consecutive particles enclose equal masses M/(N-1).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from wgf.cases.density import check_density

#: Relative density below which ρ₀ counts as zero (effective support, dropped cells).
NEGLIGIBLE = 1e-6

#: Cells per direction of the probe grid that finds the effective support.
PROBE_CELLS = {1: 20000, 2: 400, 3: 60}

Density = Callable[[np.ndarray], np.ndarray]


def _midpoints(lo: np.ndarray, hi: np.ndarray, cells: list[int]) -> np.ndarray:
    axes = [a + (np.arange(n) + 0.5) * (b - a) / n for a, b, n in zip(lo, hi, cells, strict=True)]
    grid = np.meshgrid(*axes, indexing="ij")
    return np.stack([g.ravel() for g in grid], axis=1)


def _checked(density: Density, points: np.ndarray) -> np.ndarray:
    """ρ₀ at points (every rank probes all of them, so no reduction is needed)."""
    with np.errstate(all="ignore"):  # reported by check_density as one clear error
        values = np.asarray(density(points), dtype=float)
    check_density(values, "initial", "on the probe grid of the particles")
    return values


def effective_box(
    density: Density, lower: np.ndarray, upper: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Bounding box of {ρ₀ ≥ NEGLIGIBLE·max ρ₀}, widened by a probe cell, inside the box."""
    dim = len(lower)
    cells = [PROBE_CELLS[dim]] * dim
    pts = _midpoints(lower, upper, cells)
    values = _checked(density, pts)
    keep = pts[values >= NEGLIGIBLE * values.max()]
    h = (upper - lower) / np.array(cells)
    return np.maximum(keep.min(axis=0) - h, lower), np.minimum(keep.max(axis=0) + h, upper)


def lattice(
    density: Density, lower: np.ndarray, upper: np.ndarray, n: int, mass: float
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Blob initialisation: lattice midpoints and midpoint-rule weights.

    Returns:
        Positions (N', d), weights (N',) summing to ``mass``, the lattice spacing h
        (geometric mean over directions) and the largest side L of the effective box.
    """
    lo, hi = effective_box(density, lower, upper)
    side = hi - lo
    dim = len(lo)
    target = (np.prod(side) / n) ** (1.0 / dim)
    cells = [max(1, round(s / target)) for s in side]
    x = _midpoints(lo, hi, cells)
    spacing = side / np.array(cells)
    values = _checked(density, x)
    keep = values >= NEGLIGIBLE * values.max()
    x, w = x[keep], values[keep] * np.prod(spacing)
    return x, w * (mass / w.sum()), float(np.prod(spacing) ** (1.0 / dim)), float(side.max())


def random_sample(
    density: Density,
    lower: np.ndarray,
    upper: np.ndarray,
    n: int,
    mass: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Langevin initialisation: N i.i.d. samples of ρ₀, equal weights mass/N."""
    lo, hi = effective_box(density, lower, upper)
    dim = len(lo)
    cells = [PROBE_CELLS[dim]] * dim
    mids = _midpoints(lo, hi, cells)
    p = _checked(density, mids)
    h = (hi - lo) / np.array(cells)
    pick = rng.choice(len(mids), size=n, p=p / p.sum())
    x = mids[pick] + (rng.random((n, dim)) - 0.5) * h
    return x, np.full(n, mass / n)


def quantiles_1d(
    density: Density, lower: np.ndarray, upper: np.ndarray, n: int, mass: float
) -> tuple[np.ndarray, float]:
    """Quantile-1d initialisation: positions at mass levels i/(N-1), and the cell mass."""
    lo, hi = effective_box(density, lower, upper)
    grid = np.linspace(lo[0], hi[0], 8 * PROBE_CELLS[1] + 1)
    values = _checked(density, grid[:, None])
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (values[1:] + values[:-1]) * np.diff(grid))])
    cdf /= cdf[-1]
    levels = np.linspace(0.0, 1.0, n)
    # Invert on the end points of rising segments only: a leading (trailing) stretch where
    # ρ₀ = 0 then maps level 0 (1) to the edge of the support, not to the probe box's edge.
    up = np.diff(cdf) > 0.0
    ends = np.concatenate([up, [False]]) | np.concatenate([[False], up])
    x = np.interp(levels, cdf[ends], grid[ends])
    return x, mass / (n - 1)


def gaussian_sample(
    mean: list[float], cov: float | list[list[float]], n: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """N i.i.d. samples of N(mean, cov) (cov a number s: s·I) from ``seed``; weights 1/N.

    The stream is ``Philox(SeedSequence([seed, 0]))``; the first N rows do not depend on
    anything else, so runs of the same seed and N start from the same particles.
    """
    mu = np.asarray(mean, dtype=float)
    sigma = cov * np.eye(len(mu)) if isinstance(cov, float) else np.asarray(cov, dtype=float)
    rng = np.random.Generator(np.random.Philox(np.random.SeedSequence([seed, 0])))
    z = rng.standard_normal((n, len(mu)))
    return mu + z @ np.linalg.cholesky(sigma).T, np.full(n, 1.0 / n)
