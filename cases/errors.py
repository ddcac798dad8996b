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
    """A numerical failure (non-convergence); completed steps are kept, exit status 3."""

    status = 3
