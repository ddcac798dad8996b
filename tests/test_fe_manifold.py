"""FE solvers on the circle and sphere meshes: meshes, the Bessel rates, energy, ParaView."""

import numpy as np
import pytest
from mpi4py import MPI

from tests.conftest import (
    PVBATCH,
    assert_user_error,
    benchmark,
    pvbatch_read,
    run_case,
    wgf,
)
from wgf import api
from wgf.cases.sphere import harmonic_growth_rate, mode_growth_rate
from wgf.meshes import circle_mesh, icosphere, sphere_mesh
from wgf.solvers.fem.implicit_euler import Solver as FEImplicit


def _total_measure(mesh):
    """The length or area of a mesh's cells, summed over all ranks."""
    tdim = mesh.topology.dim
    x = mesh.geometry.x
    cells = mesh.geometry.dofmaps[0][: mesh.topology.index_map(tdim).size_local]
    edges = x[cells[:, 1:]] - x[cells[:, :1]]
    gram = np.einsum("cak,cbk->cab", edges, edges)
    local = float(np.sqrt(np.linalg.det(gram)).sum()) / (1 if tdim == 1 else 2)
    return mesh.comm.allreduce(local, op=MPI.SUM)


# -- the meshes -----------------------------------------------------------------------------------
def test_circle_and_sphere_meshes():
    """n chords of S¹ (length 2n sin(π/n)); the icosphere: 10n² + 2 vertices on S², 20n² cells."""
    circle = circle_mesh(MPI.COMM_WORLD, 64)
    assert (circle.topology.dim, circle.geometry.dim) == (1, 2)
    assert _total_measure(circle) == pytest.approx(128 * np.sin(np.pi / 64), rel=1e-13)
    np.testing.assert_allclose(np.linalg.norm(circle.geometry.x, axis=1), 1.0, rtol=1e-14)
    sphere = sphere_mesh(MPI.COMM_WORLD, 8)
    assert (sphere.topology.dim, sphere.geometry.dim) == (2, 3)
    assert sphere.topology.index_map(2).size_global == 20 * 64
    assert sphere.topology.index_map(0).size_global == 10 * 64 + 2
    np.testing.assert_allclose(np.linalg.norm(sphere.geometry.x, axis=1), 1.0, rtol=1e-14)
    # The flat triangles' area is short of 4π by O(h²): halving h quarters the gap.
    gaps = [4 * np.pi - _total_measure(sphere_mesh(MPI.COMM_WORLD, n)) for n in (8, 16)]
    assert 0.0 < gaps[1] and gaps[0] / gaps[1] == pytest.approx(4.0, rel=0.02)
    # Acute cells (every angle in [54°, 72°]): positive P1 transmissibilities.
    x, cells = icosphere(8)
    p = x[cells]
    for k in range(3):
        u, v = p[:, (k + 1) % 3] - p[:, k], p[:, (k + 2) % 3] - p[:, k]
        cos = np.einsum("ck,ck->c", u, v) / np.linalg.norm(u, axis=1) / np.linalg.norm(v, axis=1)
        assert np.degrees(np.arccos(cos)).max() < 72.01


# -- the circle's instability ------------------------------------------------------------------
def _fe_mode_rate(k, beta, n, shape="circle", steps=3):
    """λ_h of the harmonic k by fem-implicit, measured as ``benchmarks/tokens.py`` does."""
    return benchmark("tokens").fe_mode_rate(k, beta, n, shape, steps=steps)


def test_fe_mode_rates_on_the_circle_converge_in_h():
    """USA at β = 5, mode k = 3 (the fastest): the rate k²I_k(β)/β to O(h²) by fem-implicit."""
    exact = mode_growth_rate(3, 5.0)
    errors = [abs(_fe_mode_rate(3, 5.0, n) / exact - 1.0) for n in (64, 128)]
    assert errors[0] < 8e-3  # measured 6.4e-3 (benchmarks/README.md)
    assert np.log2(errors[0] / errors[1]) == pytest.approx(2.0, abs=0.05)
    # Mode 1 is exact on any circle mesh: P1 on the chords and the lumped masses see
    # (2 - 2cos h)/(2 sin(h/2))² = 1, and the vertex sum of a smooth periodic kernel is spectral.
    assert _fe_mode_rate(1, 5.0, 32) == pytest.approx(mode_growth_rate(1, 5.0), rel=1e-8)


