"""Run under ``mpiexec -n 2 python -m mpi4py -m pytest -m mpi``: the machine-learning flows
(tokens on the circle and sphere, two-layer networks) on 2 ranks and on 1 rank (COMM_SELF
on rank 0) follow the same trajectories, energies and estimates to 1e-12."""

import pytest

from tests.conftest import assert_same_on_1_and_2_ranks

pytestmark = pytest.mark.mpi

#: Compared for every run: the particles, the energy, the step counts and the checkpoint.
COMMON = [
    "time",
    "particles/positions",
    "particles/weights",
    "diagnostics/energy",
    "diagnostics/iterations",
    "checkpoint/positions",
]
#: Tokens: also the mass and the density snapshots on the sphere's sample grid.
TOKENS = [*COMMON, "diagnostics/mass", "snapshots/density"]
#: Networks: also the risk and the teacher alignment.
NETWORKS = [*COMMON, "diagnostics/risk", "diagnostics/alignment"]


@pytest.mark.parametrize(
    "solver,case,sets,compared",
    [
        pytest.param(
            "blob",
            "tokens_sphere_sa",
            ["solver.blob.particles=300", "time.t_end=1.0"],
            TOKENS,
            id="blob-tokens-sphere-sa",
        ),
        pytest.param(
            "blob",
            "tokens_circle_usa",
            ["solver.blob.particles=200", "time.t_end=0.3"],
            TOKENS,
            id="blob-tokens-circle",
        ),
        pytest.param(
            "langevin",
            "tokens_circle_usa",
            ["solver.langevin.particles=200", "time.t_end=0.3", "energy.internal=entropy"],
            TOKENS,
            id="langevin-tokens-circle-noise",
        ),
        pytest.param(
            "blob",
            "two_layer_linear",
            ["solver.blob.particles=200", "time.t_end=0.5"],
            NETWORKS,
            id="blob-two-layer-linear",
        ),
        pytest.param(
            "blob",
            "two_layer_relu_teacher",
            ["solver.blob.particles=150", "time.t_end=0.5"],
            NETWORKS,
            id="blob-two-layer-relu",
        ),
        pytest.param(
            "langevin",
            "two_layer_relu_teacher",
            ["solver.langevin.particles=150", "time.t_end=0.5", "model.temperature=0.01"],
            NETWORKS,
            id="langevin-two-layer-relu-noise",
        ),
    ],
)
def test_ml_flows_on_one_and_two_ranks_agree(solver, case, sets, compared, shared_tmp):
    assert_same_on_1_and_2_ranks(case, solver, sets, shared_tmp, compared, atol=1e-12)
