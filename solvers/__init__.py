"""The numerical methods: the shared energy, FE and (later) particle solvers.

Every solver registers a :class:`SolverInfo` in :data:`SOLVERS`; the command line and
the case loader discover solvers and their parameters only through it.
"""

from wgf.solvers.registry import SOLVERS, SolverInfo, get_solver, solver_tables

__all__ = ["SOLVERS", "SolverInfo", "get_solver", "solver_tables"]
