"""The Krylov solvers of the FE Newton systems against MUMPS LU: the same steps.

fem-jko's power law (Schur factorisation onto the support, the default) and fem-implicit's
(ρ, μ) form (exact elimination of μ, GAMG on the Schur complement, with
``-fem_implicit_pc_type fieldsplit``) are compared with the LU that the command line
selects (``-<prefix>ksp_type preonly -<prefix>pc_type lu``).
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


def _run(solver: str, prefix: str, lu: bool) -> tuple[np.ndarray, list[int], int, int]:
    """ρ after ``STEPS`` steps of porous_medium_2d (24², m = 2), Newton its, Krylov its."""
    opts = PETSc.Options()
    if solver == "fem-implicit" and not lu:  # its block preconditioner is opt-in
        opts[f"{prefix}pc_type"] = "fieldsplit"
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
        for key in ("ksp_type", "pc_type", "pc_factor_mat_solver_type"):
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
    assert linear > 2 * sum(its)
    assert linear_lu == sum(its_lu)
    assert fallbacks == 0
