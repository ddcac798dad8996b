"""The README pictures of the machine-learning cases (docs/img/*.png), from fresh runs.

Each figure runs its shipped case with the Python API (``wgf.api``), shortened where said,
and draws it with matplotlib:

* ``tokens_circle.png`` — ``tokens_circle_usa`` (blob): the angle of every token against
  time (the uniform start breaks up into clusters, which then merge), and the energy F;
* ``tokens_sphere_particles.png`` — ``tokens_sphere_sa`` (blob): the tokens on S² at
  t = 0, 5 and T (3-D scatter), and F against t;
* ``tokens_equiangular.png`` — ``tokens_equiangular`` (blob): the mean pairwise inner
  product of the tokens against the solve_ivp solution of ρ' = 2e^{βρ}(1-ρ)(1+(n-1)ρ)/n;
* ``two_layer_linear.png`` — ``two_layer_linear`` (blob): the risk ½|β* - m|² of the
  particles against that of the closed moment ODE (solve_ivp), and the alignment;
* ``two_layer_risk.png`` — ``two_layer_relu_teacher`` (blob, T = 3): the risk curves for
  several N and their largest distance to the largest N's (grey: each seed; blue: the RMS
  over the seeds), read from the ``.npz`` that ``TWO_LAYER_SAVE=... benchmarks/two_layer.py
  2`` writes (given as the argument; without it, N = 100, 300, 1000 are run here), with
  the erf and tanh cases' risk curves beside them.

Run:  OPENBLAS_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/ml_figures.py \
          [RELU_CURVES.npz] [--only NAME ...]
(writes into docs/img; each PNG is kept under 150 KB by its size and dpi).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from scipy.integrate import solve_ivp

from wgf import api
from wgf.cases import closed_forms as cf
from wgf.cases.sphere import equiangular_rate

IMG = Path(__file__).resolve().parents[1] / "docs" / "img"
DPI = 90


def _save(fig: plt.Figure, name: str) -> None:
    fig.tight_layout()
    path = IMG / name
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    print(f"wrote {path} ({path.stat().st_size // 1024} KB)")


def tokens_circle(out: Path) -> None:
    """Token angles against time on S¹ (USA, β = 4), 200 tokens, 41 snapshots."""
    sets = {"solver.blob.particles": 200, "output.snapshots": 41}
    res = api.run(api.load("tokens_circle_usa", sets), "blob", out=out)
    theta = np.arctan2(res.positions[..., 1], res.positions[..., 0])
    fig, (ax, ax_e) = plt.subplots(1, 2, figsize=(9, 3.4), width_ratios=[2, 1])
    for k in range(theta.shape[1]):
        ax.plot(res.snapshot_time, theta[:, k], lw=0.5, color="C0", alpha=0.6)
    ax.set(xlabel="t", ylabel="angle θ of each token", title="tokens_circle_usa (blob, n = 200)")
    ax.set_ylim(-np.pi, np.pi)
    ax_e.plot(res.time, res.diagnostics["energy"], color="C3")
    ax_e.set(xlabel="t", ylabel="F (non-increasing)", title="attention energy F")
    _save(fig, "tokens_circle.png")


def tokens_sphere(out: Path) -> None:
    """Tokens on S² at t = 0, 5 and T (SA, β = 4), 1000 tokens, over a wire-frame sphere."""
    res = api.run(api.load("tokens_sphere_sa", {"output.snapshots": 7}), "blob", out=out)
    fig = plt.figure(figsize=(12, 3.3))
    u, v = np.meshgrid(np.linspace(0, 2 * np.pi, 25), np.linspace(0, np.pi, 13))
    for k, index in enumerate([0, 2, -1]):
        ax = fig.add_subplot(1, 4, k + 1, projection="3d")
        ax.plot_wireframe(
            np.cos(u) * np.sin(v), np.sin(u) * np.sin(v), np.cos(v), lw=0.3, color="0.8"
        )
        x = res.positions[index]
        size = 2 if index == 0 else 12
        ax.scatter(x[:, 0], x[:, 1], x[:, 2], s=size, c=x[:, 2], cmap="viridis", vmin=-1, vmax=1)
        ax.set(xlim=(-1, 1), ylim=(-1, 1), zlim=(-1, 1))
        ax.set_box_aspect((1, 1, 1))
        ax.set_title(f"t = {res.snapshot_time[index]:g}")
        ax.set_axis_off()
    ax_e = fig.add_subplot(1, 4, 4)
    ax_e.plot(res.time, res.diagnostics["energy"], color="C3", marker=".")
    ax_e.set(xlabel="t", ylabel="F (non-increasing)", title="tokens_sphere_sa: energy")
    _save(fig, "tokens_sphere_particles.png")


def tokens_equiangular(out: Path) -> None:
    """ρ(t) of 8 equiangular tokens (USA, β = 1) against its ODE."""
    case = api.load("tokens_equiangular", {"output.snapshots": 31})
    res = api.run(case, "blob", out=out)
    n = res.positions.shape[1]
    gram = np.einsum("snk,smk->snm", res.positions, res.positions)
    rho = (gram.sum(axis=(1, 2)) - n) / (n * (n - 1))
    beta, rho0 = 1.0, float(rho[0])
    t_end = float(res.snapshot_time[-1])
    ode = solve_ivp(
        lambda t, r: [equiangular_rate(r[0], beta, n, "usa")],
        (0.0, t_end),
        [rho0],
        method="DOP853",
        rtol=1e-10,
        atol=1e-12,
        dense_output=True,
    )
    fine = np.linspace(0.0, t_end, 300)
    fig, (ax, ax_err) = plt.subplots(1, 2, figsize=(9, 3.2))
    ax.plot(fine, ode.sol(fine)[0], color="k", lw=1, label="ODE (solve_ivp)")
    ax.plot(res.snapshot_time, rho, "o", ms=3, color="C0", label="blob, 8 tokens")
    ax.set(xlabel="t", ylabel="ρ(t) = ⟨x_i, x_j⟩", title="tokens_equiangular (S⁷, USA)")
    ax.legend()
    err = np.abs(rho - ode.sol(res.snapshot_time)[0])
    ax_err.semilogy(res.snapshot_time[1:], err[1:], "o-", ms=3)
    ax_err.set(xlabel="t", ylabel="|ρ_particles - ρ_ODE|", title="error (dt = 0.01)")
    _save(fig, "tokens_equiangular.png")


def two_layer_linear(out: Path) -> None:
    """Risk of the linear network: particles against the moment ODE."""
    res = api.run(api.load("two_layer_linear", {"output.snapshots": 41}), "blob", out=out)
    beta = np.asarray(res.config["model"]["beta"])
    m0, c0, s0 = cf.linear_network_moments(res.positions[0], res.weights)
    ode = [
        0.5 * float(np.sum((beta - cf.linear_network_flow(t, m0, c0, s0, beta)[0]) ** 2))
        for t in res.snapshot_time
    ]
    fig, (ax, ax_a) = plt.subplots(1, 2, figsize=(9, 3.2))
    ax.semilogy(res.time, res.diagnostics["risk"], color="C0", label="blob, N = 1000")
    ax.semilogy(res.snapshot_time, ode, "k.", label="moment ODE (solve_ivp)")
    ax.set(xlabel="t", ylabel="risk ½|β* - m|²", title="two_layer_linear")
    ax.legend()
    ax_a.plot(res.time, res.diagnostics["alignment"], color="C2")
    ax_a.set(xlabel="t", ylabel="alignment ⟨f, y⟩/‖f‖‖y‖", title="alignment")
    _save(fig, "two_layer_linear.png")


def two_layer_risk(out: Path, curves: Path | None) -> None:
    """Risk curves of the ReLU teacher for several N, and the erf and tanh cases."""
    if curves is not None:
        data = dict(np.load(curves))
    else:
        data = {}
        for n in (100, 300, 1000):
            sets = {"solver.blob.particles": n, "time.t_end": 3.0, "output.snapshots": 2}
            res = api.run(api.load("two_layer_relu_teacher", sets), "blob", out=out / str(n))
            data["time"], data[f"risk_{n}"] = res.time, res.diagnostics["risk"]
    sizes = sorted(int(k.split("_")[1]) for k in data if k.startswith("risk_"))
    fig, (ax, ax_d, ax_o) = plt.subplots(1, 3, figsize=(12, 3.3))
    for n in sizes:
        ax.semilogy(data["time"], data[f"risk_{n}"], label=f"N = {n}")
    ax.set(xlabel="t", ylabel="population risk", title="two_layer_relu_teacher (blob)")
    ax.legend(fontsize=8)
    ref = data[f"risk_{sizes[-1]}"]
    dist = []
    for n in sizes[:-1]:  # RMS over the seeds where several were run
        runs = [v for k, v in data.items() if k.startswith(f"seeds_{n}_")] or [data[f"risk_{n}"]]
        dist.append(np.sqrt(np.mean([np.abs(r - ref).max() ** 2 for r in runs])))
        for r in runs:
            ax_d.loglog(n, np.abs(r - ref).max(), ".", color="0.6")
    rate = np.polyfit(np.log(sizes[:-1]), np.log(dist), 1)[0]
    ax_d.loglog(sizes[:-1], dist, "o-", color="C0", label=f"RMS over seeds, fit N^{rate:.2f}")
    ax_d.set(
        xlabel="N",
        ylabel=f"max_t |risk_N - risk_{sizes[-1]}|",
        title="distance to the largest N",
    )
    ax_d.legend()
    for name in ("two_layer_erf", "two_layer_tanh"):
        res = api.run(api.load(name, {}), "blob", out=out / name)
        ax_o.semilogy(res.time, res.diagnostics["risk"], label=name.removeprefix("two_layer_"))
    ax_o.set(xlabel="t", ylabel="risk", title="erf (closed form), tanh (sampled)")
    ax_o.legend()
    _save(fig, "two_layer_risk.png")


def main() -> None:
    """Draw the figures named by ``--only`` (default all) into docs/img."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("curves", nargs="?", type=Path, help="risk curves (.npz) of item 2")
    parser.add_argument("--only", nargs="*", default=None)
    args = parser.parse_args()
    logging.getLogger("wgf").setLevel(logging.WARNING)
    figures = {
        "tokens_circle": tokens_circle,
        "tokens_sphere": tokens_sphere,
        "tokens_equiangular": tokens_equiangular,
        "two_layer_linear": two_layer_linear,
        "two_layer_risk": lambda out: two_layer_risk(out, args.curves),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only or list(figures):
            figures[name](Path(tmp) / name)


if __name__ == "__main__":
    main()
