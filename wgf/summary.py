"""The table ``wgf run`` prints at the end."""

from __future__ import annotations

import numpy as np

from wgf.cases import Case
from wgf.run import RunSummary


def print_summary(case: Case, runs: list[RunSummary]) -> None:
    """Print one row per solver: steps, error at T, mass drift, energy, iterations, time."""
    head = (
        f"{'solver':14s} {'steps':>6s} {'T':>8s} {'L1 err':>10s} {'L2 err':>10s} "
        f"{'mass drift':>11s} {'F(T)':>12s} {'F incr.':>7s} {'min rho':>10s} "
        f"{'its mean/max':>12s} {'wall [s]':>9s}"
    )
    print(f"\ncase {case.name} ({case.dim}-D)")
    print(head)
    print("-" * len(head))
    for r in runs:
        d = r.diagnostics
        drift = abs(d.get("mass", np.nan) - r.mass0) / r.mass0
        its = f"{np.mean(r.iterations):.1f}/{max(r.iterations)}" if r.iterations else "-"
        print(
            f"{r.solver:14s} {r.steps:6d} {r.t:8.4g} {d.get('l1_error', np.nan):10.3e} "
            f"{d.get('l2_error', np.nan):10.3e} {drift:11.2e} {d.get('energy', np.nan):12.6g} "
            f"{r.energy_increases:7d} {_or_dash(d.get('min_density')):>10s} {its:>12s} "
            f"{r.wall_time:9.2f}"
        )
    for r in runs:
        print(f"results: {r.path}")


def _or_dash(value: float | None) -> str:
    """A number for the table, or "-" where the solver has none (particles: no min ρ)."""
    return "-" if value is None else f"{value:.3e}"
