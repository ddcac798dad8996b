"""W∗ρ on the mesh and fem-jko with an interaction: closed forms, EOC, moment law."""

import numpy as np
import pytest
from mpi4py import MPI

from tests.conftest import read, run_case
from wgf.cases import load_case
from wgf.run import build_solver
from wgf.solvers import solver_tables
from wgf.solvers.fem.interaction import ball_average


@pytest.mark.parametrize(
    ("W", "dim", "exact"),
    [
        (np.log, 2, lambda a: np.log(a) - 0.5),
        (lambda r: r**2, 2, lambda a: a**2 / 2),
        (np.abs, 1, lambda a: a / 2),
        (lambda r: 1.0 / r, 3, lambda a: 1.5 / a),
    ],
)
def test_ball_average_of_singular_and_smooth_kernels(W, dim, exact):
    a = np.array([0.01, 0.3, 2.0])
    np.testing.assert_allclose(ball_average(W, a, dim), exact(a), rtol=1e-6, atol=1e-12)


def test_mesh_convolution_of_a_gaussian_with_the_quadratic_kernel():
    # W = r²/2: (W∗ρ)(x) = M(|x - m|² + tr Σ)/2 for ρ = M·N(m, Σ); the box holds ~all mass.
    case = load_case("aggregation_quadratic_2d", {}, solver_tables())
    s = build_solver(case, "fem-jko", MPI.COMM_SELF)
    x = s.V.tabulate_dof_coordinates()[:, :2]
    m, cov = np.array([0.5, -0.25]), 0.25
    exact = 0.5 * (np.sum((x - m) ** 2, axis=1) + 2 * cov)
    # At the initial state (before any step) ρ is the floored, renormalised Gaussian.
    rel = np.abs(s.convolution(s.rho.x.array) - exact).max() / exact.max()
    assert rel < 2e-3


def _run(case, sets, out):
    s = run_case(case, sets, out, solver="fem-jko")
    return read(s.path)


def test_fem_jko_aggregation_quadratic_converges_at_second_order(tmp_path):
    errors = []
    for cells, tau in ((32, 0.01), (64, 0.005)):
        d = _run(
            "aggregation_quadratic_2d",
            [f"domain.cells=[{cells},{cells}]", f"time.tau={tau}"],
            tmp_path / str(cells),
        )
        errors.append(d["diagnostics/l1_error"][-1])
        mass = d["diagnostics/mass"]
        assert np.abs(mass - mass[0]).max() < 1e-10
        assert np.all(np.diff(d["diagnostics/energy"]) < 0.0)
        assert np.all(d["diagnostics/interaction_energy"] > 0.0)
        # r²/2 is negative semidefinite on mean-zero measures: the explicit step costs
        # nothing but the self-pair averages' positive diagonal (measured 7e-8 at 32²).
        assert d["diagnostics/interaction_defect"].max() < 1e-6
        assert d["diagnostics/dissipation_gap"][1:].min() > 0.0
    assert errors[0] < 0.02
    assert np.log2(errors[0] / errors[1]) > 1.7  # measured 1.95


def test_keller_segel_second_moment_law(tmp_path):
    # d/dt M2 = 4DM - χM²/(2π) = 2 (χM = 4π, D = M = 1), while ρ is negligible at the wall.
    slopes = []
    for cells, tau in ((40, 0.005), (80, 0.0025)):
        d = _run(
            "keller_segel_2d",
            [f"domain.cells=[{cells},{cells}]", f"time.tau={tau}"],
            tmp_path / str(cells),
        )
        slopes.append(np.polyfit(d["time"], d["diagnostics/second_moment"], 1)[0])
        assert np.all(np.diff(d["diagnostics/energy"]) < 0.0)
    errors = np.abs(np.array(slopes) - 2.0) / 2.0
    assert errors[1] < 0.015 and errors[1] < errors[0] / 3  # measured 5.5 %, then 1.2 %
