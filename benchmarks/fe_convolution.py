"""FE W∗ρ on the mesh: one evaluation against one Poisson solve, and against the direct sum.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/fe_convolution.py [--sizes 64,128,256]

For each box mesh of n × n cells (P1, the case's triangles), on keller_segel_2d (the
Newtonian kernel χ log r/(2π), singular at 0) and aggregation_quadratic_2d (W = r²/2):

* the wall time of one :class:`~wgf.solvers.fem.interaction.MeshConvolution` evaluation
  (W∗ρ_h at every vertex of the initial density, best of 3, after one untimed call), and
  that in units of one P1 Poisson solve on the same mesh
  (:func:`fe_scaling.poisson_unit`: CG + GAMG to rtol 1e-8, set-up included) — the goal
  of issue 11 is ≤ 2 at 256²; for the lattice FFT (what box meshes use) and for the
  particle-mesh sum (what other meshes above 2·10⁷ pairs use);
* the one-off set-up (the kernel's transform; none for the particle mesh, which redoes
  everything per call) in the same unit;
* the relative error max_i |W∗ρ − direct|/max_i |direct| against the direct sum
  Σ_{j≠i} m_j ρ_j W(|x_i − x_j|) + m_i W̄(a_i) ρ_i over ``--targets`` random vertices (the
  full direct sum at 256² is 4.4·10⁹ pairs).
"""

from __future__ import annotations

import dolfinx_solver  # noqa: F401 - must precede dolfinx

import argparse
import logging
import time

import numpy as np
from fe_scaling import poisson_unit
from mpi4py import MPI
from timing import best_of

from wgf.cases import load_case
from wgf.progress import set_quiet
from wgf.run import build_solver
from wgf.solvers import solver_tables
from wgf.solvers.energy.pair_sums import direct_sum
from wgf.solvers.fem.interaction import MeshConvolution

CASES = ("keller_segel_2d", "aggregation_quadratic_2d")


def direct_at(conv: MeshConvolution, rho: np.ndarray, picked: np.ndarray) -> np.ndarray:
    """The direct sum (plus the self term) at the dofs ``picked`` (one rank)."""
    W = conv.energy.interaction.W
    sums, _ = direct_sum(conv.targets[picked], conv.sources, conv.source_masses * rho, W)
    return sums + conv.self_coefficients()[picked] * rho[picked]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="64,128,256", help="cells per axis, comma-separated")
    parser.add_argument("--targets", type=int, default=2000, help="vertices checked (direct)")
    args = parser.parse_args()
    comm = MPI.COMM_SELF
    logging.disable(logging.WARNING)
    set_quiet(True)
    print("1 rank; unit = one P1 Poisson solve (CG + GAMG, rtol 1e-8, set-up included)")
    print(
        f"{'cells':>5s} {'case':25s} {'method':8s} {'Poisson [s]':>11s} {'W*rho [s]':>10s} "
        f"{'ratio':>6s} {'set-up':>7s} {'rel. error':>10s}"
    )
    for n in (int(x) for x in args.sizes.split(",")):
        unit = None
        for name in CASES:
            case = load_case(name, {"domain.cells": [n, n]}, solver_tables())
            s = build_solver(case, "fem-implicit", comm)
            if unit is None:
                unit, _ = poisson_unit(s.mesh)
            rho = s.rho.x.array.copy()
            coords = s.V.tabulate_dof_coordinates()[:, :2]
            index = np.arange(len(rho))
            picked = np.random.default_rng(3).choice(len(rho), min(args.targets, len(rho)), False)
            exact = None
            for method in ("lattice", "mesh"):
                conv = MeshConvolution(
                    s.energy, coords, s.lumped_masses(), len(rho), index, comm, method
                )
                start = time.perf_counter()
                conv.prepare()
                setup = time.perf_counter() - start
                conv(rho)
                wall = best_of(lambda conv=conv, rho=rho: conv(rho))
                exact = direct_at(conv, rho, picked) if exact is None else exact
                error = np.abs(conv(rho)[picked] - exact).max() / np.abs(exact).max()
                print(
                    f"{n:5d} {name:25s} {method:8s} {unit:11.4f} {wall:10.4f} "
                    f"{wall / unit:6.2f} {setup / unit:7.2f} {error:10.2e}",
                    flush=True,
                )
            s.close()


if __name__ == "__main__":
    main()
