"""Blob velocity: neighbour-list scaling in N and speed-up over dense summation.

Prints, from one run (ratios of timings on this machine, not asserts):

* time(4N)/time(N) of one blob velocity evaluation at N = 2·10⁴ (2-D lattice of the
  heat_2d initial Gaussian, ε from the solver's rule); linear cost gives ≈ 4 (and the
  rule's ε shrinking slightly faster than h² adds a little: the mean neighbour count,
  printed, grows by ≈ 9 %), dense summation 16.  Twice: with the Verlet list reused (most
  evaluations of a porous-medium run) and with a fresh list (the evaluations that rebuild);
* the speed-up of the neighbour-list evaluation (list reused) over a dense N×N evaluation
  of the same velocity at N = 2·10⁴ (dense in row blocks to bound memory), and their max
  difference.

How often a run rebuilds depends on the flow: on porous_medium_2d (N = 7860) 86 lists
served 1412 evaluations; on heat_2d the Gaussian-tail particles move up to 0.9√ε per
Heun substep early on, so the list is rebuilt once per substep (every other evaluation).

Run:  PYTHONPATH=. .venv/bin/python benchmarks/particles_neighbours.py
"""

from __future__ import annotations

import os

import numpy as np
from mpi4py import MPI
from timing import best_of

from wgf.cases import load_case
from wgf.solvers import solver_tables
from wgf.solvers.particles.blob import Solver
from wgf.solvers.particles.kernels import gaussian, mean_neighbours

#: Rows per block of the dense evaluation (bounds its memory to ~100 MB at N = 2·10⁴).
BLOCK = 250


def build(n: int) -> Solver:
    """The blob solver on heat_2d with about n particles after the lattice drops its corners.

    The lattice covers the square effective support; the cells outside the inscribed disk
    (a fraction 1 - π/4) carry ρ₀ below the cut and are dropped: ask for n·4/π cells.
    """
    cells = round(n * 4.0 / np.pi)
    case = load_case("heat_2d", [f"solver.blob.particles={cells}"], solver_tables())
    return Solver(case, MPI.COMM_SELF, case.solver_params("blob"))


def dense_velocity(s: Solver) -> np.ndarray:
    """The same velocity by dense summation over all pairs (row blocks of BLOCK)."""
    x, w, eps = s.x, s.w, s.eps
    dim = x.shape[1]
    rho = np.empty(len(x))
    for lo in range(0, len(x), BLOCK):
        d = x[lo : lo + BLOCK, None, :] - x[None, :, :]
        rho[lo : lo + BLOCK] = gaussian(np.einsum("ijk,ijk->ij", d, d), eps, dim) @ w
    dg = s.energy.pressure(rho) / rho**2
    v = np.empty_like(x)
    for lo in range(0, len(x), BLOCK):
        d = x[lo : lo + BLOCK, None, :] - x[None, :, :]
        k = gaussian(np.einsum("ijk,ijk->ij", d, d), eps, dim)
        coef = w[None, :] * (dg[lo : lo + BLOCK, None] + dg[None, :]) * k / eps
        v[lo : lo + BLOCK] = np.einsum("ij,ijk->ik", coef, d)
    return v


def fresh_velocity(s: Solver) -> None:
    """One velocity evaluation that first rebuilds the Verlet list (as a run does: the
    new list reuses the old one's workspace)."""
    s.rebuild_neighbour_list(s.x)
    s.velocity(s.x)


def main() -> None:
    n = int(os.environ.get("BENCH_N", 20000))
    small, large = build(n), build(4 * n)
    print(
        f"mean neighbours: N = {small.n}: {mean_neighbours(small.x, small.eps):.1f}, "
        f"N = {large.n}: {mean_neighbours(large.x, large.eps):.1f}"
    )
    small.velocity(small.x), large.velocity(large.x)  # build the lists
    t_small = best_of(lambda: small.velocity(small.x))
    t_large = best_of(lambda: large.velocity(large.x))
    print(
        f"blob velocity, Verlet list reused: N = {small.n}: {t_small:.3f} s, "
        f"N = {large.n}: {t_large:.3f} s"
    )
    print(f"time(4N)/time(N) = {t_large / t_small:.2f}   (linear: 4, dense: 16)")
    f_small = best_of(lambda: fresh_velocity(small))
    f_large = best_of(lambda: fresh_velocity(large))
    print(
        f"blob velocity, fresh list: N = {small.n}: {f_small:.3f} s, N = {large.n}: {f_large:.3f} s"
    )
    print(f"time(4N)/time(N) = {f_large / f_small:.2f}")
    t_dense = best_of(lambda: dense_velocity(small), repeat=1)
    v_list, _ = small.velocity(small.x)
    diff = np.abs(dense_velocity(small) - v_list).max() / np.abs(v_list).max()
    print(f"dense summation at N = {small.n}: {t_dense:.3f} s")
    print(f"speed-up of neighbour lists over dense = {t_dense / t_small:.1f}x")
    print(f"max relative difference (cut-off at 5 sqrt(eps)) = {diff:.2e}")


if __name__ == "__main__":
    main()
