"""Steady states of the shipped formula-potential cases: every solver, under refinement.

Each case runs to its T (chosen from the spectral gap: ``benchmarks/spectral_gap.py``), so
the relative L1 error against the steady state (``[exact] kind = "stationary"``) at T is
the discretisation error of the solver.  FE solvers refine the mesh (h), particle solvers
the particle count (N); ``rate`` is the order of consecutive levels in the resolution
1/h (cells per direction, or N^{1/d} for particles).

    .venv/bin/python benchmarks/stationary.py [CASE ...] [--quick]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from wgf import api
from wgf.cases.errors import SolverError

#: (solver, refined key, levels, fixed --set) per case.
STUDIES = {
    "double_well_1d": [
        ("fem-implicit", "domain.cells", [[100], [200], [400]], {}),
        ("fem-jko", "domain.cells", [[100], [200], [400]], {}),
        ("fem-jko", "domain.cells", [[100], [200]], {"solver.fem-jko.inner": "alg2"}),
        ("quantile-1d", "solver.quantile-1d.particles", [100, 200, 400], {}),
        ("blob", "solver.blob.particles", [100, 200, 400], {}),
        ("langevin", "solver.langevin.particles", [1000, 4000, 16000], {}),
    ],
    "double_well_2d": [
        ("fem-implicit", "domain.cells", [[24, 24], [48, 48], [96, 96]], {}),
        ("fem-jko", "domain.cells", [[24, 24], [48, 48], [96, 96]], {}),
        ("blob", "solver.blob.particles", [400, 1600], {}),
        ("langevin", "solver.langevin.particles", [2500, 10000], {}),
    ],
    "porous_quartic_2d": [
        ("fem-jko", "domain.cells", [[24, 24], [48, 48], [96, 96]], {}),
        ("blob", "solver.blob.particles", [400, 1600], {}),
        ("fem-implicit", "domain.cells", [[48, 48]], {}),
    ],
}


def main() -> None:
    """Run the studies and print one row per level."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", default=list(STUDIES))
    parser.add_argument("--quick", action="store_true", help="the first two levels only")
    args = parser.parse_args()
    print(
        f"{'case':18s} {'solver':18s} {'level':>12s} {'L1 at T':>10s} {'rate':>6s} "
        f"{'mass drift':>10s} {'F incr.':>7s} {'wall s':>7s}"
    )
    for name in args.cases:
        for solver, key, levels, fixed in STUDIES[name]:
            previous, resolution0 = None, None
            label = solver + (" (alg2)" if fixed.get("solver.fem-jko.inner") == "alg2" else "")
            for level in levels[:2] if args.quick else levels:
                case = api.load(name, {**fixed, key: level})
                start = time.perf_counter()
                try:
                    with tempfile.TemporaryDirectory() as out:
                        res = api.run(case, solver, out=out)
                except SolverError as err:
                    print(f"{name:18s} {label:18s} {level!s:>12s}  stopped (exit 3): {err}")
                    continue
                wall = time.perf_counter() - start
                d = res.diagnostics
                l1 = d["l1_error"][-1]
                resolution = level[0] if isinstance(level, list) else level ** (1 / case.dim)
                rate = (
                    np.log(previous / l1) / np.log(resolution / resolution0) if previous else np.nan
                )
                drift = np.max(np.abs(d["mass"] - d["mass"][0]))
                increases = int(np.sum(np.diff(d["energy"]) > 1e-12 * np.abs(d["energy"][:-1])))
                print(
                    f"{name:18s} {label:18s} {level!s:>12s} {l1:10.3e} {rate:6.2f} "
                    f"{drift:10.1e} {increases:7d} {wall:7.1f}",
                    flush=True,
                )
                previous, resolution0 = l1, resolution


if __name__ == "__main__":
    main()
