"""Transformer tokens on the sphere: attention, the sphere domain, closed forms, bad input."""

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from tests.conftest import PVBATCH, assert_user_error, benchmark, pvbatch_read, run_case, wgf
from wgf import api
from wgf.cases.sphere import equiangular_rate, mode_growth_rate, sample_grid, sphere_area
from wgf.solvers.energy import FreeEnergy, Interaction
from wgf.solvers.particles.domains import Sphere


def _tokens_case(normalization="usa", beta=1.0, dim=4, initial=None, **extra):
    initial = initial or {"kind": "equiangular", "rho0": 0.1}
    case = {
        "name": "tokens",
        "energy": {
            "internal": "none",
            "interaction": {"kind": "attention", "beta": beta, "normalization": normalization},
        },
        "domain": {"shape": "sphere", "dimension": dim},
        "initial": initial,
        "time": {"t_end": 1.0, "tau": 0.1},
        "output": {"snapshots": 2},
    }
    for key, value in extra.items():
        case.setdefault(key, {}).update(value)
    return api.load(case)


def _random_sphere(n, dim, seed=3):
    x = np.random.default_rng(seed).standard_normal((n, dim))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# -- the term ---------------------------------------------------------------------------------
def test_usa_attention_is_the_radial_kernel_on_the_sphere():
    """USA = the radial W(r) = -β⁻¹e^{β(1-r²/2)}: same tangent velocity, energy up to a constant."""
    beta, n, dim = 2.5, 60, 3
    case = _tokens_case("usa", beta, dim, {"kind": "uniform"})
    attention = FreeEnergy.from_case(case).interaction
    radial = Interaction(case.interaction_kernel(), 1.0, dim)
    x, w = _random_sphere(n, dim), np.full(n, 1.0 / n)
    sphere = Sphere(dim)
    v_att = sphere.tangent(x, attention.velocity_at(x, x, w))
    v_rad = sphere.tangent(x, radial.velocity_at(x, x, w, method="direct"))
    np.testing.assert_allclose(v_att, v_rad, rtol=0, atol=1e-12 * np.abs(v_att).max())
    # the explicit sum P_x Σ_j w_j e^{β⟨x,x_j⟩} x_j
    direct = sphere.tangent(x, np.exp(beta * x @ x.T) @ (w[:, None] * x))
    np.testing.assert_allclose(v_att, direct, rtol=1e-12, atol=1e-13)
    self_pairs = -np.exp(beta) * np.sum(w * w) / (2 * beta)
    assert attention.energy(x, w) == pytest.approx(
        radial.energy(x, w, method="direct") + self_pairs, rel=1e-13
    )


def test_sa_velocity_is_the_softmax_average():
    beta, n, dim = 3.0, 40, 5
    case = _tokens_case("sa", beta, dim, {"kind": "uniform"})
    term = FreeEnergy.from_case(case).interaction
    x, w = _random_sphere(n, dim), np.full(n, 1.0 / n)
    a = np.exp(beta * x @ x.T)
    expected = (a @ x) / a.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(term.velocity_at(x, x, w), expected, rtol=1e-12)
    # a softmax average: the total mass does not enter
    np.testing.assert_allclose(term.velocity_at(x, x, 3.0 * w), expected, rtol=1e-12)
    assert not term.gradient_flow


def test_closed_forms():
    # β = 5: the fastest mode of the circle's instability is k = 3
    rates = [mode_growth_rate(k, 5.0) for k in range(1, 7)]
    assert int(np.argmax(rates)) + 1 == 3
    assert sphere_area(2) == pytest.approx(2 * np.pi) and sphere_area(3) == pytest.approx(4 * np.pi)
    for dim, cells in ((2, [50]), (3, [20, 40]), (5, [])):
        points, areas = sample_grid(dim, cells)
        np.testing.assert_allclose(np.linalg.norm(points, axis=1), 1.0, rtol=1e-14)
        assert areas.sum() == pytest.approx(sphere_area(dim), rel=1e-12)
    # the ODE is that of the dynamics: SA at n = 2 is USA with Z = (e^β + e^{βρ})/2
    rho = 0.3
    assert equiangular_rate(rho, 1.0, 2, "sa") == pytest.approx(
        equiangular_rate(rho, 1.0, 2, "usa") * 2 / (np.exp(1.0) + np.exp(rho))
    )


