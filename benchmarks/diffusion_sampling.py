"""Diffusion-model sampling (issue 15): the acceptance figures of benchmarks/README.md.

    .venv/bin/python benchmarks/diffusion_sampling.py map      # 1-D: exact map error, RK4 order
    .venv/bin/python benchmarks/diffusion_sampling.py scores   # 2-D: W2, energy distance, modes
    .venv/bin/python benchmarks/diffusion_sampling.py scores --quick   # exact + fem 64² only
    .venv/bin/python benchmarks/diffusion_sampling.py floor    # the floor's sample-to-sample spread

``map``: the 1-D mixture ½N(-2, 0.25²) + ½N(2, 0.5²) under the OU flow to T = 5; 10⁴
points x_T (the quantiles (i + ½)/10⁴ of ρ_T) are carried back by the probability-flow ODE
with the exact score and compared with the exact map F₀⁻¹(F_T(x_T)): SciPy's adaptive
methods at several tolerances, then our fixed-step RK4 at halving steps (the order).

``scores``: the 2-D five-mode mixture; 4000 samples of N(0, I) at T = 5 carried back with
each score (ODE, RK45 at rtol = atol = 1e-6), against 4000 data samples: W2 (exact EMD),
the energy distance, both with the floor of two independent data samples, the mode
masses, the score evaluations and the sampling wall time (the forward run's wall time and
L1 error at T in brackets).  The forward runs (fem-implicit at 64² and 128², blob at
N = 2500 and 10⁴) are made first, in ``out/bench-sampling`` (kept: a second call reuses
them).  Then the reverse SDE against the ODE at equal cost: as many Euler–Maruyama steps
(one score evaluation each) as the ODE spent evaluations, for the exact and the 64² FE
score, and 4× as many.  ``--quick``: exact and fem 64² only, no 4× SDE rows.
"""

from __future__ import annotations

import argparse
import time
from functools import partial
from pathlib import Path

import numpy as np

from wgf import api
from wgf.cases import closed_forms as cf
from wgf.cases.case import mixture_parameters
from wgf.postprocess import sampling as diag
from wgf.postprocess.results import read_results
from wgf.sample import Sampled, diagnostics, sample
from wgf.solvers.particles import probability_flow as pf

HERE = Path(__file__).resolve().parent
CASE_1D = HERE / "cases" / "gaussian_mixture_1d.toml"
CASE_2D = HERE / "cases" / "gaussian_mixture_2d.toml"
OUT = Path("out/bench-sampling")


def map_study(points: int = 10_000) -> None:
    """The 1-D exact-score map error, adaptive and fixed-step."""
    case = api.load(CASE_1D)
    flow = pf.OrnsteinUhlenbeck.of(case)
    t_end = case.config["time"]["t_end"]
    u = (np.arange(points) + 0.5) / points
    x_end = cf.mixture_quantile_1d(u, *case.mixture(t_end))[:, None]
    mix_t, mix_0 = case.mixture(t_end), case.mixture(0.0)
    score = pf.MixtureScore(case)
    print(f"1-D map error on {points} points, T = {t_end}")
    print(f"{'method':>8} {'tol/steps':>10} {'max error':>10} {'evals':>6} {'wall s':>7}")
    for method, tol in (("RK45", 1e-6), ("RK45", 1e-8), ("DOP853", 1e-8), ("DOP853", 1e-10)):
        start = time.perf_counter()
        traj = pf.probability_flow(flow, score, x_end, t_end, method=method, rtol=tol, atol=tol)
        err = diag.map_error_1d(x_end, traj.samples, mix_t, mix_0)
        wall = time.perf_counter() - start
        print(f"{method:>8} {tol:>10.0e} {err:>10.2e} {traj.evaluations:>6} {wall:>7.2f}")
    previous = None
    for steps in (250, 500, 1000, 2000):
        start = time.perf_counter()
        traj = pf.probability_flow(flow, score, x_end, t_end, method="rk4", steps=steps)
        err = diag.map_error_1d(x_end, traj.samples, mix_t, mix_0)
        wall = time.perf_counter() - start
        order = f"  order {np.log2(previous / err):.2f}" if previous else ""
        print(f"{'rk4':>8} {steps:>10} {err:>10.2e} {traj.evaluations:>6} {wall:>7.2f}{order}")
        previous = err


