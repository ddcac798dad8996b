"""``wgf compare``: runs of one case, from any solvers, side by side.

At every snapshot time common to all runs it reports the error of each run against the
closed form (relative L1/L2 on the sample grid, W2 to the exact density), and between
every pair of runs the L1/L2 distance of the sampled densities and W2 (see
:mod:`wgf.postprocess.w2`).  It writes ``compare.csv`` (every row), ``compare.h5`` and three
figures: energy against time (log scale), error against time, and density slices.
"""

from __future__ import annotations

import csv
import itertools
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from wgf.cases.errors import UserError
from wgf.postprocess.clouds import cloud, exact_cloud, relative_errors
from wgf.postprocess.labels import run_labels
from wgf.postprocess.results import Results, read_results
from wgf.postprocess.w2 import w2


@dataclass
class Comparison:
    """Rows of the comparison: ``rows`` (one per time and run/pair), and the final table."""

    runs: list[Results]
    times: np.ndarray
    rows: list[dict] = field(default_factory=list)


def load_runs(paths: list[str | Path], force: bool = False) -> list[Results]:
    """Read the results files; all must be of one case unless ``force``."""
    if not paths:
        raise UserError("compare: give at least one results file")
    runs = [read_results(p) for p in paths]
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


def compare(runs: list[Results]) -> Comparison:
    """Compute every comparison row."""
    times = common_times(runs)
    if not len(times):
        raise UserError("compare: the runs have no snapshot time in common")
    result = Comparison(runs, times)
    same_grid = all(
        r.sample_points.shape == runs[0].sample_points.shape
        and np.allclose(r.sample_points, runs[0].sample_points)
        for r in runs
    )
    for t in times:
        for run in runs:
            k = run.snapshot_index(t)
            row = {"time": t, "run": _label(run, runs), "against": "exact"}
            row.update(relative_errors(run, k))
            ex = exact_cloud(run, t)
            if ex is not None:
                row["w2"], row["w2_method"] = w2(*cloud(run, k), *ex)
            result.rows.append(row)
        for a, b in itertools.combinations(runs, 2):
            ka, kb = a.snapshot_index(t), b.snapshot_index(t)
            row = {"time": t, "run": _label(a, runs), "against": _label(b, runs)}
            if same_grid:
                da, db = a.snapshot_density[ka], b.snapshot_density[kb]
                vol = a.sample_cell_volume()
                row["l1"] = float(np.sum(np.abs(da - db)) * vol)
                row["l2"] = float(np.sqrt(np.sum((da - db) ** 2) * vol))
            row["w2"], row["w2_method"] = w2(*cloud(a, ka), *cloud(b, kb))
            result.rows.append(row)
    return result


def final_table(result: Comparison) -> str:
    """The table printed by ``wgf compare``: errors at the last common time, wall times."""
    t = result.times[-1]
    lines = [
        f"case {result.runs[0].case_name}, t = {t:.6g}",
        f"{'run':18s} {'against':18s} {'L1':>10s} {'L2':>10s} {'W2':>10s} "
        f"{'mass drift':>11s} {'wall [s]':>9s}",
    ]
    lines.append("-" * len(lines[-1]))
    for row in (r for r in result.rows if r["time"] == t):
        run = next((r for r in result.runs if _label(r, result.runs) == row["run"]), None)
        drift = wall = ""
        if row["against"] == "exact" and run is not None:
            mass = run.diagnostics.get("mass")
            if mass is not None and len(mass):
                drift = f"{abs(mass[-1] - mass[0]) / mass[0]:.2e}"
            wt = run.diagnostics.get("wall_time")
            wall = f"{wt[-1]:.2f}" if wt is not None and len(wt) else ""
        lines.append(
            f"{row['run']:18s} {row['against']:18s} {_num(row.get('l1')):>10s} "
            f"{_num(row.get('l2')):>10s} {_num(row.get('w2')):>10s} {drift:>11s} "
            f"{wall:>9s}"
        )
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3e}"


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

    return [csv_path, h5_path, *plot_comparison(result, out_dir)]
