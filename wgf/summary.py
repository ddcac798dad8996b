"""The table ``wgf run`` prints at the end.

Its L1/L2 errors are each solver's own diagnostics, and they are not all measured the same
way: an FE solver integrates |ρ_h - ρ| with a degree-6 Gauss rule on its mesh ("mesh"), a
particle solver compares its density estimate with ρ at the midpoints of the case's sample
grid ("grid").  The column ``err on`` says which, and a footnote says that ``wgf compare``
measures every run on the sample grid, so its figures differ from these.

A run of several solvers goes on after one fails (exit status 3): that solver gets a row
too, with the steps its results file kept, and ``status`` says which runs failed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import h5py

from wgf.cases import Case
from wgf.run import RunSummary

#: Shown where a value does not exist (no closed form, no minimum density, ...).
DASH = "–"

ERROR_NOTE = (
    "L1/L2 err: relative, against the closed form.  err on: mesh = degree-6 Gauss quadrature"
    " on the FE mesh,\n  grid = midpoint rule on the sample grid (wgf compare measures every"
    " run on the sample grid)."
)


def error_basis(solver: str) -> str:
    """Where the solver's ``l1_error`` is measured: "mesh" (FE) or "grid" (particles)."""
    from wgf.solvers import get_solver

    return "mesh" if get_solver(solver).module.startswith("wgf.solvers.fem") else "grid"


def fmt(value: float | None, spec: str) -> str:
    """``value`` formatted by ``spec``, or :data:`DASH` where it is None or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return DASH
    return format(value, spec)


@dataclass(frozen=True)
class FailedRun:
    """A solver that stopped with an error while the others went on.

    Attributes:
        solver: Its name.
        status: The exit status of its error (3: did not converge).
        message: The error's one line.
        path: Its results file (which keeps the completed steps).
        steps: The completed steps in that file (None if it cannot be read).
        t: The time they reached.
        diagnostics: The last completed step's errors (``l1_error``, ``l2_error``).
    """

    solver: str
    status: int
    message: str
    path: Path
    steps: int | None = None
    t: float | None = None
    diagnostics: dict[str, float] | None = None

    @classmethod
    def from_file(cls, solver: str, status: int, message: str, path: Path) -> FailedRun:
        """Read how far the failed run got from its results file (rank 0)."""
        try:
            with h5py.File(path, "r") as f:
                time = f["time"][()]
                diag = {
                    k: float(f[f"diagnostics/{k}"][len(time) - 1])
                    for k in ("l1_error", "l2_error")
                    if f"diagnostics/{k}" in f
                }
        except (OSError, KeyError, IndexError):  # no file, or not one of ours
            return cls(solver, status, message, path)
        return cls(solver, status, message, path, len(time) - 1, float(time[-1]), diag)


def print_summary(case: Case, runs: list[RunSummary | FailedRun]) -> None:
    """Print one row per solver: steps, error at T, mass drift, energy, iterations, time.

    ``its mean/max`` are per level over the accepted steps; ``its total`` adds the
    iterations of the rejected attempts, which ``rejected`` counts.  A :class:`FailedRun`
    gets its steps, the time and errors it reached, and its exit status; its error line
    is repeated under the table.
    """
    head = (
        f"{'solver':14s} {'steps':>6s} {'T':>8s} {'L1 err':>10s} {'L2 err':>10s} "
        f"{'err on':>6s} {'mass drift':>11s} {'F(T)':>12s} {'F incr.':>7s} {'min rho':>10s} "
        f"{'its mean/max':>12s} {'its total':>9s} {'rejected':>8s} {'wall [s]':>9s} "
        f"{'status':>7s}"
    )
    print(f"\ncase {case.name} ({case.dim}-D)")
    print(head)
    print("-" * len(head))
    for r in runs:
        if isinstance(r, FailedRun):
            print(_failed_row(r))
            continue
        d = r.diagnostics
        mass = d.get("mass")
        drift = None if mass is None else abs(mass - r.mass0) / r.mass0
        its = (
            f"{sum(r.iterations) / len(r.iterations):.1f}/{max(r.iterations)}"
            if r.iterations
            else DASH
        )
        has_error = "l1_error" in d
        print(
            f"{r.solver:14s} {r.steps:6d} {r.t:8.4g} {fmt(d.get('l1_error'), '.3e'):>10s} "
            f"{fmt(d.get('l2_error'), '.3e'):>10s} "
            f"{error_basis(r.solver) if has_error else DASH:>6s} {fmt(drift, '.2e'):>11s} "
            f"{fmt(d.get('energy'), '.6g'):>12s} {r.energy_increases:7d} "
            f"{fmt(d.get('min_density'), '.3e'):>10s} {its:>12s} "
            f"{r.iterations_total:9d} {r.retries:8d} {r.wall_time:9.2f} {'ok':>7s}"
        )
    if any("l1_error" in (r.diagnostics or {}) for r in runs):
        print(ERROR_NOTE)
    for r in runs:
        if isinstance(r, FailedRun):
            print(f"{r.solver}: exit {r.status}: {r.message}")
    for r in runs:
        print(f"results: {r.path}")


def _failed_row(r: FailedRun) -> str:
    """The table row of a failed run: how far it got, and its status."""
    d = r.diagnostics or {}
    steps = DASH if r.steps is None else str(r.steps)
    return (
        f"{r.solver:14s} {steps:>6s} {fmt(r.t, '8.4g'):>8s} "
        f"{fmt(d.get('l1_error'), '.3e'):>10s} {fmt(d.get('l2_error'), '.3e'):>10s} "
        f"{error_basis(r.solver) if 'l1_error' in d else DASH:>6s} {DASH:>11s} {DASH:>12s} "
        f"{DASH:>7s} {DASH:>10s} {DASH:>12s} {DASH:>9s} {DASH:>8s} {DASH:>9s} "
        f"{'exit ' + str(r.status):>7s}"
    )
