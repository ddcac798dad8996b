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


def use_schur_split(
    ksp: PETSc.KSP,
    first: tuple[str, PETSc.IS],
    second: tuple[str, PETSc.IS],
    rtol: float,
    max_it: int,
) -> PETSc.KSP:
    """GMRES on a 2 × 2 block system, preconditioned by its full Schur factorisation.

    The split eliminates the ``first`` block (which the caller makes cheap to solve) and
    preconditions the Schur complement on the ``second`` with ``selfp``, the assembled
    A₁₁ - A₁₀ diag(A₀₀)⁻¹ A₀₁.  The sub-solvers are set up by PETSc only later, so their
    defaults go in the options database (:func:`set_default_options`) under
    ``<prefix>fieldsplit_<name>_``.

    Returns:
        ``ksp``, for chaining.
    """
    ksp.setType(PETSc.KSP.Type.GMRES)
    ksp.setTolerances(rtol=rtol, max_it=max_it)
    pc = ksp.getPC()
    pc.setType(PETSc.PC.Type.FIELDSPLIT)
    pc.setFieldSplitIS(first, second)
    pc.setFieldSplitType(PETSc.PC.CompositeType.SCHUR)
    pc.setFieldSplitSchurFactType(PETSc.PC.FieldSplitSchurFactType.FULL)
    pc.setFieldSplitSchurPreType(PETSc.PC.FieldSplitSchurPreType.SELFP)
    return ksp


#: Newton with backtracking: robust for the small and medium problems the suite runs by
#: default.  Its linear solves are direct (:func:`use_direct_lu` on the SNES's KSP).
NEWTON = {
    "snes_type": "newtonls",
    "snes_linesearch_type": "bt",
}
