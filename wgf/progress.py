r"""Progress output of long work: a redrawn bar on a terminal, plain lines otherwise.

One :class:`Progress` per loop (a run's time steps, ALG2 iterations).  Only the first rank
of the loop's communicator writes, to the current ``sys.stdout``:

* on a terminal, one line redrawn in place with ``\r`` at most :data:`BAR_EVERY` seconds
  apart: the bar, the step count, the elapsed time and the ETA (the mean time per step so
  far times the steps left), then the caller's text (t/T, …); the line is cut to the
  terminal's width, since a wrapped line cannot be redrawn;
* otherwise (a file, a pipe, a CI log, ``mpiexec``'s forwarding), a plain line at most
  :data:`LINE_EVERY` seconds apart, and always for the first and the last step, so a
  log shows the pace at once, has a bounded number of lines and ends with the final
  state.

The bar is drawn only when the loop runs on every rank of ``COMM_WORLD``: the groups of a
``wgf sweep`` run side by side and would overwrite each other's line, so each prints
plain lines.

:func:`note` prints a one-off line (a level of ``wgf converge`` starts, a step is
retried); it first clears a bar being drawn, and so does the ``wgf`` log handler, so a
note never lands in the middle of the bar.  ``wgf --quiet`` calls :func:`set_quiet`:
progress lines and notes are then not printed at all (errors and the final tables are not
progress and still are).  The Python API prints progress unless the script calls
``wgf.progress.set_quiet(True)``.
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import TextIO

from mpi4py import MPI

#: Seconds between redraws of the bar on a terminal.
BAR_EVERY = 0.1
#: Seconds between plain progress lines (the last step always prints).
LINE_EVERY = 1.0
#: Width of the bar, in characters.
BAR_WIDTH = 20

_quiet = False
#: The progress whose bar is on screen (its line has no newline yet), if any.
_drawn: Progress | None = None


def set_quiet(quiet: bool) -> None:
    """Suppress (True) or allow progress lines and notes for the rest of the process."""
    global _quiet
    _quiet = quiet


def is_quiet() -> bool:
    """Whether progress output is suppressed."""
    return _quiet


def clear_bar() -> None:
    """Finish the line of a bar being drawn, so that the next output starts a line."""
    global _drawn
    if _drawn is not None:
        _drawn.stream.write("\n")
        _drawn.stream.flush()
        _drawn = None


def note(text: str, comm: MPI.Comm = MPI.COMM_WORLD) -> None:
    """Print one progress line on rank 0 of ``comm`` (unless quiet)."""
    if _quiet or comm.rank != 0:
        return
    clear_bar()
    print(text, flush=True)


def clock(seconds: float) -> str:
    """``m:ss`` or ``h:mm:ss``."""
    if seconds != seconds or seconds == float("inf"):
        return "?"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """Progress of one loop of ``total`` items (steps), from item ``start``.

    Args:
        label: Printed first, e.g. ``"[fem-implicit]"``.
        total: The index of the last item (the last step), or None when unknown (an
            iteration that stops on convergence): then no bar and no ETA.
        start: The index the loop starts from (a resumed run's checkpoint step); the
            ETA is extrapolated from the items done since.
        comm: The loop's communicator: its rank 0 writes.
        stream: Where to write (default: the current ``sys.stdout``).
        terminal: Draw the bar (default: whether ``stream`` is a terminal and the loop
            runs on all of ``COMM_WORLD``).
        unit: What an item is called in the line (``"step"``, ``"it"``).
    """

    def __init__(
        self,
        label: str,
        total: int | None,
        start: int = 0,
        comm: MPI.Comm = MPI.COMM_WORLD,
        stream: TextIO | None = None,
        terminal: bool | None = None,
        unit: str = "step",
    ) -> None:
        self.label, self.total, self.start, self.unit = label, total, start, unit
        self.stream = stream if stream is not None else sys.stdout
        self.active = comm.rank == 0 and not _quiet
        if terminal is None:
            terminal = self.stream.isatty() and comm.size == MPI.COMM_WORLD.size
        self.terminal = terminal
        self.began = time.perf_counter()
        self._last = -float("inf")  # the first item prints at once: a sign of life

    def eta(self, done: int) -> float:
        """Seconds left, from the mean time per item so far (NaN before the first)."""
        if self.total is None or done <= self.start:
            return float("nan")
        per_item = (time.perf_counter() - self.began) / (done - self.start)
        return per_item * (self.total - done)

    def line(self, done: int, text: str, bar: str = "") -> str:
        """``[label] <bar>step k/n [elapsed < ETA]  text``.

        The times come before the caller's text, so that cutting the line to a
        terminal's width keeps them.
        """
        count = f"{done}/{self.total}" if self.total is not None else f"{done}"
        width = 2 * len(str(self.total)) + 1 if self.total is not None else 5
        times = clock(time.perf_counter() - self.began)
        if self.total is not None:
            times += f" < {clock(self.eta(done))}"
        return f"{self.label} {bar}{self.unit} {count:>{width}s} [{times}]  {text}".rstrip()

    def bar(self, done: int) -> str:
        """``45% |█████████···········|`` (empty when the total is unknown)."""
        if self.total is None or self.total <= self.start:
            return ""
        frac = min(max((done - self.start) / (self.total - self.start), 0.0), 1.0)
        full = int(frac * BAR_WIDTH)
        return f"{100 * frac:3.0f}% |{'█' * full}{'·' * (BAR_WIDTH - full)}| "

    def update(self, done: int, text: str = "", last: bool | None = None) -> None:
        """Report item ``done``; ``last`` (default: ``done == total``) always prints."""
        global _drawn
        if not self.active:
            return
        last = done == self.total if last is None else last
        now = time.perf_counter()
        if not last and now - self._last < (BAR_EVERY if self.terminal else LINE_EVERY):
            return
        self._last = now
        if not self.terminal:
            clear_bar()
            print(self.line(done, text), file=self.stream, flush=True)
            return
        columns = shutil.get_terminal_size((100, 24)).columns
        shown = self.line(done, text, self.bar(done))
        self.stream.write("\r" + shown[: columns - 1].ljust(columns - 1))
        self.stream.flush()
        _drawn = self
        if last:
            self.close()

    def close(self) -> None:
        """End the bar's line (a no-op for plain lines or when nothing is drawn)."""
        if _drawn is self:
            clear_bar()
