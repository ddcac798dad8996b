"""Two-layer networks as a case model (``[model]``): the Gaussian kernels, the closed moment
ODE of the linear network against the particles (error and order in dt), energy decay of
the deterministic flow, and bad input."""

import numpy as np
import pytest
from scipy import special

from tests.conftest import assert_user_error, wgf
from wgf import api
from wgf.cases import closed_forms as cf
from wgf.solvers.energy import FreeEnergy
from wgf.solvers.energy.network import make_kernel

BETA = np.array([1.0, 0.5, -0.5, 0.25])


def _moment_error(solver: str, tau: float, out) -> float:
    """Max error of (m, C, s) at T = 2 against solve_ivp from the particles' initial moments."""
    sets = {"time.tau": tau, "time.t_end": 2.0, f"solver.{solver}.particles": 200}
    res = api.run(api.load("two_layer_linear", {**sets, "output.snapshots": 2}), solver, out=out)
    m0, C0, s0 = cf.linear_network_moments(res.positions[0], res.weights)
    m, C, s = cf.linear_network_flow(2.0, m0, C0, s0, BETA)
    mh, Ch, sh = cf.linear_network_moments(res.positions[-1], res.weights)
    # The risk diagnostic is ½|β* - m|² of the particles' own m.
    assert res.diagnostics["risk"][-1] == pytest.approx(0.5 * np.sum((BETA - mh) ** 2), rel=1e-9)
    return max(np.abs(mh - m).max(), np.abs(Ch - C).max(), abs(sh - s))


@pytest.mark.parametrize(
    ("solver", "order", "finest"), [("blob", 2.0, 3e-5), ("langevin", 1.0, 2e-3)]
)
def test_linear_network_moments_follow_the_ode(tmp_path, solver, order, finest):
    """blob (Heun) is second order in dt, langevin at temperature 0 (Euler) first order."""
    taus = [0.04, 0.02, 0.01]
    errors = [_moment_error(solver, tau, tmp_path / str(tau)) for tau in taus]
    slope = np.polyfit(np.log(taus), np.log(errors), 1)[0]
    assert abs(slope - order) < 0.1, (errors, slope)
    assert errors[-1] < finest, errors


@pytest.mark.parametrize("activation", ["linear", "relu", "erf", "tanh"])
def test_kernel_sums_match_monte_carlo_and_their_gradient(activation):
    """Σ_j c_j K(u_i, v_j) against a Monte-Carlo mean (5σ), ∇_u against central differences."""
    rng = np.random.default_rng(3)
    d = 3
    u, v, c = rng.normal(size=(4, d)), rng.normal(size=(5, d)), rng.normal(size=5)
    kernel = make_kernel(activation, d, 20000, 2)
    sigma = {
        "linear": lambda s: s,
        "relu": lambda s: np.maximum(s, 0.0),
        "erf": lambda s: __import__("scipy.special").special.erf(s),
        "tanh": np.tanh,
    }[activation]
    x = rng.normal(size=(400_000, d)) if activation != "tanh" else kernel.samples
    terms = sigma(x @ u.T)[:, :, None] * (sigma(x @ v.T) @ np.diag(c))[:, None, :]
    sample = terms.sum(axis=2)
    mc, se = sample.mean(axis=0), sample.std(axis=0) / np.sqrt(len(x))
    exact = kernel.sum(u, v, c)
    tol = 1e-12 if activation == "tanh" else 5.0 * se + 1e-12
    assert np.all(np.abs(exact - mc) <= tol), (exact, mc, se)
    value, grad = kernel.sum_and_grad(u, v, c)
    np.testing.assert_allclose(value, exact, rtol=1e-13, atol=1e-14)
    h = 1e-6
    for k in range(d):
        e = np.zeros(d)
        e[k] = h
        fd = (kernel.sum(u + e, v, c) - kernel.sum(u - e, v, c)) / (2 * h)
        np.testing.assert_allclose(grad[:, k], fd, rtol=1e-6, atol=1e-8)


