"""Figures (matplotlib, Agg backend: no display needed).

``wgf compare`` writes three figures, each built by a function that returns the
matplotlib figure (so tests can read its axes) or None when it would be empty:

* :func:`energy_figure` — F(ρ(t)) on a linear axis, and the dissipation rate −dF/dt on a
  log axis.  F itself, not F − min F: a flow on ℝᵈ (heat, porous medium) has no
  minimiser, F decreases without bound, and "F − the lowest value seen" sends the run
  that ends lowest to zero at its last step.  The rate is the finite difference of the
  stored series, (F_{k+1} − F_k)/(t_{k+1} − t_k) at the midpoint of the step; for a
  gradient flow it is the Fisher-type information ∫ρ|∇δF/δρ|² ≥ 0, so only its positive
  values are drawn (a step where the energy rose is a gap in the curve, not a crash of the
  log scale).
* :func:`error_figure` — errors against the closed form: the run's relative L1 error (the
  run's own Gauss quadrature, ``/diagnostics/l1_error``) and W2 to the exact density at the
  common snapshot times; a panel without data is left out, and without a closed form
  there is no figure.
* :func:`moments_figure` — the second moment ∫|x|²ρ (about the origin, the diagnostic
  ``second_moment``) of every run against t, with the case's exact law dashed where it
  has one (:meth:`~wgf.cases.Case.second_moment_law`: a closed form, or Keller–Segel's
  virial law, drawn while it is positive — a supercritical run blows up before).  On a
  circle or sphere, where ∫|x|²ρ is the mass, the cluster order parameters of the
  snapshots (:func:`order_figure`).
* :func:`slices_figure` — the density along x₁ through the centre of the sample grid at
  three times, with the closed form dotted when there is one.

Every axis and every panel is labelled; legend entries are :func:`run_labels`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np

from wgf.postprocess.clouds import cloud
from wgf.postprocess.labels import run_labels
from wgf.postprocess.order import DEGREES, order_parameter

if TYPE_CHECKING:
    from wgf.postprocess.compare import Comparison
    from wgf.postprocess.results import Results

log = logging.getLogger(__name__)

#: Figure resolution: the three compare figures stay well under 200 kB at this size.
DPI = 100


def plot_comparison(result: Comparison, out_dir: Path) -> list[Path]:
    """Write energy.png, errors.png, slices.png and moments.png; return the paths.

    A figure that would have no data (no energy series, no closed form) is not written;
    a one-line note on the ``wgf`` logger says so.
    """
    labels = run_labels(result.runs)
    figures = {
        "energy.png": (energy_figure(result.runs, labels), "no run records the energy"),
        "errors.png": (
            error_figure(result, labels),
            f"case '{result.runs[0].case_name}' has no closed-form solution",
        ),
        "slices.png": (slices_figure(result, labels), "no snapshot"),
        "moments.png": (moments_figure(result.runs, labels), "no run records second_moment"),
    }
    paths = []
    for name, (fig, why) in figures.items():
        if fig is None:
            log.info("compare: %s not written: %s", name, why)
            continue
        paths.append(save(fig, out_dir / name))
    return paths


def dissipation_rate(time: np.ndarray, energy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """−dF/dt by forward differences, at the step midpoints.

    Args:
        time: The time levels t_k (increasing).
        energy: F at those levels.

    Returns:
        (t_{k+½}, −(F_{k+1} − F_k)/(t_{k+1} − t_k)); steps of zero length are dropped.
    """
    dt = np.diff(time)
    keep = dt > 0
    rate = -np.diff(energy)[keep] / dt[keep]
    return 0.5 * (time[1:] + time[:-1])[keep], rate


def energy_figure(runs: list[Results], labels: list[str]) -> plt.Figure | None:
    """F(t) (linear) and −dF/dt (log, where positive) of every run that records F."""
    with_energy = [(r, lab) for r, lab in zip(runs, labels, strict=True) if _has(r, "energy")]
    if not with_energy:
        return None
    fig, (ax_f, ax_rate) = plt.subplots(1, 2, figsize=(10, 4))
    for run, label in with_energy:
        energy = run.diagnostics["energy"]
        (line,) = ax_f.plot(run.time, energy, label=label)
        t_mid, rate = dissipation_rate(run.time, energy)
        ax_rate.semilogy(t_mid, np.where(rate > 0, rate, np.nan), color=line.get_color())
    ax_f.set(xlabel="t", ylabel="F(ρ(t))", title="free energy")
    ax_rate.set(
        xlabel="t",
        ylabel="−dF/dt (finite differences, where > 0)",
        title="dissipation rate",
    )
    ax_f.legend()
    fig.suptitle(f"{runs[0].case_name}: energy")
    return fig


def error_figure(result: Comparison, labels: list[str]) -> plt.Figure | None:
    """Relative L1 error and W2 to the closed form against t; None without a closed form."""
    l1 = {
        label: (run.time, _positive(run.diagnostics["l1_error"]))
        for run, label in zip(result.runs, labels, strict=True)
        if _has(run, "l1_error")
    }
    w2 = {}
    for label in labels:
        rows = [
            row
            for row in result.rows
            if row["against"] == "exact" and row["run"] == label and row.get("w2") is not None
        ]
        if rows:
            w2[label] = (
                np.array([row["time"] for row in rows]),
                _positive(np.array([row["w2"] for row in rows])),
            )
    panels = [
        (series, ylabel, title)
        for series, ylabel, title in (
            (l1, "‖ρ_h − ρ‖₁ / ‖ρ‖₁ (Gauss quadrature)", "relative L1 error"),
            (w2, "W2(ρ_h, ρ)", "W2 distance to the closed form"),
        )
        if any(np.isfinite(v).any() for _, v in series.values())
    ]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    colours = {label: f"C{i}" for i, label in enumerate(labels)}
    for ax, (series, ylabel, title) in zip(axes[0], panels, strict=True):
        for label, (t, values) in series.items():
            ax.semilogy(t, values, "o-" if len(t) < 30 else "-", color=colours[label], label=label)
        ax.set(xlabel="t", ylabel=ylabel, title=title)
        ax.legend()
    fig.suptitle(f"{result.runs[0].case_name}: errors against the exact solution")
    return fig


def second_moment_curve(run: Results, times: np.ndarray) -> np.ndarray | None:
    """The exact M₂ of the run's case at ``times`` (NaN where the law is negative), or None."""
    law = run.case().second_moment_law()
    if law is None:
        return None
    values = np.array([law(float(t)) for t in times])
    return np.where(values >= 0.0, values, np.nan)