def test_fe_harmonic_rate_on_the_sphere_converges_in_h():
    """USA at β = 5 on S², Y = Re((x + iy)²): the Funk–Hecke rate k(k+1)i_k(β)/β to O(h²)."""
    exact = harmonic_growth_rate(2, 5.0, 3)
    errors = [abs(_fe_mode_rate(2, 5.0, n, "sphere", steps=2) / exact - 1.0) for n in (8, 16)]
    assert errors[0] < 7e-3  # measured 5.7e-3 (benchmarks/README.md)
    assert np.log2(errors[0] / errors[1]) == pytest.approx(2.0, abs=0.1)


@pytest.mark.parametrize("solver", ["fem-implicit", "fem-jko"])
def test_fe_on_the_circle_with_noise_conserves_mass_and_dissipates(solver, tmp_path):
    """USA with D = 0.1 from a cos 3θ bump: mass to 1e-12, F_h non-increasing, ρ > 0."""
    sets = [
        "energy.internal=entropy",
        "energy.diffusivity=0.1",
        "domain.cells=[64]",
        "initial.kind=perturbed_uniform",
        "initial.mode=3",
        "initial.amplitude=0.3",
        "time.t_end=0.5",
        "time.tau=0.05",
    ]
    r = api.read(run_case("tokens_circle_usa", sets, tmp_path, solver=solver).path)
    d = r.diagnostics
    np.testing.assert_allclose(d["mass"], 1.0, rtol=0, atol=1e-12)
    assert np.all(np.diff(d["energy"]) <= 1e-12)
    assert d["energy"][-1] < d["energy"][0] - 0.05  # the clusters sharpen
    assert np.all(d["min_density"] > 0.0)
    # The snapshots, sampled on the unit circle off the chords, integrate to the mass.
    assert np.sum(r.snapshot_density[-1]) * 2 * np.pi / 200 == pytest.approx(1.0, abs=1e-3)


# -- the sphere ------------------------------------------------------------------------------------
def test_fem_implicit_on_the_sphere_dissipates_usa_energy(tmp_path):
    """USA on S² (n = 6 icosphere) from 1 + ½ cos 2φ + ½ z: mass to 1e-12, F_h decays.

    The attention kernel e^{β⟨x,y⟩} is positive definite, so W = -e^{β⟨x,y⟩}/β is negative
    definite and the semi-implicit step's defect ½⟨W∗δρ, δρ⟩ is ≤ 0: decay outright.
    """
    n = 6
    case = api.load(
        "tokens_sphere_sa",
        {
            "energy.interaction.normalization": "usa",
            "energy.interaction.beta": 2.0,
            "domain.cells": [n],
            "time.tau": 0.05,
        },
    )
    solver = FEImplicit(case, MPI.COMM_WORLD, case.solver_params("fem-implicit"))
    x = icosphere(n)[0]  # the mesh-input order of set_state
    phi = np.arctan2(x[:, 1], x[:, 0])
    solver.set_state({"density": (1.0 + 0.5 * np.cos(2 * phi) + 0.5 * x[:, 2]) / (4 * np.pi)})
    first = solver.diagnostics(0.0)
    energies, masses, defects = [first["energy"]], [first["mass"]], []
    for step in range(6):
        solver.step(0.05)
        d = solver.diagnostics(0.05 * (step + 1))
        energies.append(d["energy"])
        masses.append(d["mass"])
        defects.append(d["interaction_defect"])
    np.testing.assert_allclose(masses, masses[0], rtol=0, atol=1e-12)
    assert max(defects) <= 1e-15
    assert np.all(np.diff(energies) < 0.0)
    assert energies[-1] < energies[0] - 1e-3


