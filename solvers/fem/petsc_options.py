"""PETSc options: our defaults under a solver's prefix, with the command line winning."""

from __future__ import annotations

from collections.abc import Mapping

from petsc4py import PETSc


def set_default_options(prefix: str, defaults: Mapping[str, object]) -> None:
    """Put ``defaults`` into the options database under ``prefix`` unless already set.

    Options given on the command line (``-<prefix>snes_monitor``) are in the database
    already (``petsc4py.init(argv)``), so they override these defaults.
    """
    opts = PETSc.Options()
    for key, value in defaults.items():
        if not opts.hasName(f"{prefix}{key}"):
            opts[f"{prefix}{key}"] = value


#: Newton with backtracking, sparse direct solves: robust for the small and medium
#: problems the suite runs by default.  MUMPS is the parallel LU in this PETSc build.
NEWTON_LU = {
    "snes_type": "newtonls",
    "snes_linesearch_type": "bt",
    "ksp_type": "preonly",
    "pc_type": "lu",
    "pc_factor_mat_solver_type": "mumps",
}
