"""Wall time of ``wgf sweep`` on 2 ranks (1 rank per run) against the same points run one
after another on 1 rank, measured in one run.

    .venv/bin/python benchmarks/sweep_speedup.py [--cells 96]

Prints both wall times and their ratio (goal ≥ 1.7 on 2 cores), then the sweep's table.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=96, help="porous_medium_2d cells per side")
    args = parser.parse_args()
    base = ["porous_medium_2d", "--set", f"domain.cells=[{args.cells}, {args.cells}]"]
    taus, ms = ["0.005", "0.0025"], ["2", "3"]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        for tau in taus:
            for m in ms:
                subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "wgf",
                        "run",
                        *base,
                        "--set",
                        f"time.tau={tau}",
                        "--set",
                        f"energy.m={m}",
                        "--out",
                        f"{tmp}/seq_{tau}_{m}",
                    ],
                    check=True,
                    capture_output=True,
                    cwd=ROOT,
                )
        sequential = time.perf_counter() - t0
        t0 = time.perf_counter()
        proc = subprocess.run(
            [
                str(BIN / "mpiexec"),
                "-n",
                "2",
                sys.executable,
                "-m",
                "mpi4py",
                "-m",
                "wgf",
                "sweep",
                *base,
                "--grid",
                f"time.tau={','.join(taus)}",
                "--grid",
                f"energy.m={','.join(ms)}",
                "--ranks-per-run",
                "1",
                "--out",
                f"{tmp}/sweep",
            ],
            check=True,
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        swept = time.perf_counter() - t0
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"4 points one after another: {sequential:.2f} s")
    print(f"wgf sweep, 2 ranks x 1:     {swept:.2f} s")
    print(f"speed-up: {sequential / swept:.2f}")
    print("\n".join(line for line in proc.stdout.splitlines() if not line.startswith("[")))


if __name__ == "__main__":
    main()
