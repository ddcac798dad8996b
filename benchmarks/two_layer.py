"""Acceptance figures of the two-layer network model (``[model]``, docs/two_layer.md).

Prints, from one run (no asserts; the test suite asserts the first item):

1. ``two_layer_linear``: the particle moments m = E[a w], C = E[w wᵀ], s = E[a²] at T = 2
   against ``solve_ivp`` (DOP853, rtol 1e-10) of the closed moment ODE, started from the
   particles' own initial moments (the ODE is exact for any N), for τ = 0.04, 0.02, 0.01:
   the max error and the EOC in dt, for blob (Heun) and langevin at temperature 0 (Euler).
2. ``two_layer_relu_teacher`` with blob (the deterministic gradient flow of the neurons):
   the risk curve for N = 100, 300, 1000 and its max-in-time distance to the curve of the
   largest N (``REF`` below; the N = 10⁵ curve is a 2-rank ``wgf run`` of about an hour,
   read with ``TWO_LAYER_REF_CURVE``: benchmarks/README.md), with the fitted rate in N;
   and the largest energy change over a step of every run (negative: the energy decays at
   every step).
3. The same case with langevin (mean-field Langevin, N = ``LANGEVIN_N``): the risk plateau
   (mean risk over the last quarter of [0, T], T = 20) against ``model.temperature``.

Run:  OPENBLAS_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/two_layer.py [1] [2] [3]
(the items to run, default all; ``TWO_LAYER_REF=3000``, ``TWO_LAYER_SIZES=100,300,1000``
etc. change the sizes).
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from wgf import api
from wgf.cases import closed_forms as cf
from wgf.postprocess.results import Results, read_results

BETA = np.array([1.0, 0.5, -0.5, 0.25])
SIZES = [int(n) for n in os.environ.get("TWO_LAYER_SIZES", "100,300,1000").split(",")]
REF = int(os.environ.get("TWO_LAYER_REF", "3000"))
#: If set, item 2 saves its risk curves there (``.npz``: time, risk_<N> of the reference and
#: of each N's first seed, seeds_<N>_<seed> of every run), for the README picture
#: (``benchmarks/ml_figures.py``).
SAVE = os.environ.get("TWO_LAYER_SAVE")
#: If set, the reference curve is read instead of being run again: risk_<REF> of an
#: ``.npz`` (an earlier SAVE), or the risk series of a blob results file (``.h5``; how the
#: N = 10⁵ reference was run, on 2 ranks: see docs/two_layer.md).
REF_CURVE = os.environ.get("TWO_LAYER_REF_CURVE")
#: ``model.seed`` values of the smaller runs (default: the case's seed only); the distance
#: is then the RMS over the seeds, the reference keeping the case's seed.
SEEDS = [int(s) for s in os.environ.get("TWO_LAYER_SEEDS", "").split(",") if s]
T_RELU = float(os.environ.get("TWO_LAYER_T", "3.0"))
LANGEVIN_N = int(os.environ.get("TWO_LAYER_LANGEVIN_N", "300"))
TEMPERATURES = [0.0, 0.01, 0.03, 0.1, 0.3]
T_LANGEVIN = 20.0


def linear_moments(out: Path) -> None:
    """Item 1."""
    print("1. linear network, moments at T = 2 against solve_ivp (N = 200)")
    for solver in ("blob", "langevin"):
        taus, errors = [0.04, 0.02, 0.01], []
        for tau in taus:
            sets = {"time.tau": tau, "time.t_end": 2.0, f"solver.{solver}.particles": 200}
            case = api.load("two_layer_linear", {**sets, "output.snapshots": 2})
            res = api.run(case, solver, out=out / f"{solver}{tau}")
            m0, C0, s0 = cf.linear_network_moments(res.positions[0], res.weights)
            m, C, s = cf.linear_network_flow(2.0, m0, C0, s0, BETA)
            mh, Ch, sh = cf.linear_network_moments(res.positions[-1], res.weights)
            errors.append(max(np.abs(mh - m).max(), np.abs(Ch - C).max(), abs(sh - s)))
        eoc = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
        fit = np.polyfit(np.log(taus), np.log(errors), 1)[0]
        row = "  ".join(f"τ={t:g}: {e:.3e}" for t, e in zip(taus, errors, strict=True))
        print(f"   {solver:9s} {row}  EOC {', '.join(f'{v:.2f}' for v in eoc)}  fit {fit:.2f}")


def _relu_run(n: int, out: Path, seed: int | None = None) -> Results:
    """The ReLU teacher with blob for N neurons (the case's seed unless given), printed."""
    sets = {"solver.blob.particles": n, "time.t_end": T_RELU, "output.snapshots": 2}
    if seed is not None:
        sets["model.seed"] = seed
    res = api.run(api.load("two_layer_relu_teacher", sets), "blob", out=out / f"relu{n}_{seed}")
    energy, risk = res.diagnostics["energy"], res.diagnostics["risk"]
    print(
        f"   N = {n:6d}, seed {seed if seed is not None else 'case'}: risk(0) = {risk[0]:.4f}, "
        f"risk(T/2) = {risk[len(risk) // 2]:.4f}, risk(T) = {risk[-1]:.5f}, "
        f"alignment(T) = {res.diagnostics['alignment'][-1]:.4f}, "
        f"max step change of the energy {np.diff(energy).max():.3e}, "
        f"wall {res.diagnostics['wall_time'][-1]:.1f} s"
    )
    return res


def _reference_curve(path: Path) -> np.ndarray:
    """risk_<REF> of a saved ``.npz``, or the risk of a results file run for N = REF, T."""
    if path.suffix == ".npz":
        return np.load(path)[f"risk_{REF}"]
    res = read_results(path)
    n, t_end = res.config["solver"]["blob"]["particles"], res.config["time"]["t_end"]
    if (n, t_end) != (REF, T_RELU):
        sys.exit(f"{path}: N = {n}, T = {t_end}, but TWO_LAYER_REF={REF}, TWO_LAYER_T={T_RELU}")
    return res.diagnostics["risk"]


def relu_in_n(out: Path) -> None:
    """Item 2."""
    print(f"2. ReLU teacher, blob, T = {T_RELU:g}, τ = 0.05: risk against N (reference N = {REF})")
    if REF_CURVE:  # the reference's risk curve from an earlier run
        ref = _reference_curve(Path(REF_CURVE))
        print(f"   reference curve read from {REF_CURVE}")
    else:
        ref = _relu_run(REF, out).diagnostics["risk"]
    curves = {f"risk_{REF}": ref}
    dist: dict[int, list[float]] = {}
    for n in SIZES:
        for seed in SEEDS or [None]:
            risk = _relu_run(n, out, seed).diagnostics["risk"]
            curves.setdefault(f"risk_{n}", risk)  # the first seed's, for the picture
            curves[f"seeds_{n}_{seed}"] = risk
            dist.setdefault(n, []).append(float(np.abs(risk - ref).max()))
    if SAVE:
        np.savez(SAVE, time=np.linspace(0.0, T_RELU, len(ref)), **curves)
    rms = [float(np.sqrt(np.mean(np.square(dist[n])))) for n in SIZES]
    rate = np.polyfit(np.log(SIZES), np.log(rms), 1)[0]
    row = ", ".join(f"N={n}: {d:.3e}" for n, d in zip(SIZES, rms, strict=True))
    over = f"RMS over seeds {SEEDS}" if SEEDS else "one seed"
    print(f"   max_t |risk_N - risk_{REF}| ({over}): {row}; fitted rate N^{rate:.2f}")


def langevin_plateau(out: Path) -> None:
    """Item 3."""
    print(f"3. ReLU teacher, langevin (N = {LANGEVIN_N}, T = {T_LANGEVIN:g}, τ = 0.05): plateau")
    for temp in TEMPERATURES:
        sets = {
            "solver.langevin.particles": LANGEVIN_N,
            "time.t_end": T_LANGEVIN,
            "model.temperature": temp,
            "output.snapshots": 2,
        }
        case = api.load("two_layer_relu_teacher", sets)
        res = api.run(case, "langevin", out=out / f"lang{temp}")
        risk = res.diagnostics["risk"]
        tail = risk[3 * len(risk) // 4 :]
        print(
            f"   temperature {temp:g}: plateau risk {tail.mean():.4e} (± {tail.std():.1e} over "
            f"the last quarter), alignment {res.diagnostics['alignment'][-1]:.4f}"
        )


def main() -> None:
    """The items named on the command line (default all), in a temporary directory."""
    logging.getLogger("wgf").setLevel(logging.WARNING)
    items = {"1": linear_moments, "2": relu_in_n, "3": langevin_plateau}
    chosen = sys.argv[1:] or list(items)
    with tempfile.TemporaryDirectory() as tmp:
        for item in chosen:
            items[item](Path(tmp))


if __name__ == "__main__":
    main()
