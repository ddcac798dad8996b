"""The linear solvers of the FE Newton systems against MUMPS LU: the same steps.

fem-jko's power law (Schur factorisation onto the support, the default) and fem-implicit's
reduced system in ρ (GMRES + GAMG with ``-fem_implicit_pc_type gamg``; by default PETSc's
LU without pivoting on one rank) are compared with the LU that the command line selects
(``-<prefix>ksp_type preonly -<prefix>pc_type lu -<prefix>pc_factor_mat_solver_type mumps``).
"""

import dolfinx_solver  # noqa: F401 - must precede dolfinx

import numpy as np
import pytest
from mpi4py import MPI
from petsc4py import PETSc

from wgf.cases import load_case
from wgf.run import build_solver
from wgf.solvers import solver_tables

STEPS = 3


def _run(
    solver: str, prefix: str, lu: bool, extra: dict[str, str] | None = None
) -> tuple[np.ndarray, list[int], int, int]:
    """ρ after ``STEPS`` steps of porous_medium_2d (24², m = 2), Newton its, Krylov its."""
    opts = PETSc.Options()
    extra = extra or {}
    if solver == "fem-implicit" and not lu:  # its Krylov solver is opt-in
        extra = {"pc_type": "gamg", **extra}
    for key, value in extra.items():
        opts[f"{prefix}{key}"] = value
    if lu:
        opts[f"{prefix}ksp_type"] = "preonly"
        opts[f"{prefix}pc_type"] = "lu"
        opts[f"{prefix}pc_factor_mat_solver_type"] = "mumps"
    try:
        case = load_case("porous_medium_2d", {"domain.cells": [24, 24]}, solver_tables())
        s = build_solver(case, solver, MPI.COMM_SELF)
        tau = case.section("time")["tau"]
        its, linear = [], 0
        for _ in range(STEPS):
            its.append(s.step(tau))
            linear += s.linear_iterations
        rho, fallbacks = s.rho.x.array.copy(), s.lu_fallbacks
        assert s.diagnostics(0.0)["lu_fallbacks"] == fallbacks
        s.close()
    finally:
        for key in ("ksp_type", "pc_type", "pc_factor_mat_solver_type", *extra):
            opts.delValue(f"{prefix}{key}")
    return rho, its, linear, fallbacks


@pytest.mark.parametrize(
    ("solver", "prefix"), [("fem-jko", "fem_jko_"), ("fem-implicit", "fem_implicit_")]
)
def test_krylov_matches_lu(solver, prefix):
    rho, its, linear, fallbacks = _run(solver, prefix, lu=False)
    rho_lu, its_lu, linear_lu, _ = _run(solver, prefix, lu=True)
    # The Newton stop is on the true residual: the steps agree to the Newton tolerance.
    assert np.max(np.abs(rho - rho_lu)) < 1e-8 * np.max(rho_lu)
    assert abs(sum(its) - sum(its_lu)) <= STEPS
    # Krylov iterations were spent (not LU, which counts one per solve), none fell back.
    assert linear > sum(its)
    assert linear_lu == sum(its_lu)
    assert fallbacks == 0


def test_fem_implicit_solves_a_system_that_gamg_fails_by_lu():
    # Two GMRES iterations cannot reach 1e-20: every solve of S fails and that system
    # alone goes to MUMPS, so the steps are LU's, each Newton iteration counted once, with
    # the failed attempts' two Krylov iterations and the LU's one per solve.
    extra = {"ksp_max_it": "2", "ksp_rtol": "1e-20"}
    rho, its, linear, fallbacks = _run("fem-implicit", "fem_implicit_", False, extra)
    rho_lu, its_lu, _, _ = _run("fem-implicit", "fem_implicit_", lu=True)
    assert its == its_lu
    assert fallbacks == sum(its_lu)
    assert np.max(np.abs(rho - rho_lu)) < 1e-12 * np.max(rho_lu)
    assert linear == 3 * sum(its_lu)


