"""Error budget of the blob's Keller–Segel moment law (keller_segel_2d, issue 11).

The exact law is d/dt M₂ = 4DM − χM²/(2π) (= 2 on the case), M₂ = ∫|x|²ρ.  For the
particles, d/dt Σ w_i|x_i|² = 2Σ w_i x_i·v_i =: V is the *virial*, and it splits as the
velocity does, V = V_D + V_W (the mollified diffusion and the pair force).  With the exact
kernel every pair has r·W'(r) = χ/(2π), so V_W = −χ/(2π)(M² − Σ w_i²) exactly: the
excluded self pairs.  So the run's slope error is the sum of

* **diffusion** (the blob entropy mollified at ε, and its lattice quadrature):
  e_D(t) = V_D − 4DM;
* **self pairs**: χ/(2π) Σ w_i² (a constant: the weights are fixed);
* **mollified kernel**: e_δ(t) = V_W,direct(δ) − V_W,exact (pairs the mollifier weakens);
* **particle-mesh sum** (when the run uses it): e_PM(t) = V_W,run − V_W,direct(δ);
* **time stepping**: what remains, i.e. the slope of the run against the slope of
  M₂(0) + ∫₀ᵗ V; checked by halving the substep (``--cfl``).

Each e(t) is measured at every ``--every``-th level, interpolated to all levels,
integrated in time, and its least-squares slope over the levels (the estimator of
benchmarks/interaction_figures.py) is its contribution.  At t = 0 the diffusion virial is
also measured on a lattice twice as fine with the same ε: equal values say that its error
is the ε mollification, not the quadrature.

Run:  OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/ks_blob_budget.py \\
          [--particles 12800] [--pair-sum mesh] [--cfl 0.5] [--every 5]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
from mpi4py import MPI

from wgf import api
from wgf.solvers.particles.blob import Solver


def blob(particles: int, params: dict[str, object]) -> Solver:
    """The blob solver on keller_segel_2d with ``particles`` requested lattice cells."""
    sets = {"solver.blob.particles": particles}
    sets.update({f"solver.blob.{k}": v for k, v in params.items()})
    case = api.load("keller_segel_2d", sets)
    return Solver(case, MPI.COMM_SELF, case.solver_params("blob"))


def virials(solver: Solver, method: str) -> tuple[float, float, float]:
    """(V_D, V_W by ``method``, V_W by the direct sum) at the solver's positions."""
    x, w, n = solver.x, solver.w, solver.n
    v, _ = solver.velocity(x)
    term = solver.energy.interaction
    assert term is not None
    delta = solver.interaction_delta
    run = term.velocity_at(x, x, w, delta, method)  # type: ignore[arg-type]
    direct = term.velocity_at(x, x, w, delta, "direct") if method != "direct" else run
    assert len(v) == n

    def virial(u: np.ndarray) -> float:
        return 2.0 * float(np.sum(w[:, None] * x * u))

    return virial(v - run), virial(run), virial(direct)


def slope_of_integral(t: np.ndarray, rate: np.ndarray) -> float:
    """Least-squares slope over the levels t of ∫₀ᵗ rate (trapezoid)."""
    integral = np.concatenate([[0.0], np.cumsum(0.5 * (rate[1:] + rate[:-1]) * np.diff(t))])
    return float(np.polyfit(t, integral, 1)[0])


def main() -> None:
    """Run the case once and print the budget."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--particles", type=int, default=12800)
    parser.add_argument("--pair-sum", default="mesh", choices=["mesh", "direct"])
    parser.add_argument("--cfl", type=float, default=0.5)
    parser.add_argument("--every", type=int, default=5)
    args = parser.parse_args()
    solver = blob(args.particles, {"pair_sum": args.pair_sum, "cfl": args.cfl})
    case = solver.case
    energy = case.section("energy")
    chi, diff, mass = energy["interaction"]["strength"], energy["diffusivity"], solver.mass
    exact = 4 * diff * mass - chi * mass**2 / (2 * math.pi)
    self_pairs = chi / (2 * math.pi) * float(solver.w @ solver.w)
    exact_pairs = -chi / (2 * math.pi) * mass**2 + self_pairs
    tau, t_end = case.section("time")["tau"], case.section("time")["t_end"]
    levels = round(t_end / tau)
    print(
        f"N = {solver.n}, ε = {solver.eps:.4g}, δ = {solver.interaction_delta:.4g}, "
        f"pair sums {args.pair_sum}, cfl {args.cfl}; exact slope {exact:g}"
    )
    fine = blob(2 * args.particles, {"epsilon": solver.eps, "pair_sum": "mesh"})
    fine_vd, fine_n = virials(fine, "mesh")[0], fine.n
    del fine
    times, m2, probes = [0.0], [solver.second_moment()], {}
    start = time.perf_counter()
    probes[0] = virials(solver, args.pair_sum)
    substeps = 0
    for n in range(1, levels + 1):
        substeps += solver.step(tau)
        times.append(n * tau)
        m2.append(solver.second_moment())
        if n % args.every == 0 or n == levels:
            probes[n] = virials(solver, args.pair_sum)
    wall = time.perf_counter() - start
    t = np.array(times)
    slope = float(np.polyfit(t, m2, 1)[0])
    at = np.array(sorted(probes))
    vd, vw, vdirect = (np.array([probes[k][i] for k in at]) for i in range(3))

    def contribution(error: np.ndarray) -> float:
        return slope_of_integral(t, np.interp(t, t[at], error))

    parts = {
        "diffusion (ε, quadrature)": contribution(vd - 4 * diff * mass),
        "self pairs": self_pairs,
        "mollified kernel (δ)": contribution(vdirect - exact_pairs),
        "particle mesh": contribution(vw - vdirect),
    }
    virial_slope = exact + sum(parts.values())
    parts["time stepping (rest)"] = slope - virial_slope
    print(
        f"slope {slope:.5f}: relative error {(slope - exact) / exact:+.3%} ({wall:.0f} s, "
        f"{substeps} substeps)"
    )
    for name, value in parts.items():
        print(f"  {name:28s} {value / exact:+.3%}")
    print(
        f"  at t = 0: V_D = {vd[0]:.5f} (exact {4 * diff * mass:g}), V_W = {vw[0]:.5f}, "
        f"direct {vdirect[0]:.5f} (exact kernel {exact_pairs:.5f}); V_D on {fine_n} "
        f"particles, same ε: {fine_vd:.5f}"
    )


if __name__ == "__main__":
    main()
