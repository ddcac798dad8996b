"""Case files: schema, overrides, validation messages, closed forms."""

import numpy as np
import pytest
from mpi4py import MPI
from scipy import integrate

from wgf.cases import closed_forms as cf
from wgf.cases import load_case, shipped_cases
from wgf.cases.density import check_density
from wgf.cases.errors import UserError
from wgf.solvers import solver_tables

#: Shipped cases verified by an exact law other than a closed-form density: Keller–Segel's
#: second-moment law (tests/test_fem_interaction.py), and its supercritical variant, which
#: blows up (tests/test_blowup.py); the token cases on the sphere, by the equiangular ODE
#: and the circle's growth rates (tests/test_tokens.py).
WITHOUT_CLOSED_FORM = {
    "keller_segel_2d",
    "keller_segel_2d_supercritical",
    "tokens_circle_usa",
    "tokens_sphere_sa",
    "tokens_equiangular",
}


@pytest.mark.parametrize("path", shipped_cases(), ids=lambda p: p.stem)
def test_shipped_cases_load_and_match_their_exact_solution(path):
    case = load_case(path, (), solver_tables())
    if case.section("target") is not None:  # a transport case (fem-bb): no flow to follow
        x = case.sample_points(
            np.array(case.section("domain")["lower"]), np.array(case.section("domain")["upper"])
        )
        cell = np.prod(
            (np.array(case.section("domain")["upper"]) - np.array(case.section("domain")["lower"]))
            / case.sample_cells()
        )
        # Both ends of the transport are (nearly) all inside the box.
        for table in ("initial", "target"):
            assert case.density(table)(x).sum() * cell == pytest.approx(1.0, abs=2e-3)
        return
    exact = case.exact_solution()
    if case.section("model") is not None:  # neurons in ℝ^{1+d}: tests/test_two_layer.py
        assert exact is None and case.dim == 1 + case.section("model")["d"]
        assert case.sample_points(*case.bounds()).shape == (0, case.dim)
        return
    if case.name in WITHOUT_CLOSED_FORM:
        assert exact is None
        return
    assert exact is not None, "every shipped case has a closed form"
    x = case.sample_points(
        np.array(case.section("domain")["lower"]), np.array(case.section("domain")["upper"])
    )
    # The initial density is the exact solution at t = 0 (unless that is the steady state) ...
    if not case.exact_is_steady:
        np.testing.assert_allclose(case.density()(x), exact(0.0, x), rtol=1e-13, atol=1e-300)
    # ... and the box holds the solution at T: (nearly) all mass on the sample grid.
    cell = np.prod(
        (np.array(case.section("domain")["upper"]) - np.array(case.section("domain")["lower"]))
        / case.sample_cells()
    )
    mass = exact(case.section("time")["t_end"], x).sum() * cell
    assert mass == pytest.approx(1.0, abs=2e-3)


def _load_with(*sets):
    return load_case("porous_medium_2d", sets, solver_tables())


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["time.tau=0"], "time.tau' must be > 0"),
        (["time.t_end=-1"], "time.t_end' must be > 0"),
        (["energy.m=1.0"], "energy.m' must be > 1"),
        (["energy.mm=3"], "did you mean 'm'"),
        (["time.tau='fast'"], "expected a number"),
        (["domain.cells=[10, 10, 10]"], "dimension mismatch"),
        (["initial.mass=0"], "positive mass"),
        (["initial.mass=-1"], "positive mass"),
        (["initial.mass=inf"], "not finite"),
        (["energy.potential.A=[[1.0, 2.0], [0.0, 1.0]]"], "not symmetric"),
        (["energy.potential.A=[[1.0, 0.0], [0.0, -1.0]]"], "not positive semidefinite"),
        (["solver.fem-implicitt.rtol=1"], "did you mean 'fem-implicit'"),
        (["solver.fem-implicit.rtl=1"], "did you mean 'rtol'"),
        (["domain.shape=disk"], "domain.center' is required"),
        (["exact.kind=gaussian"], "needs energy.internal"),
    ],
)
def test_bad_input_is_named(sets, message):
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("(", r"\(")):
        _load_with(*sets)