# -- blob on the sphere: equiangular tokens against the ODE -----------------------------------
def _equiangular_error(normalization, dt, tmp_path, beta=1.0, n=4, T=1.0, rho0=0.1):
    case = _tokens_case(
        normalization,
        beta,
        n,
        {"kind": "equiangular", "rho0": rho0},
        time={"t_end": T, "tau": 0.2},  # τ/dt an integer: the substep is dt
        solver={"blob": {"dt": dt}},
    )
    run = api.run(case, "blob", out=tmp_path)
    x = run.positions[-1]
    gram = x @ x.T
    off = gram[~np.eye(n, dtype=bool)]
    ode = solve_ivp(
        lambda t, r: [equiangular_rate(r[0], beta, n, normalization)],
        (0.0, T),
        [rho0],
        rtol=1e-10,
        atol=1e-13,
    )
    return off.mean() - ode.y[0, -1], off.std(), run


@pytest.mark.parametrize(("normalization", "bound"), [("usa", 1.2e-4), ("sa", 3e-5)])
def test_equiangular_tokens_follow_the_ode_to_second_order(normalization, bound, tmp_path):
    errors = []
    for dt in (0.1, 0.05, 0.025):
        err, spread, run = _equiangular_error(normalization, dt, tmp_path)
        assert spread < 1e-14  # equiangular by symmetry, to round-off
        np.testing.assert_allclose(np.linalg.norm(run.positions, axis=2), 1.0, rtol=1e-14)
        assert np.all(np.diff(run.diagnostics["energy"]) <= 1e-14)  # F never increases
        errors.append(abs(err))
    order = np.polyfit(np.log([0.1, 0.05, 0.025]), np.log(errors), 1)[0]
    assert errors[-1] < bound
    assert order == pytest.approx(2.0, abs=0.1)


# -- bad input: one line, exit 2 ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["tokens_sphere_sa", "--solver", "fem-jko"],
            "'energy.interaction.normalization': fem-jko solves W2 gradient flows only",
        ),
        (
            ["tokens_sphere_sa", "--solver", "fem-implicit"],
            "'energy.interaction.normalization': fem-implicit solves W2 gradient flows only",
        ),
        (["tokens_circle_usa", "--solver", "quantile-1d"], "quantile-1d supports 1-D only"),
        (
            ["tokens_circle_usa", "--solver", "blob", "--set", "energy.interaction.beta=0"],
            "'energy.interaction.beta' must be > 0, got 0.0",
        ),
        (
            ["tokens_equiangular", "--solver", "blob", "--set", "solver.blob.particles=9"],
            "need n ≤ d = 8",
        ),
        (
            ["tokens_circle_usa", "--solver", "blob", "--set", "energy.internal=entropy"],
            'blob runs the sphere with internal = "none" only',
        ),
        (
            ["swarm_2d", "--solver", "blob", "--set", "initial.kind=uniform"],
            '"uniform" needs domain.shape = "circle" or "sphere"',
        ),
    ],
)
def test_bad_token_input_is_one_line(args, message, tmp_path):
    assert_user_error(wgf("run", *args, "--out", str(tmp_path)), message)
    assert not list(tmp_path.iterdir())  # nothing written


def test_attention_needs_a_sphere(tmp_path):
    case = tmp_path / "box.toml"
    case.write_text(
        'name = "box"\n[energy]\ninternal = "none"\n'
        '[energy.interaction]\nkind = "attention"\nbeta = 1.0\n'
        "[domain]\nlower = [-1.0, -1.0]\nupper = [1.0, 1.0]\ncells = [4, 4]\n"
        '[initial]\nkind = "gaussian"\nmean = [0.0, 0.0]\ncov = 0.1\n'
        "[time]\nt_end = 1.0\ntau = 0.1\n"
    )
    proc = wgf("run", str(case), "--solver", "blob", "--out", str(tmp_path / "out"))
    assert_user_error(proc, '"attention" moves tokens on the unit sphere')


