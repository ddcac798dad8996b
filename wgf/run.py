"""The time loop every gradient-flow solver runs under.

The driver owns what is the same for all solvers: the clock, the snapshot schedule,
step halving on failure, the results file, checkpoints, ``--resume`` and progress
output on rank 0 (:mod:`wgf.progress`).  A solver only provides ``step(τ)``, ``diagnostics(t)``,
``sample()``, ``state()``/``set_state()`` and its field output.

It comes in three pieces, so that a script can drive a solver its own way:

* :class:`TimeGrid` — the uniform time levels and the snapshot times (a value);
* :func:`advance` — a generator that takes the steps and yields one :class:`StepRecord`
  per completed step (it does no I/O beyond the retry message);
* :class:`Recorder` — consumes the records: diagnostics, snapshots, field output,
  checkpoints and the progress line.

:func:`run_flow` composes them, as ``wgf run`` does for each solver.
"""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from mpi4py import MPI

from wgf.cases import Case
from wgf.cases.errors import SolverError
from wgf.progress import Progress, note
from wgf.results import (
    Checkpoint,
    OutputLock,
    ResultsFile,
    fields_path,
    read_checkpoint,
    results_path,
)
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


@dataclass(frozen=True)
class TimeGrid:
    """The time levels of a run: n equal steps from ``start_time`` to ``t_end``.

    The requested τ is shrunk to τ = (T − t₀)/n with n = ⌈(T − t₀)/τ_requested⌉, so the
    last step lands on T exactly instead of overshooting or leaving a sliver step.

    Attributes:
        t_end: The final time T.
        tau_requested: The case's ``time.tau``.
        tau: The uniform step actually taken.
        steps: The number of steps still to take, n.
        start_step: Index of the time level the run starts from (0, or a checkpoint's).
        start_time: Its time t₀.
        snapshot_times: The times at which a snapshot is written (rising; T is the last).
    """

    t_end: float
    tau_requested: float
    tau: float
    steps: int
    start_step: int
    start_time: float
    snapshot_times: tuple[float, ...]

    @classmethod
    def from_case(cls, case: Case, start_step: int = 0, start_time: float = 0.0) -> TimeGrid:
        """The grid of ``case`` (``[time]``, ``output.snapshots``), from a given level."""
        t_end, tau = case.section("time")["t_end"], case.section("time")["tau"]
        n, dt = 0, tau  # nothing left to do (resuming a finished run)
        if t_end - start_time > 1e-12 * t_end:
            n = max(1, math.ceil((t_end - start_time) / tau - 1e-9))
            dt = (t_end - start_time) / n
        count = case.section("output")["snapshots"]
        snaps = np.linspace(0.0, t_end, count) if count > 1 else np.array([t_end])
        return cls(t_end, tau, dt, n, start_step, start_time, tuple(float(s) for s in snaps))

    @property
    def adjusted(self) -> bool:
        """Whether τ had to shrink for the steps to reach T exactly."""
        return not math.isclose(self.tau, self.tau_requested, rel_tol=1e-9)

    @property
    def eps(self) -> float:
        """The tolerance within which a time level counts as a snapshot time."""
        return 1e-9 * self.t_end

    def first_snapshot(self) -> int:
        """Index of the first snapshot still to write: 0 for a new run, more on resume."""
        if self.start_step == 0:
            return 0
        return int(np.searchsorted(self.snapshot_times, self.start_time + self.eps, "right"))

    def snapshot_due(self, t: float, k: int) -> bool:
        """Whether time t reaches snapshot k (within :attr:`eps`)."""
        return k < len(self.snapshot_times) and t >= self.snapshot_times[k] - self.eps


@dataclass(frozen=True)
class StepRecord:
    """One completed time level.

    Attributes:
        index: The step index (0 is the initial state).
        t: Its time.
        tau: The step that reached it (for step 0, the requested τ).
        iterations: The solver's inner iterations for it, summed over halvings.
    """

    index: int
    t: float
    tau: float
    iterations: int


class Interrupted(KeyboardInterrupt):
    """Ctrl-C stopped a run between two steps; the results file holds every completed one.

    A :class:`KeyboardInterrupt`, so that code which records a failed solver and goes on
    (``--solver all``, ``wgf sweep``) lets it through; ``wgf`` reports it in one line and
    exits with :attr:`status` (128 + SIGINT, the shell's convention).
    """

    status = 130


class _SigintFlag:
    """Defers SIGINT to the step boundary: the handler only sets :attr:`raised`.

    The default handler raises :class:`KeyboardInterrupt` wherever Python happens to be,
    e.g. between two series appends of one step, which leaves series of unequal lengths.
    """

    def __init__(self) -> None:
        self.raised = False

    def __call__(self, signum: int, frame: object) -> None:
        self.raised = True