def test_fem_implicit_redoes_a_step_whose_krylov_solve_fails_with_lu():
    # Another preconditioner than GAMG: the first failed solve fails the Newton step,
    # which is redone with MUMPS, the failed attempt's two iterations counted on top.
    extra = {"pc_type": "jacobi", "ksp_max_it": "2"}
    rho, its, linear, fallbacks = _run("fem-implicit", "fem_implicit_", False, extra)
    rho_lu, its_lu, _, _ = _run("fem-implicit", "fem_implicit_", lu=True)
    assert fallbacks == STEPS
    assert np.max(np.abs(rho - rho_lu)) < 1e-12 * np.max(rho_lu)
    assert its == its_lu
    assert linear == sum(its_lu) + 2 * STEPS


def test_fem_implicit_lu_without_pivoting_matches_mumps():
    # The default on one rank is PETSc's LU in a nested-dissection ordering, no pivoting.
    rho, its, linear, fallbacks = _run("fem-implicit", "fem_implicit_", False, {"pc_type": "lu"})
    rho_lu, its_lu, _, _ = _run("fem-implicit", "fem_implicit_", lu=True)
    assert np.max(np.abs(rho - rho_lu)) < 1e-12 * np.max(rho_lu)
    assert its == its_lu and linear == sum(its) and fallbacks == 0


def test_fem_implicit_redoes_a_step_whose_lu_finds_a_zero_pivot_with_mumps():
    # A zero-pivot threshold above every pivot fails PETSc's LU at the first Newton
    # iteration of every step; the step is redone with MUMPS (which pivots) and counted.
    rho, its, linear, fallbacks = _run(
        "fem-implicit", "fem_implicit_", False, {"pc_type": "lu", "pc_factor_zeropivot": "1e10"}
    )
    rho_lu, its_lu, _, _ = _run("fem-implicit", "fem_implicit_", lu=True)
    assert fallbacks == STEPS
    assert np.max(np.abs(rho - rho_lu)) < 1e-12 * np.max(rho_lu)
    assert its == its_lu
    assert linear == sum(its_lu)  # a factorisation that fails counts no linear iteration


def test_lu_without_pivoting_fails_on_a_zero_pivot_where_mumps_does_not():
    from wgf.solvers.fem.petsc_options import use_direct_lu

    A = PETSc.Mat().createAIJ([2, 2], nnz=2, comm=MPI.COMM_SELF)
    A[0, 1] = A[1, 0] = 1.0
    A[0, 0] = A[1, 1] = 0.0  # stored: the LU needs the diagonal in the pattern
    A.assemble()
    b, x = A.createVecs()
    b.array[:] = [1.0, 2.0]
    reasons = []
    for pivoting in (False, True):
        ksp = use_direct_lu(PETSc.KSP().create(MPI.COMM_SELF), pivoting=pivoting)
        ksp.setOperators(A)
        ksp.solve(b, x)
        reasons.append(ksp.getConvergedReason())
        ksp.destroy()
    assert reasons[0] == PETSc.KSP.ConvergedReason.DIVERGED_PCSETUP_FAILED
    assert reasons[1] > 0 and np.allclose(x.array, [2.0, 1.0])


def _factorisations(kind: str = "LU") -> tuple[int, int]:
    """Symbolic analyses and numeric factorisations so far (PETSc's event log is on).

    ``kind``: "LU", or "Chol" (MUMPS's LDLᵀ; its numeric count includes ICC's).
    """
    PETSc.Log.begin()
    names = {
        "LU": ("MatLUFactorSym", "MatLUFactorNum"),
        "Chol": ("MatCholFctrSym", "MatCholFctrNum"),
    }
    return tuple(PETSc.Log.Event(e).getPerfInfo()["count"] for e in names[kind])


def _block_matrix(n: int, rng: np.random.Generator) -> tuple[PETSc.Mat, np.ndarray]:
    """A sparse n × n matrix whose even rows couple to their own diagonal only among evens."""
    dense = np.zeros((n, n))
    for i in range(n):
        dense[i, i] = 4.0 + rng.random()
        for j in (i - 1, i + 1, i + 3):  # odd-even couplings and odd-odd ones
            if 0 <= j < n and (i % 2 or j % 2):
                dense[i, j] = dense[j, i] = -rng.random()
    A = PETSc.Mat().createAIJ([n, n], nnz=8, comm=MPI.COMM_SELF)
    rows, cols = np.nonzero(dense)
    for i, j in zip(rows, cols, strict=True):
        A[i, j] = dense[i, j]
    A.assemble()
    return A, dense


