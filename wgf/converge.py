"""``wgf converge``: run a refinement ladder and print the EOC table.

Level k refines one parameter by ``factor``^k: the time step (``--refine tau``), the box
mesh (``h``: cells × factor^k; a disk's h / factor^k) or the number of particles
(``particles``).  Each level runs on all ranks of the communicator and writes its own
results file under ``OUT/level<k>/``; errors at T are the relative L1 and L2 errors of the
sampled density and W2 to the exact density.  With ``--expect-order P+-TOL`` the command
exits with status 4 when the fitted L1 order is outside [P - TOL, P + TOL].

A transport solver (``fem-bb``) has no time step and no particles: only ``--refine h``
applies, and it refines the space-time mesh as a whole (``domain.cells`` and the solver's
``time_cells`` by the same factor).  Its error is the relative error of the computed W2
distance against the exact W2 of the case (:func:`wgf.transport.exact_w2`), the quantity
the expectation then refers to; a case without a closed-form W2 is refused.
"""

from __future__ import annotations

import csv
import math
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from mpi4py import MPI

from wgf.cases import Case, load_case
from wgf.cases.errors import UserError
from wgf.dispatch import check_kind, run_solver
from wgf.postprocess.clouds import cloud, exact_cloud, relative_errors
from wgf.postprocess.eoc import fitted_order, rates
from wgf.postprocess.results import read_results
from wgf.postprocess.w2 import w2
from wgf.progress import note
from wgf.solvers import get_solver, solver_tables
from wgf.transport import exact_w2

ORDER_NOT_MET = 4


@dataclass
class Ladder:
    """The refinement ladder and its errors at T."""

    refine: str
    params: np.ndarray
    labels: list[str]
    errors: dict[str, np.ndarray]
    files: list[Path]
    #: The error whose order ``--expect-order`` checks.
    primary: str = "L1"


def level_overrides(
    case: Case, sets: list[str], refine: str, solver: str, level: int, factor: float
) -> tuple[list[str], float, str]:
    """The ``--set`` overrides of one level of the base ``case``, its parameter and a label."""
    scale = factor**level
    if refine == "tau":
        # The run divides [0, T] into equal steps: use that τ, which the EOC must see.
        t_end = case.section("time")["t_end"]
        tau = t_end / math.ceil(t_end / (case.section("time")["tau"] / scale) - 1e-9)
        return [*sets, f"time.tau={tau!r}"], tau, f"tau={tau:.4g}"
    if refine == "h":
        dom = case.section("domain")
        if dom["shape"] == "box":
            cells = [round(n * scale) for n in dom["cells"]]
            time_cells = case.solver_params(solver).get("time_cells")
            if get_solver(solver).kind == "transport" and time_cells is not None:
                # The space-time mesh: h in t shrinks with h in x.
                steps = round(time_cells * scale)
                return (
                    [*sets, f"domain.cells={cells}", f"solver.{solver}.time_cells={steps}"],
                    1.0 / cells[0],
                    f"cells={cells} nt={steps}",
                )
            return [*sets, f"domain.cells={cells}"], 1.0 / cells[0], f"cells={cells}"
        if dom["shape"] == "disk":
            h = dom["h"] / scale
            return [*sets, f"domain.h={h!r}"], h, f"h={h:.4g}"
        raise UserError("converge --refine h: a mesh read from a file cannot be refined")
    params = case.solver_params(solver)
    if "particles" not in params:
        raise UserError(f"converge --refine particles: solver '{solver}' has no particles key")
    n = round(params["particles"] * scale)
    # The particle spacing N^{-1/d} is the natural "h" of a particle method.
    return [*sets, f"solver.{solver}.particles={n}"], n ** (-1.0 / case.dim), f"N={n}"


