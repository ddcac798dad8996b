"""wgf against the back-and-forth method (BFM) of Jacobs–Lee–Léger, side by side.

    .venv/bin/python benchmarks/bfm_side_by_side.py --bfm /path/to/bfm_pme \\
        [--grids 128 256] [--m 2 3] [--solvers fem-jko fem-implicit]

The problem (issue 16): the porous medium equation ∂_t ρ = Δρ^m on [0, 1]², the
Barenblatt profile of mass 1 centred at (½, ½) from s = t0 = 1e-4 to t0 + T, T = 9e-4, in
20 steps of τ = 4.5e-5 (support radius 0.18 → 0.32 for m = 2, 0.27 → 0.40 for m = 3).
Both codes get the same grid: BFM an n × n pixel grid, wgf the n × n box mesh (P1 on
(n + 1)² vertices), and the same τ.

BFM is not part of wgf and is not shipped with it.  ``--bfm`` is a stand-alone build of its
porous-medium loop: the ``src/`` headers of github.com/wonjunee/wgfBFMcodes (C++, FFTW 3)
with a ``main()`` in place of ``wgfslow.cpp``'s ``mexFunction``, called as

    bfm_pme n m gamma tau nt max_iteration tolerance rho0.bin rhoT.bin

(densities as n·n float64 in row-major order at the pixel centres, mean = mass); it prints
``LOOP_CPU <seconds>`` of its time loop, and BFM itself prints one line per outer step (the
last one with the iterations that step took).  Build: ``g++ -O3 -march=native bfm_pme.cpp
-lfftw3``.

Printed for each m, grid and code: the L1 error at T against the Barenblatt profile (BFM:
at the pixel centres, Σ|ρ - ρ_exact|/n²; wgf: its ``l1_error`` diagnostic), the inner
iterations per step (BFM: back-and-forth iterations; wgf: Newton iterations, failed
attempts included; fem-jko's on the coarser meshes of its nested iteration printed after
the row) and the CPU seconds of the time loop (BFM: its own ``clock()`` around the loop;
wgf: ``time.process_time`` around the driver's steps, set-up excluded on both sides;
wgf's is printed after the row), then the ratios wgf/BFM of CPU and BFM/wgf of L1
measured in the same run.
wgf's loop includes what a run computes after every step and BFM's does not: the
diagnostics, among them the L1/L2 errors against the Barenblatt profile on degree-6
quadrature (about 0.09 s a step at 256², 1.7 s of the 26 s of fem-jko at m = 2).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from mpi4py import MPI

from wgf import api
from wgf.cases.closed_forms import barenblatt
from wgf.run import TimeGrid, advance, build_solver

T0, T_END, STEPS, MASS = 1e-4, 9e-4, 20, 1.0
CENTRE = np.array([0.5, 0.5])
#: BFM's iteration cap and stopping tolerance (its example_slow.m uses 200 and 1e-2).
BFM_MAX_IT, BFM_TOL = 300, 1e-2


def pixel_centres(n: int) -> np.ndarray:
    """The n² pixel centres of [0, 1]², row-major with x fastest (BFM's layout)."""
    c = (np.arange(n) + 0.5) / n
    x, y = np.meshgrid(c, c)
    return np.column_stack([x.ravel(), y.ravel()])


def run_bfm(binary: Path, n: int, m: float, tmp: Path) -> dict:
    """One BFM run: L1 error at T, iterations per step, CPU of its loop."""
    points = pixel_centres(n)
    rho0 = barenblatt(points, T0, m, MASS, CENTRE)
    rho0 *= MASS / rho0.mean()  # BFM's mass is the pixel mean
    src, dst = tmp / f"rho0_{n}.bin", tmp / f"rhoT_{n}.bin"
    rho0.astype(np.float64).tofile(src)
    tau = T_END / STEPS
    args = [str(binary), str(n), str(m), "1", repr(tau), str(STEPS), str(BFM_MAX_IT)]
    args += [repr(BFM_TOL), str(src), str(dst)]
    proc = subprocess.run(args, capture_output=True, text=True, check=True)
    rho = np.fromfile(dst, dtype=np.float64)
    exact = barenblatt(points, T0 + T_END, m, MASS, CENTRE)
    its = _bfm_iterations(proc.stdout)
    cpu = float(re.search(r"^LOOP_CPU (\S+)", proc.stdout, re.M).group(1))
    l1 = float(np.abs(rho - exact).mean())
    return {"l1": l1, "its": its, "cpu": cpu, "capped": int(np.sum(its >= BFM_MAX_IT))}


def _bfm_iterations(stdout: str) -> np.ndarray:
    """The iterations of each outer step: the last iteration line BFM printed in it."""
    steps = re.split(r"^Iter : \d+", stdout, flags=re.M)[1:]
    its = []
    for block in steps:
        lines = re.findall(r"^\s*(\d+) \tdual value", block, flags=re.M)
        its.append(int(lines[-1]) if lines else 0)
    return np.asarray(its, dtype=float)


def run_wgf(solver_name: str, n: int, m: float) -> dict:
    """One wgf run through the driver's step loop: L1 at T, iterations, CPU of the steps."""
    case = api.load(
        "porous_medium_2d",
        {
            "energy.m": m,
            "initial.mass": MASS,
            "initial.t0": T0,
            "initial.center": CENTRE.tolist(),
            "domain.lower": [0.0, 0.0],
            "domain.upper": [1.0, 1.0],
            "domain.cells": [n, n],
            "time.t_end": T_END,
            "time.tau": T_END / STEPS,
            "output.sample_cells": [2 * n, 2 * n],
        },
    )
    start = time.process_time()
    solver = build_solver(case, solver_name, MPI.COMM_WORLD)
    setup = time.process_time() - start
    grid = TimeGrid.from_case(case)
    start = time.process_time()
    records = list(advance(solver, grid))
    cpu = time.process_time() - start
    its = np.asarray([r.iterations_total for r in records], dtype=float)
    retries = sum(r.retries for r in records)
    last = records[-1].diagnostics
    return {
        "l1": last["l1_error"],
        "its": its,
        "cpu": cpu,
        "setup": setup,
        "coarse": last.get("coarse_iterations", 0.0) / len(records),
        "retries": retries,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bfm", type=Path, required=True, help="the bfm_pme executable")
    parser.add_argument("--grids", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--m", type=float, nargs="+", default=[2.0, 3.0])
    parser.add_argument("--solvers", nargs="+", default=["fem-jko", "fem-implicit"])
    args = parser.parse_args()
    print(f"porous medium on [0,1]², Barenblatt mass 1, t0 = {T0:g}, T = {T_END:g}, {STEPS} steps")
    print(
        f"{'m':>3s} {'grid':>5s} {'code':13s} {'L1 err':>9s} {'its mean':>8s} {'max':>4s} "
        f"{'CPU s':>8s} {'CPU/BFM':>8s} {'L1 BFM/it':>9s}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for m in args.m:
            for n in args.grids:
                bfm = run_bfm(args.bfm, n, m, Path(tmp))
                rows = {"BFM": bfm} | {s: run_wgf(s, n, m) for s in args.solvers}
                for code, r in rows.items():
                    note = f"  ({r['capped']} steps at BFM's cap)" if r.get("capped") else ""
                    note += f"  ({r['retries']} retries)" if r.get("retries") else ""
                    note += f"  (set-up {r['setup']:.1f} s)" if "setup" in r else ""
                    if r.get("coarse"):
                        note += f"  (+{r['coarse']:.2f} its/step on coarser meshes)"
                    print(
                        f"{m:3g} {n:4d}² {code:13s} {r['l1']:9.3e} {r['its'].mean():8.2f} "
                        f"{r['its'].max():4.0f} {r['cpu']:8.2f} {r['cpu'] / bfm['cpu']:8.2f} "
                        f"{bfm['l1'] / r['l1']:9.2f}{note}",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
