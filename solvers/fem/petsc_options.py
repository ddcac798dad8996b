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


def use_direct_lu(ksp: PETSc.KSP) -> PETSc.KSP:
    """Make ``ksp`` a direct solve: no Krylov iterations, one LU factorisation by MUMPS.

    MUMPS is the parallel LU in this PETSc build.  The settings go on the object, not
    into the options database, so a later ``ksp.setFromOptions()`` lets the command line
    (``-<prefix>pc_type``, ``-<prefix>pc_factor_mat_solver_type``, ...) override them,
    and a KSP without a prefix does not leak them to every other unprefixed solver.

    Returns:
        ``ksp``, for chaining.
    """
    ksp.setType(PETSc.KSP.Type.PREONLY)
    pc = ksp.getPC()
    pc.setType(PETSc.PC.Type.LU)
    pc.setFactorSolverType("mumps")
    return ksp


#: Newton with backtracking: robust for the small and medium problems the suite runs by
#: default.  Its linear solves are direct (:func:`use_direct_lu` on the SNES's KSP).
NEWTON = {
    "snes_type": "newtonls",
    "snes_linesearch_type": "bt",
}
