"""The time loop every gradient-flow solver runs under.

The driver owns what is the same for all solvers: the clock, the snapshot schedule,
step halving on failure, the results file, checkpoints, ``--resume`` and progress
output on rank 0.  A solver only provides ``step(τ)``, ``diagnostics(t)``,
``sample()``, ``state()``/``set_state()`` and its field output.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from mpi4py import MPI

from wgf.cases import Case
from wgf.cases.errors import SolverError
from wgf.results import ResultsFile, read_checkpoint
from wgf.solvers.base import FlowSolver

#: A failed step is retried as 2 steps of τ/2, then 4 of τ/4, before the run stops.
HALVINGS = 2


@dataclass
class RunSummary:
    """What ``wgf run`` prints for one solver."""

    solver: str
    path: Path
    steps: int = 0
    t: float = 0.0
    diagnostics: dict[str, float] = field(default_factory=dict)
    mass0: float = float("nan")
    energy_increases: int = 0
    iterations: list[int] = field(default_factory=list)
    wall_time: float = 0.0


def _progress(comm: MPI.Comm, text: str) -> None:
    if comm.rank == 0:
        print(text, flush=True)


def _time_levels(t: float, t_end: float, tau: float) -> tuple[int, float]:
    """Number of uniform steps from t to t_end with step at most τ (up to round-off)."""
    if t_end - t <= 1e-12 * t_end:
        return 0, tau
    n = max(1, math.ceil((t_end - t) / tau - 1e-9))
    return n, (t_end - t) / n


def _advance(solver: FlowSolver, tau: float, halvings: int = HALVINGS) -> int:
    """Take a step of size τ, retrying as two half steps (recursively) on failure."""
    try:
        return solver.step(tau)
    except SolverError as err:
        if halvings == 0:
            raise
        _progress(solver.comm, f"  step of τ = {tau:.4g} failed ({err}); retrying with τ/2 twice")
        return _advance(solver, tau / 2, halvings - 1) + _advance(solver, tau / 2, halvings - 1)


def run_flow(solver: FlowSolver, case: Case, out_dir: Path, resume: bool = False) -> RunSummary:
    """Run a constructed gradient-flow solver from 0 (or its checkpoint) to ``t_end``.

    Args:
        solver: The constructed solver.
        case: The validated case.
        out_dir: Where ``<case>_<solver>.h5`` and the field files go.
        resume: Continue from the checkpoint of an existing results file.

    Returns:
        A summary of the run (meaningful on rank 0).

    Raises:
        SolverError: A step failed even after halving; completed steps are in the file.
    """
    comm = solver.comm
    stem = f"{case.name}_{solver.name}"
    path = out_dir / f"{stem}.h5"
    t_end, tau = case.section("time")["t_end"], case.section("time")["tau"]
    lower, upper = solver.bounding_box()
    points = case.sample_points(lower, upper)
    solver.prepare_sampling(points)

    step, t, wall0 = 0, 0.0, 0.0
    checkpoint = None
    if resume:
        checkpoint = read_checkpoint(path, comm, case.config, solver.name)
        step, t, wall0 = checkpoint.step, checkpoint.time, checkpoint.wall_time
    if comm.rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
    comm.Barrier()
    results = ResultsFile(
        path, comm, case.name, solver.name, case.dim, case.config, points, resume=resume
    )
    if checkpoint is None:
        for name, value in solver.static_arrays().items():
            results.write_array(name, value)
    summary = RunSummary(solver.name, path, steps=step, t=t)
    # The XDMF file keeps its heavy data in <name>.h5: the name must differ from ours.
    fields = solver.open_fields(out_dir / f"{stem}_fields.xdmf")
    if fields is not None:
        results.set_fields(fields)
    if checkpoint is not None:
        # Rebuild the field file from the stored snapshot states, then continue.
        for ts, snap_state in checkpoint.snapshots:
            solver.set_state(snap_state)
            solver.write_fields(ts)
        solver.set_state(checkpoint.state)
    snapshot_times = np.linspace(0.0, t_end, case.section("output")["snapshots"])
    if len(snapshot_times) == 1:
        snapshot_times = np.array([t_end])
    eps = 1e-9 * t_end
    next_snap = int(np.searchsorted(snapshot_times, t + eps, side="right")) if resume else 0
    start = time.perf_counter()

    def record(step: int, t: float, tau: float, iterations: int) -> dict[str, float]:
        """Diagnostics, snapshot if one is due, then the checkpoint (flushes the file)."""
        nonlocal next_snap
        diag = solver.diagnostics(t)
        diag["iterations"] = float(iterations)
        diag["wall_time"] = wall0 + time.perf_counter() - start
        results.append_step(t, diag)
        state = solver.state()
        if next_snap < len(snapshot_times) and t >= snapshot_times[next_snap] - eps:
            extra = {f"snapshots/state/{name}": value for name, value in state.items()}
            extra.update(solver.snapshot_arrays())
            results.append_snapshot(t, solver.sample(), extra)
            solver.write_fields(t)
            while next_snap < len(snapshot_times) and t >= snapshot_times[next_snap] - eps:
                next_snap += 1
        results.write_checkpoint(step, t, tau, state)
        return diag

    try:
        prev = None
        if not resume:
            prev = record(0, 0.0, tau, 0)
            summary.mass0 = prev["mass"]
        n, dt = _time_levels(t, t_end, tau)
        if not math.isclose(dt, tau, rel_tol=1e-9):
            _progress(comm, f"[{solver.name}] τ adjusted to {dt:.6g} for {n} equal steps to T")
        last_print = 0.0
        for k in range(1, n + 1):
            try:
                its = _advance(solver, dt)
            except SolverError as err:
                raise SolverError(
                    f"{solver.name}: step {step + 1} (t = {t:.6g} → {t + dt:.6g}) failed after "
                    f"{HALVINGS} halvings of τ: {err}. Completed steps are in {path}; continue "
                    f"with --resume --set time.tau=<smaller τ>"
                ) from None
            step, t = step + 1, t + dt if k < n else t_end
            diag = record(step, t, dt, its)
            summary.iterations.append(its)
            if prev is not None and diag["energy"] > prev["energy"] + 1e-12 * abs(prev["energy"]):
                summary.energy_increases += 1
            prev = diag
            now = time.perf_counter() - start
            if now - last_print > 1.0 or k == n:
                last_print = now
                _progress(
                    comm,
                    f"[{solver.name}] step {step:5d}  t = {t:.5g}  its = {its}  "
                    f"mass = {diag['mass']:.12g}  energy = {diag['energy']:.8g}"
                    + (f"  L1 err = {diag['l1_error']:.3e}" if "l1_error" in diag else ""),
                )
        summary.steps, summary.t = step, t
        summary.diagnostics = prev or solver.diagnostics(t)
        summary.wall_time = time.perf_counter() - start
    finally:
        solver.close()
        results.close()
        sys.stdout.flush()
    if resume and comm.rank == 0:
        import h5py

        with h5py.File(path, "r") as f:
            summary.mass0 = float(f["diagnostics/mass"][0])
    return summary


def build_solver(case: Case, name: str, comm: MPI.Comm) -> FlowSolver:
    """Construct the registered solver ``name`` for ``case`` (input errors raise here)."""
    from wgf.solvers import get_solver

    info = get_solver(name)
    return info.load()(case, comm, case.solver_params(info.name))


def run_case(
    case: Case, name: str, comm: MPI.Comm, out_dir: Path, resume: bool = False
) -> RunSummary:
    """Build and run one solver on a case: what ``wgf run`` does for each solver."""
    return run_flow(build_solver(case, name, comm), case, out_dir, resume=resume)
