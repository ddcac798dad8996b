"""The results file (DESIGN §6): one HDF5 file per run, written by rank 0 with h5py.

Every series is a resizable dataset that grows by one entry per time level or per
snapshot, and the file is flushed after each step, so a run that is killed leaves a
readable file with every completed step.  Each series is declared once, when it is
created, with what it is indexed by (the ``series`` attribute, see
:mod:`wgf.postprocess.results`).  The solver state needed to continue (``/checkpoint``,
with the step and snapshot counts) is written after the step's series; on ``--resume``
every series is cut back to those counts, whichever group it sits in.

All ranks call the methods; only rank 0 touches the file.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from mpi4py import MPI

import wgf
from wgf.cases.errors import UserError
from wgf.postprocess.results import SCHEMA, SERIES, SNAPSHOT, STEP, series_index

__all__ = [
    "SCHEMA",
    "Checkpoint",
    "OutputLock",
    "ResultsFile",
    "check_writable",
    "fields_path",
    "read_checkpoint",
    "results_path",
]

#: Case sections that may differ between a run and its ``--resume``
#: (a smaller τ after a failed step, a longer T, another solver parameter).
RESUMABLE_CHANGES = ("time", "solver", "description")


def _grow(ds: h5py.Dataset, row: np.ndarray | float) -> None:
    ds.resize(ds.shape[0] + 1, axis=0)
    ds[-1] = row


def _series(
    group: h5py.Group, name: str, index: str, row_shape: tuple[int, ...] = ()
) -> h5py.Dataset:
    """The series ``name`` under ``group``, created empty and tagged with its index.

    A row may be empty (a model has no sample grid): HDF5 chunks must be positive, and a
    chunk may exceed a fixed maximum extent, so such an axis gets chunk 1 and no maximum.
    """
    if name in group:
        return group[name]
    ds = group.create_dataset(
        name,
        shape=(0, *row_shape),
        maxshape=(None, *(n if n > 0 else None for n in row_shape)),
        dtype="f8",
        chunks=(
            max(1, 4096 // max(1, int(np.prod(row_shape or (1,))))),
            *(max(n, 1) for n in row_shape),
        ),
    )
    ds.attrs[SERIES] = index
    return ds


class ResultsFile:
    """Incremental writer of a results file.

    Args:
        path: The ``.h5`` file.
        comm: The run's communicator; rank 0 writes.
        case_name: ``case`` attribute.
        solver: ``solver`` attribute.
        dim: Spatial dimension.
        config: The resolved case, stored as JSON in ``config``.
        sample_points: The sample grid, (n, dim).
        resume: Open an existing file and cut it back to its checkpoint.
    """

    def __init__(
        self,
        path: Path,
        comm: MPI.Comm,
        case_name: str,
        solver: str,
        dim: int,
        config: dict,
        sample_points: np.ndarray,
        resume: bool = False,
    ) -> None:
        self.path, self.comm = Path(path), comm
        self.h5: h5py.File | None = None
        if comm.rank != 0:
            return
        if resume:
            self.h5 = h5py.File(self.path, "a")
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = self.h5 = h5py.File(self.path, "w")
        f.attrs.update(
            {
                "schema": SCHEMA,
                "case": case_name,
                "solver": solver,
                "dim": dim,
                "mpi_size": comm.size,
                "wgf_version": wgf.__version__,
                "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                "config": json.dumps(config),
            }
        )
        _series(f, "time", STEP)
        f.create_group("diagnostics")
        snap = f.create_group("snapshots")
        _series(snap, "time", SNAPSHOT)
        _series(snap, "density", SNAPSHOT, (len(sample_points),))
        f.create_dataset("samples/points", data=sample_points)
        f.flush()

    @property
    def root(self) -> bool:
        """Whether this rank writes."""
        return self.h5 is not None

    def set_fields(self, xdmf: str) -> None:
        """Record the ParaView file of the FE fields (relative to the results file)."""
        if self.root:
            self.h5.require_group("fields").attrs["xdmf"] = xdmf

    def append_step(self, t: float, diagnostics: dict[str, float]) -> None:
        """Append one time level: ``/time`` and every ``/diagnostics/<name>``."""
        if not self.root:
            return
        diag = self.h5["diagnostics"]
        for name, value in diagnostics.items():
            _grow(_series(diag, name, STEP), value)
        _grow(self.h5["time"], t)

    def append_snapshot(
        self, t: float, density: np.ndarray, extra: dict[str, np.ndarray] | None = None
    ) -> None:
        """Append a snapshot: the sampled density, and per-snapshot arrays such as positions."""
        if not self.root:
            return
        snap = self.h5["snapshots"]
        _grow(snap["density"], density)
        for name, value in (extra or {}).items():
            _grow(_series(self.h5, name, SNAPSHOT, value.shape), value)
        _grow(snap["time"], t)

    def write_checkpoint(
        self, step: int, t: float, tau: float, state: dict[str, np.ndarray]
    ) -> None:
        """Store what the solver needs to continue after ``step``, then flush the file.

        The checkpoint also records how many snapshots the file held at this step: on
        ``--resume`` every snapshot series is cut back to that count.
        """
        if not self.root:
            return
        group = self.h5.require_group("checkpoint")
        for name, value in state.items():
            if name in group and group[name].shape == value.shape:
                group[name][...] = value
            else:
                if name in group:
                    del group[name]
                group.create_dataset(name, data=value)
        snapshots = self.h5["snapshots/time"].shape[0]
        group.attrs.update({"step": step, "time": t, "tau": tau, "snapshots": snapshots})
        self.h5.flush()

    def write_array(self, name: str, value: np.ndarray | float, **attrs: object) -> None:
        """Write (or replace) a whole dataset, e.g. ``/particles/weights`` or ``/ot/w2``."""
        if not self.root:
            return
        if name in self.h5:
            del self.h5[name]
        ds = self.h5.create_dataset(name, data=value)
        ds.attrs.update(attrs)

    def close(self) -> None:
        """Flush and close (on rank 0)."""
        if self.root:
            self.h5.close()
            self.h5 = None


def results_path(out_dir: Path, case: str, solver: str) -> Path:
    """``<out>/<case>_<solver>.h5``, the results file of one run (DESIGN §6)."""
    return Path(out_dir) / f"{case}_{solver}.h5"


def fields_path(results: Path) -> Path:
    """The ParaView file beside a results file, ``<out>/<case>_<solver>_fields.xdmf``.

    Its heavy data goes to ``<stem>_fields.h5``: the name must differ from the results file.
    """
    return results.with_name(f"{results.stem}_fields.xdmf")


class OutputLock:
    """An exclusive lock on the output files of one run, ``<out>/<case>_<solver>.*``.

    HDF5's own file lock comes too late: ``h5py.File(path, "w")`` truncates the file
    before it finds the lock held, so a second run on the same ``--out`` would destroy the
    first one's results.  Instead, before anything is created or truncated, rank 0 takes
    a non-blocking ``flock`` on ``<stem>.lock`` (and writes its pid there, for the message
    of the run that is refused).  The verdict is broadcast, so every rank raises the same
    :class:`UserError` and none is left waiting.  The kernel drops a ``flock`` when its
    process dies, so a killed run never leaves a stale lock; the file itself is kept
    (removing it would let two later runs lock two different files of the same name).

    Args:
        path: The results file; the lock is its sibling ``<stem>.lock``.
        comm: The run's communicator; rank 0 holds the lock.

    Raises:
        UserError: Another process holds the lock, or the lock file cannot be made.
    """

    def __init__(self, path: Path, comm: MPI.Comm) -> None:
        self.path = Path(path).with_suffix(".lock")
        fd = on_rank_0(comm, self._acquire)  # rank 0's descriptor, broadcast: keep it there
        self.fd: int | None = fd if comm.rank == 0 else None

    def _acquire(self) -> int:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise UserError(f"--out: cannot write '{self.path}': {err.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            stem = self.path.with_suffix("")
            raise UserError(f"{stem}.h5 is being written by another run (pid {holder})") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return fd

    def release(self) -> None:
        """Drop the lock (idempotent; only rank 0 holds one)."""
        fd, self.fd = self.fd, None
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def __enter__(self) -> OutputLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def check_writable(out_dir: Path, comm: MPI.Comm) -> None:
    """Refuse an output directory that cannot be made or written, on every rank alike.

    Called before any solver is built, so a bad ``--out`` costs one line instead of a
    failed write (and, under mpiexec, an MPI abort) after the set-up.  Bad input must leave
    nothing behind, so the directory is not made here: its nearest existing ancestor must
    be a directory in which a file can be created (an unnamed temporary file, gone when
    closed).  Permission bits alone say nothing when running as root, or on a read-only
    mount, hence the real attempt.

    Raises:
        UserError: The directory cannot be created or written to.
    """

    def probe() -> None:
        out = Path(out_dir)
        existing = next(p for p in (out.absolute(), *out.absolute().parents) if p.exists())
        try:
            if not existing.is_dir():
                raise NotADirectoryError(20, f"'{existing}' is a file, not a directory")
            with tempfile.TemporaryFile(dir=existing):
                pass
        except OSError as err:
            raise UserError(f"--out: '{out}' is not a writable directory: {err.strerror}") from None

    on_rank_0(comm, probe)


@dataclass
class Checkpoint:
    """What ``--resume`` continues from.

    Attributes:
        step: Index of the last completed time level.
        time: Its time.
        wall_time: Wall time spent up to it.
        tau: The step that reached it (an adaptive run goes on from it).
        state: The solver state at it.
        snapshots: (time, state) of every earlier snapshot, to rebuild field files.
    """

    step: int
    time: float
    wall_time: float
    tau: float
    state: dict[str, np.ndarray]
    snapshots: list[tuple[float, dict[str, np.ndarray]]]


def read_checkpoint(path: Path, comm: MPI.Comm, config: dict, solver: str) -> Checkpoint:
    """Check that ``path`` can be resumed with ``config`` and cut it back to its checkpoint.

    Returns:
        The last checkpoint, on every rank.

    Raises:
        UserError: When the file is missing, not a wgf results file, from another case
            or solver, or has no checkpoint.
    """
    return on_rank_0(comm, lambda: _cut_back(path, config, solver))


def on_rank_0[T](comm: MPI.Comm, read: Callable[[], T]) -> T:
    """``read()`` on rank 0 (h5py is serial), its value broadcast to every rank.

    A :class:`UserError` there is raised on every rank alike, so that no rank waits.
    """
    payload: T | str | None = None
    if comm.rank == 0:
        try:
            payload = read()
        except UserError as err:
            payload = str(err)
    payload = comm.bcast(payload, root=0)
    if isinstance(payload, str):
        raise UserError(payload)
    return payload  # type: ignore[return-value]


def _cut_back(path: Path, config: dict, solver: str) -> Checkpoint:
    if not path.is_file():
        raise UserError(f"--resume: no results file '{path}' to resume")
    try:
        f = h5py.File(path, "a")
    except OSError as err:
        raise UserError(f"--resume: '{path}' is not a readable HDF5 file: {err}") from None
    with f:
        if f.attrs.get("schema") != SCHEMA:
            raise UserError(f"--resume: '{path}' is not a {SCHEMA} results file")
        if f.attrs["solver"] != solver:
            raise UserError(
                f"--resume: '{path}' was written by solver '{f.attrs['solver']}', not '{solver}'"
            )
        old = json.loads(f.attrs["config"])
        for section in sorted(set(old) | set(config)):
            if section not in RESUMABLE_CHANGES and old.get(section) != config.get(section):
                raise UserError(
                    f"--resume: '{path}' is from a different case (section [{section}] differs)"
                )
        if "checkpoint" not in f:
            raise UserError(f"--resume: '{path}' has no completed step to resume from")
        ck = f["checkpoint"]
        step, t = int(ck.attrs["step"]), float(ck.attrs["time"])
        state = {name: ck[name][()] for name in ck}
        _truncate(f, step + 1, _snapshot_count(f, t))
        wall = f["diagnostics/wall_time"]
        snaps = f["snapshots"]
        stored = snaps.get("state", {})
        snapshots = [
            (float(ts), {name: stored[name][i] for name in stored})
            for i, ts in enumerate(snaps["time"][()])
        ]
        f.attrs["config"] = json.dumps(config)
        tau = float(ck.attrs.get("tau", np.nan))
        return Checkpoint(step, t, float(wall[-1]) if len(wall) else 0.0, tau, state, snapshots)


def _snapshot_count(f: h5py.File, t: float) -> int:
    """Snapshots taken up to the checkpoint at time t.

    Older checkpoints do not record the count: then it is the number of snapshot times
    not after t (the snapshot of a step is written before its checkpoint).
    """
    count = f["checkpoint"].attrs.get("snapshots")
    if count is not None:
        return int(count)
    return int(np.sum(f["snapshots/time"][()] <= t * (1 + 1e-12) + 1e-300))


def _truncate(f: h5py.File, levels: int, snapshots: int) -> None:
    """Cut every step series to ``levels`` entries and every snapshot series to ``snapshots``.

    The datasets are found by their ``series`` attribute wherever they sit, so a series
    that a solver adds under a group of its own is cut like ``/snapshots/density``.
    """
    length = {STEP: levels, SNAPSHOT: snapshots}

    def cut(name: str, obj: h5py.HLObject) -> None:
        if isinstance(obj, h5py.Dataset):
            keep = length.get(series_index(name, obj))
            if keep is not None and obj.shape[0] > keep:
                obj.resize(keep, axis=0)

    f.visititems(cut)
