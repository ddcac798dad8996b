"""The figures of ``wgf compare``: what they plot, their labels, legends and empty panels.

The runs are synthetic :class:`Results` of heat_1d (the closed form plus a perturbation),
so each test knows exactly what every curve must hold.
"""

from __future__ import annotations

import copy
import logging
import warnings
from pathlib import Path

import numpy as np
import pytest

from wgf.cases import load_case
from wgf.postprocess.compare import compare, write_outputs
from wgf.postprocess.labels import run_labels
from wgf.postprocess.plots import (
    dissipation_rate,
    energy_figure,
    error_figure,
    moments_figure,
    plot_comparison,
    slices_figure,
)
from wgf.postprocess.results import Results
from wgf.solvers import solver_tables

TIME = np.linspace(0.0, 0.1, 11)
SNAPSHOTS = TIME[::5]


def synthetic(
    path: str, solver: str, exact: bool = True, shift: float = 0.0, rise_at: int | None = None
) -> Results:
    """A heat_1d run: the closed form shifted by ``shift``; F decreasing but at ``rise_at``."""
    case = load_case("heat_1d", [], solver_tables())
    config = copy.deepcopy(case.config)
    if not exact:
        config["exact"]["kind"] = "none"
    rho = case.exact_solution()
    points = case.sample_points(np.array([-3.0]), np.array([3.0]))
    energy = 1.0 / (1.0 + 10.0 * TIME) + shift
    if rise_at is not None:
        energy[rise_at] = energy[rise_at - 1] + 0.01
    diagnostics = {"energy": energy, "mass": np.ones_like(TIME)}
    if exact:
        diagnostics["l1_error"] = np.concatenate([[0.0], 1e-3 * (1.0 + TIME[1:]) + shift])
    return Results(
        path=Path(path),
        attrs={"solver": solver, "case": "heat_1d", "dim": 1},
        config=config,
        time=TIME.copy(),
        diagnostics=diagnostics,
        snapshot_time=SNAPSHOTS.copy(),
        snapshot_density=np.array([rho(t, points - shift) for t in SNAPSHOTS]),
        sample_points=points,
    )


def _axes(fig):
    return list(fig.axes)


def _legend_texts(ax) -> list[str]:
    legend = ax.get_legend()
    return [] if legend is None else [t.get_text() for t in legend.get_texts()]


def test_run_labels_are_unique_names():
    runs = [
        synthetic("a/heat_1d_blob.h5", "blob"),
        synthetic("b/heat_1d_blob.h5", "blob"),
        synthetic("a/heat_1d_fem-implicit.h5", "fem-implicit"),
    ]
    assert run_labels(runs) == ["blob (a/heat_1d_blob)", "blob (b/heat_1d_blob)", "fem-implicit"]
    # Runs in one directory differ by their stem; one file given twice, by its position.
    assert run_labels([synthetic("x/one.h5", "blob"), synthetic("x/two.h5", "blob")]) == [
        "blob (one)",
        "blob (two)",
    ]
    twice = [synthetic("x/one.h5", "blob"), synthetic("x/one.h5", "blob")]
    assert run_labels(twice) == ["blob (x/one[0])", "blob (x/one[1])"]


def test_energy_panel_plots_F_and_the_positive_dissipation_rate():
    runs = [
        synthetic("a/r.h5", "fem-implicit"),
        synthetic("b/r.h5", "fem-jko", shift=-5.0, rise_at=4),
    ]
    fig = energy_figure(runs, run_labels(runs))
    ax_f, ax_rate = _axes(fig)
    # F itself on a linear axis (no F − min F: the second run sits at F ≈ −4.5).
    assert ax_f.get_yscale() == "linear" and ax_rate.get_yscale() == "log"
    for line, run in zip(ax_f.get_lines(), runs, strict=True):
        np.testing.assert_array_equal(line.get_ydata(), run.diagnostics["energy"])
        np.testing.assert_array_equal(line.get_xdata(), run.time)
    for line, run in zip(ax_rate.get_lines(), runs, strict=True):
        _, rate = dissipation_rate(run.time, run.diagnostics["energy"])
        np.testing.assert_allclose(line.get_xdata(), 0.5 * (TIME[1:] + TIME[:-1]))
        # −dF/dt of F = 1/(1+10t): 10/((1+10t_k)(1+10t_{k+1})) by the forward difference.
        y = np.asarray(line.get_ydata(), dtype=float)
        shown = np.isfinite(y)
        np.testing.assert_allclose(y[shown], rate[shown])
        assert np.all(rate[~shown] <= 0)
    # Where the energy rose (into step 4) and fell back (out of it): gaps, not log(negative).
    gaps = ~np.isfinite(np.asarray(ax_rate.get_lines()[1].get_ydata(), dtype=float))
    assert gaps.tolist() == [k == 3 for k in range(10)]
    np.testing.assert_allclose(
        ax_rate.get_lines()[0].get_ydata()[0], 10.0 / (1.0 * 1.1), rtol=1e-12
    )
    assert _legend_texts(ax_f) == ["fem-implicit", "fem-jko"]


