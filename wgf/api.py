"""The Python API (DESIGN §7): what ``wgf run`` does, from a script or a notebook.

Three calls, the same on one rank or under ``mpiexec``::

    from wgf import api

    case = api.load("heat_1d", {"time.tau": 0.0025, "solver.blob.particles": 400})
    res = api.run(case, "blob", out="runs")          # every rank gets the results
    res.time, res.diagnostics["l1_error"][-1], res.snapshot_density

:func:`load` takes what ``wgf run`` takes: a case file, the name of a shipped case, or the
case as a dict with the layout of a case file; ``overrides`` are the ``--set`` keys.
Solver parameters are case keys too (``solver.<name>.<key>``).  :func:`run` writes the
same files as ``wgf run`` (``<out>/<case>_<solver>.h5``, the field files) and reads the
results file back.

The names are not re-exported from :mod:`wgf` itself: ``wgf.run`` is the driver module,
and an attribute ``wgf.run`` would change meaning once that module is imported.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mpi4py import MPI

from wgf.cases import Case, load_case
from wgf.cases.case import Overrides
from wgf.dispatch import run_solver
from wgf.postprocess.results import Results, read_results
from wgf.results import on_rank_0

__all__ = ["Case", "Results", "load", "read", "run"]


def load(source: str | Path | Mapping[str, Any], overrides: Overrides | None = None) -> Case:
    """Load and validate a case.

    Args:
        source: A ``.toml`` path, the name of a shipped case (``wgf cases``), or the case
            itself as a nested dict (a loaded case's ``config`` too, so that
            ``load(case.config, {"time.tau": 0.001})`` changes a loaded case).
        overrides: ``{"section.key": value}``, the keys of ``--set`` with Python values
            (``{"domain.cells": [64, 64], "solver.blob.particles": 400}``), or the
            ``--set`` strings themselves (``["domain.cells=[64, 64]"]``, values as TOML).

    Returns:
        The validated case.

    Raises:
        UserError: With a one-line message naming the problem.
    """
    from wgf.solvers import solver_tables

    return load_case(source, overrides or (), solver_tables())


def run(
    case: Case,
    solver: str,
    *,
    comm: MPI.Comm | None = None,
    out: str | Path = "out",
    resume: bool = False,
) -> Results:
    """Run one solver on a case and read its results back.

    Collective on ``comm``: every rank calls it and every rank gets the results (rank 0
    reads the file and broadcasts the arrays).

    Args:
        case: From :func:`load`.
        solver: A registered solver name (``wgf solvers``).
        comm: The communicator to run on (default ``MPI.COMM_WORLD``).
        out: The output directory (created by rank 0).
        resume: Continue from the checkpoint of an earlier run's results file.

    Returns:
        The results file's contents.

    Raises:
        UserError: Bad input (unknown solver, a case the solver cannot run), on every rank.
        SolverError: A step failed even after halving τ; completed steps are in the file.
    """
    comm = MPI.COMM_WORLD if comm is None else comm
    summary = run_solver(case, solver, comm, Path(out), resume=resume)
    comm.Barrier()  # rank 0 has closed the file
    return on_rank_0(comm, lambda: read_results(summary.path))


def read(path: str | Path) -> Results:
    """Read a results file (any rank, no communication).

    Returns:
        Time levels, diagnostics by name, snapshot times and densities on the sample
        grid, the sample points, particle positions and weights (particle solvers), and
        the root attributes (``solver``, ``case``, ...) and the resolved case (``config``).

    Raises:
        UserError: The file is missing or not a wgf results file.
    """
    return read_results(path)
