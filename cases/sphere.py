"""The unit sphere S^{d-1} ⊂ ℝ^d as a case domain (``domain.shape = "circle" | "sphere"``).

The circle is the sphere with d = 2.  This module holds what the case layer needs of the
geometry: the area |S^{d-1}| = 2π^{d/2}/Γ(d/2), the sample grid on the sphere with its
cell areas (for density snapshots and integrals over the sphere), and the closed forms of
the attention dynamics used as references (:func:`equiangular_rate`,
:func:`mode_growth_rate`).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

#: The domain shapes that are spheres (manifolds without boundary).
MANIFOLD_SHAPES = ("circle", "sphere")
#: The initial kinds that only make sense on a sphere.
SPHERE_KINDS = ("uniform", "equiangular", "perturbed_uniform")
#: Default sample cells: circle (angles), sphere in ℝ³ (polar, azimuthal).
DEFAULT_SAMPLE_CELLS = {2: [200], 3: [40, 80]}


def sphere_area(dim: int) -> float:
    """|S^{d-1}| = 2π^{d/2}/Γ(d/2) (2π for the circle, 4π for S²)."""
    return 2.0 * math.pi ** (dim / 2) / math.gamma(dim / 2)


def sample_grid(dim: int, cells: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Points on S^{d-1} and the area of the cell each one stands for.

    * d = 2: the midpoints θ_k = 2π(k + ½)/n of n equal arcs;
    * d = 3: the (θ, φ) cell midpoints of an n_θ × n_φ latitude–longitude grid, with the
      exact cell areas (cos θ_lo - cos θ_hi)Δφ (so the areas sum to 4π);
    * d ≠ 2, 3: the 2d points ±e_k, each standing for |S^{d-1}|/(2d) (a coarse probe:
      densities in high dimension are read at the particles, not on a grid).

    Returns:
        Points (n, d) and areas (n,).
    """
    if dim == 2:
        n = cells[0]
        theta = 2.0 * np.pi * (np.arange(n) + 0.5) / n
        return np.stack([np.cos(theta), np.sin(theta)], axis=1), np.full(n, 2.0 * np.pi / n)
    if dim == 3:
        n_t, n_p = cells
        edges = np.linspace(0.0, np.pi, n_t + 1)
        theta = 0.5 * (edges[1:] + edges[:-1])
        phi = 2.0 * np.pi * (np.arange(n_p) + 0.5) / n_p
        t, p = np.meshgrid(theta, phi, indexing="ij")
        points = np.stack(
            [np.sin(t) * np.cos(p), np.sin(t) * np.sin(p), np.cos(t)], axis=-1
        ).reshape(-1, 3)
        band = (np.cos(edges[:-1]) - np.cos(edges[1:])) * 2.0 * np.pi / n_p
        return points, np.repeat(band, n_p)
    eye = np.eye(dim)
    return np.concatenate([eye, -eye]), np.full(2 * dim, sphere_area(dim) / (2 * dim))


def equiangular_rate(
    rho: float, beta: float, n: int, normalization: str, strength: float = 1.0, mass: float = 1.0
) -> float:
    """ρ' for n equiangular tokens with ⟨x_i, x_j⟩ = ρ (i ≠ j), weights M/n.

    With ẋ_i = κ P_{x_i}(Σ_j w_j e^{β⟨x_i,x_j⟩} x_j / Z_i) and P_{x_i}x_j = x_j - ρ x_i,
    ⟨ẋ_i, x_k⟩ = κ (M/n) e^{βρ}(1 + (n-2)ρ - (n-1)ρ²)/Z_i = κ (M/n) e^{βρ}(1-ρ)(1+(n-1)ρ)/Z_i,
    and ρ' = ⟨ẋ_i, x_k⟩ + ⟨x_i, ẋ_k⟩ (the configuration stays equiangular by symmetry):

    * USA (Z_i = 1): ρ' = 2κM e^{βρ}(1-ρ)(1+(n-1)ρ)/n;
    * SA (Z_i = (M/n)(e^β + (n-1)e^{βρ})): ρ' = 2κ(1-ρ)(1+(n-1)ρ)/(e^{β(1-ρ)} + n - 1),

    the formulas of issue 14 for κ = M = 1.
    """
    core = 2.0 * strength * (1.0 - rho) * (1.0 + (n - 1) * rho)
    if normalization == "usa":
        return core * mass * math.exp(beta * rho) / n
    return core / (math.exp(beta * (1.0 - rho)) + n - 1)


def mode_growth_rate(k: int, beta: float, strength: float = 1.0, mass: float = 1.0) -> float:
    """Growth rate κM k² I_k(β)/β of the mode cos(kθ) about the uniform density on S¹ (USA).

    Linearising ∂_t ρ + ∂_θ(ρu) = 0, u(θ) = κ∫ e^{β cos(φ-θ)} sin(φ-θ) ρ(φ) dφ, about
    ρ = M/2π with ρ = M/2π + η(t) cos(kθ): ∫ e^{β cos s} sin s sin(ks) ds = (k/β)·2πI_k(β)
    (integrate by parts, (e^{β cos s})' = -β sin s e^{β cos s}), so u = -κ η 2π k I_k(β)
    sin(kθ)/β and η' = κ M k² I_k(β) η/β.
    """
    return strength * mass * k * k * float(special.iv(k, beta)) / beta


def harmonic(x: np.ndarray, k: int) -> np.ndarray:
    """Re((x₁ + i x₂)^k) at points x (n, d): cos kθ on the circle, a spherical harmonic.

    The polynomial is homogeneous of degree k and harmonic in ℝ^d, so on S^{d-1} it is an
    eigenfunction of the Laplace–Beltrami operator, -Δ_S Y = k(k + d - 2)Y, with |Y| ≤ 1.
    """
    return np.real((x[:, 0] + 1j * x[:, 1]) ** k)


def harmonic_growth_rate(
    k: int, beta: float, dim: int, strength: float = 1.0, mass: float = 1.0
) -> float:
    """Growth rate of the degree-k harmonic about the uniform density on S^{d-1} (USA).

    By Funk–Hecke, ∫ e^{β⟨x,y⟩} Y(y) dy = |S^{d-1}| c_k(β) Y(x) for a degree-k spherical
    harmonic Y, c_k(β) = Γ(d/2)(2/β)^{d/2-1} I_{k+d/2-1}(β) (I_k(β) on the circle,
    i_k(β) = √(π/2β) I_{k+1/2}(β) on S²).  Linearising ∂_t ρ = div(ρ∇μ),
    μ = -(κ/β)∫e^{β⟨x,y⟩}ρ(y)dy, about ρ₀ = M/|S^{d-1}| with ρ = ρ₀ + η(t)Y:
    η' = κ M k(k + d - 2) c_k(β) η/β.  For d = 2 this is :func:`mode_growth_rate`.
    """
    order = k + dim / 2 - 1
    c = math.gamma(dim / 2) * (2.0 / beta) ** (dim / 2 - 1) * float(special.iv(order, beta))
    return strength * mass * k * (k + dim - 2) * c / beta