def test_bad_files(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_case(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = 'x'\n[energy\n")
    with pytest.raises(UserError, match="TOML does not parse"):
        load_case(bad)
    bad.write_text("name = 'x'\n[energy]\ninternall = 'power'\n")
    with pytest.raises(
        UserError,
        match=r"unknown case key 'energy\.internall'; did you mean "
        r"'internal'",
    ):
        load_case(bad)


def test_overrides_reach_the_config():
    case = _load_with(
        "time.tau=0.001",
        "energy.m=3",
        "solver.fem-implicit.rtol=1e-6",
        "domain.cell_type=hypercube",
    )
    assert case.section("time")["tau"] == 0.001
    assert case.section("energy")["m"] == 3.0
    assert case.solver_params("fem-implicit")["rtol"] == 1e-6
    assert case.section("domain")["cell_type"] == "hypercube"


@pytest.mark.parametrize(("m", "d"), [(2.0, 1), (2.0, 2), (3.0, 1), (1.5, 2)])
def test_barenblatt_has_its_mass_and_solves_the_pme(m, d):
    s = 0.05
    r = cf.barenblatt_radius(s, m, d)
    if d == 1:
        mass = integrate.quad(lambda x: cf.barenblatt(np.array([[x]]), s, m)[0], -r, r)[0]
    else:
        mass = integrate.quad(
            lambda q: 2 * np.pi * q * cf.barenblatt(np.array([[q, 0.0]]), s, m)[0], 0, r
        )[0]
    assert mass == pytest.approx(1.0, rel=1e-7)
    # ∂_s u = Δ u^m at an interior point, by finite differences.
    x0, h = np.array([[0.3 * r] + [0.1 * r] * (d - 1)]), 1e-4
    dudt = (cf.barenblatt(x0, s + h, m) - cf.barenblatt(x0, s - h, m)) / (2 * h)
    lap = sum(
        (
            cf.barenblatt(x0 + h * e, s, m) ** m
            - 2 * cf.barenblatt(x0, s, m) ** m
            + cf.barenblatt(x0 - h * e, s, m) ** m
        )
        / h**2
        for e in np.eye(d)
    )
    assert dudt[0] == pytest.approx(lap[0], rel=1e-5)


def test_nonlinear_fp_solves_its_pde_and_tends_to_the_steady_state():
    m, a, D, s0 = 2.0, 1.0, 1.0, 0.01
    x0, h, t = np.array([[0.2, -0.1]]), 1e-4, 0.3

    def rho(t, x):
        return cf.nonlinear_fp(x, t, s0, a, m, D)

    dt = (rho(t + h, x0) - rho(t - h, x0)) / (2 * h)
    rhs = 0.0
    for e in np.eye(2):
        rhs += D * (rho(t, x0 + h * e) ** m - 2 * rho(t, x0) ** m + rho(t, x0 - h * e) ** m) / h**2
        rhs += (
            a
            * ((x0 + h * e) @ e * rho(t, x0 + h * e) - (x0 - h * e) @ e * rho(t, x0 - h * e))
            / (2 * h)
        )
    assert dt[0] == pytest.approx(rhs[0], rel=1e-5)
    # Steady state (C' - a(m-1)/(2mD)|x|²)_+ with C' = 1/sqrt(2π) for unit mass, d = 2.
    late = rho(8.0, x0)[0]
    assert late == pytest.approx(1 / np.sqrt(2 * np.pi) - 0.25 * np.sum(x0**2), rel=1e-6)


def test_ou_moments_heat_limit_and_equilibrium():
    mean0, cov0 = np.array([1.0, -0.5]), 0.25 * np.eye(2)
    mean, cov = cf.ou_moments(0.3, mean0, cov0, np.zeros((2, 2)), np.zeros(2), 0.7)
    np.testing.assert_allclose(mean, mean0)
    np.testing.assert_allclose(cov, cov0 + 2 * 0.7 * 0.3 * np.eye(2))
    A = np.array([[2.0, 0.5], [0.5, 1.0]])
    mean, cov = cf.ou_moments(60.0, mean0, cov0, A, np.array([0.1, 0.2]), 0.5)
    np.testing.assert_allclose(mean, [0.1, 0.2], atol=1e-12)
    np.testing.assert_allclose(cov, 0.5 * np.linalg.inv(A), atol=1e-12)


def test_w2_gaussians_in_1d_is_the_quantile_distance():
    from scipy.stats import norm

    l2 = np.sqrt(
        integrate.quad(
            lambda q: (norm.ppf(q, 0.3, 0.5) - norm.ppf(q, -0.2, 1.1)) ** 2, 0, 1, limit=200
        )[0]
    )
    w2 = cf.w2_gaussians(np.array([0.3]), np.array([[0.25]]), np.array([-0.2]), np.array([[1.21]]))
    assert w2 == pytest.approx(np.sqrt(0.5**2 + 0.6**2), rel=1e-12)
    assert w2 == pytest.approx(l2, rel=1e-8)


@pytest.mark.parametrize(
    ("values", "mass", "message"),
    [
        ([1.0, np.nan, np.inf], None, "the initial density has 2 non-finite values on the mesh"),
        ([1.0, -0.5], None, "the initial density is negative on the mesh (min -0.5)"),
        ([0.0, 0.0], None, "the initial density has no mass on the mesh"),
        ([1.0, 2.0], 0.0, "the initial density has no mass on the mesh"),
    ],
)
def test_density_check_names_key_problem_and_place(values, mass, message):
    with pytest.raises(UserError) as err:
        check_density(np.array(values), "initial", "on the mesh", MPI.COMM_SELF, mass)
    assert str(err.value).startswith("case key 'initial': ") and message in str(err.value)
    assert "\n" not in str(err.value)


def test_density_check_passes_a_usable_density():
    check_density(np.array([0.0, 1e-300, 3.0]), "target", "on the mesh")  # no exception
    with pytest.raises(UserError, match="case key 'target': the target density is negative"):
        check_density(np.array([0.0, -1e-300]), "target", "on the mesh")
