"""W2 of ``wgf compare`` against dense ``ot.emd2`` on the demo's data: differences and times.

    .venv/bin/mpiexec -n 2 .venv/bin/python -m mpi4py -m wgf run porous_medium_2d --out out
    .venv/bin/python benchmarks/w2_accuracy.py [out/porous_medium_2d_*.h5] [--binned]

For every snapshot time and every W2 problem that ``wgf compare`` solves (each run against
the closed form, every pair of runs), it prints the reference (``ot.emd2`` on the full
cost matrix of the clouds), the value and time of ``w2`` (sparse emd certified by its
duals: :mod:`wgf.postprocess.w2`), and their relative difference.  With ``--binned`` it
also prints ``ot.emd2`` on both clouds binned to ≤ 1000 points on one grid, the cheap
alternative that was rejected (its error is of the order of W2 itself here).
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import numpy as np

from wgf.postprocess.clouds import cloud, exact_cloud
from wgf.postprocess.compare import common_times, load_runs
from wgf.postprocess.w2 import normalise, w2, w2_dense_emd

DEMO = [f"out/porous_medium_2d_{s}.h5" for s in ("fem-implicit", "fem-jko", "blob")]
BINNED_POINTS = 1000


def binned_pair(
    x: np.ndarray, a: np.ndarray, y: np.ndarray, b: np.ndarray, points: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Both clouds aggregated on one uniform grid of ≤ ``points`` cells (barycentres)."""
    lo = np.minimum(x.min(axis=0), y.min(axis=0))
    hi = np.maximum(x.max(axis=0), y.max(axis=0))
    d = x.shape[1]
    per_axis = max(2, int(points ** (1.0 / d)))

    def one(z: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        idx = np.minimum(((z - lo) / (hi - lo) * per_axis).astype(int), per_axis - 1)
        inverse = np.unique(np.ravel_multi_index(idx.T, (per_axis,) * d), return_inverse=True)[1]
        mass = np.bincount(inverse, weights=w)
        centre = np.stack([np.bincount(inverse, weights=w * z[:, k]) for k in range(d)], 1)
        return centre / mass[:, None], mass

    return *one(x, a), *one(y, b)


def problems(paths: list[str]):
    """Yield (time, label, clouds) for every W2 problem ``wgf compare`` solves."""
    runs = load_runs(paths)
    for t in common_times(runs):
        for run in runs:
            ex = exact_cloud(run, t)
            if ex is not None:
                yield t, f"{run.solver} / exact", (*cloud(run, run.snapshot_index(t)), *ex)
        for a, b in itertools.combinations(runs, 2):
            clouds = (*cloud(a, a.snapshot_index(t)), *cloud(b, b.snapshot_index(t)))
            yield t, f"{a.solver} / {b.solver}", clouds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", default=DEMO)
    parser.add_argument("--binned", action="store_true", help="also emd2 on <= 1000 points")
    args = parser.parse_args()
    head = f"{'t':>6s} {'problem':26s} {'n x m':>12s} {'emd2':>11s} {'[s]':>6s} "
    head += f"{'w2':>11s} {'[s]':>6s} {'rel diff':>9s}"
    if args.binned:
        head += f" {'binned':>11s} {'[s]':>6s} {'rel diff':>9s}"
    print(head)
    print("-" * len(head))
    worst, total_ref, total_new = 0.0, 0.0, 0.0
    for t, label, (x, a, y, b) in problems(args.runs):
        xn, an = normalise(x, a)
        yn, bn = normalise(y, b)
        start = time.perf_counter()
        ref = w2_dense_emd(xn, an, yn, bn)
        t_ref = time.perf_counter() - start
        start = time.perf_counter()
        new = w2(x, a, y, b)[0]
        t_new = time.perf_counter() - start
        rel = abs(new - ref) / ref
        worst, total_ref, total_new = max(worst, rel), total_ref + t_ref, total_new + t_new
        line = f"{t:6.3g} {label:26s} {f'{len(an)}x{len(bn)}':>12s} {ref:11.5e} {t_ref:6.2f} "
        line += f"{new:11.5e} {t_new:6.2f} {rel:9.1e}"
        if args.binned:
            start = time.perf_counter()
            binned = w2_dense_emd(*binned_pair(xn, an, yn, bn, BINNED_POINTS))
            t_bin = time.perf_counter() - start
            line += f" {binned:11.5e} {t_bin:6.2f} {abs(binned - ref) / ref:9.1e}"
        print(line, flush=True)
    print(
        f"w2 against dense ot.emd2: max relative difference {worst:.1e}; "
        f"time {total_new:.1f} s against {total_ref:.1f} s (one thread)"
    )


if __name__ == "__main__":
    if not all(Path(p).is_file() for p in DEMO):
        print("note: the default inputs are the demo's results in out/ (see the docstring)")
    main()
