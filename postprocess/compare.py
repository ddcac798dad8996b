"""``wgf compare``: runs of one case, from any solvers, side by side.

At every snapshot time common to all runs it reports the error of each run against the
closed form (relative L1/L2 on the sample grid, W2 to the exact density), and between
every pair of runs the L1/L2 distance of the sampled densities and W2 (see
:mod:`wgf.postprocess.w2`; on the circle the geodesic W2 of
:mod:`wgf.postprocess.circle`).  It writes ``compare.csv`` (every row), ``compare.h5``, four
figures: energy against time (log scale), error against time, density slices and the
second moments of all runs with the case's exact law (``moments.png``; on a circle or
sphere the cluster order parameters of :mod:`wgf.postprocess.order`), and the moment
curves as one ParaView-readable ``moments_<run>.csv`` per run.

Every L1/L2 here is on the sample grid (midpoint rule), for FE and particle runs alike;
the table of ``wgf run`` shows the FE solvers' own errors, by Gauss quadrature on the
mesh, which differ from these.  The table header says so.

Files given that are not results files (the ``*_fields.h5`` heavy data of the XDMF that a
glob such as ``out/case_*.h5`` also matches) are skipped with a note.
"""

from __future__ import annotations

import csv
import itertools
import math
import os
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from wgf.cases.errors import UserError
from wgf.postprocess.clouds import cloud, exact_cloud, relative_errors, w2_options
from wgf.postprocess.labels import run_labels
from wgf.postprocess.results import Results, is_results_file, read_results
from wgf.postprocess.w2 import METHOD_NOTES, w2

#: Shown where a value does not exist (no closed form, a pair on different grids, ...).
DASH = "–"


@dataclass
class Comparison:
    """Rows of the comparison: ``rows`` (one per time and run/pair), and the final table."""

    runs: list[Results]
    times: np.ndarray
    rows: list[dict] = field(default_factory=list)


def _quiet(_: str) -> None:
    """The default ``note``/``progress`` sink of the library functions: say nothing."""


def select_results(paths: list[str | Path], note: Callable[[str], None] = _quiet) -> list[Path]:
    """The paths that are wgf results files; each other one is skipped with a ``note``.

    Raises:
        UserError: No path given, a path that does not exist, or no results file left.
    """
    if not paths:
        raise UserError("compare: give at least one results file")
    kept = []
    for path in map(Path, paths):
        if not path.is_file():
            raise UserError(f"'{path}' does not exist")
        if is_results_file(path):
            kept.append(path)
        elif h5py.is_hdf5(path):
            note(f"skipping {path}: not a wgf results file (the heavy data of an XDMF?)")
        else:
            note(f"skipping {path}: not a wgf results file (not HDF5)")
    if not kept:
        raise UserError(
            f"compare: none of the {len(paths)} files given is a wgf results file"
            " (those are the <case>_<solver>.h5 files wgf run writes)"
        )
    return kept


def load_runs(
    paths: list[str | Path], force: bool = False, note: Callable[[str], None] = _quiet
) -> list[Results]:
    """Read the results files among ``paths``; all must be of one case unless ``force``."""
    runs = [read_results(p) for p in select_results(paths, note)]
    cases = {r.case_name for r in runs}
    if len(cases) > 1 and not force:
        raise UserError(
            f"compare: the runs are of different cases ({', '.join(sorted(cases))});"
            " use --force to compare anyway"
        )
    return runs


def common_times(runs: list[Results]) -> np.ndarray:
    """Snapshot times present in every run (within round-off)."""
    times = runs[0].snapshot_time
    for run in runs[1:]:
        times = np.array(
            [t for t in times if np.any(np.isclose(run.snapshot_time, t, rtol=1e-9, atol=1e-12))]
        )
    return times


def _label(run: Results, runs: list[Results]) -> str:
    # The same names as the figures' legends (solver, plus the file where solvers repeat).
    return run_labels(runs)[runs.index(run)]


def compare(runs: list[Results], progress: Callable[[str], None] = _quiet) -> Comparison:
    """Compute every comparison row; ``progress`` gets one line per snapshot time."""
    times = common_times(runs)
    if not len(times):
        raise UserError("compare: the runs have no snapshot time in common")
    result = Comparison(runs, times)
    start = time.perf_counter()
    same_grid = all(
        r.sample_points.shape == runs[0].sample_points.shape
        and np.allclose(r.sample_points, runs[0].sample_points)
        for r in runs
    )
    # POT's network simplex and SciPy's distances release the GIL: the W2 problems of one
    # snapshot are solved on threads, one per core.
    pool = ThreadPoolExecutor(max_workers=max(1, min(len(os.sched_getaffinity(0)), 8)))
    for n, t in enumerate(times, start=1):
        rows, clouds = [], []
        for run in runs:
            k = run.snapshot_index(t)
            row = {"time": t, "run": _label(run, runs), "against": "exact"}
            row.update(relative_errors(run, k))
            rows.append(row)
            ex = exact_cloud(run, t)
            clouds.append(None if ex is None else ((*cloud(run, k), *ex), w2_options(run)))
        for a, b in itertools.combinations(runs, 2):
            ka, kb = a.snapshot_index(t), b.snapshot_index(t)
            row = {"time": t, "run": _label(a, runs), "against": _label(b, runs)}
            if same_grid:
                da, db = a.snapshot_density[ka], b.snapshot_density[kb]
                areas = a.sample_cell_areas()
                row["l1"] = float(np.sum(np.abs(da - db) * areas))
                row["l2"] = float(np.sqrt(np.sum((da - db) ** 2 * areas)))
            rows.append(row)
            clouds.append(((*cloud(a, ka), *cloud(b, kb)), w2_options(a, b)))
        solved = pool.map(lambda c: None if c is None else w2(*c[0], **c[1]), clouds)
        for row, value in zip(rows, solved, strict=True):
            if value is not None:
                row["w2"], row["w2_method"] = value
        result.rows.extend(rows)
        progress(
            f"compare: snapshot {n}/{len(times)} (t = {t:.6g}) done,"
            f" {time.perf_counter() - start:.1f} s"
        )
    pool.shutdown()
    return result


