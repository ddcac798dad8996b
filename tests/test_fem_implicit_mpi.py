"""fem-implicit under ``mpiexec -n 2``: the fitted flux's edge graph crosses the partition
(an owned vertex's neighbours may live only on the other rank), so small D, where the
Bernoulli weights vary most from edge to edge, must give the numbers of one rank; and the
power law's Newton, whose unknowns and shell operators are laid out per rank."""

import pytest

from tests.conftest import assert_same_on_1_and_2_ranks
from tests.test_mpi import COMPARED

pytestmark = pytest.mark.mpi


@pytest.mark.parametrize("case", ["fokker_planck_ou_1d", "fokker_planck_ou_2d"])
def test_small_diffusion_on_one_and_two_ranks(case, shared_tmp):
    sets = ["energy.diffusivity=0.02", "time.t_end=0.05"]
    assert_same_on_1_and_2_ranks(case, "fem-implicit", sets, shared_tmp, COMPARED, atol=1e-9)


@pytest.mark.parametrize("m", ["1.5", "3"])
def test_power_law_on_one_and_two_ranks(m, shared_tmp):
    # The (ρ, μ) Newton with its systems reduced to ρ (a shell matrix and preconditioner
    # over the owned ρ and μ), and for m = 1.5 its step re-aimed at the concave c.  The
    # iteration counts too: drained vertices hold ρ = ±1e-18 from round-off, and before
    # the Jacobian's ρ⁺ switched at a round-off threshold the sign parted the Newton paths
    # of 1 and 2 ranks (10 against 11 iterations in the first step, and now and then a
    # step redone at τ/2 on 2 ranks).
    sets = [f"energy.m={m}", "domain.cells=[40, 40]"]
    assert_same_on_1_and_2_ranks(
        "porous_medium_2d",
        "fem-implicit",
        sets,
        shared_tmp / m,
        COMPARED,
        atol=1e-9,
    )


def test_power_law_on_two_ranks_is_solved_by_multigrid():
    # No parallel LU of this PETSc build matches PETSc's sequential LU (benchmarks/
    # parallel_lu.py), so on several ranks S goes to GMRES + GAMG; one rank keeps the LU
    # (one linear iteration per Newton iteration).  That both give the same steps is
    # test_power_law_on_one_and_two_ranks.
    from mpi4py import MPI

    from wgf.cases import load_case
    from wgf.run import build_solver
    from wgf.solvers import solver_tables

    case = load_case("porous_medium_2d", {"domain.cells": [48, 48]}, solver_tables())
    tau = case.section("time")["tau"]
    for comm in (MPI.COMM_WORLD, MPI.COMM_SELF):
        s = build_solver(case, "fem-implicit", comm)
        steps = [(s.step(tau), s.linear_iterations) for _ in range(3)]
        multigrid = comm.size > 1
        pc = s._scheme.inner.getPC()
        assert pc.getType() == ("gamg" if multigrid else "lu")
        if multigrid:  # smoothed by SOR, not PETSc's default Chebyshev
            smoother = pc.getMGSmoother(1)
            assert (smoother.getType(), smoother.getPC().getType()) == ("richardson", "sor")
        for newton, linear in steps:
            assert linear > 2 * newton if multigrid else linear == newton
        assert s.lu_fallbacks == 0
        s.close()
