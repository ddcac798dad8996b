"""Cost of one fem-jko step against one fem-implicit step, same mesh and τ, one run.

    .venv/bin/python benchmarks/jko_cost.py [--case porous_medium_2d] [--cells 64] [--steps 10]
    .venv/bin/mpiexec -n 2 .venv/bin/python -m mpi4py benchmarks/jko_cost.py --cells 256

Prints the wall time per step of each solver, their ratio (goal ≤ 3), the Newton
iterations and the L1 error at the end of the run; then, for accuracy at equal cost,
fem-implicit again with k = round(ratio) times smaller steps to the same time.  Under
mpiexec the times are those of the parallel run; compare two invocations for the
speed-up over ranks.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
from mpi4py import MPI

from wgf.cases import load_case
from wgf.run import build_solver
from wgf.solvers import solver_tables

#: Untimed steps before the timed ones.
WARMUP = 2


def time_steps(
    case_name: str,
    sets: list[str],
    solver: str,
    steps: int,
    comm: MPI.Comm = MPI.COMM_WORLD,
    warmup: int = WARMUP,
) -> tuple[float, dict]:
    """Wall time per step of ``steps`` steps on ``comm``, and the final diagnostics.

    The first ``warmup`` steps are not timed: they set up the linear solvers, and the
    very first JKO step (from ϕ = -δF/δρ(ρ₀), without a history to extrapolate from)
    takes 2–4 times the Newton iterations of the later ones.
    """
    case = load_case(case_name, sets, solver_tables())
    s = build_solver(case, solver, comm)
    tau = case.section("time")["tau"]
    for _ in range(warmup):
        s.step(tau)
    its = []
    comm.Barrier()
    t0 = time.perf_counter()
    for _ in range(steps):
        its.append(s.step(tau))
    comm.Barrier()
    per_step = (time.perf_counter() - t0) / steps
    d = s.diagnostics((warmup + steps) * tau)
    d["its"] = float(np.mean(its))
    return per_step, d


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", default="porous_medium_2d")
    parser.add_argument("--cells", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    dim = load_case(args.case).dim
    sets = [f"domain.cells={[args.cells] * dim}"]
    with tempfile.TemporaryDirectory():
        implicit, d_i = time_steps(args.case, sets, "fem-implicit", args.steps)
        jko, d_j = time_steps(args.case, sets, "fem-jko", args.steps)
    if MPI.COMM_WORLD.rank == 0:
        print(
            f"{args.case}, {args.cells}^{dim} cells, {args.steps} steps, "
            f"{MPI.COMM_WORLD.size} rank(s)"
        )
        for name, t, d in (("fem-implicit", implicit, d_i), ("fem-jko", jko, d_j)):
            print(
                f"{name:13s} {t * 1e3:9.2f} ms/step  Newton its {d['its']:5.2f}  "
                f"L1 err {d.get('l1_error', np.nan):.3e}"
            )
        print(f"cost ratio fem-jko / fem-implicit: {jko / implicit:.2f}")
    # Equal cost: fem-implicit with k = round(ratio) times smaller steps to the same time.
    k = max(1, round(jko / implicit))
    tau = load_case(args.case, sets).section("time")["tau"]
    with tempfile.TemporaryDirectory():
        fine, d_f = time_steps(
            args.case,
            [*sets, f"time.tau={tau / k}"],
            "fem-implicit",
            k * args.steps,
            warmup=k * WARMUP,
        )
    if MPI.COMM_WORLD.rank == 0:
        print(f"equal cost at t = {(WARMUP + args.steps) * tau:g}:")
        print(
            f"  fem-jko,      tau = {tau:g}: {jko * args.steps:7.3f} s, "
            f"L1 err {d_j.get('l1_error', np.nan):.3e}"
        )
        print(
            f"  fem-implicit, tau = {tau / k:g}: {fine * k * args.steps:7.3f} s, "
            f"L1 err {d_f.get('l1_error', np.nan):.3e}"
        )


if __name__ == "__main__":
    main()
