"""Run under ``mpiexec -n 2 python -m mpi4py -m pytest -m mpi``: the FE solvers on the circle
and sphere meshes give the same numbers on 2 ranks and on 1 rank (COMM_SELF on rank 0)."""

import pytest

from tests.conftest import assert_same_on_1_and_2_ranks

pytestmark = pytest.mark.mpi

COMPARED = [
    "time",
    "diagnostics/energy",
    "diagnostics/interaction_energy",
    "diagnostics/interaction_defect",
    "diagnostics/mass",
    "diagnostics/min_density",
    "diagnostics/iterations",
    "snapshots/density",
    "checkpoint/density",
]

NOISY_USA = ["energy.internal=entropy", "energy.diffusivity=0.1", "time.t_end=0.3", "time.tau=0.1"]


@pytest.mark.parametrize(
    "solver,case,sets",
    [
        (
            "fem-implicit",
            "tokens_sphere_sa",
            ["energy.interaction.normalization=usa", "domain.cells=[6]", *NOISY_USA],
        ),
        (
            "fem-jko",
            "tokens_sphere_sa",
            ["energy.interaction.normalization=usa", "domain.cells=[6]", *NOISY_USA],
        ),
        (
            "fem-implicit",
            "tokens_circle_usa",
            [
                "energy.internal=none",
                "domain.cells=[64]",
                "initial.kind=perturbed_uniform",
                "initial.amplitude=0.2",
                "initial.mode=2",
                "time.t_end=0.3",
                "time.tau=0.05",
            ],
        ),
    ],
)
def test_fe_on_manifolds_on_one_and_two_ranks_agree(solver, case, sets, shared_tmp):
    assert_same_on_1_and_2_ranks(case, solver, sets, shared_tmp, COMPARED, atol=1e-9)