def test_every_axis_is_labelled_and_legends_are_unique():
    runs = [
        synthetic("a/heat_1d_blob.h5", "blob"),
        synthetic("b/heat_1d_blob.h5", "blob", shift=0.05),
        synthetic("c/heat_1d_fem-implicit.h5", "fem-implicit", shift=0.1),
    ]
    result = compare(runs)
    labels = run_labels(runs)
    figures = [
        energy_figure(runs, labels),
        error_figure(result, labels),
        slices_figure(result, labels),
    ]
    for fig in figures:
        assert fig._suptitle is not None and fig._suptitle.get_text()
        for ax in _axes(fig):
            assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
            texts = _legend_texts(ax)
            assert len(texts) == len(set(texts))
    # Two panels of errors: the run's L1 series and W2 at the common snapshot times, one
    # curve per run with the values of compare's rows.
    l1_ax, w2_ax = _axes(figures[1])
    assert _legend_texts(l1_ax) == labels and _legend_texts(w2_ax) == labels
    rows = [r for r in result.rows if r["against"] == "exact" and r["run"] == labels[2]]
    np.testing.assert_allclose(w2_ax.get_lines()[2].get_ydata(), [r["w2"] for r in rows])
    # The shifted run is 0.1 off in W2 at every time; the others match the closed form.
    np.testing.assert_allclose(w2_ax.get_lines()[2].get_ydata(), 0.1, rtol=1e-2)
    # Slices: three times; the x-range is cropped to where the density lives, inside the box.
    slices = _axes(figures[2])
    assert [ax.get_title() for ax in slices] == ["t = 0", "t = 0.05", "t = 0.1"]
    assert _legend_texts(slices[0]) == [*labels, "exact"]
    lo, hi = slices[0].get_xlim()
    assert -3.0 < lo < -0.6 and 0.7 < hi < 3.0


def test_no_closed_form_means_no_errors_figure_and_no_warning(tmp_path, caplog):
    runs = [
        synthetic("a/heat_1d_blob.h5", "blob", exact=False),
        synthetic("b/heat_1d_blob.h5", "blob", exact=False, shift=0.05),
    ]
    result = compare(runs)
    assert error_figure(result, run_labels(runs)) is None
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.INFO):
        warnings.simplefilter("always")
        paths = plot_comparison(result, tmp_path)
    assert [str(w.message) for w in caught] == []
    assert sorted(p.name for p in paths) == ["energy.png", "slices.png"]
    assert not (tmp_path / "errors.png").exists()
    notes = [r.getMessage() for r in caplog.records if "errors.png" in r.getMessage()]
    assert notes == ["compare: errors.png not written: case 'heat_1d' has no closed-form solution"]
    for path in paths:
        assert 10_000 < path.stat().st_size < 200_000


def test_runs_without_energy_give_no_energy_figure():
    run = synthetic("a/r.h5", "blob")
    del run.diagnostics["energy"]
    assert energy_figure([run], ["blob"]) is None


@pytest.mark.parametrize("values", [[1.0, 0.5, 0.25], [0.0, 0.0, 0.0]])
def test_dissipation_rate_is_minus_the_forward_difference(values):
    t_mid, rate = dissipation_rate(np.array([0.0, 0.1, 0.3]), np.array(values))
    np.testing.assert_allclose(t_mid, [0.05, 0.2])
    np.testing.assert_allclose(rate, -np.diff(values) / [0.1, 0.2])


def test_moments_figure_draws_every_run_and_the_exact_law(tmp_path):
    # heat_1d: M₂(t) = σ₀² + 2Dt = 0.05 + 2t (the box [-3, 3] cuts 2e-8 off at T); one run
    # on the law, one 0.01 above.
    runs = [synthetic("a/heat_1d_blob.h5", "blob"), synthetic("b/heat_1d_fem.h5", "fem-jko")]
    for run, off in zip(runs, (0.0, 0.01), strict=True):
        run.diagnostics["second_moment"] = 0.05 + 2.0 * TIME + off
    labels = run_labels(runs)
    fig = moments_figure(runs, labels)
    (ax,) = _axes(fig)
    assert _legend_texts(ax) == [*labels, "exact law"]
    lines = ax.get_lines()
    np.testing.assert_allclose(lines[1].get_ydata(), 0.06 + 2.0 * TIME)
    np.testing.assert_allclose(lines[2].get_ydata(), 0.05 + 2.0 * lines[2].get_xdata(), rtol=1e-6)
    assert ax.get_xlabel() == "t" and "|x|²" in ax.get_ylabel()
    # compare writes it, and one ParaView-readable table per run with the same numbers.
    paths = write_outputs(compare(runs), tmp_path)
    assert (tmp_path / "moments.png") in paths
    table = np.genfromtxt(tmp_path / "moments_fem-jko.csv", delimiter=",", names=True)
    assert table.dtype.names == ("time", "second_moment", "energy", "second_moment_exact")
    gap = table["second_moment"] - table["second_moment_exact"]
    np.testing.assert_allclose(gap, 0.01, atol=1e-7)
    # Without the series there is nothing to draw.
    for run in runs:
        del run.diagnostics["second_moment"]
    assert moments_figure(runs, labels) is None