def w2_header(rows: list[dict]) -> str:
    """The table-header line that says how the W2 column was computed."""
    methods = sorted({r["w2_method"] for r in rows if r.get("w2_method")})
    if not methods:
        return "W2: none (no closed form and a single run)"
    return "W2: " + "; ".join(METHOD_NOTES.get(m, m) for m in methods)


def final_table(result: Comparison) -> str:
    """The table printed by ``wgf compare``: errors at the last common time, wall times.

    The header names what the columns measure: L1/L2 on the sample grid (relative to the
    closed form in the ``exact`` rows, absolute between two runs) and the W2 method.
    """
    t = result.times[-1]
    rows = [r for r in result.rows if r["time"] == t]
    lines = [
        f"case {result.runs[0].case_name}, t = {t:.6g}",
        "L1, L2 on the sample grid (midpoint rule): relative to the closed form against"
        " 'exact', absolute between two runs",
        w2_header(rows),
        f"{'run':18s} {'against':18s} {'L1 grid':>10s} {'L2 grid':>10s} {'W2':>10s} "
        f"{'mass drift':>11s} {'wall [s]':>9s}",
    ]
    lines.append("-" * len(lines[-1]))
    for row in rows:
        run = next((r for r in result.runs if _label(r, result.runs) == row["run"]), None)
        drift = wall = ""  # per run, not per pair
        if row["against"] == "exact" and run is not None:
            mass = run.diagnostics.get("mass")
            has_mass = mass is not None and len(mass)
            drift = _num(abs(mass[-1] - mass[0]) / mass[0], ".2e") if has_mass else DASH
            wt = run.diagnostics.get("wall_time")
            wall = _num(wt[-1], ".2f") if wt is not None and len(wt) else DASH
        lines.append(
            f"{row['run']:18s} {row['against']:18s} {_num(row.get('l1')):>10s} "
            f"{_num(row.get('l2')):>10s} {_num(row.get('w2')):>10s} {drift:>11s} "
            f"{wall:>9s}"
        )
    return "\n".join(lines)


def _num(value: float | None, spec: str = ".3e") -> str:
    """``value`` formatted by ``spec``, or :data:`DASH` where it is None or NaN."""
    if value is None or math.isnan(value):
        return DASH
    return format(value, spec)


def write_outputs(result: Comparison, out_dir: Path) -> list[Path]:
    """Write compare.csv, compare.h5 and the figures; return the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    keys = ["time", "run", "against", "l1", "l2", "w2", "w2_method"]
    csv_path = out_dir / "compare.csv"
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        for row in result.rows:
            writer.writerow({k: row.get(k, "") for k in keys})
    h5_path = out_dir / "compare.h5"
    with h5py.File(h5_path, "w") as f:
        f.attrs["runs"] = [str(r.path) for r in result.runs]
        f["times"] = result.times
        for k in ("l1", "l2", "w2"):
            f[k] = np.array([row.get(k, np.nan) for row in result.rows])
        for k in ("run", "against", "w2_method"):
            f[k] = np.array([str(row.get(k, "")) for row in result.rows], dtype="S")
        f["time"] = np.array([row["time"] for row in result.rows])
    from wgf.postprocess.plots import plot_comparison

    moments = write_moment_tables(result.runs, out_dir)
    return [csv_path, h5_path, *moments, *plot_comparison(result, out_dir)]


#: The per-step series of a moment table, beside the exact second moment.
MOMENT_SERIES = ("second_moment", "interaction_energy", "energy")


def write_moment_tables(runs: list[Results], out_dir: Path) -> list[Path]:
    """One ``moments_<run>.csv`` per run: time, the moment series and the exact M₂.

    Every time level of the run, numbers only, so that ParaView's CSV reader opens each
    as a table and "Line Chart View" draws the curves (the PNG is ``moments.png``).
    Columns: ``time``, those of :data:`MOMENT_SERIES` the run records, and
    ``second_moment_exact`` where the case has a law (blank where it is negative).
    """
    from wgf.postprocess.plots import second_moment_curve

    paths = []
    for run, label in zip(runs, run_labels(runs), strict=True):
        columns = {"time": run.time}
        columns.update({k: run.diagnostics[k] for k in MOMENT_SERIES if k in run.diagnostics})
        if "second_moment" not in columns:
            continue
        exact = second_moment_curve(run, run.time)
        if exact is not None:
            columns["second_moment_exact"] = exact
        path = out_dir / f"moments_{re.sub(r'[^A-Za-z0-9_.-]+', '_', label)}.csv"
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            for row in zip(*columns.values(), strict=True):
                writer.writerow(["" if math.isnan(v) else repr(float(v)) for v in row])
        paths.append(path)
    return paths
