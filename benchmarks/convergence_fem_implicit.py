"""Convergence of fem-implicit against the closed forms (the Foundation issue's figures).

    python benchmarks/convergence_fem_implicit.py [--quick]

Prints, for ``fokker_planck_ou_2d`` and ``porous_medium_2d`` on 32², 64², 128² cells,
the relative L1 error at T of the sampled density (256² sample grid) and of the FE
density (Gauss quadrature), with τ fixed and with τ ∝ h², and the EOC between levels.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
from mpi4py import MPI

from wgf.cases import load_case
from wgf.run import run_flow
from wgf.solvers import get_solver, solver_tables


def sampled_l1(path: Path, case) -> float:
    """Relative L1 error of the last snapshot on the sample grid (midpoint rule)."""
    with h5py.File(path, "r") as f:
        t, dens, pts = f["snapshots/time"][-1], f["snapshots/density"][-1], f["samples/points"][()]
    exact = case.exact_solution()(t, pts)
    return float(np.sum(np.abs(dens - exact)) / np.sum(exact))


def ladder(name: str, levels: list[int], taus: list[float], out: Path) -> None:
    comm = MPI.COMM_WORLD
    rows = []
    for n, tau in zip(levels, taus, strict=True):
        sets = [
            f"domain.cells=[{n}, {n}]",
            f"time.tau={tau}",
            "output.snapshots=1",
            "output.sample_cells=[256, 256]",
        ]
        case = load_case(name, sets, solver_tables())
        solver = get_solver("fem-implicit").load()(case, comm, case.solver_params("fem-implicit"))
        t0 = time.perf_counter()
        s = run_flow(solver, case, out / f"{name}_{n}_{tau}")
        wall = time.perf_counter() - t0
        if comm.rank == 0:
            rows.append(
                (
                    n,
                    tau,
                    sampled_l1(s.path, case),
                    s.diagnostics["l1_error"],
                    np.mean(s.iterations),
                    wall,
                )
            )
    if comm.rank != 0:
        return
    print(f"\n{name}: relative L1 error at T (EOC in h)")
    print(
        f"{'cells':>8s} {'tau':>10s} {'L1 sampled':>11s} {'EOC':>5s} {'L1 FE':>10s} "
        f"{'EOC':>5s} {'its':>5s} {'wall[s]':>8s}"
    )
    for i, (n, tau, e_s, e_q, its, wall) in enumerate(rows):
        eoc_s = eoc_q = ""
        if i:
            ratio = np.log(rows[i - 1][0] / n)
            eoc_s = f"{np.log(e_s / rows[i - 1][2]) / ratio:5.2f}"
            eoc_q = f"{np.log(e_q / rows[i - 1][3]) / ratio:5.2f}"
        print(
            f"{n:>5d}^2 {tau:10.3g} {e_s:11.3e} {eoc_s:>5s} {e_q:10.3e} {eoc_q:>5s} "
            f"{its:5.1f} {wall:8.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only 32² and 64²")
    args = parser.parse_args()
    levels = [32, 64] if args.quick else [32, 64, 128]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(MPI.COMM_WORLD.bcast(tmp, root=0))
        ladder("fokker_planck_ou_2d", levels, [0.01] * len(levels), out)
        ladder("fokker_planck_ou_2d", levels, [0.01 * (32 / n) ** 2 for n in levels], out)
        ladder("porous_medium_2d", levels, [0.005] * len(levels), out)
        ladder("porous_medium_2d", levels, [0.005 * (32 / n) ** 2 for n in levels], out)


if __name__ == "__main__":
    main()
