"""PETSc options: our defaults under a solver's prefix, with the command line winning."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from petsc4py import PETSc

#: PETSc's error codes for an option value it cannot use: out of range or not a number
#: (``PETSC_ERR_ARG_OUTOFRANGE``), an unknown type (``PETSC_ERR_ARG_UNKNOWN_TYPE``), a
#: factorisation package this build lacks (``PETSC_ERR_MISSING_FACTOR``).
OPTION_ERRORS = frozenset({63, 86, 92})


def error_message(err: PETSc.Error) -> str:
    """PETSc's own reason for ``err`` on one line.

    petsc4py's error text is "error code N" followed by PETSc's traceback, one
    ``[rank] …`` line per frame, ending with the specific message.
    """
    lines = [re.sub(r"^\[\d+\]\s*", "", line).strip() for line in str(err).splitlines()]
    lines = [line for line in lines if line]
    return lines[-1] if len(lines) > 1 else f"PETSc error {err.ierr}"


def refused_option(err: BaseException) -> str | None:
    """PETSc's reason if ``err`` is PETSc refusing an option's value, else None.

    Such errors surface wherever the option is read: at ``setFromOptions`` or, for a
    split's sub-solvers, at the first solve.  The codes can also come from a defect of
    ours, so the caller should ask only when the user gave PETSc options.
    """
    if isinstance(err, PETSc.Error) and err.ierr in OPTION_ERRORS:
        return error_message(err)
    return None


def set_default_options(prefix: str, defaults: Mapping[str, object]) -> list[str]:
    """Put ``defaults`` into the options database under ``prefix`` unless already set.

    Options given on the command line (``-<prefix>snes_monitor``) are in the database
    already (``petsc4py.init(argv)``), so they override these defaults.

    Returns:
        The names of the options put in (those not already set).
    """
    opts, added = PETSc.Options(), []
    for key, value in defaults.items():
        if not opts.hasName(f"{prefix}{key}"):
            opts[f"{prefix}{key}"] = value
            added.append(f"{prefix}{key}")
    return added


def remove_options(names: Iterable[str]) -> None:
    """Take ``names`` (as :func:`set_default_options` returned them) out of the database."""
    opts = PETSc.Options()
    for name in names:
        opts.delValue(name)


def set_from_options_with(ksp: PETSc.KSP, defaults: Mapping[str, object]) -> None:
    """``ksp.setFromOptions()`` with ``defaults`` under its prefix, unless already set.

    Unlike :func:`set_default_options` the defaults leave the database afterwards: the
    object keeps them, and a later solver with the same prefix that does not read them
    (another preconditioner) leaves no unused option for PETSc to warn about at exit.
    """
    added = set_default_options(ksp.getOptionsPrefix() or "", defaults)
    try:
        ksp.setFromOptions()
    finally:
        remove_options(added)


def use_direct_lu(ksp: PETSc.KSP, pivoting: bool = True) -> PETSc.KSP:
    """Make ``ksp`` a direct solve: no Krylov iterations, one LU factorisation.

    MUMPS by default: the parallel LU in this PETSc build, with pivoting.  With
    ``pivoting=False`` on one rank, PETSc's own LU in a nested-dissection ordering: on the
    P1 systems of fem-implicit it factorises in a third of MUMPS's time (256², one rank:
    0.031 s against 0.107 s; benchmarks/README.md), but it never pivots, so it is for
    matrices whose diagonal dominates (M/τ + ...): a zero pivot fails the solve
    (``DIVERGED_PCSETUP_FAILED``) and the caller must fall back to MUMPS.  Not a rule
    for every P1 system: on the fitted-flux matrix of keller_segel_2d (same pattern, same
    fill) it took 0.25 s against MUMPS's 0.10 s, so that one keeps MUMPS.

    The settings go on the object, not into the options database, so a later
    ``ksp.setFromOptions()`` lets the command line (``-<prefix>pc_type``,
    ``-<prefix>pc_factor_mat_solver_type``, ...) override them, and a KSP without a prefix
    does not leak them to every other unprefixed solver.

    Returns:
        ``ksp``, for chaining.
    """
    ksp.setType(PETSc.KSP.Type.PREONLY)
    pc = ksp.getPC()
    pc.setType(PETSc.PC.Type.LU)
    if pivoting or ksp.getComm().getSize() > 1:
        pc.setFactorSolverType("mumps")
    else:
        pc.setFactorSolverType("petsc")  # its LU's default ordering is nested dissection
    return ksp


class DiagonalSchur:
    """A₁₁ - A₁₀ diag(A₀₀)⁻¹ A₀₁ of a matrix A, assembled once and refilled in place.

    This is PCFIELDSPLIT's ``selfp`` matrix, but ``selfp`` builds it anew at every set-up,
    with a new nonzero state, so the factorisation on it redoes its symbolic analysis at
    every Newton iteration (measured, fem-jko at 256²: 35 MUMPS analyses in 35 solves,
    costing twice the numeric factorisations).  Here the pattern is fixed at the first
    :meth:`refill` and later ones change values only.

    Args:
        A: the block matrix; its pattern must stay fixed, its values may change.
        first: the global rows of the eliminated block, owned by this rank (as the index
            sets of PCFIELDSPLIT are).
        second: the global rows of the block the complement is taken onto.
    """

    def __init__(self, A: PETSc.Mat, first: PETSc.IS, second: PETSc.IS) -> None:
        self._A, self._first, self._second = A, first, second
        #: The complement; None until the first :meth:`refill` (A may be unassembled).
        self.mat: PETSc.Mat | None = None

    def refill(self) -> PETSc.Mat:
        """Recompute the complement from the current values of A (collective).

        Returns:
            The complement, the same matrix at every call.
        """
        A, first, second = self._A, self._first, self._second
        if self.mat is None:
            self._a10 = A.createSubMatrix(second, first)
            self._a01 = A.createSubMatrix(first, second)
            self._a11 = A.createSubMatrix(second, second)
            self._scaled = self._a01.copy()
            self._inverse_diagonal = self._a01.createVecLeft()
            self._product = self._a10.matMult(self._scaled)
            self.mat = self._a11.copy()
            self.mat.axpy(-1.0, self._product, PETSc.Mat.Structure.DIFFERENT_NONZERO_PATTERN)
            # A new nonzero would be a new pattern, hence a new analysis: make it an error.
            self.mat.setOption(PETSc.Mat.Option.NEW_NONZERO_LOCATION_ERR, True)
            # The first block's rows are owned: their local positions in A's diagonal (a
            # sub-vector of a general IS builds a scatter at every call, 3 ms at 256²).
            self._diagonal = A.createVecLeft()
            self._first_rows = first.getIndices() - A.getOwnershipRange()[0]
        else:
            A.createSubMatrix(second, first, submat=self._a10)
            A.createSubMatrix(first, second, submat=self._a01)
            A.createSubMatrix(second, second, submat=self._a11)
        A.getDiagonal(result=self._diagonal)
        self._inverse_diagonal.array[:] = 1.0 / self._diagonal.array[self._first_rows]
        self._a01.copy(self._scaled, PETSc.Mat.Structure.SAME_NONZERO_PATTERN)
        self._scaled.diagonalScale(L=self._inverse_diagonal)
        self._a10.matMult(self._scaled, result=self._product)
        self.mat.zeroEntries()
        self.mat.axpy(1.0, self._a11, PETSc.Mat.Structure.SUBSET_NONZERO_PATTERN)
        self.mat.axpy(-1.0, self._product, PETSc.Mat.Structure.SUBSET_NONZERO_PATTERN)
        return self.mat

    def destroy(self) -> None:
        """Free the PETSc matrices and vector."""
        if self.mat is None:
            return
        for mat in (self._a10, self._a01, self._a11, self._scaled, self._product, self.mat):
            mat.destroy()
        self._inverse_diagonal.destroy()
        self._diagonal.destroy()
        self.mat = None


def use_schur_split(
    ksp: PETSc.KSP,
    A: PETSc.Mat,
    first: tuple[str, PETSc.IS],
    second: tuple[str, PETSc.IS],
    rtol: float,
    max_it: int,
    factorisation: int = PETSc.PC.FieldSplitSchurFactType.FULL,
) -> DiagonalSchur:
    """GMRES on a 2 × 2 block system A, preconditioned by a Schur factorisation.

    The split eliminates the ``first`` block (which the caller makes cheap to solve) and
    preconditions the Schur complement on the ``second`` with the assembled
    A₁₁ - A₁₀ diag(A₀₀)⁻¹ A₀₁ (:class:`DiagonalSchur`), refilled at the start of every
    solve of ``ksp`` (``-<prefix>pc_fieldsplit_schur_precondition`` on the command line
    chooses another).  The sub-solvers are set up by PETSc only later, so their defaults
    go in the options database (:func:`set_default_options`) under
    ``<prefix>fieldsplit_<name>_``.  ``factorisation`` is PETSc's Schur factorisation
    type: ``FULL`` solves the first block twice per application, ``UPPER`` once.

    Returns:
        The Schur complement matrix, for the caller to destroy with ``ksp``.
    """
    ksp.setType(PETSc.KSP.Type.GMRES)
    ksp.setTolerances(rtol=rtol, max_it=max_it)
    pc = ksp.getPC()
    pc.setType(PETSc.PC.Type.FIELDSPLIT)
    pc.setFieldSplitIS(first, second)
    pc.setFieldSplitType(PETSc.PC.CompositeType.SCHUR)
    pc.setFieldSplitSchurFactType(factorisation)
    pc.setFieldSplitSchurPreType(PETSc.PC.FieldSplitSchurPreType.SELFP)
    schur = DiagonalSchur(A, first[1], second[1])
    prefix = ksp.getOptionsPrefix() or ""
    if PETSc.Options().hasName(f"{prefix}pc_fieldsplit_schur_precondition"):
        return schur

    def refill(_ksp: PETSc.KSP, _b: PETSc.Vec, _x: PETSc.Vec) -> None:
        # KSPSolve calls this before it sets the preconditioner up (checked on a 6 × 6
        # split: one GMRES iteration, with the refilled matrix).
        fresh = schur.mat is None
        schur.refill()
        if fresh:
            pc.setFieldSplitSchurPreType(PETSc.PC.FieldSplitSchurPreType.USER, schur.mat)

    ksp.setPreSolve(refill)
    return schur


#: Newton with backtracking: robust for the small and medium problems the suite runs by
#: default.  Its linear solves are direct (:func:`use_direct_lu` on the SNES's KSP).
NEWTON = {
    "snes_type": "newtonls",
    "snes_linesearch_type": "bt",
}
