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
from wgf.solvers.acceptance import check_resolved, check_step
from wgf.solvers.base import FlowSolver

#: A rejected step of fixed τ is retried as 2 steps of τ/2, then 4 of τ/4, before the run stops.
HALVINGS = 2
#: Adaptive τ: the factor by which τ grows after an easy step and shrinks after a hard one
#: (Cancès–Gallouët–Todeschi's rule in their LJKO code)...
GROW = 1.2
#: ...where "easy" is at most this many inner (Newton) iterations...
EASY_ITERATIONS = 4
#: ...and "hard" at least this many.
HARD_ITERATIONS = 10
#: Adaptive τ: the default smallest τ, as a fraction of ``time.tau``.
TAU_MIN_FRACTION = 1 / 64


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
    iterations_total: int = 0
    retries: int = 0
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
        tau: The step that reached it (for step 0, the requested τ; for a level of fixed τ
            reached by halved steps after a rejection, the level's τ).
        iterations: The inner iterations of the accepted step(s) that reached it.
        iterations_total: The same plus those of every rejected attempt on the way.
        retries: The attempts rejected on the way.
        diagnostics: The solver's diagnostics at the level (None: not yet computed).
    """

    index: int
    t: float
    tau: float
    iterations: int
    iterations_total: int = 0
    retries: int = 0
    diagnostics: dict[str, float] | None = None


@dataclass(frozen=True)
class StepPolicy:
    """How τ is chosen: the grid's fixed τ, or adapted to the inner solver.

    Attributes:
        adaptive: Adapt τ (``time.adaptive`` and a solver whose iterations are Newton's).
        tau: The τ to start from.
        tau_min: The smallest τ tried: below it the run stops (fixed τ: τ/2^HALVINGS).
        tau_max: The largest τ (adaptive only).
    """

    adaptive: bool
    tau: float
    tau_min: float
    tau_max: float

    @classmethod
    def from_case(
        cls, case: Case, grid: TimeGrid, solver: FlowSolver, tau: float | None = None
    ) -> StepPolicy:
        """The policy of ``case`` for ``solver``; ``tau``: a resumed run's last τ."""
        time_ = case.section("time")
        if not (time_["adaptive"] and solver.adaptive_tau):
            return cls.fixed(grid)
        tau_min = time_["tau_min"] or TAU_MIN_FRACTION * time_["tau"]
        tau_max = time_["tau_max"] or time_["tau"]
        start = time_["tau"] if tau is None or not math.isfinite(tau) else tau
        return cls(True, min(max(start, tau_min), tau_max), tau_min, tau_max)

    @classmethod
    def fixed(cls, grid: TimeGrid) -> StepPolicy:
        """The grid's τ, halved at most :data:`HALVINGS` times after rejections."""
        return cls(False, grid.tau, grid.tau / 2**HALVINGS, grid.tau)

    def next_tau(self, tau: float, iterations: int) -> float:
        """The τ after an accepted step of nominal size τ that took ``iterations``."""
        if iterations <= EASY_ITERATIONS:
            return min(GROW * tau, self.tau_max)
        if iterations >= HARD_ITERATIONS:
            return max(tau / GROW, self.tau_min)
        return tau


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
    """A step failed at the smallest τ allowed; the state is the last accepted level's."""


def attempt(
    solver: FlowSolver, tau: float, t_new: float, before: dict[str, float]
) -> tuple[int, dict[str, float]]:
    """Take one step of size τ to ``t_new`` and accept it only if it is sound.

    The solver's own failures (an inner solve that did not reach its tolerance) and the
    checks of :func:`~wgf.solvers.acceptance.check_step` against ``before`` both undo the
    step and raise; so does a peak density beyond the solver's resolution
    (:func:`~wgf.solvers.acceptance.check_resolved`), with ``tau_helps=False``.

    Returns:
        The inner iterations and the diagnostics at ``t_new``.

    Raises:
        SolverError: The step was rejected (its ``iterations`` are those it spent).
    """
    saved = solver.save()
    try:
        its = solver.step(tau)
    except SolverError:
        solver.restore(saved)
        raise
    diag = solver.diagnostics(t_new)
    # A density the solver no longer resolves (blow-up) ends the run: no τ cures it.
    blowup = check_resolved(diag, t_new, solver.resolves)
    problem = blowup or check_step(before, diag, solver.invariants(), solver.density_scale)
    if problem is not None:
        solver.restore(saved)
        raise SolverError(problem, iterations=its, tau_helps=blowup is None)
    return its, diag


def _landing(t: float, tau: float, target: float, eps: float) -> float:
    """The step from t toward ``target``: τ, or all that is left, or half of it.

    Half of it when less than 2τ but more than τ is left, so that no sliver step follows.
    """
    left = target - t
    if left <= tau + eps:
        return left
    return 0.5 * left if left < 2.0 * tau else tau


def advance(
    solver: FlowSolver,
    grid: TimeGrid,
    policy: StepPolicy | None = None,
    before: dict[str, float] | None = None,
) -> Iterator[StepRecord]:
    """Take the steps of ``grid`` and yield a record after each completed level.

    Every step goes through :func:`attempt`.  With a fixed τ the levels are the grid's: a
    rejected step is retried as halved steps until the level is reached (down to
    ``policy.tau_min``).  With an adaptive τ every accepted step is a level, τ follows
    :meth:`StepPolicy.next_tau`, a rejection halves it, and steps shorten to land on
    every snapshot time.  The last level is T exactly.

    Args:
        solver: The solver, in the state of ``grid.start_time``.
        grid: The time grid.
        policy: How τ is chosen (default: the grid's fixed τ, :data:`HALVINGS` halvings).
        before: The diagnostics at the start (computed if not given).

    Raises:
        StepFailed: A step was rejected at the smallest τ, or for a reason a smaller τ
            cannot cure.
    """
    policy = policy or StepPolicy.fixed(grid)
    step, t = grid.start_step, grid.start_time
    diag = before if before is not None else solver.diagnostics(t)
    tau = policy.tau
    snapshots = [s for s in grid.snapshot_times if s > t + grid.eps] or [grid.t_end]
    while t < grid.t_end - grid.eps:
        if policy.adaptive:
            target = next(s for s in snapshots if s > t + grid.eps)
        else:
            target = grid.t_end if step + 1 == grid.start_step + grid.steps else t + grid.tau
            tau = grid.tau
        its = total = retries = 0
        reached = t
        while reached < target - grid.eps:
            h = _landing(reached, tau, target, grid.eps)
            t_new = target if target - (reached + h) <= grid.eps else reached + h
            try:
                done, new = attempt(solver, h, t_new, diag)
            except SolverError as err:
                total, retries = total + err.iterations, retries + 1
                if not err.tau_helps or h / 2 < policy.tau_min * (1 - 1e-9):
                    why = "" if err.tau_helps else " (a smaller τ cannot help)"
                    raise StepFailed(
                        f"{solver.name}: step {step + 1} (t = {reached:.6g} → {t_new:.6g}, "
                        f"τ = {h:.4g}) failed{why}: {err}",
                        iterations=total,
                        tau_helps=err.tau_helps,
                    ) from None
                text = f"  step of τ = {h:.4g} rejected ({err}); retrying with τ = {h / 2:.4g}"
                note(text, solver.comm)
                tau = h / 2
                continue
            its, total, reached, diag = its + done, total + done, t_new, new
            if policy.adaptive:
                tau = policy.next_tau(tau, done)
                break
        step, level_tau, t = step + 1, (reached - t if policy.adaptive else grid.tau), reached
        yield StepRecord(step, t, level_tau, its, total, retries, diag)


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
        adaptive: τ is adaptive, so the number of steps is not known in advance.
    """

    def __init__(
        self,
        solver: FlowSolver,
        results: ResultsFile,
        grid: TimeGrid,
        summary: RunSummary,
        wall0: float = 0.0,
        sigint: _SigintFlag | None = None,
        adaptive: bool = False,
    ) -> None:
        self.solver, self.results, self.grid, self.summary = solver, results, grid, summary
        self.sigint = sigint or _SigintFlag()
        self.wall0, self.start = wall0, time.perf_counter()
        self.next_snapshot = grid.first_snapshot()
        self.last: dict[str, float] | None = None
        total = None if adaptive else grid.start_step + grid.steps
        self.progress = Progress(f"[{solver.name}]", total, grid.start_step, solver.comm)

    def elapsed(self) -> float:
        """Seconds since the recorder was made (this run's part of the wall time)."""
        return time.perf_counter() - self.start

    def record(self, rec: StepRecord) -> dict[str, float]:
        """Write the time level ``rec`` (diagnostics, snapshot if due, checkpoint).

        Besides the solver's diagnostics every level records ``tau``, ``iterations``,
        ``iterations_total`` (rejected attempts included), ``retries`` and ``wall_time``.
        """
        diag = dict(rec.diagnostics) if rec.diagnostics else self.solver.diagnostics(rec.t)
        diag["tau"] = rec.tau
        diag["iterations"] = float(rec.iterations)
        diag["iterations_total"] = float(rec.iterations_total)
        diag["retries"] = float(rec.retries)
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

    def initial(self) -> dict[str, float]:
        """Record the initial state (step 0) of a new run; return its diagnostics."""
        diag = self.solver.diagnostics(self.grid.start_time)
        self.record(StepRecord(0, self.grid.start_time, self.grid.tau_requested, 0, 0, 0, diag))
        self.summary.mass0 = diag["mass"]
        return diag

    def consume(self, steps: Iterator[StepRecord]) -> None:
        """Record every step of ``steps``, tally it and print progress about once a second."""
        for rec in steps:
            prev = self.last
            diag = self.record(rec)
            self.summary.iterations.append(rec.iterations)
            self.summary.iterations_total += rec.iterations_total
            self.summary.retries += rec.retries
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
            f"t = {rec.t:.5g}/{self.grid.t_end:.5g}  τ = {rec.tau:.3g}  its = {rec.iterations}"
            + (
                f" (+{rec.iterations_total - rec.iterations} in {rec.retries} rejected)"
                if rec.retries
                else ""
            )
            + "  "
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
    policy = StepPolicy.from_case(case, grid, solver, checkpoint.tau if checkpoint else None)
    results = _open_results(solver, case, path, checkpoint)
    summary = RunSummary(solver.name, path, steps=grid.start_step, t=grid.start_time)
    wall0 = checkpoint.wall_time if checkpoint else 0.0
    recorder = Recorder(solver, results, grid, summary, wall0, sigint, policy.adaptive)
    try:
        before = recorder.initial() if checkpoint is None else None
        if case.section("time")["adaptive"] and not policy.adaptive:
            note(f"[{solver.name}] τ is not adapted: its step counts are substeps", solver.comm)
        if grid.adjusted and not policy.adaptive:
            text = f"τ adjusted to {grid.tau:.6g} for {grid.steps} equal steps to T"
            note(f"[{solver.name}] {text}", solver.comm)
        try:
            recorder.consume(advance(solver, grid, policy, before))
        except StepFailed as err:
            # A failure that τ cannot cure (a blow-up, an underflow) would recur on resuming
            # with the same case, so no --resume is advised for it.
            advice = "change the case to go on"
            if err.tau_helps:
                advice = "continue with --resume --set time.tau=<smaller τ>" + (
                    " (or a smaller time.tau_min)" if policy.adaptive else ""
                )
            raise SolverError(
                f"{err}. Completed steps are in {path}; {advice}", iterations=err.iterations
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