def moments_figure(runs: list[Results], labels: list[str]) -> plt.Figure | None:
    """∫|x|²ρ against t for every run that records it, and the exact law (dashed).

    On a circle or sphere ∫|x|²ρ is the mass: the order parameters instead
    (:func:`order_figure`).
    """
    if runs[0].case().on_sphere:
        return order_figure(runs, labels)
    with_m2 = [(r, lab) for r, lab in zip(runs, labels, strict=True) if _has(r, "second_moment")]
    if not with_m2:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for run, label in with_m2:
        t = run.time
        ax.plot(t, run.diagnostics["second_moment"], "o-" if len(t) < 30 else "-", label=label)
    t_end = max(float(run.time[-1]) for run, _ in with_m2)
    t_law = np.linspace(0.0, t_end, 201)
    exact = second_moment_curve(with_m2[0][0], t_law)
    if exact is not None:
        ax.plot(t_law, exact, "k--", label="exact law")
    ax.set(xlabel="t", ylabel="∫|x|²ρ dx", title="second moment (about the origin)")
    ax.legend()
    fig.suptitle(f"{runs[0].case_name}: second moment")
    return fig


def order_figure(runs: list[Results], labels: list[str]) -> plt.Figure | None:
    """The order parameters s_k, k = 1, 2, 3, of every run's snapshots against t.

    s_k (:mod:`~wgf.postprocess.order`) is 0 for the uniform density and 1 for one point
    cluster (k point clusters spread evenly on the circle: s_k = 1, lower degrees 0).
    Particle runs are measured at their particles, FE runs on the sample grid.
    """
    with_snapshots = [(r, lab) for r, lab in zip(runs, labels, strict=True) if len(r.snapshot_time)]
    if not with_snapshots:
        return None
    fig, axes = plt.subplots(1, len(DEGREES), figsize=(4 * len(DEGREES), 3.6), squeeze=False)
    for run, label in with_snapshots:
        t = run.snapshot_time
        clouds = [cloud(run, i) for i in range(len(t))]
        for ax, k in zip(axes[0], DEGREES, strict=True):
            values = [order_parameter(x, w, k) for x, w in clouds]
            ax.plot(t, values, "o-" if len(t) < 30 else "-", label=label)
    for ax, k in zip(axes[0], DEGREES, strict=True):
        ax.set(xlabel="t", ylabel=f"s_{k}", title=f"degree {k}", ylim=(-0.02, 1.02))
    axes[0][0].legend()
    fig.suptitle(
        f"{runs[0].case_name}: order parameters s_k = (∬G_k(⟨x,y⟩)dρdρ)^½/M"
        " (0 uniform, 1 one point cluster)"
    )
    return fig


