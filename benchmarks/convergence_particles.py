"""Convergence figures of the particle solvers (issue 5), printed as tables.

    PYTHONPATH=. python benchmarks/convergence_particles.py STUDY [...]

Studies (each prints its numbers and, where it is a rate, the np.polyfit slope):

* ``blob-heat``: blob on heat_1d, relative L1 error of ρ_ε at T vs N = 100…800;
* ``blob-ou``: blob on fokker_planck_ou_2d, max error of the particle covariance at T;
* ``blob-pm2d``: blob on porous_medium_2d, L1 error and relative second-moment error
  (exact: M R(s)² d/(d + 2p + 2), p = 1/(m-1)) for N = 2500, 10000 (``--big`` adds 40000);
* ``quantile``: quantile-1d on porous_medium_1d (m = 2, 3), W2, L∞ and interior L∞
  quantile errors at T vs τ = 0.01 … 0.00125 with N = 1000;
* ``langevin``: langevin on heat_2d, second-moment error vs N in standard errors.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import h5py
import numpy as np
from mpi4py import MPI

from wgf.cases import load_case
from wgf.cases.closed_forms import barenblatt_radius
from wgf.run import run_flow
from wgf.solvers import get_solver, solver_tables


def run(case_name: str, solver: str, sets: list[str], out: Path) -> tuple[dict, object]:
    """Run one case serially; return all datasets of its results file and the case."""
    case = load_case(case_name, sets, solver_tables())
    s = get_solver(solver).load()(case, MPI.COMM_SELF, case.solver_params(solver))
    path = run_flow(s, case, out).path
    data = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda k, v: _keep(data, k, v))
    return data, case


def _keep(data: dict, name: str, obj: object) -> None:
    """Store a dataset (visititems stops at the first callback that returns non-None)."""
    if isinstance(obj, h5py.Dataset):
        data[name] = obj[()]


def slope(x: list[float], y: list[float]) -> float:
    """Least-squares slope of log y against log x."""
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def blob_heat(out: Path) -> None:
    ns, errs = [100, 200, 400, 800], []
    for n in ns:
        r, _ = run("heat_1d", "blob", [f"solver.blob.particles={n}"], out / f"h{n}")
        errs.append(r["diagnostics/l1_error"][-1])
        rise = np.diff(r["diagnostics/energy"]).max()
        subs = int(r["diagnostics/iterations"].sum())
        print(f"blob heat_1d N={n:4d}  L1 {errs[-1]:.3e}  substeps {subs}  max ΔF {rise:.2e}")
    print(f"blob heat_1d EOC in N: {-slope(ns, errs):.2f}")


def blob_ou(out: Path) -> None:
    for n in [400, 1600, 6400]:
        r, case = run("fokker_planck_ou_2d", "blob", [f"solver.blob.particles={n}"], out / f"o{n}")
        x, w = r["particles/positions"][-1], r["particles/weights"]
        mean, cov = case.gaussian_moments(r["snapshots/time"][-1])
        mu = w @ x
        c = (x - mu).T @ ((x - mu) * w[:, None])
        err = np.abs(c - cov).max()
        print(
            f"blob fokker_planck_ou_2d N={len(w):5d}  covariance error {err:.3e} "
            f"(relative {err / np.abs(cov).max():.2e})  mean error {np.abs(mu - mean).max():.1e}"
            f"  L1 {r['diagnostics/l1_error'][-1]:.3e}"
        )


def blob_pm2d(out: Path, big: bool) -> None:
    for n in [2500, 10000, *([40000] if big else [])]:
        r, case = run("porous_medium_2d", "blob", [f"solver.blob.particles={n}"], out / f"p{n}")
        e = case.section("energy")
        s = case.barenblatt_time() + e["diffusivity"] * r["time"][-1]
        p = 1.0 / (e["m"] - 1.0)
        m2 = barenblatt_radius(s, e["m"], 2) ** 2 * 2.0 / (2.0 + 2.0 * p + 2.0)
        got = r["diagnostics/second_moment"][-1]
        print(
            f"blob porous_medium_2d N={len(r['particles/weights']):5d}  "
            f"L1 {r['diagnostics/l1_error'][-1]:.3e}  second moment {got:.5f} "
            f"(exact {m2:.5f}, relative error {abs(got - m2) / m2:.2e})  "
            f"wall {r['diagnostics/wall_time'][-1]:.0f} s"
        )


def quantile(out: Path) -> None:
    taus = [0.01, 0.005, 0.0025, 0.00125]
    for m in [2.0, 3.0]:
        w2 = []
        for tau in taus:
            sets = [f"energy.m={m}", f"time.tau={tau}", "solver.quantile-1d.particles=1000"]
            r, _ = run("porous_medium_1d", "quantile-1d", sets, out / f"q{m}_{tau}")
            d = {k: r[f"diagnostics/{k}"][-1] for k in ("w2_error", "quantile_error")}
            interior = r["diagnostics/quantile_error_interior"][-1]
            w2.append(d["w2_error"])
            print(
                f"quantile-1d m={m:g} τ={tau:<8g} W2 {d['w2_error']:.3e}  L∞ "
                f"{d['quantile_error']:.3e}  L∞ interior {interior:.3e}  "
                f"L1 {r['diagnostics/l1_error'][-1]:.3e}"
            )
        print(f"quantile-1d m={m:g} EOC in τ (W2 error): {slope(taus, w2):.2f}")


def langevin(out: Path) -> None:
    for n in [1000, 4000, 16000, 64000]:
        r, case = run("heat_2d", "langevin", [f"solver.langevin.particles={n}"], out / f"l{n}")
        mean, cov = case.gaussian_moments(r["time"][-1])
        exact = float(mean @ mean + np.trace(cov))
        sq = np.sum(r["particles/positions"][-1] ** 2, axis=1)
        se = sq.std() / np.sqrt(len(sq))
        err = abs(sq.mean() - exact)
        print(
            f"langevin heat_2d N={n:5d}  second moment {sq.mean():.5f} (exact {exact:.5f})  "
            f"relative error {err / exact:.2e} = {err / se:.2f} standard errors  "
            f"L1 {r['diagnostics/l1_error'][-1]:.3e}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "studies", nargs="+", choices=["blob-heat", "blob-ou", "blob-pm2d", "quantile", "langevin"]
    )
    parser.add_argument("--big", action="store_true", help="blob-pm2d: add N = 40000 (~20 min)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for study in args.studies:
            out = Path(tmp) / study
            if study == "blob-pm2d":
                blob_pm2d(out, args.big)
            else:
                {
                    "blob-heat": blob_heat,
                    "blob-ou": blob_ou,
                    "quantile": quantile,
                    "langevin": langevin,
                }[study](out)


if __name__ == "__main__":
    main()