def forward_run(solver: str, overrides: dict, tag: str) -> Path:
    """The forward run of the 2-D case (made once, then reused)."""
    out = OUT / tag
    path = out / f"gaussian_mixture_2d_{solver}.h5"
    if not path.is_file():
        start = time.perf_counter()
        api.run(api.load(CASE_2D, overrides), solver, out=out)
        print(f"forward {tag}: {time.perf_counter() - start:.1f} s")
    return path


def forward_summary(path: Path) -> str:
    """The forward run's wall time and relative L1 error at T, as recorded in its file."""
    found = read_results(path).diagnostics
    return f"forward {found['wall_time'][-1]:.0f} s, L1 at T {found['l1_error'][-1]:.1e}"


def report(label: str, case: api.Case, result: Sampled, note: str = "") -> None:
    """One row: W2 and energy distance (with floors), mode masses, cost, wall time."""
    found = diagnostics(case, result.trajectories.samples)
    masses = " ".join(f"{found[f'mode_mass_{k}']:.3f}" for k in range(5))
    print(
        f"{label:>26}: W2 {found['w2']:.4f} (floor {found['w2_floor']:.4f})  energy "
        f"{found['energy_distance']:.2e} (floor {found['energy_distance_floor']:.2e})  "
        f"modes {masses}  {result.trajectories.evaluations} evals  "
        f"{result.wall_time:.1f} s{note}",
        flush=True,
    )


def score_study(quick: bool, samples: int = 4000) -> None:
    """W2, energy distance and mode masses of each score in 2-D, and SDE against ODE."""
    case = api.load(CASE_2D)
    weights = " ".join(f"{w:.3f}" for w in case.config["initial"]["weights"])
    print(f"{samples} samples against {samples} data samples; mode weights {weights}")
    draw = partial(sample, case, samples=samples, out=OUT, snapshots=2)
    runs: list[tuple[str, str, Path | None]] = [("exact", "exact", None)]
    for n in (64,) if quick else (64, 128):
        cells = {"domain.cells": [n, n], "time.tau": 0.02 * 64 / n}
        runs.append(("fem", f"fem {n}²", forward_run("fem-implicit", cells, f"fem{n}")))
    for n in () if quick else (2500, 10_000):
        params = {"solver.blob.particles": n}
        runs.append(("blob", f"blob N={n}", forward_run("blob", params, f"blob{n}")))
    odes = {}
    for score, label, source in runs:
        odes[label] = draw(score, source=source)
        report(label, case, odes[label], f"  ({forward_summary(source)})" if source else "")
    # Equal cost: the SDE gets as many score evaluations (steps) as the adaptive ODE used.
    print("reverse SDE (Euler–Maruyama) against the ODE (RK45) at equal score evaluations:")
    for score, label, source in runs[:2]:
        ode = odes[label]
        steps = ode.trajectories.evaluations
        report(f"{label}, ODE RK45 1e-6", case, ode)
        report(
            f"{label}, SDE {steps} steps", case, draw(score, source=source, sde=True, steps=steps)
        )
        if not quick:
            report(
                f"{label}, SDE {4 * steps} steps",
                case,
                draw(score, source=source, sde=True, steps=4 * steps),
            )


def floor_study(samples: int = 4000, pairs: int = 8) -> None:
    """The spread of the floor: W2 and mode masses of independent pairs of data samples.

    A sampler is judged by W2 against one data sample; that W2 moves with the data
    sample's own mode counts, so differences between rows below this spread are noise.
    """
    case = api.load(CASE_2D)
    weights, means, covs = mixture_parameters(case.config["initial"], case.dim)
    values, masses = [], []
    for k in range(pairs):
        x, _ = pf.mixture_samples(weights, means, covs, samples, 1000 + 2 * k)
        y, _ = pf.mixture_samples(weights, means, covs, samples, 1001 + 2 * k)
        values.append(diag.w2_samples(x, y))
        masses.append(diag.mode_masses(x, weights, means, covs))
    spread = np.std(masses, axis=0)
    print(
        f"W2 of {pairs} pairs of {samples} data samples: mean {np.mean(values):.4f}, "
        f"std {np.std(values):.4f}, min {np.min(values):.4f}, max {np.max(values):.4f}; "
        f"mode-mass std {' '.join(f'{s:.3f}' for s in spread)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("study", choices=("map", "scores", "floor"))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.study == "map":
        map_study()
    elif args.study == "floor":
        floor_study()
    else:
        score_study(args.quick)


if __name__ == "__main__":
    main()
