"""``wgf sweep``: a parameter study over a grid of case keys, under ``mpiexec``.

COMM_WORLD (P ranks) is split into P/K groups of K = ``--ranks-per-run`` ranks; group g
runs the grid points i with i mod (P/K) = g, one after another, each on its K ranks and
into its own directory ``OUT/<point>/``.  Every point's case is loaded and validated before
the first one runs, so a bad value anywhere in the grid is refused at once.  A point's
``status.json`` records ``running`` when it starts and, when it ends, ``done`` with its
scalars or ``failed`` with the message; a failing point does not stop the sweep.

The status also holds ``config_hash``, a SHA-256 of the point's resolved configuration and
solver name: the point's directory name depends only on its grid values, so a changed base
case (``--set`` or an edited case file) would otherwise pass for the old one.  Running the
same sweep again skips the points that are done with the same hash and resumes those that
were interrupted (their results file holds a checkpoint); a point whose hash differs is
re-run from scratch, saying so.  At the end rank 0 prints and writes ``OUT/summary.csv``.

A transport solver (``fem-bb``) runs the same way, one solve per point (nothing to
resume: an unfinished point is solved again), and reports the W2 distance, its relative
error against the exact W2 when the case has one, and the ALG2 iteration count.  A solver
whose kind does not match the case is refused before any point runs.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import re
import time
from pathlib import Path

import numpy as np
from mpi4py import MPI

from wgf.cases import Case, load_case
from wgf.cases.case import parse_override
from wgf.cases.errors import SolverError, UserError
from wgf.cases.schema import SCHEMA, key_at
from wgf.dispatch import check_kind, check_runnable, run_solver
from wgf.postprocess.results import read_results
from wgf.progress import note
from wgf.results import results_path
from wgf.solvers import get_solver, solver_tables
from wgf.summary import fmt as fmt_value

#: The scalars of a point in ``summary.csv``, by solver kind.
SCALARS = {
    "flow": ("l1_error", "energy", "wall_time", "iterations_mean", "steps"),
    "transport": ("w2", "w2_error", "wall_time", "iterations"),
}
#: The columns of the printed table, by solver kind: (record key, heading, format).
COLUMNS = {
    "flow": (
        ("l1_error", "L1 err", "10.3e"),
        ("energy", "energy", "12.6g"),
        ("wall_time", "wall [s]", "9.2f"),
        ("iterations_mean", "its", "6.2f"),
    ),
    "transport": (
        ("w2", "W2", "12.8f"),
        ("w2_error", "W2 rel err", "10.3e"),
        ("wall_time", "wall [s]", "9.2f"),
        ("iterations", "ALG2 its", "8d"),
    ),
}


def parse_grid(specs: list[str]) -> list[tuple[str, list[str]]]:
    """``key=v1,v2`` strings → [(key, [values])], checking every key exists."""
    if not specs:
        raise UserError("sweep: give at least one --grid key=v1,v2")
    grid = []
    for spec in specs:
        if "=" not in spec:
            raise UserError(f"sweep --grid {spec!r}: expected key=v1,v2,...")
        key, values = (s.strip() for s in spec.split("=", 1))
        try:
            key_at(key, SCHEMA, solver_tables())
        except UserError as err:
            raise UserError(f"sweep --grid {key}: {err}") from None
        items = [v.strip() for v in _split_values(values) if v.strip()]
        if not items:
            raise UserError(f"sweep --grid {key}: the list of values is empty")
        grid.append((key, items))
    return grid


def _split_values(text: str) -> list[str]:
    """Split on commas that are not inside brackets (values may be lists: [64,64])."""
    parts, depth, current = [], 0, ""
    for ch in text:
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    return [*parts, current]


def points(grid: list[tuple[str, list[str]]]) -> list[list[str]]:
    """Every combination, as lists of ``key=value`` overrides."""
    keys = [k for k, _ in grid]
    return [
        [f"{k}={v}" for k, v in zip(keys, combo, strict=True)]
        for combo in itertools.product(*(vals for _, vals in grid))
    ]


def point_name(index: int, overrides: list[str]) -> str:
    """A directory name for a grid point."""
    text = "_".join(overrides)
    return f"p{index:03d}_" + re.sub(r"[^A-Za-z0-9.=+-]+", "-", text)


def _status(path: Path) -> dict | None:
    try:
        return json.loads((path / "status.json").read_text())
    except (OSError, ValueError):
        return None


def config_hash(case: Case, solver: str) -> str:
    """SHA-256 of the resolved configuration and the solver: equal hashes, same run.

    ``case.config`` has every key resolved (defaults filled in), so two spellings of the
    same case hash alike; ``sort_keys`` makes the text independent of the key order.
    """
    text = json.dumps({"config": case.config, "solver": solver}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def validate_points(source: str, sets: list[str], todo: list[list[str]], solver: str) -> list[Case]:
    """Load every point's case before any runs, naming the first point that is invalid.

    Raises:
        UserError: A grid value makes an invalid case (the message names the point).
    """
    cases = []
    for index, overrides in enumerate(todo):
        try:
            case = load_case(source, [*sets, *overrides], solver_tables())
            check_runnable(case, solver)  # what the solver can run: no module built yet
            cases.append(case)
        except UserError as err:
            raise UserError(f"sweep point {point_name(index, overrides)}: {err}") from None
    return cases


def _write_status(where: Path, record: dict, comm: MPI.Comm) -> None:
    """Write ``status.json`` of a point (rank 0 of its group)."""
    if comm.rank == 0:
        where.mkdir(parents=True, exist_ok=True)
        (where / "status.json").write_text(json.dumps(record, indent=1))


def _run_point(
    case: Case, overrides: list[str], solver: str, out: Path, comm: MPI.Comm, fresh: bool
) -> dict:
    """Run (or, unless ``fresh``, resume) one point on ``comm``; return its status record."""
    record = {
        "point": out.name,
        "overrides": overrides,
        "solver": solver,
        "config_hash": config_hash(case, solver),
    }
    flow = get_solver(solver).kind == "flow"
    try:
        resume = flow and not fresh and results_path(out, case.name, solver).is_file()
        try:
            summary = run_solver(case, solver, comm, out, resume=resume)
        except UserError:
            if not resume:
                raise
            summary = run_solver(case, solver, comm, out, resume=False)  # unusable leftovers
    except (UserError, SolverError) as err:
        return {**record, "status": "failed", "message": str(err)}
    if comm.rank != 0:
        return record
    if not flow:
        exact = summary.diagnostics["w2_exact"]  # NaN when the case has no closed form
        return {
            **record,
            "status": "done",
            "w2": summary.diagnostics["w2"],
            "w2_error": abs(summary.diagnostics["w2"] - exact) / exact,
            "wall_time": summary.wall_time,
            "iterations": summary.steps,
        }
    # From the file, not the summary: a resumed run's summary covers only its new steps.
    diag = read_results(summary.path).diagnostics
    return {
        **record,
        "status": "done",
        "l1_error": float(diag["l1_error"][-1]) if "l1_error" in diag else float("nan"),
        "energy": float(diag["energy"][-1]),
        "wall_time": float(diag["wall_time"][-1]),
        "steps": summary.steps,
        "iterations_mean": float(np.mean(diag["iterations"][1:])),
    }


def sweep(
    source: str,
    sets: list[str],
    grid_specs: list[str],
    solver: str,
    out: Path,
    ranks_per_run: int = 1,
    comm: MPI.Comm = MPI.COMM_WORLD,
) -> list[dict]:
    """Run the sweep; returns the status of every point (on rank 0)."""
    grid = parse_grid(grid_specs)
    if ranks_per_run < 1 or comm.size % ranks_per_run:
        raise UserError(
            f"sweep: --ranks-per-run {ranks_per_run} does not divide the {comm.size} ranks"
        )
    base = load_case(source, sets, solver_tables())  # the base case itself must be valid
    check_kind(base, solver)  # a solver of the other kind fails every point alike
    todo = points(grid)
    cases = validate_points(source, sets, todo, solver)
    groups = comm.size // ranks_per_run
    color = comm.rank // ranks_per_run
    sub = comm.Split(color, comm.rank)
    try:
        for index, overrides in enumerate(todo):
            if index % groups != color:
                continue
            where = out / point_name(index, overrides)
            old = _status(where)
            digest = config_hash(cases[index], solver)
            which = f"[sweep] {index + 1}/{len(todo)} {where.name}"
            # A status without a hash (older sweeps) cannot vouch for its configuration.
            fresh = old is not None and old.get("config_hash") != digest
            if fresh:
                note(f"{which}: configuration changed since it ran: re-running", sub)
            elif old is not None and old.get("status") == "done":
                note(f"{which}: done already, skipped", sub)
                continue
            note(f"{which}: running", sub)
            start = time.perf_counter()
            # Recorded before running, so an interrupted point is resumed only by the
            # configuration that wrote its checkpoint.
            running = {"point": where.name, "overrides": overrides, "status": "running"}
            _write_status(where, {**running, "config_hash": digest}, sub)
            sub.Barrier()
            record = _run_point(cases[index], overrides, solver, where, sub, fresh)
            _write_status(where, record, sub)
            note(f"{which}: {record.get('status')} in {time.perf_counter() - start:.1f} s", sub)
    finally:
        sub.Free()
    comm.Barrier()
    if comm.rank != 0:
        return []
    records = [
        _status(out / point_name(i, o)) or {"point": point_name(i, o), "status": "missing"}
        for i, o in enumerate(todo)
    ]
    scalars = SCALARS[get_solver(solver).kind]
    with (out / "summary.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        keys = [k for k, _ in grid]
        writer.writerow(["point", *keys, "status", *scalars, "message"])
        for rec, overrides in zip(records, todo, strict=True):
            values = [parse_override(o)[1] for o in overrides]
            writer.writerow(
                [
                    rec["point"],
                    *values,
                    rec["status"],
                    *(rec.get(s, "") for s in scalars),
                    rec.get("message", ""),
                ]
            )
    return records


def table(records: list[dict], grid_specs: list[str], kind: str = "flow") -> str:
    """The summary table printed at the end of a sweep (columns by solver ``kind``)."""
    keys = [spec.split("=", 1)[0] for spec in grid_specs]
    columns = COLUMNS[kind]
    width = [len(format(0, fmt)) for _, _, fmt in columns]
    head = (
        " ".join(f"{k:>16s}" for k in keys)
        + f" {'status':>7s} "
        + " ".join(f"{title:>{w}s}" for (_, title, _), w in zip(columns, width, strict=True))
    )
    lines = [head, "-" * len(head)]
    for rec in records:
        vals = [o.split("=", 1)[1] for o in rec.get("overrides", [""] * len(keys))]
        if rec["status"] == "done":
            nums = " ".join(
                f"{fmt_value(rec[name], spec):>{w}s}"
                for (name, _, spec), w in zip(columns, width, strict=True)
            )
        else:
            nums = rec.get("message", "")[:60]
        lines.append(" ".join(f"{v:>16s}" for v in vals) + f" {rec['status']:>7s} {nums}")
    return "\n".join(lines)
