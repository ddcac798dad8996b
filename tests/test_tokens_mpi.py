"""Run under ``mpiexec -n 2 python -m mpi4py -m pytest -m mpi``: tokens on the sphere on
2 ranks and on 1 rank (COMM_SELF on rank 0) follow the same trajectories to 1e-12."""

import pytest

from tests.conftest import assert_same_on_1_and_2_ranks

pytestmark = pytest.mark.mpi

COMPARED = [
    "time",
    "particles/positions",
    "particles/weights",
    "diagnostics/energy",
    "diagnostics/mass",
    "diagnostics/iterations",
    "snapshots/density",
    "checkpoint/positions",
]


@pytest.mark.parametrize(
    "solver,case,sets",
    [
        ("blob", "tokens_sphere_sa", ["solver.blob.particles=300", "time.t_end=1.0"]),
        ("blob", "tokens_circle_usa", ["solver.blob.particles=200", "time.t_end=0.3"]),
        (
            "langevin",
            "tokens_circle_usa",
            ["solver.langevin.particles=200", "time.t_end=0.3", "energy.internal=entropy"],
        ),
    ],
)
def test_tokens_on_one_and_two_ranks_agree(solver, case, sets, shared_tmp):
    assert_same_on_1_and_2_ranks(case, solver, sets, shared_tmp, COMPARED, atol=1e-12)
