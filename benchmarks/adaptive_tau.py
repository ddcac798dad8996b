"""Adaptive τ against fixed τ: steps, inner iterations and the L1 error at T, in one run.

    .venv/bin/python benchmarks/adaptive_tau.py [--case porous_medium_2d] [--tau-max 4]

For each Newton solver (fem-implicit, fem-jko) the case runs twice: with its fixed τ, and
with ``time.adaptive = true`` from the same τ with ``tau_max`` = ``--tau-max`` × τ.  The
table gives the steps, the Newton iterations (accepted, and in total with the rejected
attempts), the rejected attempts, the relative L1 error at T and the wall time, and the
last line the adaptive/fixed ratios.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time

from wgf import api
from wgf.progress import set_quiet


def run_once(case_name: str, solver: str, overrides: dict, out: str) -> dict[str, float]:
    """One run; its steps, iterations, rejections, final L1 error and wall time."""
    case = api.load(case_name, overrides)
    start = time.perf_counter()
    d = api.run(case, solver, out=out).diagnostics
    return {
        "steps": len(d["tau"]) - 1,
        "its": int(d["iterations"].sum()),
        "total": int(d["iterations_total"].sum()),
        "rejected": int(d["retries"].sum()),
        "l1": float(d["l1_error"][-1]),
        "wall": time.perf_counter() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", default="porous_medium_2d")
    parser.add_argument("--tau-max", type=float, default=4.0, help="tau_max as a multiple of τ")
    parser.add_argument("--solvers", default="fem-implicit,fem-jko")
    args = parser.parse_args()
    logging.disable(logging.INFO)
    set_quiet(True)
    tau = api.load(args.case).section("time")["tau"]
    adaptive = {"time.adaptive": True, "time.tau_max": args.tau_max * tau}
    print(f"{args.case}: fixed τ = {tau:g} against adaptive τ ≤ {args.tau_max:g}τ")
    print(
        f"{'solver':14s} {'τ':9s} {'steps':>6s} {'its':>6s} {'its total':>9s} "
        f"{'rejected':>8s} {'L1 err':>10s} {'wall [s]':>8s}"
    )
    with tempfile.TemporaryDirectory() as out:
        for solver in args.solvers.split(","):
            rows = {}
            for label, over in (("fixed", {}), ("adaptive", adaptive)):
                r = rows[label] = run_once(args.case, solver, over, f"{out}/{label}")
                print(
                    f"{solver:14s} {label:9s} {r['steps']:6d} {r['its']:6d} {r['total']:9d} "
                    f"{r['rejected']:8d} {r['l1']:10.3e} {r['wall']:8.2f}"
                )
            a, f = rows["adaptive"], rows["fixed"]
            print(
                f"{solver:14s} adaptive/fixed: steps {a['steps'] / f['steps']:.2f}, "
                f"its total {a['total'] / f['total']:.2f}, L1 {a['l1'] / f['l1']:.2f}, "
                f"wall {a['wall'] / f['wall']:.2f}"
            )


if __name__ == "__main__":
    main()