def test_schur_complement_is_refilled_in_one_pattern():
    """One MUMPS analysis for three solves with new values; the complement is exact.

    The even block is diagonal, so A₁₁ - A₁₀ diag(A₀₀)⁻¹ A₀₁ is the exact Schur
    complement and GMRES with the full factorisation converges in one iteration.
    """
    from wgf.solvers.fem.petsc_options import use_schur_split

    rng = np.random.default_rng(3)
    n = 40
    A, dense = _block_matrix(n, rng)
    evens, odds = np.arange(0, n, 2), np.arange(1, n, 2)
    sets = [
        PETSc.IS().createGeneral(idx.astype(PETSc.IntType), comm=MPI.COMM_SELF)
        for idx in (evens, odds)
    ]
    ksp = PETSc.KSP().create(MPI.COMM_SELF)
    ksp.setOptionsPrefix("test_schur_")
    ksp.setOperators(A)
    schur = use_schur_split(ksp, A, ("even", sets[0]), ("odd", sets[1]), 1e-12, 20)
    opts = PETSc.Options()
    opts["test_schur_fieldsplit_even_pc_type"] = "jacobi"
    opts["test_schur_fieldsplit_odd_pc_type"] = "lu"
    opts["test_schur_fieldsplit_odd_pc_factor_mat_solver_type"] = "mumps"
    ksp.setFromOptions()
    before = _factorisations()
    b, x = A.createVecs()
    b.setArray(rng.random(n))
    try:
        for _ in range(3):
            scale = 0.5 + rng.random(n)  # new values, the same pattern
            left = A.createVecLeft()
            left.setArray(scale)
            A.diagonalScale(L=left)
            dense = scale[:, None] * dense
            ksp.solve(b, x)
            assert ksp.getConvergedReason() > 0 and ksp.getIterationNumber() == 1
            assert np.allclose(dense @ x.getArray(), b.getArray(), rtol=0, atol=1e-10)
            expected = dense[np.ix_(odds, odds)] - dense[np.ix_(odds, evens)] @ (
                dense[np.ix_(evens, odds)] / np.diag(dense)[evens, None]
            )
            assert np.allclose(
                schur.mat.getValues(range(n // 2), range(n // 2)), expected, atol=1e-13
            )
        after = _factorisations()
        assert (after[0] - before[0], after[1] - before[1]) == (1, 3)
    finally:
        for key in ("even_pc_type", "odd_pc_type", "odd_pc_factor_mat_solver_type"):
            opts.delValue(f"test_schur_fieldsplit_{key}")
        schur.destroy()


def test_fem_jko_support_block_is_analysed_once_for_several_steps():
    """MUMPS analyses the support block when the block changes, not at every Newton solve.

    porous_medium_2d at 48², 6 steps, 29 Newton solves.  Measured: 18 analyses in 3 steps
    when the Schur matrix was rebuilt at every set-up, 10 when only a new block was (the
    block grew at every other solve), 8 in 6 steps with the block's margin
    (``SUPPORT_MARGIN_HOPS`` = 3) and a new block at every step, 3 with the block carried
    across steps while it holds the support and a margin of 8 rings after the first step
    (whose block grows once).  The block is factorised as LDLᵀ, and no LU is made at all.
    """
    steps = 6
    before, before_lu = _factorisations("Chol"), _factorisations()
    case = load_case("porous_medium_2d", {"domain.cells": [48, 48]}, solver_tables())
    s = build_solver(case, "fem-jko", MPI.COMM_SELF)
    its = [s.step(case.section("time")["tau"]) for _ in range(steps)]
    s.close()
    after, after_lu = _factorisations("Chol"), _factorisations()
    analyses = after[0] - before[0]
    # One LDLᵀ of the support block and one ICC(0) of the exterior per Newton solve.
    assert after[1] - before[1] == 2 * sum(its) > 6 * steps
    assert after_lu == before_lu
    assert analyses <= 3, (analyses, its)
