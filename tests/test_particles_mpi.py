"""Run under ``mpiexec -n 2 python -m mpi4py -m pytest -m mpi``: every particle solver on
2 ranks and on 1 rank (COMM_SELF on rank 0) gives the same trajectories to 1e-12."""

import pytest

from tests.conftest import assert_same_on_1_and_2_ranks

pytestmark = pytest.mark.mpi

COMPARED = [
    "time",
    "particles/positions",
    "particles/weights",
    "diagnostics/energy",
    "diagnostics/mass",
    "diagnostics/second_moment",
    "diagnostics/l1_error",
    "diagnostics/l2_error",
    "diagnostics/iterations",
    "snapshots/density",
    "checkpoint/positions",
]


@pytest.mark.parametrize(
    "solver,case,sets",
    [
        ("blob", "fokker_planck_ou_2d", ["solver.blob.particles=400", "time.t_end=0.1"]),
        ("blob", "nonlinear_fokker_planck_1d", ["solver.blob.particles=100", "time.t_end=0.1"]),
        ("langevin", "fokker_planck_ou_2d", ["solver.langevin.particles=2000"]),
        ("quantile-1d", "porous_medium_1d", []),
    ],
)
def test_one_and_two_ranks_agree(solver, case, sets, shared_tmp):
    assert_same_on_1_and_2_ranks(case, solver, sets, shared_tmp, COMPARED, atol=1e-12)
