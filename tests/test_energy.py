"""The energy as terms: formula potentials in every flow solver, steady states, bad input."""

import numpy as np
import pytest

from tests.conftest import assert_user_error, read, run_case, wgf
from wgf.cases import load_case
from wgf.cases.expressions import SymbolicFunction
from wgf.solvers.energy import (
    Entropy,
    ExpressionPotential,
    FreeEnergy,
    NoInternal,
    PowerLaw,
    QuadraticPotential,
)


@pytest.mark.parametrize("internal", [Entropy(), PowerLaw(2.0), PowerLaw(3.0), PowerLaw(3.5)])
def test_inversion_and_prox_solve_their_equations(internal):
    energy = FreeEnergy(internal, diffusivity=0.7)
    rng = np.random.default_rng(3)
    rho = np.exp(rng.uniform(-8.0, 2.0, 200))
    barrier = 0.0 if not energy.needs_barrier else 1e-6
    y = energy.first_variation(rho, 0.0) - barrier / rho
    found, drho = energy.invert_first_variation(y, barrier, start=np.ones_like(rho))
    np.testing.assert_allclose(found, rho, rtol=1e-10)
    # dρ/dy against a centred difference of the inversion itself.
    h = 1e-6 * np.maximum(1.0, np.abs(y))
    up, _ = energy.invert_first_variation(y + h, barrier, start=rho)
    down, _ = energy.invert_first_variation(y - h, barrier, start=rho)
    np.testing.assert_allclose(drho, (up - down) / (2 * h), rtol=1e-4)
    # prox: c·D·U'(ρ) + ρ = z where ρ > 0.
    z, c = rng.uniform(0.1, 5.0, 200), 0.3
    p = energy.prox(z, c)
    np.testing.assert_allclose(c * energy.first_variation(p, 0.0) + p, z, rtol=1e-10)


@pytest.mark.parametrize("m", [2.0, 3.0])
@pytest.mark.parametrize("barrier", [1e-12, 1e-8, 1e-6])
def test_closed_form_inversions_agree_with_newton(m, barrier):
    """m = 2 and 3 invert D·U'(ρ) - ε/ρ = y in closed form: against the generic Newton
    inversion, from the barrier's branch (ρ ≈ ε/|y|) to the power branch, and at y = 0."""
    from wgf.solvers.energy.internal import _LogNewtonInversion

    power, rng = PowerLaw(m), np.random.default_rng(5)
    rho = np.concatenate([np.exp(rng.uniform(np.log(1e-11), np.log(20.0), 4000)), [1.0]])
    y = 0.7 * power.dU(rho) - barrier / rho
    y[-1] = 0.0
    found, drho = power.invert_first_variation(y, 0.7, barrier, np.ones_like(y))
    newton, drho_newton = _LogNewtonInversion.invert_first_variation(
        power, y, 0.7, barrier, np.ones_like(y)
    )
    np.testing.assert_allclose(found, newton, rtol=1e-12)
    np.testing.assert_allclose(drho, drho_newton, rtol=1e-11)
    np.testing.assert_allclose(found[:-1], rho[:-1], rtol=1e-9)


def test_prox_of_no_internal_energy_is_the_projection():
    z = np.array([-1.0, 0.0, 2.5])
    np.testing.assert_array_equal(FreeEnergy(NoInternal(), 1.0).prox(z, 0.4), [0.0, 0.0, 2.5])


