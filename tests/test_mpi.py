"""Run under ``mpiexec -n 2 python -m mpi4py -m pytest -m mpi``: the same case on 2 ranks
and on 1 rank (COMM_SELF on rank 0, in the same run) gives the same numbers."""

import numpy as np
import pytest
from mpi4py import MPI

from tests.conftest import assert_same_on_1_and_2_ranks, jko_newton_matrix_error, read, run_case

pytestmark = pytest.mark.mpi

COMPARED = [
    "time",
    "diagnostics/energy",
    "diagnostics/mass",
    "diagnostics/second_moment",
    "diagnostics/l1_error",
    "diagnostics/l2_error",
    "diagnostics/min_density",
    "diagnostics/iterations",
    "diagnostics/iterations_total",
    "diagnostics/retries",
    "diagnostics/tau",
    "snapshots/time",
    "snapshots/density",
    "checkpoint/density",
]


#: A Newton cap that rejects one step (retried in halves): the retry must happen alike.
REJECTING = ["solver.fem-implicit.max_it=3", "domain.cells=[16, 16]"]
#: ALG2-JKO, shortened (5 steps): its iteration counts must agree too.
ALG2 = ['solver.fem-jko.inner="alg2"', "time.t_end=0.025"]


@pytest.mark.parametrize(
    ("case", "solver", "sets"),
    [
        ("fokker_planck_ou_2d", "fem-implicit", []),
        ("porous_medium_2d", "fem-implicit", []),
        ("nonlinear_fokker_planck_1d", "fem-implicit", []),
        ("nonlinear_fokker_planck_2d", "fem-implicit", []),
        ("fokker_planck_ou_2d", "fem-jko", []),
        ("aggregation_quadratic_2d", "fem-jko", ["time.t_end=0.1"]),
        ("porous_medium_1d", "fem-jko", ALG2),
    ],
)
def test_one_and_two_ranks_agree(case, solver, sets, shared_tmp):
    assert_same_on_1_and_2_ranks(case, solver, sets, shared_tmp, COMPARED, atol=1e-9)


def test_free_boundary_newton_on_1_and_2_ranks(shared_tmp):
    """fem-jko on the porous medium: the same densities on 1 and 2 ranks, the same work in total.

    The nonlinear elimination of the free-boundary rows decides, vertex by vertex, whether
    a mass row brackets a root; near the free boundary those signs are round-off, so the
    Newton path, not its end point, depends on the order of sums.  Measured on one rank:
    OPENBLAS_CORETYPE=SandyBridge alone turns step 2's 15 iterations into 10 (91 against
    98 in all, L1 equal to 2e-12).  So the counts must agree in total, to 10 %.
    """
    _free_boundary_on_1_and_2_ranks("porous_medium_1d", [], shared_tmp, 0.1)


def _free_boundary_on_1_and_2_ranks(case: str, sets: list[str], tmp, counts_rtol: float) -> None:
    """fem-jko: the same results on 1 and 2 ranks, the Newton counts to ``counts_rtol``."""
    counts = ["diagnostics/iterations", "diagnostics/iterations_total"]
    exact = [k for k in COMPARED if k not in counts]
    assert_same_on_1_and_2_ranks(
        case, "fem-jko", sets, tmp, exact, 1e-9, counts, counts_rtol=counts_rtol
    )


def test_nested_iteration_on_1_and_2_ranks(shared_tmp):
    """fem-jko with each step first solved on the 16² mesh (``nested_coarsest`` 200): the
    two meshes are partitioned apart, and the transfers between them find each vertex's
    cell on whichever rank holds it.  The same densities on 1 and 2 ranks; the counts
    to 15 %, as for any free-boundary Newton path (see above)."""
    sets = ["solver.fem-jko.nested_coarsest=200", "time.t_end=0.03"]
    _free_boundary_on_1_and_2_ranks("porous_medium_2d", sets, shared_tmp, 0.15)
    if MPI.COMM_WORLD.rank == 0:
        for path in sorted(shared_tmp.rglob("porous_medium_2d_fem-jko.h5")):
            # Cumulative: every step spent some on the coarse mesh.
            assert np.diff(read(path)["diagnostics/coarse_iterations"]).min() > 0, path


def test_free_boundary_newton_matrix_on_2_ranks():
    """fem-jko's Newton matrix is R's derivative on 2 ranks too: edge pieces on the rank
    of their cell, ∂R/∂ϕ's COO entries in other ranks' rows, J's pattern across ranks."""
    from wgf import api
    from wgf.run import build_solver

    case = api.load("porous_medium_2d", {"domain.cells": [12, 12]})
    solver = build_solver(case, "fem-jko", MPI.COMM_WORLD)
    tau = case.section("time")["tau"]
    solver.step(tau)
    assert jko_newton_matrix_error(solver, tau) < 1e-6


