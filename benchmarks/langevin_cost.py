"""Langevin: cost of a time level with the exact and the binned KDE, in one run.

What ``wgf run`` does per time level of the ``langevin`` solver, without the results
file: ``step(τ)`` (the Euler–Maruyama substeps) and ``diagnostics(t)`` (the energy and
the L1/L2 errors, both from the KDE on the sample grid).  Timed at N = 10⁴ and 10⁵ on
heat_1d (1-D, the case of the report) and fokker_planck_ou_2d (2-D), once with the old
exact kernel sum (``kde_method = "exact"``) and once with linear binning (the default),
alternating so that the machine's load hits both alike; prints the best of ``REPEAT``
and the ratios OLD/NEW.  Also times the KDE alone on the sample grid, and at the
particles themselves (``density_at(x)``, the per-particle density) at N = 10⁴ — the exact
sum there costs N × (neighbours within 5 bandwidths), nearly N².

Profile of a whole run, for where the rest of the time goes:
``.venv/bin/python -m cProfile -s tottime -m wgf run double_well_1d --solver langevin``.

Run:  .venv/bin/python benchmarks/langevin_cost.py
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from mpi4py import MPI
from timing import best_of

from wgf.cases import load_case
from wgf.solvers import solver_tables
from wgf.solvers.particles.langevin import Solver

REPEAT = 3
SIZES = (10_000, 100_000)
CASES = ("heat_1d", "fokker_planck_ou_2d")


def build(case_name: str, n: int) -> tuple[Solver, float]:
    """The langevin solver of a shipped case with n particles, ready to sample; and τ."""
    case = load_case(case_name, [f"solver.langevin.particles={n}"], solver_tables())
    solver = Solver(case, MPI.COMM_SELF, case.solver_params("langevin"))
    solver.prepare_sampling(case.sample_points(*solver.bounding_box()))
    return solver, case.section("time")["tau"]


def time_level(solver: Solver, tau: float) -> Callable[[], object]:
    """One time level as the driver takes it: a step, then the diagnostics."""

    def level() -> object:
        solver.step(tau)
        return solver.diagnostics(0.0)

    return level


def compare(
    label: str, solver: Solver, work: Callable[[], object], repeat: int = REPEAT
) -> tuple[float, float]:
    """Best times of ``work`` with the exact and the binned KDE (alternating)."""
    old, new = [], []
    for _ in range(repeat):
        for method, sink in (("exact", old), ("binned", new)):
            solver.kde_method = method
            solver.set_positions(solver.x)  # drop the cached sample-grid density
            sink.append(best_of(work, 1))
    print(f"  {label:34s} {min(old):9.4f} s {min(new):9.4f} s {min(old) / min(new):8.1f}")
    return min(old), min(new)


def main() -> None:
    """Print the table."""
    print(f"{'':36s} {'exact':>11s} {'binned':>11s} {'ratio':>8s}")
    for name in CASES:
        for n in SIZES:
            solver, tau = build(name, n)
            print(f"{name}, N = {n}:")
            compare("time level (step + diagnostics)", solver, time_level(solver, tau))
            compare("KDE on the sample grid", solver, solver.sample_grid_density)
            if n <= 10_000:
                # The exact sum takes most of a minute here: once.
                compare("KDE at the N particles", solver, lambda s=solver: s.density_at(s.x), 1)
            solver.kde_method = "exact"
            exact = solver.sample_grid_density()
            solver.kde_method = "binned"
            binned = solver.sample_grid_density()
            diff = np.abs(binned - exact).sum() / np.abs(exact).sum()
            print(f"  binned vs exact on the sample grid: relative L1 difference {diff:.2e}")


if __name__ == "__main__":
    main()