@contextmanager
def deferred_sigint() -> Iterator[_SigintFlag]:
    """Catch SIGINT into a flag for the duration of the block (main thread only).

    The previous handler comes back afterwards.  Off the main thread (where Python does
    not deliver signals) the flag simply never rises.
    """
    flag = _SigintFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = signal.signal(signal.SIGINT, flag)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


class StepFailed(SolverError):
    """A step failed even after :data:`HALVINGS` halvings; the state is the last level's."""


def _step(solver: FlowSolver, tau: float, halvings: int = HALVINGS) -> int:
    """Take a step of size τ, retrying as two half steps (recursively) on failure."""
    try:
        return solver.step(tau)
    except SolverError as err:
        if halvings == 0:
            raise
        note(f"  step of τ = {tau:.4g} failed ({err}); retrying with τ/2 twice", solver.comm)
        return _step(solver, tau / 2, halvings - 1) + _step(solver, tau / 2, halvings - 1)


def advance(solver: FlowSolver, grid: TimeGrid) -> Iterator[StepRecord]:
    """Take the steps of ``grid`` and yield a record after each one.

    The time is accumulated step by step and the last level is set to T exactly.

    Raises:
        StepFailed: A step failed after :data:`HALVINGS` halvings of τ.
    """
    step, t = grid.start_step, grid.start_time
    for k in range(1, grid.steps + 1):
        try:
            its = _step(solver, grid.tau)
        except SolverError as err:
            raise StepFailed(
                f"{solver.name}: step {step + 1} (t = {t:.6g} → {t + grid.tau:.6g}) failed "
                f"after {HALVINGS} halvings of τ: {err}"
            ) from None
        step, t = step + 1, t + grid.tau if k < grid.steps else grid.t_end
        yield StepRecord(step, t, grid.tau, its)


class Recorder:
    """Writes what a run produces at each time level, and tallies the summary.

    Per record: the diagnostics (plus ``iterations`` and ``wall_time``), a snapshot and
    the field output when a snapshot time is reached, then the checkpoint, which flushes
    the file, so a killed run keeps every completed step.  Progress goes to a
    :class:`~wgf.progress.Progress` (a bar with the ETA on a terminal, else about a line
    a second): step k/n, t/T, the inner iterations, mass, energy and the L1 error.

    Args:
        solver: The running solver.
        results: The open results file.
        grid: The run's time grid.
        summary: Filled in as the records come (steps, iterations, energy increases).
        wall0: Wall time already spent (by the run being resumed).
        sigint: Set by a deferred SIGINT: the run stops after the step being written.
    """

    def __init__(
        self,
        solver: FlowSolver,
        results: ResultsFile,
        grid: TimeGrid,
        summary: RunSummary,
        wall0: float = 0.0,
        sigint: _SigintFlag | None = None,
    ) -> None:
        self.solver, self.results, self.grid, self.summary = solver, results, grid, summary
        self.sigint = sigint or _SigintFlag()
        self.wall0, self.start = wall0, time.perf_counter()
        self.next_snapshot = grid.first_snapshot()
        self.last: dict[str, float] | None = None
        self.progress = Progress(
            f"[{solver.name}]", grid.start_step + grid.steps, grid.start_step, solver.comm
        )

    def elapsed(self) -> float:
        """Seconds since the recorder was made (this run's part of the wall time)."""
        return time.perf_counter() - self.start

    def record(self, rec: StepRecord) -> dict[str, float]:
        """Write the time level ``rec`` (diagnostics, snapshot if due, checkpoint)."""
        diag = self.solver.diagnostics(rec.t)
        diag["iterations"] = float(rec.iterations)
        diag["wall_time"] = self.wall0 + self.elapsed()
        self.results.append_step(rec.t, diag)
        state = self.solver.state()
        if self.grid.snapshot_due(rec.t, self.next_snapshot):
            extra = {f"snapshots/state/{name}": value for name, value in state.items()}
            extra.update(self.solver.snapshot_arrays())
            self.results.append_snapshot(rec.t, self.solver.sample(), extra)
            self.solver.write_fields(rec.t)
            while self.grid.snapshot_due(rec.t, self.next_snapshot):  # one file entry per level
                self.next_snapshot += 1
        self.results.write_checkpoint(rec.index, rec.t, rec.tau, state)
        self.last = diag
        return diag

    def initial(self) -> None:
        """Record the initial state (step 0) of a new run."""
        diag = self.record(StepRecord(0, self.grid.start_time, self.grid.tau_requested, 0))
        self.summary.mass0 = diag["mass"]

    def consume(self, steps: Iterator[StepRecord]) -> None:
        """Record every step of ``steps``, tally it and print progress about once a second."""
        for rec in steps:
            prev = self.last
            diag = self.record(rec)
            self.summary.iterations.append(rec.iterations)
            if prev is not None and diag["energy"] > prev["energy"] + 1e-12 * abs(prev["energy"]):
                self.summary.energy_increases += 1
            self.summary.steps, self.summary.t = rec.index, rec.t
            self._progress(rec, diag)
            self.stop_if_interrupted(rec)

    def stop_if_interrupted(self, rec: StepRecord) -> None:
        """Raise :class:`Interrupted` if SIGINT reached any rank; ``rec`` is on file.

        Under mpiexec the launcher forwards SIGINT to every rank, but not at the same
        instant: the flag is reduced (MAX) so that all ranks stop after the same step,
        instead of some waiting in the next step's collectives for ranks that left.
        """
        comm = self.solver.comm
        if comm.allreduce(int(self.sigint.raised), op=MPI.MAX):
            raise Interrupted(
                f"{self.solver.name}: interrupted at step {rec.index} (t = {rec.t:.6g}); "
                f"`--resume` continues"
            )

    def _progress(self, rec: StepRecord, diag: dict[str, float]) -> None:
        self.progress.update(
            rec.index,
            f"t = {rec.t:.5g}/{self.grid.t_end:.5g}  its = {rec.iterations}  "
            f"mass = {diag['mass']:.12g}  energy = {diag['energy']:.8g}"
            + (f"  L1 err = {diag['l1_error']:.3e}" if "l1_error" in diag else ""),
        )


