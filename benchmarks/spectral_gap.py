"""Spectral gaps of the shipped linear Fokker–Planck cases with a steady state.

∂_t ρ = D Δρ + div(ρ∇V) relaxes to ρ∞ ∝ e^{-V/D} at the rate of its spectral gap λ₁:
with ρ = e^{-V/2D} u it is the Schrödinger operator H = -D Δ + |∇V|²/(4D) - ΔV/2, whose
lowest eigenvalue is 0 (ground state e^{-V/2D}) and whose next is λ₁.  H is discretised
by second-order differences on the case's box (u = 0 on the faces: the steady states are
negligible there) and its two lowest eigenvalues found by shift-invert Lanczos.  The case's
T is long enough when e^{-λ₁T} is below its discretisation error.

    .venv/bin/python benchmarks/spectral_gap.py [CASE ...]
"""

from __future__ import annotations

import sys

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import eigsh

from wgf.cases import load_case

CELLS = {1: 4000, 2: 300}


def laplacian_1d(n: int, h: float) -> sp.csr_matrix:
    """-d²/dx² on n interior points, Dirichlet ends."""
    return sp.diags([-np.ones(n - 1), 2.0 * np.ones(n), -np.ones(n - 1)], [-1, 0, 1]) / h**2


def spectral_gap(case_name: str) -> tuple[float, float, float]:
    """(λ₀, λ₁, T) of a shipped entropy case with a formula potential."""
    case = load_case(case_name)
    D, dim = case.section("energy")["diffusivity"], case.dim
    V = case.potential_expression()
    lower, upper = (np.array(case.section("domain")[k]) for k in ("lower", "upper"))
    n = CELLS[dim]
    axes = [np.linspace(lo, hi, n + 2)[1:-1] for lo, hi in zip(lower, upper, strict=True)]
    points = np.stack([g.ravel() for g in np.meshgrid(*axes, indexing="ij")], axis=1)
    grad, hess = V.gradient(points), V.hessian(points)
    q = np.einsum("nk,nk->n", grad, grad) / (4.0 * D) - 0.5 * np.trace(hess, axis1=1, axis2=2)
    ops = [laplacian_1d(n, (hi - lo) / (n + 1)) for lo, hi in zip(lower, upper, strict=True)]
    lap = ops[0]
    for op in ops[1:]:
        lap = sp.kron(lap, sp.identity(n)) + sp.kron(sp.identity(lap.shape[0]), op)
    H = (D * lap + sp.diags(q)).tocsc()
    values = np.sort(eigsh(H, k=2, sigma=-1.0, which="LM", return_eigenvectors=False))
    return float(values[0]), float(values[1]), case.section("time")["t_end"]


def main(names: list[str]) -> None:
    """Print λ₀ (≈ 0), λ₁ and e^{-λ₁T} for each case."""
    print(f"{'case':18s} {'lambda0':>10s} {'lambda1':>9s} {'T':>6s} {'exp(-lambda1 T)':>16s}")
    for name in names:
        l0, l1, t_end = spectral_gap(name)
        print(f"{name:18s} {l0:10.2e} {l1:9.4f} {t_end:6g} {np.exp(-l1 * t_end):16.2e}")


if __name__ == "__main__":
    main(sys.argv[1:] or ["double_well_1d", "double_well_2d"])