def slices_figure(result: Comparison, labels: list[str]) -> plt.Figure | None:
    """Density slices along x₁ at the first, middle and last common snapshot time."""
    times = result.times
    if not len(times):
        return None
    if len(times) > 2:
        times = times[[0, len(times) // 2, -1]]
    runs = result.runs
    fig, axes = plt.subplots(1, len(times), figsize=(4 * len(times), 3.6), squeeze=False)
    exact = runs[0].exact()
    on_sphere = runs[0].case().on_sphere
    cut = _ring if on_sphere else _slice
    if on_sphere:
        xlabel = "angle θ" if runs[0].dim == 2 else "azimuth φ on the ring next to the equator"
    elif runs[0].dim == 1:
        xlabel = "x"
    else:
        xlabel = "x₁ (" + _slice_position(runs[0].sample_points) + ")"
    for ax, t in zip(axes[0], times, strict=True):
        curves = [
            (label, *cut(run.sample_points, run.snapshot_density[run.snapshot_index(t)]))
            for run, label in zip(runs, labels, strict=True)
        ]
        for label, x, dens in curves:
            ax.plot(x, dens, label=label)
        if exact is not None:
            x, dens = _slice(runs[0].sample_points, exact(t, runs[0].sample_points))
            ax.plot(x, dens, "k:", label="exact")
            curves.append(("exact", x, dens))
        if not on_sphere:  # a circle is seen whole
            ax.set_xlim(*_support([(x, dens) for _, x, dens in curves]))
        ax.set(title=f"t = {t:.3g}", xlabel=xlabel, ylabel="density ρ")
    axes[0][0].legend()
    fig.suptitle(f"{runs[0].case_name}: density slices")
    return fig


def _support(curves: list[tuple[np.ndarray, np.ndarray]]) -> tuple[float, float]:
    """An x-range around where any curve exceeds 10⁻³ of the largest value.

    The boxes are chosen large enough that the density is negligible at their edges
    (DESIGN §5), so plotting the whole box leaves most of the panel flat at zero.
    """
    top = max(float(np.max(dens, initial=0.0)) for _, dens in curves)
    lo = min(float(x[0]) for x, _ in curves)
    hi = max(float(x[-1]) for x, _ in curves)
    if top <= 0:
        return lo, hi
    inside = np.concatenate([x[dens > 1e-3 * top] for x, dens in curves])
    margin = 0.1 * (inside.max() - inside.min()) + 1e-12
    return max(lo, inside.min() - margin), min(hi, inside.max() + margin)


def _has(run: Results, name: str) -> bool:
    """Whether the run has a diagnostic series ``name`` with at least one finite value."""
    values = run.diagnostics.get(name)
    return values is not None and len(values) > 0 and bool(np.isfinite(values).any())


def _positive(values: np.ndarray) -> np.ndarray:
    """Values for a log axis: non-positive entries (an exact start, e = 0) become gaps."""
    values = np.asarray(values, dtype=float)
    return np.where(values > 0, values, np.nan)


def _slice_position(points: np.ndarray) -> str:
    """Where the slice of :func:`_slice` lies, e.g. ``"x₂ = 0.02"``."""
    subscripts = "₁₂₃"
    where = []
    for k in range(1, points.shape[1]):
        levels = np.unique(points[:, k])
        where.append(f"x{subscripts[k]} = {levels[len(levels) // 2]:.3g}")
    return ", ".join(where)


def _ring(points: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values against the angle on a circle, or on a sphere's ring next to the equator.

    The ring is the upper (z > 0) row of the sphere's sample grid nearest the equator,
    the latitude that sees the most area.
    """
    mask = np.ones(len(points), dtype=bool)
    if points.shape[1] > 2:
        z = points[:, 2]
        upper = z[z > 0.0]
        mask = np.isclose(z, upper.min()) if len(upper) else mask
    angle = np.arctan2(points[mask, 1], points[mask, 0])
    order = np.argsort(angle)
    return angle[order], values[mask][order]


def _slice(points: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values along x₁ on the grid line nearest the centre in the other directions."""
    mask = np.ones(len(points), dtype=bool)
    for k in range(1, points.shape[1]):
        levels = np.unique(points[:, k])
        mid = levels[len(levels) // 2]
        mask &= points[:, k] == mid
    order = np.argsort(points[mask, 0])
    return points[mask, 0][order], values[mask][order]


def convergence_figure(
    params: np.ndarray,
    errors: dict[str, np.ndarray],
    xlabel: str,
    ylabel: str,
    title: str,
) -> plt.Figure:
    """Log–log errors against the refinement parameter, with slopes 1 and 2 for reference.

    Levels whose error is not positive and finite (the reference level of a
    self-convergence study, which is compared with itself) are left out.  The slope lines
    pass through the last plotted point of the first error, where the asymptotic regime
    is closest.
    """
    fig, ax = plt.subplots(figsize=(5.5, 4))
    anchor = None
    # Distinct markers and dashes: L1 and L2 often coincide, and one must not hide the other.
    styles = ["o-", "s--", "^-.", "v:"]
    for i, (name, err) in enumerate(errors.items()):
        keep = np.isfinite(err) & (err > 0)
        if not keep.any():
            continue
        ax.loglog(params[keep], err[keep], styles[i % len(styles)], mfc="none", label=name)
        if anchor is None:
            anchor = (params[keep][-1], err[keep][-1])
            span = params[keep]
    if anchor is not None:
        for slope, style in ((1, "k--"), (2, "k:")):
            ax.loglog(
                span, anchor[1] * (span / anchor[0]) ** slope, style, lw=1, label=f"slope {slope}"
            )
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    # One labelled tick per level: a ladder often spans less than a decade, where the
    # log axis would label one tick or run its minor labels into each other.
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xticks(params, [f"{p:.3g}" for p in params])
    ax.legend()
    return fig


def plot_convergence(
    params: np.ndarray,
    errors: dict[str, np.ndarray],
    xlabel: str,
    title: str,
    path: Path,
    ylabel: str = "relative error at T",
) -> Path:
    """Write :func:`convergence_figure` to ``path``."""
    return save(convergence_figure(params, errors, xlabel, ylabel, title), path)


def save(fig: plt.Figure, path: Path) -> Path:
    """Lay out, write (PNG at :data:`DPI`) and close a figure."""
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path