def _open_results(
    solver: FlowSolver, case: Case, path: Path, checkpoint: Checkpoint | None
) -> ResultsFile:
    """Open the results file (new, or cut back to ``checkpoint``) and the field output.

    On resume the field file is rebuilt from the stored snapshot states, and the solver
    is left in the checkpoint's state.
    """
    comm = solver.comm
    lower, upper = solver.bounding_box()
    points = case.sample_points(lower, upper)
    solver.prepare_sampling(points)
    if comm.rank == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
    comm.Barrier()
    resume = checkpoint is not None
    results = ResultsFile(
        path, comm, case.name, solver.name, case.dim, case.config, points, resume=resume
    )
    if checkpoint is None:
        for name, value in solver.static_arrays().items():
            results.write_array(name, value)
    fields = solver.open_fields(fields_path(path))
    if fields is not None:
        results.set_fields(fields)
    if checkpoint is not None:
        for ts, snap_state in checkpoint.snapshots:
            solver.set_state(snap_state)
            solver.write_fields(ts)
        solver.set_state(checkpoint.state)
    return results


def _first_mass(path: Path, comm: MPI.Comm) -> float:
    """The initial mass stored in a results file (rank 0; NaN elsewhere)."""
    if comm.rank != 0:
        return float("nan")
    import h5py

    with h5py.File(path, "r") as f:
        return float(f["diagnostics/mass"][0])


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
        UserError: Another run is writing the same results file (nothing is touched).
        SolverError: A step failed even after halving; completed steps are in the file.
        Interrupted: SIGINT (Ctrl-C); the run stopped after a completed, recorded step.
    """
    path = results_path(out_dir, case.name, solver.name)
    # The lock comes before the results file is read or truncated; SIGINT is deferred
    # from here to the end of the run, so that it cannot land inside a write.
    with OutputLock(path, solver.comm), deferred_sigint() as sigint:
        return _run_locked(solver, case, path, resume, sigint)


def _run_locked(
    solver: FlowSolver, case: Case, path: Path, resume: bool, sigint: _SigintFlag
) -> RunSummary:
    """:func:`run_flow` once its outputs are locked and SIGINT is deferred."""
    checkpoint = read_checkpoint(path, solver.comm, case.config, solver.name) if resume else None
    start = (checkpoint.step, checkpoint.time) if checkpoint else (0, 0.0)
    grid = TimeGrid.from_case(case, *start)
    results = _open_results(solver, case, path, checkpoint)
    summary = RunSummary(solver.name, path, steps=grid.start_step, t=grid.start_time)
    wall0 = checkpoint.wall_time if checkpoint else 0.0
    recorder = Recorder(solver, results, grid, summary, wall0, sigint)
    try:
        if checkpoint is None:
            recorder.initial()
        if grid.adjusted:
            text = f"τ adjusted to {grid.tau:.6g} for {grid.steps} equal steps to T"
            note(f"[{solver.name}] {text}", solver.comm)
        try:
            recorder.consume(advance(solver, grid))
        except StepFailed as err:
            raise SolverError(
                f"{err}. Completed steps are in {path}; continue with --resume --set "
                f"time.tau=<smaller τ>"
            ) from None
        summary.diagnostics = recorder.last or solver.diagnostics(summary.t)
        summary.wall_time = recorder.elapsed()
    finally:
        recorder.progress.close()  # a failed run's bar must not swallow the error line
        solver.close()
        results.close()
        sys.stdout.flush()
    if checkpoint is not None:
        summary.mass0 = _first_mass(path, solver.comm)
    return summary


def build_solver(case: Case, name: str, comm: MPI.Comm) -> FlowSolver:
    """Construct the registered solver ``name`` for ``case`` (input errors raise here)."""
    from wgf.solvers import get_solver

    info = get_solver(name)
    return info.load()(case, comm, case.solver_params(info.name))
