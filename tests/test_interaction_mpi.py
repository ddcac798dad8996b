"""Run under ``mpiexec -n 2 python -m mpi4py -m pytest -m mpi``: the interacting particle
solvers (direct and particle-mesh pair sums) give the same runs on 2 ranks and on 1."""

import pytest

from tests.conftest import assert_same_on_1_and_2_ranks

pytestmark = pytest.mark.mpi

COMPARED = [
    "time",
    "particles/positions",
    "diagnostics/energy",
    "diagnostics/interaction_energy",
    "diagnostics/mass",
    "diagnostics/second_moment",
    "diagnostics/l1_error",
    "diagnostics/iterations",
]


@pytest.mark.parametrize(
    "solver,case,sets",
    [
        ("blob", "aggregation_quadratic_2d", ["solver.blob.particles=400", "time.t_end=0.1"]),
        (
            "blob",
            "swarm_2d",
            ["solver.blob.particles=400", "solver.blob.pair_sum=mesh", "time.t_end=0.2"],
        ),
        (
            "langevin",
            "aggregation_quadratic_2d",
            ["solver.langevin.particles=1000", "time.t_end=0.1"],
        ),
        ("langevin", "keller_segel_2d", ["solver.langevin.particles=1000", "time.t_end=0.02"]),
    ],
)
def test_interacting_particles_agree_on_one_and_two_ranks(solver, case, sets, shared_tmp):
    keys = COMPARED
    if case == "keller_segel_2d":
        # no closed form; its attracting singular kernel has the blow-up check: the peak
        # of the binned estimate, whose bin-grid rows the ranks share (kde_at)
        keys = [k for k in COMPARED if k != "diagnostics/l1_error"]
        keys += ["diagnostics/peak_density", "diagnostics/resolved_density"]
    assert_same_on_1_and_2_ranks(case, solver, sets, shared_tmp, keys, atol=1e-12)


FE_COMPARED = [
    "time",
    "diagnostics/energy",
    "diagnostics/interaction_energy",
    "diagnostics/interaction_defect",
    "diagnostics/mass",
    "diagnostics/second_moment",
    "diagnostics/min_density",
    "snapshots/density",
]


@pytest.mark.parametrize(
    "case,sets",
    [
        ("aggregation_quadratic_2d", ["domain.cells=[16,16]", "time.t_end=0.1"]),
        ("keller_segel_2d", ["domain.cells=[20,20]", "time.t_end=0.05"]),
        (
            "aggregation_quadratic_2d",
            [
                "domain.cells=[16,16]",
                "time.t_end=0.05",
                "energy.internal=power",
                "exact.kind=none",
            ],
        ),
    ],
)
def test_fem_implicit_with_interaction_agrees_on_one_and_two_ranks(case, sets, shared_tmp):
    # W∗ρ is summed over all vertices on every rank (lattice FFT): only round-off differs.
    keys = FE_COMPARED + (["diagnostics/l1_error"] if case == "aggregation_quadratic_2d" else [])
    keys = [k for k in keys if k != "diagnostics/l1_error" or "exact.kind=none" not in sets]
    assert_same_on_1_and_2_ranks(case, "fem-implicit", sets, shared_tmp, keys, atol=1e-11)


@pytest.mark.parametrize(
    "case,sets",
    [
        ("aggregation_quadratic_2d", ["domain.cells=[16,16]", "time.t_end=0.03"]),
        ("keller_segel_2d", ["domain.cells=[20,20]", "time.t_end=0.015"]),
    ],
)
def test_alg2_with_interaction_agrees_on_one_and_two_ranks(case, sets, shared_tmp):
    # W∗ρⁿ (lattice FFT over all vertices on every rank) explicit in ALG2's prox; the
    # iteration counts must agree too.
    sets = [*sets, "solver.fem-jko.inner=alg2"]
    keys = [*FE_COMPARED, "diagnostics/iterations", "diagnostics/dissipation_gap"]
    assert_same_on_1_and_2_ranks(case, "fem-jko", sets, shared_tmp, keys, atol=1e-9)


@pytest.mark.parametrize(("dim", "kernel"), [(1, "-log(r)"), (2, "r**2/2 - log(r)"), (3, "1/r")])
def test_particle_mesh_shared_over_ranks_matches_one_rank(dim, kernel):
    # Each rank passes its block of targets; the deposit is summed into row slabs, the
    # transforms go by rows and columns (two all-to-alls), and the sums equal those of one
    # rank (1-D: one spectrum column, which the first rank holds).
    import numpy as np
    from mpi4py import MPI

    from wgf.cases.case import _kernel
    from wgf.solvers.energy.interaction import Interaction
    from wgf.solvers.particles.parallel import allgather_blocks, block

    comm = MPI.COMM_WORLD
    term = Interaction(_kernel(kernel, "k"), 1.0, dim)
    x = np.random.default_rng(3).normal(size=(5000, dim))
    w = np.full(len(x), 1.0 / len(x))
    lo, hi = block(len(x), comm)
    for method in ("gradient_at", "potential_at", "local_stiffness"):
        split = getattr(term, method)(x[lo:hi], x, w, 0.05, "mesh", comm)
        alone = getattr(term, method)(x, x, w, 0.05, "mesh")
        np.testing.assert_allclose(allgather_blocks(comm, split), alone, rtol=1e-13, atol=1e-14)
