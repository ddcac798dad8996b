"""Figures (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

if TYPE_CHECKING:
    from wgf.postprocess.compare import Comparison


def plot_comparison(result: Comparison, out_dir: Path) -> list[Path]:
    """Energy decay, error against time and density slices, all runs overlaid."""
    runs = result.runs
    paths = []
    fig, ax = plt.subplots(figsize=(6, 4))
    floor = min(np.min(r.diagnostics["energy"]) for r in runs if "energy" in r.diagnostics)
    for r in runs:
        if "energy" in r.diagnostics:
            excess = r.diagnostics["energy"] - floor
            ax.semilogy(r.time, np.maximum(excess, 1e-16), label=r.solver)
    ax.set(xlabel="t", ylabel="F(ρ(t)) − min F", title=f"{runs[0].case_name}: energy decay")
    ax.legend()
    paths.append(_save(fig, out_dir / "energy.png"))

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in runs:
        if "l1_error" in r.diagnostics:
            ax.semilogy(r.time, r.diagnostics["l1_error"], label=f"{r.solver} (L1)")
    rows = [row for row in result.rows if row["against"] == "exact" and "w2" in row]
    for label in dict.fromkeys(row["run"] for row in rows):
        mine = [row for row in rows if row["run"] == label]
        ax.semilogy(
            [row["time"] for row in mine], [row["w2"] for row in mine], "o--", label=f"{label} (W2)"
        )
    ax.set(xlabel="t", ylabel="error against the exact solution", title="errors")
    ax.legend()
    paths.append(_save(fig, out_dir / "errors.png"))

    times = result.times[[0, len(result.times) // 2, -1]] if len(result.times) > 2 else result.times
    fig, axes = plt.subplots(1, len(times), figsize=(4 * len(times), 3.5), squeeze=False)
    for ax, t in zip(axes[0], times, strict=True):
        for r in runs:
            x, dens = _slice(r.sample_points, r.snapshot_density[r.snapshot_index(t)])
            ax.plot(x, dens, label=r.solver)
        exact = runs[0].exact()
        if exact is not None:
            x, dens = _slice(runs[0].sample_points, exact(t, runs[0].sample_points))
            ax.plot(x, dens, "k:", label="exact")
        ax.set(title=f"t = {t:.3g}", xlabel="x₁ (slice through the grid centre)")
    axes[0][0].legend()
    paths.append(_save(fig, out_dir / "slices.png"))
    return paths


def _slice(points: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values along x₁ on the grid line nearest the centre in the other directions."""
    mask = np.ones(len(points), dtype=bool)
    for k in range(1, points.shape[1]):
        levels = np.unique(points[:, k])
        mid = levels[len(levels) // 2]
        mask &= points[:, k] == mid
    order = np.argsort(points[mask, 0])
    return points[mask, 0][order], values[mask][order]


def plot_convergence(
    params: np.ndarray, errors: dict[str, np.ndarray], xlabel: str, title: str, path: Path
) -> Path:
    """Log–log errors against the refinement parameter, with slopes 1 and 2 for reference."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, err in errors.items():
        ax.loglog(params, err, "o-", label=name)
    ref = max(np.nanmax(e) for e in errors.values())
    for slope, style in ((1, "k--"), (2, "k:")):
        ax.loglog(params, ref * (params / params[0]) ** slope, style, label=f"slope {slope}")
    ax.set(xlabel=xlabel, ylabel="error at T", title=title)
    ax.legend()
    return _save(fig, path)


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