def test_formula_potential_equals_the_quadratic_one():
    A = np.array([[2.0, 0.5], [0.5, 1.0]])
    c = np.array([0.3, -0.2])
    quad = QuadraticPotential(A, c)
    text = "(2*(x - 0.3)**2 + 2*0.5*(x - 0.3)*(y + 0.2) + (y + 0.2)**2)/2"
    formula = ExpressionPotential(SymbolicFunction.parse(text, ("x", "y"), "test"))
    x = np.random.default_rng(0).normal(size=(50, 2))
    np.testing.assert_allclose(formula.value(x), quad.value(x), rtol=1e-13)
    np.testing.assert_allclose(formula.gradient(x), quad.gradient(x), rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(formula.hessian(x), quad.hessian(x), rtol=1e-13)
    assert formula.hessian_norm(x) == pytest.approx(quad.hessian_norm(x), rel=1e-13)


@pytest.mark.parametrize(
    "solver,sets",
    [
        ("fem-implicit", []),
        ("fem-jko", []),
        ("fem-jko", ["solver.fem-jko.inner=alg2", "domain.cells=[40]", "time.t_end=0.02"]),
        ("blob", ["solver.blob.particles=100"]),
        ("langevin", ["solver.langevin.particles=2000"]),
        ("quantile-1d", ["solver.quantile-1d.particles=100"]),
    ],
)
def test_every_flow_solver_gives_the_same_run_with_the_potential_as_a_formula(
    solver, sets, tmp_path
):
    """fokker_planck_ou_1d with V = x²/2 as A = 1 and as a formula: the same numbers."""
    base = ["time.t_end=0.1", *sets]
    run_case("fokker_planck_ou_1d", base, tmp_path / "matrix", solver=solver)
    # A formula potential has no Gaussian closed form: compare the runs with each other.
    run_case(str(_formula_case(tmp_path)), base, tmp_path / "formula", solver=solver)
    a = read(tmp_path / "matrix" / f"fokker_planck_ou_1d_{solver}.h5")
    b = read(tmp_path / "formula" / f"fokker_planck_ou_1d_{solver}.h5")
    for name in ("diagnostics/energy", "diagnostics/second_moment", "snapshots/density"):
        np.testing.assert_allclose(b[name], a[name], rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(b["diagnostics/iterations"], a["diagnostics/iterations"])
    assert a["diagnostics/l1_error"][-1] < 0.06  # and the quadratic run is right


def _formula_case(tmp_path):
    """fokker_planck_ou_1d with [energy.potential] as the formula x**2/2 (exact: gaussian)."""
    text = (load_case("fokker_planck_ou_1d").path).read_text()
    start = text.index("[energy.potential]")
    end = text.index("\n[", start) + 1
    text = text[:start] + '[energy.potential]\nexpression = "x**2/2"\n\n' + text[end:]
    text = text.replace('kind = "gaussian"\n\n[output]', 'kind = "none"\n\n[output]')
    path = tmp_path / "fokker_planck_ou_1d.toml"
    path.write_text(text)
    return path


def test_steady_state_is_reached_by_the_fe_solvers(tmp_path):
    """double_well_1d (T = 30, 12/λ₁ ≈ 27 decay times): both FE solvers end at the
    discretisation error, with mass conserved and the energy non-increasing."""
    errors = {}
    for solver in ("fem-implicit", "fem-jko"):
        run_case("double_well_1d", [], tmp_path, solver=solver)
        d = read(tmp_path / f"double_well_1d_{solver}.h5")
        errors[solver] = d["diagnostics/l1_error"][-1]
        # 600 steps, each moving the mass by its solve's round-off (a drift of 1.01e-12
        # with OPENBLAS_CORETYPE=SandyBridge): conservation is to round-off, not to 1e-12.
        assert np.ptp(d["diagnostics/mass"]) < 1e-11
        energy = d["diagnostics/energy"]
        assert np.all(np.diff(energy) <= 1e-12 * np.abs(energy[:-1]))
        # The error has stopped falling: the last fifth of the run changes it by < 2 %.
        l1 = d["diagnostics/l1_error"]
        assert abs(l1[-1] - l1[int(0.8 * len(l1))]) < 0.02 * l1[-1]
    assert 1e-4 < errors["fem-implicit"] < 4.5e-4
    assert 1e-4 < errors["fem-jko"] < 4.5e-4


def test_steady_state_errors_fall_with_h(tmp_path):
    """fem-jko on porous_quartic_2d: the error to the steady state falls under refinement."""
    errors = []
    for cells in (16, 32):
        out = tmp_path / str(cells)
        run_case("porous_quartic_2d", [f"domain.cells=[{cells}, {cells}]"], out, solver="fem-jko")
        errors.append(read(out / "porous_quartic_2d_fem-jko.h5")["diagnostics/l1_error"][-1])
    assert errors[1] < 0.6 * errors[0], errors
    assert errors[1] < 3e-2


@pytest.mark.parametrize(
    "args,message",
    [
        (["double_well_1d", "--set", 'energy.potential.expression="x + q"'], "unknown name 'q'"),
        (["double_well_1d", "--set", 'energy.potential.expression="eval(x)"'], "'eval'"),
        (["double_well_1d", "--set", 'energy.potential.expression="x.real"'], "attribute"),
        (["double_well_1d", "--set", 'energy.potential.expression="(lambda: 1)()"'], "lambda"),
        (
            ["double_well_1d", "--set", "energy.potential.expression=\"__import__('os')\""],
            "'__import__'",
        ),
        (
            ["fokker_planck_ou_1d", "--set", 'energy.potential.expression="x**2/2"'],
            "either as A/center or as expression, not both",
        ),
        (["double_well_1d", "--set", 'initial.density="x"'], "negative"),
        (["double_well_1d", "--set", 'initial.density="0*x"'], "no mass"),
        (["heat_1d", "--set", "exact.kind=stationary"], "needs [energy.potential]"),
        (
            [
                "heat_1d",
                "--set",
                "exact.kind=stationary",
                "--set",
                'energy.potential.expression="0.01*x"',
            ],
            "does not confine",
        ),
        (
            ["double_well_1d", "--set", "energy.internal=none"],
            'needs energy.internal = "entropy" or "power"',
        ),
        (
            [
                "double_well_1d",
                "--set",
                "exact.kind=none",
                "--set",
                'energy.potential.expression="log(x + 2)"',
                "--solver",
                "fem-implicit",
            ],
            "not finite at x = -3.0 on the mesh",
        ),
        (
            [
                "double_well_1d",
                "--set",
                "exact.kind=none",
                "--set",
                'energy.potential.expression="sqrt(x)"',
                "--solver",
                "blob",
            ],
            "at the initial particles",
        ),
    ],
)
def test_bad_formulas_and_steady_states_are_one_line_errors(args, message, tmp_path):
    proc = wgf("run", *args, "--out", str(tmp_path / "out"))
    assert_user_error(proc, message)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


@pytest.mark.mpi
def test_a_formula_not_finite_on_one_rank_stops_every_rank(tmp_path):
    """V is not finite only at x < -2, on one rank's part of the mesh: both ranks exit 2."""
    from mpi4py import MPI

    from wgf.cases.errors import UserError

    with pytest.raises(UserError, match="not finite at x"):
        run_case(
            "double_well_1d",
            ["exact.kind=none", 'energy.potential.expression="log(x + 2)"'],
            tmp_path,
            comm=MPI.COMM_WORLD,
        )