# -- the circle's instability: growth rates of cos(kθ) against k² I_k(β)/β ----------------------
@pytest.mark.parametrize("k", [1, 3])
def test_uniform_tokens_on_the_circle_are_unstable_at_the_bessel_rate(k, tmp_path):
    """blob, 500 equally spaced tokens displaced by 10⁻⁶: |ĉ_k(t)| grows like e^{λt}."""
    beta = 5.0
    rate, _ = benchmark("tokens").blob_mode_rate(k, beta, 0.3, 3, 0.003, 500, str(tmp_path))
    assert rate == pytest.approx(mode_growth_rate(k, beta), rel=1e-3)


# -- langevin on the sphere: projected Euler–Maruyama + retraction -------------------------------
def test_langevin_on_the_sphere_is_brownian_motion(tmp_path):
    """E⟨X_t, X_0⟩ = e^{-(d-1)Dt} for Brownian motion on S^{d-1} (the generator DΔ_S)."""
    D, T, n = 0.5, 0.4, 4000
    case = api.load(
        {
            "name": "bm",
            "energy": {"internal": "entropy", "diffusivity": D},
            "domain": {"shape": "sphere", "dimension": 3},
            "initial": {"kind": "uniform", "seed": 2},
            "time": {"t_end": T, "tau": 0.1},
            "output": {"snapshots": 2},
            "solver": {"langevin": {"particles": n, "dt": 0.005}},
        }
    )
    run = api.run(case, "langevin", out=tmp_path)
    x0, x1 = run.positions[0], run.positions[-1]
    np.testing.assert_allclose(np.linalg.norm(x1, axis=1), 1.0, rtol=1e-14)
    mean = np.einsum("nk,nk->n", x0, x1).mean()
    # Monte-Carlo error ≈ 0.4/√n = 0.006; the scheme's bias is O(dt)
    assert mean == pytest.approx(np.exp(-2 * D * T), abs=0.02)


# -- ParaView ------------------------------------------------------------------------------------
@pytest.mark.skipif(PVBATCH is None, reason="pvbatch not installed (Debian python3-paraview)")
def test_tokens_on_the_sphere_open_in_paraview(tmp_path):
    sets = ["solver.blob.particles=200", "time.t_end=1.0", "time.tau=0.5"]
    run_case("tokens_sphere_sa", sets, tmp_path, solver="blob")
    out = pvbatch_read(tmp_path / "tokens_sphere_sa_blob_fields.xdmf", tmp_path)
    assert int(out["POINTS"]) == 200 and out["ARRAYS"] == "density,weight"
    bounds = np.array(out["BOUNDS"].split(), dtype=float)
    assert np.all(np.abs(bounds) <= 1.0 + 1e-12) and bounds[1] > 0.9  # on the unit sphere
    low, high = map(float, out["RANGE_density"].split())
    assert 0.0 < low <= high  # the von Mises–Fisher estimate at the tokens


# -- the shipped cases, shortened --------------------------------------------------------------
@pytest.mark.parametrize(
    ("case", "sets"),
    [
        ("tokens_circle_usa", ["solver.blob.particles=200", "time.t_end=1.0"]),
        ("tokens_sphere_sa", ["solver.blob.particles=300", "time.t_end=4.0"]),
        ("tokens_equiangular", []),
    ],
)
def test_shipped_token_cases_cluster_and_never_raise_the_energy(case, sets, tmp_path):
    """F = -½β⁻¹∬e^{β⟨x,y⟩} never increases (SA too: it is USA slowed by Z_i per token)."""
    r = api.read(run_case(case, sets, tmp_path, solver="blob").path)
    energy = r.diagnostics["energy"]
    assert np.all(np.diff(energy) <= 1e-12 * np.abs(energy).max())
    assert energy[-1] < energy[0]
    np.testing.assert_allclose(np.linalg.norm(r.positions, axis=2), 1.0, rtol=1e-14)
    # clustering: the mean pairwise inner product grows
    gram = np.einsum("snk,smk->snm", r.positions, r.positions).mean(axis=(1, 2))
    assert gram[-1] > gram[0] + 0.05
