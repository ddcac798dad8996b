"""Error types and their exit statuses.

Status codes of ``wgf``:

* 0 — success;
* 2 — :class:`UserError`: the input is wrong (case file, option, mesh, resume file);
  nothing was written;
* 3 — :class:`SolverError`: a solver did not converge; the results file keeps every
  completed step and ``--resume`` continues from them.
"""


class UserError(Exception):
    """A mistake the user can fix; reported as one line, exit status 2."""

    status = 2


class SolverError(Exception):
    """A numerical failure (non-convergence); completed steps are kept, exit status 3.

    Args:
        message: One line naming what failed.
        iterations: Inner iterations the failed attempt spent (the driver counts them in
            ``iterations_total``).
        tau_helps: Whether a smaller τ can cure it.  False for failures of the
            discretisation itself (an underflowing weight, an unresolved mesh): the driver
            then stops at once instead of halving τ, and does not advise a smaller τ.
    """

    status = 3

    def __init__(self, message: str, iterations: int = 0, tau_helps: bool = True) -> None:
        super().__init__(message)
        self.iterations, self.tau_helps = iterations, tau_helps
