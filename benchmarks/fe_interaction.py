"""The FE solvers with an interaction: errors, EOC and the Keller–Segel moment law.

    .venv/bin/python benchmarks/fe_interaction.py [--quick]

Prints, from runs of the shipped cases (1 rank):

* ``aggregation_quadratic_2d`` (W = r²/2, linear diffusion; exact: OU about the centre of
  mass) at T = 0.1: the relative L1 error at T (FE density, Gauss quadrature) and the EOC
  between levels, for fem-implicit (τ = 0.002, small enough that h dominates) on 16²,
  32², 64² and for fem-jko with ``inner = "alg2"`` (the case's τ = 0.01) on 16², 32²;
  with each run's largest ``interaction_defect`` and whether the energy decayed;
* ``keller_segel_2d`` (χM = 4π, Newtonian kernel): the second-moment slope (least
  squares over [0, T]) against 4DM − χM²/(2π) = 2, as a relative error, for fem-implicit
  on 40², 80², 128² (τ = 0.2 h, i.e. the case's τ on 40²) and fem-jko (Newton) on 40², 80².

``--quick`` drops the largest level of each ladder.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
from mpi4py import MPI

from wgf.cases import load_case
from wgf.progress import set_quiet
from wgf.run import run_flow
from wgf.solvers import get_solver, solver_tables


def run(case: str, solver: str, sets: list[str], out: Path) -> tuple[dict, float]:
    """The diagnostics and time levels of one run, and its wall time."""
    c = load_case(case, sets, solver_tables())
    start = time.perf_counter()
    s = get_solver(solver).load()(c, MPI.COMM_WORLD, c.solver_params(solver))
    summary = run_flow(s, c, out)
    wall = time.perf_counter() - start
    with h5py.File(summary.path, "r") as f:
        d = {k: v[()] for k, v in f["diagnostics"].items()}
        d["time"] = f["time"][()]
    return d, wall


def aggregation(label: str, solver: str, levels: list[tuple[int, float]], extra, out) -> None:
    print(f"aggregation_quadratic_2d, T = 0.1, {label}")
    print(
        f"{'cells':>6s} {'tau':>7s} {'L1 error':>10s} {'EOC':>5s} {'defect max':>11s} "
        f"{'F decays':>8s} {'mass drift':>10s} {'wall [s]':>8s}"
    )
    previous = None
    for n, tau in levels:
        sets = [f"domain.cells=[{n},{n}]", f"time.tau={tau}", "time.t_end=0.1", *extra]
        d, wall = run("aggregation_quadratic_2d", solver, sets, out / f"{solver}{n}{label}")
        error = d["l1_error"][-1]
        eoc = f"{np.log2(previous / error):5.2f}" if previous else f"{'':5s}"
        decays = bool(np.all(np.diff(d["energy"]) < 0.0))
        drift = np.abs(d["mass"] - d["mass"][0]).max()
        print(
            f"{n:6d} {tau:7.4f} {error:10.3e} {eoc} {d['interaction_defect'].max():11.2e} "
            f"{decays!s:>8s} {drift:10.1e} {wall:8.1f}",
            flush=True,
        )
        previous = error


def keller_segel(solver: str, levels: list[int], out: Path) -> None:
    print(f"keller_segel_2d, T = 0.25, {solver}: slope of M2 against 2")
    print(f"{'cells':>6s} {'tau':>8s} {'slope':>8s} {'rel. error':>10s} {'wall [s]':>8s}")
    for n in levels:
        tau = 0.005 * 40 / n
        sets = [f"domain.cells=[{n},{n}]", f"time.tau={tau}"]
        d, wall = run("keller_segel_2d", solver, sets, out / f"ks{solver}{n}")
        slope = np.polyfit(d["time"], d["second_moment"], 1)[0]
        print(
            f"{n:6d} {tau:8.5f} {slope:8.5f} {abs(slope - 2.0) / 2.0:10.2%} {wall:8.1f}", flush=True
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="drop the largest levels")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    set_quiet(True)
    cut = -1 if args.quick else None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        aggregation(
            "fem-implicit", "fem-implicit", [(16, 0.002), (32, 0.002), (64, 0.002)][:cut], [], out
        )
        aggregation(
            "fem-jko alg2",
            "fem-jko",
            [(16, 0.01), (32, 0.01)][:cut],
            ["solver.fem-jko.inner=alg2"],
            out,
        )
        keller_segel("fem-implicit", [40, 80, 128][:cut], out)
        keller_segel("fem-jko", [40, 80][:cut], out)


if __name__ == "__main__":
    main()