def run_ladder(
    case_source: str,
    sets: list[str],
    refine: str,
    levels: int,
    solver: str,
    out: Path,
    factor: float = 2.0,
    comm: MPI.Comm = MPI.COMM_WORLD,
) -> Ladder:
    """Run every level and collect the errors at T (on rank 0)."""
    if levels < 2:
        raise UserError("converge: --levels must be at least 2")
    transport = get_solver(solver).kind == "transport"
    base = load_case(case_source, sets, solver_tables())
    check_kind(base, solver)
    if transport and refine != "h":
        raise UserError(
            f"converge --refine {refine}: {solver} is a transport solver (no time step, no "
            "particles); use --refine h"
        )
    plans = [level_overrides(base, sets, refine, solver, k, factor) for k in range(levels)]
    cases = [load_case(case_source, p[0], solver_tables()) for p in plans]
    if transport:
        exact = exact_w2(base)
        if exact is None:
            raise UserError(
                f"converge: case '{base.name}' has no closed-form W2 (two Gaussians, or 1-D)"
            )
    elif cases[0].exact_solution() is None:
        raise UserError(f"converge: case '{cases[0].name}' has no exact solution ([exact] kind)")
    summaries = []
    for k, case in enumerate(cases):
        note(f"[converge] level {k + 1}/{levels}: {plans[k][2]}: running", comm)
        start = time.perf_counter()
        summaries.append(run_solver(case, solver, comm, out / f"level{k}"))
        took = time.perf_counter() - start
        note(f"[converge] level {k + 1}/{levels}: {plans[k][2]}: done in {took:.1f} s", comm)
    files = [summary.path for summary in summaries]
    if transport:
        w2s = np.array([summary.diagnostics.get("w2", np.nan) for summary in summaries])
        return Ladder(
            refine,
            np.array([p[1] for p in plans]),
            [p[2] for p in plans],
            {"W2": np.abs(w2s - exact) / exact},
            files,
            primary="W2",
        )
    errors: dict[str, list[float]] = {"L1": [], "L2": [], "W2": []}
    if comm.rank == 0:
        for path in files:
            run = read_results(path)
            last = len(run.snapshot_time) - 1
            rel = relative_errors(run, last)
            errors["L1"].append(rel["l1"])
            errors["L2"].append(rel["l2"])
            errors["W2"].append(
                w2(*cloud(run, last), *exact_cloud(run, run.snapshot_time[last]))[0]
            )
    return Ladder(
        refine,
        np.array([p[1] for p in plans]),
        [p[2] for p in plans],
        {k: np.array(v) for k, v in errors.items()},
        files,
    )


def report(ladder: Ladder, out: Path, case_name: str, solver: str) -> str:
    """Print-ready EOC table; also writes eoc.csv, eoc.h5 and eoc.png into ``out``."""
    from wgf.postprocess.plots import plot_convergence

    names = list(ladder.errors)
    eocs = {n: rates(ladder.params, ladder.errors[n]) for n in names}
    head = f"{'level':>5s} {'':18s}" + "".join(f" {n + ' err':>10s} {'EOC':>5s}" for n in names)
    what = "relative error of W2" if ladder.primary == "W2" else "errors at T"
    lines = [
        f"{case_name} / {solver}: {what}, refining {ladder.refine}",
        head,
        "-" * len(head),
    ]
    for k, label in enumerate(ladder.labels):
        cells = "".join(
            f" {ladder.errors[n][k]:10.3e} " + (f"{eocs[n][k]:5.2f}" if k else f"{'':5s}")
            for n in names
        )
        lines.append(f"{k:5d} {label:18s}{cells}")
    fits = {n: fitted_order(ladder.params, ladder.errors[n]) for n in names}
    lines.append("fitted order (np.polyfit): " + ", ".join(f"{n} {fits[n]:.2f}" for n in names))
    out.mkdir(parents=True, exist_ok=True)
    with (out / "eoc.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["level", "parameter", "label"]
            + [f"{n}_error" for n in names]
            + [f"{n}_eoc" for n in names]
        )
        for k, label in enumerate(ladder.labels):
            writer.writerow(
                [k, ladder.params[k], label]
                + [ladder.errors[n][k] for n in names]
                + [eocs[n][k] for n in names]
            )
    with h5py.File(out / "eoc.h5", "w") as f:
        f.attrs.update({"case": case_name, "solver": solver, "refine": ladder.refine})
        f["parameter"] = ladder.params
        for n in names:
            f[f"error/{n}"] = ladder.errors[n]
            f[f"eoc/{n}"] = eocs[n]
            f[f"error/{n}"].attrs["fitted_order"] = fits[n]
    xlabel = {"tau": "τ", "h": "h (relative)", "particles": "N^(-1/d)"}[ladder.refine]
    plot_convergence(
        ladder.params, ladder.errors, xlabel, f"{case_name} / {solver}", out / "eoc.png"
    )
    return "\n".join(lines)
