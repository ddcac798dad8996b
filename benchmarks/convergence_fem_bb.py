"""Space-time refinement study of fem-bb: W2 error, EOC, iterations, L1 error of ρ(½).

Usage (from the repository root):

    python benchmarks/convergence_fem_bb.py [CASE] [--levels K] [--set key=value ...]

Level ℓ = 0, 1, …, K-1 multiplies the case's ``domain.cells`` and ``time_cells`` by 2^ℓ
(so h and Δt halve together); the EOC is log2 of the ratio of successive errors.
The exact W2 (and, for two Gaussians, the exact geodesic at t = ½) come from the closed
forms of DESIGN §5.
"""

import dolfinx_solver  # noqa: F401

import argparse
import time

import numpy as np
from mpi4py import MPI

from wgf.cases import closed_forms as cf
from wgf.cases import load_case
from wgf.solvers import get_solver, solver_tables
from wgf.transport import exact_w2


def midpoint_l1(case, solver) -> float:
    """Relative L1 error of ρ(½) on the sample grid (two Gaussians only), else NaN."""
    ini, tgt = case.section("initial"), case.section("target")
    if not (ini["kind"] == tgt["kind"] == "gaussian"):
        return float("nan")
    eye = np.eye(case.dim)
    covs = [np.asarray(s["cov"]) * (eye if np.ndim(s["cov"]) == 0 else 1.0) for s in (ini, tgt)]
    mean, cov = cf.gaussian_geodesic(
        0.5, np.array(ini["mean"]), covs[0], np.array(tgt["mean"]), covs[1]
    )
    pts = case.sample_points(*solver.bounding_box())
    rho = solver.sample(np.array([0.5]), pts)
    if rho is None:
        return float("nan")
    exact = cf.gaussian_density(pts, mean, cov)
    return float(np.sum(np.abs(rho[0] - exact)) / np.sum(exact))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("case", nargs="?", default="ot_translated_gaussian_2d")
    parser.add_argument("--levels", type=int, default=3)
    parser.add_argument("--coarsen", type=int, default=1, help="divide the case's cells by this")
    parser.add_argument("--set", action="append", default=[], dest="sets")
    args = parser.parse_args()
    comm = MPI.COMM_WORLD
    base = load_case(args.case, args.sets, solver_tables())
    cells = np.array(base.section("domain")["cells"]) // args.coarsen
    nt = base.solver_params("fem-bb")["time_cells"] // args.coarsen
    exact = exact_w2(base)
    if comm.rank == 0:
        print(f"case {base.name}, exact W2 = {exact:.10f}")
        print(
            f"{'cells':>14s} {'dofs':>8s} {'W2 (primal)':>13s} {'rel.err':>9s} {'EOC':>5s} "
            f"{'W2 (dual)':>13s} {'rel.err':>9s} {'its':>6s} {'L1 rho(1/2)':>11s} "
            f"{'EOC':>5s} {'wall [s]':>8s}"
        )
    prev = prev_l1 = None
    for level in range(args.levels):
        c, t = (cells * 2**level).tolist(), nt * 2**level
        sets = [*args.sets, f"domain.cells={c}", f"solver.fem-bb.time_cells={t}"]
        case = load_case(args.case, sets, solver_tables())
        t0 = time.perf_counter()
        solver = get_solver("fem-bb").load()(case, comm, case.solver_params("fem-bb"))
        converged = solver.run()
        wall = time.perf_counter() - t0
        wp = np.sqrt(solver.history["w2sq_primal"][-1])
        wd = np.sqrt(max(solver.history["w2sq_dual"][-1], 0.0))
        err, errd = abs(wp - exact) / exact, abs(wd - exact) / exact
        l1 = midpoint_l1(case, solver)
        eoc = f"{np.log2(prev / err):5.2f}" if prev else "    -"
        eoc_l1 = f"{np.log2(prev_l1 / l1):5.2f}" if prev_l1 else "    -"
        prev, prev_l1 = err, l1
        if comm.rank == 0:
            cs = "x".join(map(str, [*c, t]))
            print(
                f"{cs:>14s} {solver.V.dofmap.index_map.size_global:8d} {wp:13.8f} {err:9.2e} "
                f"{eoc} {wd:13.8f} {errd:9.2e} {solver.iterations:6d}"
                f"{'' if converged else '*'} {l1:11.3e} {eoc_l1} {wall:8.1f}",
                flush=True,
            )
        solver.close()


if __name__ == "__main__":
    main()