def _relu_pairs(u: np.ndarray, v: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Σ_j c_j K(u_i, v_j) and its u-gradient, pair by pair from the Cho–Saul formulas."""
    value, grad = np.zeros(len(u)), np.zeros_like(u)
    for i, ui in enumerate(u):
        for vj, cj in zip(v, c, strict=True):
            nu, nv = np.linalg.norm(ui), np.linalg.norm(vj)
            cos = np.clip(ui @ vj / (nu * nv), -1.0, 1.0) if nu * nv > 0 else 0.0
            phi, sin = np.arccos(cos), np.sqrt(1.0 - cos * cos)
            value[i] += cj * nu * nv * (sin + (np.pi - phi) * cos) / (2 * np.pi)
            unit = ui / nu if nu > 0 else 0.0 * ui
            grad[i] += cj * ((np.pi - phi) * vj + nv * sin * unit) / (2 * np.pi)
    return value, grad


def test_blocked_relu_sums_match_the_pairwise_formula(monkeypatch):
    """Blocks of 3 × 4 pairs (ragged at both edges), zero neurons included."""
    from wgf.solvers.energy import network

    monkeypatch.setattr(network, "RELU_BLOCK", 12)
    monkeypatch.setattr(network, "RELU_BLOCK_COLUMNS", 4)
    rng = np.random.default_rng(5)
    u, v, c = rng.normal(size=(11, 3)), rng.normal(size=(13, 3)), rng.normal(size=13)
    u[4], v[7] = 0.0, 0.0
    v[2] = -2.0 * u[1]  # φ = π exactly: cos clipped at -1
    value, grad = _relu_pairs(u, v, c)
    kernel = network.ReluKernel()
    np.testing.assert_allclose(kernel.sum(u, v, c), value, rtol=1e-13, atol=1e-14)
    blocked = kernel.sum_and_grad(u, v, c)
    np.testing.assert_allclose(blocked[0], value, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(blocked[1], grad, rtol=1e-13, atol=1e-14)


def test_network_pair_sums_are_reused_only_at_the_same_neurons(monkeypatch):
    """The energy's pass serves the next velocity at the same neurons, and only there."""
    from wgf.solvers.energy import network

    W = FreeEnergy.from_case(api.load("two_layer_relu_teacher", {})).interaction
    rng = np.random.default_rng(6)
    x, w = rng.normal(size=(30, 5)), np.full(30, 1.0 / 30)
    calls = []
    sum_and_grad = network.ReluKernel.sum_and_grad

    def counted(self, *args):
        calls.append(1)
        return sum_and_grad(self, *args)

    monkeypatch.setattr(network.ReluKernel, "sum_and_grad", counted)
    value, grad = _relu_pairs(x[:, 1:], x[:, 1:], w * x[:, 0])
    np.testing.assert_allclose(W.energy(x, w), 0.5 * (w * x[:, 0]) @ value, rtol=1e-13)
    np.testing.assert_allclose(W.gradient_at(x, x, w)[:, 1:], x[:, :1] * grad, rtol=1e-12)
    assert len(calls) == 1
    x[3, 2] += 0.5  # the same array, moved in place: the sums are stale
    value, grad = _relu_pairs(x[:, 1:], x[:, 1:], w * x[:, 0])
    np.testing.assert_allclose(W.gradient_at(x, x, w)[:, 0], value, rtol=1e-12)
    assert len(calls) == 2


@pytest.mark.parametrize("activation", ["relu", "erf", "tanh"])
def test_network_energy_gradient_is_the_particle_velocity(activation):
    """-(1/w_k) ∂F/∂θ_k = -∇V(θ_k) - Σ_j w_j ∇₁W(θ_k, θ_j): central differences of the
    particle energy F = Σ w V + ½ΣΣ w w W (self pairs included) against the two terms."""
    sets = {"model.activation": activation, "model.samples": 2000}
    case = api.load("two_layer_relu_teacher", sets)
    energy = FreeEnergy.from_case(case)
    rng = np.random.default_rng(0)
    x, w = rng.normal(size=(6, case.dim)), np.full(6, 1 / 6)

    def total(y):
        return float(w @ energy.potential_value(y)) + energy.interaction.energy(y, w)

    grad = energy.potential_gradient(x) + energy.interaction.gradient_at(x, x, w)
    h = 1e-6
    for k in (0, 3):
        for i in range(case.dim):
            y1, y2 = x.copy(), x.copy()
            y1[k, i] += h
            y2[k, i] -= h
            fd = (total(y1) - total(y2)) / (2 * h) / w[k]
            assert fd == pytest.approx(grad[k, i], rel=1e-6, abs=1e-8)
    # The energy is the risk (plus the regulariser) of the network.
    diag = energy.model_diagnostics(x, w)
    lam = case.section("model")["lambda"]
    assert total(x) == pytest.approx(diag["risk"] + lam * float(w @ np.sum(x * x, axis=1)))


def test_relu_teacher_energy_decays_every_step(tmp_path):
    """The deterministic flow (blob, Heun) dissipates the risk at every step."""
    case = api.load("two_layer_relu_teacher", {"solver.blob.particles": 100, "time.t_end": 2.0})
    res = api.run(case, "blob", out=tmp_path)
    energy = res.diagnostics["energy"]
    assert np.all(np.diff(energy) < 0.0), np.diff(energy).max()
    assert energy[-1] < 0.5 * energy[0]
    assert res.diagnostics["alignment"][-1] > res.diagnostics["alignment"][0]


BAD = {
    "teacher of the wrong dimension": (
        ["--set", "model.teacher_w=[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]"],
        "model.teacher_w': rows of length 2, but the input dimension model.d is 4",
    ),
    "unknown activation": (
        ["--set", "model.activation=sigmoid"],
        "model.activation': 'sigmoid' is not one of linear, relu, tanh, erf",
    ),
    "FE solver": (["--solver", "fem-jko"], "case key 'model': fem-jko solves densities"),
    "blob with temperature": (
        ["--solver", "blob", "--set", "model.temperature=0.01"],
        "blob runs the noiseless gradient flow",
    ),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_model_input(tmp_path, name):
    args, message = BAD[name]
    proc = wgf("run", "two_layer_relu_teacher", "--out", str(tmp_path), *args)
    assert_user_error(proc, message)
    assert not any(tmp_path.iterdir())


def test_too_long_steps_of_a_model_are_retried(tmp_path):
    """No stability bound covers the pair term, so blob declares energy decay for a model:
    a step that raises the risk (wide neurons, τ = 0.5) is retried with τ/2, and every
    recorded level has a lower energy than the one before."""
    sets = {"time.tau": 0.5, "time.t_end": 2.0, "initial.cov": 4.0, "solver.blob.particles": 200}
    res = api.run(api.load("two_layer_linear", sets), "blob", out=tmp_path)
    assert res.diagnostics["retries"].sum() >= 2
    assert np.all(np.diff(res.diagnostics["energy"]) < 0.0)


def _network_output(activation, theta, weights, x):
    """f(x) = Σ_i w_i a_i σ(⟨w_i, x⟩) at the rows of x, written out from the definition."""
    sigma = {"erf": special.erf, "tanh": np.tanh}[activation]
    return sigma(x @ theta[:, 1:].T) @ (weights * theta[:, 0])


@pytest.mark.parametrize("activation", ["erf", "tanh"])
def test_shipped_erf_and_tanh_networks_report_their_risk(activation, tmp_path):
    """two_layer_erf / two_layer_tanh, short (N = 100, T = 1): the energy decays at every
    step, and the risk reported for the final neurons is recomputed from f and y:

    * erf: the population risk, against a Monte-Carlo estimate of ½E[(f(x) - y(x))²] from
      400 000 fresh inputs (within 4 standard errors, which the test estimates too);
    * tanh: the empirical risk on the model's fixed input sample, to round-off.
    """
    name = f"two_layer_{activation}"
    case = api.load(name, {"solver.blob.particles": 100, "time.t_end": 1.0})
    res = api.run(case, "blob", out=tmp_path)
    energy, risk = res.diagnostics["energy"], res.diagnostics["risk"]
    assert np.all(np.diff(energy) < 0.0), np.diff(energy).max()
    assert energy[-1] < 0.8 * energy[0]
    model = case.section("model")
    theta, weights = res.positions[-1], res.weights
    lam = model["lambda"]
    assert energy[-1] == pytest.approx(
        risk[-1] + lam * float(weights @ np.sum(theta**2, axis=1)), rel=1e-12
    )
    teacher_a = np.asarray(model["teacher_a"])
    teacher = np.column_stack([teacher_a, np.asarray(model["teacher_w"])])
    unit = np.ones(len(teacher_a))
    if activation == "erf":
        x = np.random.default_rng(2024).standard_normal((400_000, model["d"]))
    else:
        x = make_kernel("tanh", model["d"], model["samples"], model["seed"]).samples
    gap = _network_output(activation, theta, weights, x) - _network_output(
        activation, teacher, unit, x
    )
    half_square = 0.5 * gap**2
    if activation == "erf":
        stderr = half_square.std() / np.sqrt(len(x))
        assert abs(risk[-1] - half_square.mean()) < 4.0 * stderr, (risk[-1], half_square.mean())
        assert stderr < 0.02 * risk[-1]  # the check is sharp enough to mean something
    else:
        assert risk[-1] == pytest.approx(half_square.mean(), rel=1e-10)
