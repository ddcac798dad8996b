"""Cluster order parameters of a measure on the unit sphere S^{d-1} (the circle for d = 2).

On a sphere the second moment about the origin, ∫|x|²dμ, is the mass whatever μ is, so
the moments of ``wgf compare`` draw instead, for the degrees k = 1, 2, 3,

    s_k(μ) = (∬ G_k(⟨x, y⟩) dμ(x) dμ(y))^{1/2} / μ(S^{d-1}),

G_k the Gegenbauer polynomial of S^{d-1} normalised by G_k(1) = 1 (Chebyshev T_k on the
circle, Legendre P_k on S²).  By the addition theorem G_k(⟨x, y⟩) is a positive multiple
of Σ_m Y_km(x) Y_km(y) over an orthonormal basis of the degree-k harmonics, so the double
integral is a multiple of Σ_m |∫Y_km dμ|² ≥ 0: s_k is the rotation-invariant size of μ's
degree-k part.  s_k = 0 for the uniform measure and s_k = 1 for a point mass; on the circle
s_k = |∫e^{ikθ}dμ|/M, and k equally spaced point clusters have s_k = 1 and s_j = 0 for
0 < j < k.

With t^j's double integral ∬⟨x, y⟩^j dμdμ = ‖∫x^{⊗j}dμ‖² (the Frobenius norm of the
j-th moment tensor), s_k costs O(n d^k) for n weighted points: no pair sums.
"""

from __future__ import annotations

import numpy as np
from scipy import special

#: The degrees drawn.
DEGREES = (1, 2, 3)


def _gegenbauer_coefficients(k: int, dim: int) -> np.ndarray:
    """Coefficients c_j of G_k(t) = Σ_j c_j t^j (index j), normalised by G_k(1) = 1."""
    if dim == 2:
        poly = special.chebyt(k)
    else:
        poly = special.gegenbauer(k, (dim - 2) / 2.0)
    coefficients = poly.coeffs[::-1] / poly(1.0)
    return np.where(np.abs(coefficients) > 1e-12 * np.abs(coefficients).max(), coefficients, 0.0)


def order_parameter(points: np.ndarray, weights: np.ndarray, k: int) -> float:
    """s_k of the weighted points (n, d) on S^{d-1} (module docstring).

    Args:
        points: Points on the unit sphere, (n, d).
        weights: Their masses ≥ 0, (n,).
        k: The degree, 1 ≤ k ≤ 3 (the moment tensors have d^k entries).
    """
    mass = float(np.sum(weights))
    coefficients = _gegenbauer_coefficients(k, points.shape[1])
    total, tensor = 0.0, weights.astype(float)[:, None]
    for j, c in enumerate(coefficients):
        if j > 0:  # x^{⊗j}, flattened: row i holds the d^j products of x_i's coordinates
            tensor = (tensor[:, :, None] * points[:, None, :]).reshape(len(points), -1)
        if c:
            moment = tensor.sum(axis=0)
            total += c * float(moment @ moment)
    return float(np.sqrt(max(total, 0.0))) / mass
