"""Run under ``mpiexec -n 2 python -m mpi4py -m pytest -m mpi``: two-layer networks on
2 ranks and on 1 rank (COMM_SELF on rank 0) give the same neurons and risk to 1e-12."""

import pytest

from tests.conftest import assert_same_on_1_and_2_ranks

pytestmark = pytest.mark.mpi

COMPARED = [
    "time",
    "particles/positions",
    "particles/weights",
    "diagnostics/energy",
    "diagnostics/risk",
    "diagnostics/alignment",
    "diagnostics/iterations",
    "checkpoint/positions",
]


@pytest.mark.parametrize(
    "solver,case,sets",
    [
        ("blob", "two_layer_linear", ["solver.blob.particles=200", "time.t_end=0.5"]),
        ("blob", "two_layer_relu_teacher", ["solver.blob.particles=150", "time.t_end=0.5"]),
        (
            "langevin",
            "two_layer_relu_teacher",
            ["solver.langevin.particles=150", "time.t_end=0.5", "model.temperature=0.01"],
        ),
    ],
)
def test_networks_on_one_and_two_ranks_agree(solver, case, sets, shared_tmp):
    assert_same_on_1_and_2_ranks(case, solver, sets, shared_tmp, COMPARED, atol=1e-12)