@pytest.mark.skipif(PVBATCH is None, reason="pvbatch not installed (Debian python3-paraview)")
def test_fe_density_on_the_sphere_opens_in_paraview(tmp_path):
    sets = [
        "energy.interaction.normalization=usa",
        "energy.internal=entropy",
        "energy.diffusivity=0.1",
        "domain.cells=[4]",
        "time.t_end=0.2",
        "time.tau=0.1",
    ]
    run_case("tokens_sphere_sa", sets, tmp_path, solver="fem-implicit")
    out = pvbatch_read(tmp_path / "tokens_sphere_sa_fem-implicit_fields.xdmf", tmp_path)
    assert int(out["POINTS"]) == 162 and int(out["CELLS"]) == 320
    assert out["ARRAYS"] == "density"
    bounds = np.array(out["BOUNDS"].split(), dtype=float)
    np.testing.assert_allclose(np.abs(bounds), 1.0, atol=1e-12)  # the sphere, in 3-D
    low, high = map(float, out["RANGE_density"].split())
    assert 0.0 < low <= high < 0.1  # about 1/4π


@pytest.mark.skipif(PVBATCH is None, reason="pvbatch not installed (Debian python3-paraview)")
def test_fe_density_on_the_circle_opens_in_paraview(tmp_path):
    sets = ["energy.internal=entropy", "domain.cells=[32]", "time.t_end=0.2", "time.tau=0.1"]
    run_case("tokens_circle_usa", sets, tmp_path, solver="fem-jko")
    out = pvbatch_read(tmp_path / "tokens_circle_usa_fem-jko_fields.xdmf", tmp_path)
    assert int(out["POINTS"]) == 32 and int(out["CELLS"]) == 32
    bounds = np.array(out["BOUNDS"].split(), dtype=float)
    np.testing.assert_allclose(np.abs(bounds[:4]), 1.0, atol=1e-12)
    low, high = map(float, out["RANGE_density"].split())
    assert low == pytest.approx(high) and low == pytest.approx(1 / (64 * np.sin(np.pi / 32)))


# -- bad input: one line, exit 2 ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            [
                "tokens_circle_usa",
                "--solver",
                "fem-jko",
                "--set",
                "energy.internal=entropy",
                "--set",
                "solver.fem-jko.inner=alg2",
            ],
            '"alg2" needs a 1-D or 2-D domain.shape = "box"',
        ),
        (
            [
                "tokens_sphere_sa",
                "--solver",
                "fem-implicit",
                "--set",
                "domain.dimension=4",
                "--set",
                "energy.interaction.normalization=usa",
            ],
            "fem-implicit runs the sphere in ℝ^3 only (the case's is in ℝ^4): its mesh is",
        ),
        (
            [
                "tokens_equiangular",
                "--solver",
                "fem-implicit",
                "--set",
                "domain.dimension=3",
                "--set",
                "energy.interaction.normalization=usa",
            ],
            '"equiangular" tokens are atoms',
        ),
        (
            ["tokens_circle_usa", "--solver", "fem-implicit", "--set", "domain.cells=[8, 8]"],
            "'domain.cells': the circle mesh takes one positive n",
        ),
        (["tokens_circle_usa", "--solver", "fem-jko"], 'fem-jko needs "entropy" or "power"'),
        (["tokens_circle_usa", "--solver", "fem-bb"], "fem-bb is a transport solver"),
        (
            ["tokens_circle_usa", "--solver", "fem-bb", "--set", "target.kind=uniform"],
            "'target': transport on the circle is not built",
        ),
    ],
)
def test_bad_fe_manifold_input_is_one_line(args, message, tmp_path):
    assert_user_error(wgf("run", *args, "--out", str(tmp_path)), message)
    assert not list(tmp_path.iterdir())  # nothing written
