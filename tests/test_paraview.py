"""ParaView: the XDMF that runs write, and the picture ``wgf compare --paraview`` renders.

The rendering tests run the generated script under ``xvfb-run -a pvbatch`` (Debian's
ParaView renders through X only) and check the picture's pixels and the colour range the
script wrote against the runs' own data at the time shown.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import PVBATCH, pvbatch_read, read, run_case, wgf

XVFB_RUN = shutil.which("xvfb-run")
#: Tries of a render whose X server refused the connection.
XVFB_ATTEMPTS = 3
needs_pvbatch = pytest.mark.skipif(
    PVBATCH is None, reason="pvbatch not installed (Debian python3-paraview)"
)
needs_renderer = pytest.mark.skipif(
    PVBATCH is None or (XVFB_RUN is None and not os.environ.get("DISPLAY")),
    reason="rendering needs pvbatch (python3-paraview) and a display or xvfb-run (xvfb)",
)
#: The script's pane size (postprocess/pvbatch_compare.py), and a lone chart's.
PANE, CHART_ALONE = (520, 460), (760, 460)
#: tab10 blue and orange: the chart's first two curves.
BLUE, ORANGE = (0.12, 0.47, 0.71), (1.0, 0.5, 0.05)


def _no_display_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "DISPLAY"}


def _pvbatch(script: Path, *, render: bool) -> subprocess.CompletedProcess:
    """Run the script in pvbatch: under xvfb-run to render, else with no display at all."""
    env = dict(os.environ) if render and os.environ.get("DISPLAY") else _no_display_env()
    for attempt in range(XVFB_ATTEMPTS):
        cmd = [PVBATCH, script.name]
        if render and "DISPLAY" not in env:
            # -a looks for a free display from -n on: start from one of our own, so that
            # two test runs at once do not race for the same display, and ask for 24-bit
            # colour.
            start = str(100 + (os.getpid() + 97 * attempt) % 800)
            cmd = [XVFB_RUN, "-a", "-n", start, "-s", "-screen 0 1920x1080x24", *cmd]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=300, cwd=script.parent, env=env
        )
        # Xvfb sometimes is not accepting connections yet when xvfb-run starts the client
        # (seen on loaded CI machines): that is the X server's failure, not the script's.
        if proc.returncode == 0 or "bad X server connection" not in proc.stderr:
            break
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def _script(runs: list[Path], out: Path) -> Path:
    from wgf.postprocess.paraview import write_script

    with_solver = [read(path)["attrs"]["solver"] for path in runs]
    return write_script(runs, with_solver, out)


def _image(path: Path) -> np.ndarray:
    """The PNG as RGB floats in [0, 1]."""
    import matplotlib.image

    return matplotlib.image.imread(path)[..., :3]


def _near(image: np.ndarray, colour: tuple[float, float, float]) -> np.ndarray:
    return np.abs(image - np.array(colour)).max(axis=-1) < 0.15


def _check_range(summary: dict, runs: list[Path], fine_grid: bool = True) -> None:
    """The JSON's time is the runs' last snapshot and its top the runs' peak there.

    The peak is the largest density on the runs' sample grids (when ``fine_grid``: a
    coarse grid misses the top), and exactly the FE run's largest nodal value.
    """
    data = [read(path) for path in runs]
    t_last = min(float(d["snapshots/time"][-1]) for d in data)
    assert summary["time"] == pytest.approx(t_last, rel=1e-12)
    peak = max(float(d["snapshots/density"][-1].max()) for d in data)
    if fine_grid:
        assert summary["range"][1] == pytest.approx(peak, rel=0.03)
    # The colour range starts at 0 unless a run undershoots (FE: by round-off here).
    low = min(run["range"][0] for run in summary["runs"])
    assert summary["range"][0] == min(0.0, low) and low >= -1e-6 * peak
    for entry, d in zip(summary["runs"], data, strict=True):
        assert entry["time"] == pytest.approx(t_last, rel=1e-12)
        if "checkpoint/density" in d:  # FE: the nodal values (float32 in the XDMF)
            assert entry["range"][1] == pytest.approx(d["checkpoint/density"].max(), rel=1e-6)


@needs_pvbatch
def test_fe_xdmf_opens_in_pvbatch(tmp_path):
    s = run_case("porous_medium_2d", [], tmp_path)
    out = pvbatch_read(tmp_path / "porous_medium_2d_fem-implicit_fields.xdmf", tmp_path)
    n_times, t_last = out["TIMES"].split()
    assert int(n_times) == 6 and float(t_last) == pytest.approx(0.1)
    assert int(out["POINTS"]) == 33 * 33
    assert out["ARRAYS"] == "density"
    low, high = map(float, out["RANGE_density"].split())
    assert low >= 0.0
    # The last time step ParaView shows is the final state of the run.
    assert high == pytest.approx(read(s.path)["checkpoint/density"].max(), rel=1e-6)  # float32
    assert 0.5 < high < 0.7  # Barenblatt peak at t0 + T = 0.11 is 0.60


@needs_pvbatch
def test_compare_script_without_display_says_so_and_uses_relative_paths(tmp_path):
    grid = "output.sample_cells=[30, 30]"  # keeps the W2 computations of compare quick
    a = run_case("heat_2d", [grid], tmp_path / "a").path
    b = run_case("heat_2d", [grid, "solver.blob.particles=400"], tmp_path / "b", solver="blob")
    proc = wgf("compare", str(a), str(b.path), "--paraview", "--out", str(tmp_path / "cmp"))
    assert proc.returncode == 0, proc.stderr
    script = tmp_path / "cmp" / "compare_paraview.py"
    assert str(tmp_path) not in script.read_text()
    # The folders move together: the script still finds its runs.
    moved = tmp_path.parent / (tmp_path.name + "_moved")
    shutil.move(tmp_path, moved)
    run = _pvbatch(moved / "cmp" / "compare_paraview.py", render=False)
    assert "no display: run under xvfb-run -a pvbatch compare_paraview.py" in run.stdout
    assert not (moved / "cmp" / "compare_paraview.png").exists()
    assert len([line for line in run.stdout.splitlines() if line.startswith("RUN ")]) == 2
    summary = json.loads((moved / "cmp" / "compare_paraview.json").read_text())
    _check_range(summary, [moved / "a" / a.name, moved / "b" / b.path.name], fine_grid=False)
    # The blob run's density is ρ_ε at the particles, not the constant weight.
    blob = read(moved / "b" / b.path.name)
    assert 0.9 < summary["runs"][1]["range"][1] / blob["snapshots/density"][-1].max() < 1.001
    shutil.rmtree(moved)


@needs_renderer
def test_compare_picture_2d_fe_and_blob(tmp_path):
    runs = [
        run_case("porous_medium_2d", [], tmp_path).path,
        run_case("porous_medium_2d", ["solver.blob.particles=900"], tmp_path, solver="blob").path,
    ]
    script = _script(runs, tmp_path / "cmp")
    _pvbatch(script, render=True)
    image = _image(tmp_path / "cmp" / "compare_paraview.png")
    assert image.shape[:2] == (PANE[1], 2 * PANE[0])  # two equal panes side by side
    assert image.std() > 0.1  # a blank (one-colour) picture has 0
    assert np.all(image[:5, :5] > 0.95)  # white background, no data in the title band
    summary = json.loads((tmp_path / "cmp" / "compare_paraview.json").read_text())
    _check_range(summary, runs)
    # In each pane, the density near its peak takes the dark end of the shared map: a
    # range from t = 0 (higher peak) or particles coloured by their weight would not.
    saturation = image.max(axis=-1) - image.min(axis=-1)
    dark = (saturation > 0.15) & (image.mean(axis=-1) < 0.35)
    for k in range(2):
        assert dark[:, k * PANE[0] : (k + 1) * PANE[0]].sum() > 5000, k


@needs_renderer
def test_compare_picture_1d_is_a_line_chart_at_the_time_shown(tmp_path):
    runs = [
        run_case("porous_medium_1d", [], tmp_path).path,
        run_case("porous_medium_1d", [], tmp_path, solver="quantile-1d").path,
    ]
    script = _script(runs, tmp_path / "cmp")
    _pvbatch(script, render=True)
    image = _image(tmp_path / "cmp" / "compare_paraview.png")
    assert image.shape[:2] == (CHART_ALONE[1], CHART_ALONE[0])
    assert image.std() > 0.05
    summary = json.loads((tmp_path / "cmp" / "compare_paraview.json").read_text())
    _check_range(summary, runs)
    # quantile-1d's node density: the mean of w/Δ over the node's cells.
    q = read(runs[1])
    x, w = q["particles/positions"][-1][:, 0], q["particles/weights"]
    cell = w[1] / np.diff(x)
    assert summary["runs"][1]["range"][1] == pytest.approx(
        max(cell[0], cell[-1], (0.5 * (cell[1:] + cell[:-1])).max()), rel=1e-12
    )
    # Both curves are drawn, below the legend, across the support at t = 0.1 (about 80 %
    # of the width); at t = 0 the support is half as wide.
    below_legend = np.arange(image.shape[0])[:, None] > 0.3 * image.shape[0]
    for colour in (BLUE, ORANGE):
        columns = np.flatnonzero((_near(image, colour) & below_legend).any(axis=0))
        assert len(columns) and (columns[-1] - columns[0]) > 0.6 * image.shape[1], colour


def test_langevin_density_at_particles_is_its_kde():
    """The density ParaView colours langevin's particles by is its KDE (binned: to 0.5 %)."""
    from mpi4py import MPI

    from wgf.cases import load_case
    from wgf.solvers import get_solver, solver_tables
    from wgf.solvers.particles.kernels import density_at

    for name in ("heat_1d", "heat_2d"):
        case = load_case(name, ["solver.langevin.particles=4000"], solver_tables())
        solver = get_solver("langevin").load()(case, MPI.COMM_WORLD, case.solver_params("langevin"))
        fast = solver.density_at_particles()
        exact = density_at(solver.x, solver.x, solver.w, solver.bandwidth() ** 2)
        assert fast.shape == (solver.n,)
        assert np.max(np.abs(fast - exact)) < 5e-3 * exact.max(), name
