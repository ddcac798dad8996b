"""Run a registered solver with the driver of its kind.

A flow solver (:class:`~wgf.solvers.protocols.GradientFlowSolver`) runs under the time
loop of :mod:`wgf.run`, a transport solver (:class:`~wgf.solvers.protocols.TransportSolver`)
under :mod:`wgf.transport`.  Which one is declared in the registry
(:attr:`wgf.solvers.registry.SolverInfo.kind`); ``wgf run``, ``converge`` and ``sweep``
all come through here, so each refuses a case of the other kind with the same one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mpi4py import MPI

from wgf.cases import Case
from wgf.cases.errors import UserError
from wgf.resources import check_memory
from wgf.run import RunSummary, build_solver, run_flow
from wgf.solvers import get_solver
from wgf.transport import run_transport


def check_kind(case: Case, name: str) -> None:
    """Refuse (one line, :class:`UserError`) a solver whose kind differs from the case's.

    Needs no solver module: the kind is part of the registered declaration.
    """
    get_solver(name).capabilities.check_kind(case, name)


def check_runnable(case: Case, name: str) -> None:
    """Refuse (one line) a case the solver cannot run, or one that cannot fit in memory.

    What ``run``, ``converge`` and ``sweep`` check for each run before building anything:
    the solver's capabilities and own rules (:meth:`~wgf.solvers.registry.SolverInfo.check`,
    the kind first), then :func:`~wgf.resources.check_memory`.
    """
    get_solver(name).check(case)
    check_memory(case, name)


def run_solver(
    case: Case, name: str, comm: MPI.Comm, out_dir: Path, resume: bool = False
) -> RunSummary:
    """Build the registered solver ``name`` on ``case`` and run it with its driver.

    Args:
        case: The validated case.
        name: A registered solver name.
        comm: The communicator of the run.
        out_dir: Where ``<case>_<solver>.h5`` goes.
        resume: Continue a flow run from its checkpoint (transport runs have none).

    Returns:
        The run's summary (meaningful on rank 0).

    Raises:
        UserError: The solver cannot run the case, or ``resume`` for a transport solver.
    """
    check_kind(case, name)
    check_resumable(name, resume)
    return run_built(build_solver(case, name, comm), case, out_dir, resume)


def check_resumable(name: str, resume: bool) -> None:
    """Refuse ``--resume`` for a transport solver (one solve, no checkpoints)."""
    if resume and get_solver(name).kind == "transport":
        raise UserError(f"--resume: {name} is not a time-stepping solver")


def run_built(solver: Any, case: Case, out_dir: Path, resume: bool = False) -> RunSummary:
    """Run a solver built by :func:`wgf.run.build_solver` with the driver of its kind."""
    check_resumable(solver.name, resume)
    if get_solver(solver.name).kind == "transport":
        return run_transport(solver, case, Path(out_dir))
    return run_flow(solver, case, Path(out_dir), resume=resume)