def test_power_law_support_block_by_schwarz_on_2_ranks_and_cholesky_on_1():
    """fem-jko's support block: additive Schwarz over 2 ranks, MUMPS LDLᵀ of each rank's
    part with its overlap, and the whole block's LDLᵀ on one; a 1-rank solver made after
    a 2-rank one in the same process does not inherit the 2-rank defaults, and none of
    them is left in the options database (PETSc would report them unused)."""
    from petsc4py import PETSc

    from wgf import api
    from wgf.run import build_solver

    case = api.load("porous_medium_2d", {"domain.cells": [24, 24]})
    tau = case.section("time")["tau"]
    found = {}
    for comm in (MPI.COMM_WORLD, MPI.COMM_SELF):
        solver = build_solver(case, "fem-jko", comm)
        solver.step(tau)
        _, support = solver.ksp.getPC().getFieldSplitSubKSP()
        pc = support.getPC()
        found[comm.size] = pc.getType()
        if pc.getType() == "asm":
            (local,) = pc.getASMSubKSP()
            assert local.getPC().getType() == "cholesky"
            assert local.getPC().getFactorSolverType() == "mumps"
            # This rank's part of the block, grown by the overlap into the other's.
            own = support.getOperators()[0].getLocalSize()[0]
            assert own < local.getOperators()[0].getSize()[0] <= comm.allreduce(own)
        else:
            assert pc.getFactorSolverType() == "mumps"
    assert found == {2: "asm", 1: "cholesky"}
    assert not [k for k in PETSc.Options().getAll() if k.startswith("fem_jko_fieldsplit")]


def test_first_step_barrier_continuation_on_1_and_2_ranks(shared_tmp):
    """porous_quartic_2d at m = 3: its first step stalls from the first guess and goes on
    by barrier continuation (whole-mesh LU above ε, the barrier put back after it); the
    same densities on 1 and 2 ranks, and the same work in total to 15 % (the trial's
    path, like any free-boundary Newton path here, depends on the order of sums)."""
    _free_boundary_on_1_and_2_ranks(
        "porous_quartic_2d", ["energy.m=3.0", "time.t_end=0.3"], shared_tmp, 0.15
    )
    if MPI.COMM_WORLD.rank == 0:
        for path in sorted(shared_tmp.rglob("porous_quartic_2d_fem-jko.h5")):
            assert read(path)["diagnostics/iterations"][1] <= 60, path  # [0]: t = 0


def test_keller_segel_on_1_and_2_ranks(shared_tmp):
    """W∗ρ sums over all vertices on each rank: the same numbers on 1 and 2 ranks."""
    keys = [k for k in COMPARED if "error" not in k] + ["diagnostics/interaction_energy"]
    sets = ["time.t_end=0.05"]
    assert_same_on_1_and_2_ranks("keller_segel_2d", "fem-jko", sets, shared_tmp, keys, atol=1e-9)


def test_a_rejected_step_is_retried_alike_on_1_and_2_ranks(shared_tmp):
    assert_same_on_1_and_2_ranks(
        "porous_medium_2d", "fem-implicit", REJECTING, shared_tmp, COMPARED, atol=1e-9
    )
    if MPI.COMM_WORLD.rank == 0:
        files = sorted(shared_tmp.rglob("porous_medium_2d_fem-implicit.h5"))
        assert files and all(read(f)["diagnostics/retries"].sum() == 1 for f in files)


def test_disk_mesh_in_parallel(shared_tmp):
    """A gmsh disk, built on rank 0 and distributed: mass, energy decay, Gaussian error."""
    sets = [
        'domain.shape="disk"',
        "domain.center=[0.0, 0.0]",
        "domain.radius=3.0",
        "domain.h=0.15",
        "output.sample_cells=[40, 40]",
    ]
    s = run_case("heat_2d", sets, shared_tmp / "disk", comm=MPI.COMM_WORLD)
    if MPI.COMM_WORLD.rank == 0:
        r = read(s.path)
        assert abs(r["diagnostics/mass"][-1] - 1.0) < 1e-10
        assert np.all(np.diff(r["diagnostics/energy"]) <= 1e-12)
        assert r["diagnostics/l1_error"][-1] < 0.05
        # Sample points outside the disk (the bounding box corners) read zero.
        pts = r["samples/points"]
        outside = np.hypot(pts[:, 0], pts[:, 1]) > 3.0 + 1e-9
        assert outside.any() and np.all(r["snapshots/density"][:, outside] == 0.0)


def test_nodal_transfer_between_meshes_partitioned_apart(monkeypatch):
    """Nested iteration's transfers on 2 ranks, where the two meshes are partitioned apart
    and a vertex's cell is often on the other rank: exact between nested meshes, equal to
    DOLFINx's interpolation between others (tests/test_meshes.py).  With one candidate
    cell in the first search, most vertices go to the rank that owns their cell, this one
    included, and their values must come back in the order they were asked for."""
    from tests.test_meshes import _p1_space, check_nodal_transfer
    from wgf.solvers.fem import nested

    assert check_nodal_transfer(_p1_space([16, 12]), _p1_space([8, 6])) > 0
    monkeypatch.setattr(nested, "CANDIDATES", (1, 64))
    assert check_nodal_transfer(_p1_space([16, 12]), _p1_space([8, 6])) > 0
