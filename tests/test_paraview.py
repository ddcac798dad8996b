"""The XDMF that FE runs write opens in ParaView (pvbatch, Xdmf3ReaderS)."""

import subprocess

import pytest

from tests.conftest import PVBATCH, pvbatch_read, read, run_case


@pytest.mark.skipif(PVBATCH is None, reason="pvbatch not installed (Debian python3-paraview)")
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


@pytest.mark.skipif(PVBATCH is None, reason="pvbatch not installed (Debian python3-paraview)")
def test_compare_paraview_script_loads_every_run(tmp_path):
    import os

    from tests.conftest import wgf

    grid = "output.sample_cells=[30, 30]"  # keeps the W2 computations of compare quick
    a = run_case("heat_2d", [grid], tmp_path / "a").path
    b = run_case("heat_2d", [grid, "domain.cell_type=hypercube"], tmp_path / "b").path
    proc = wgf("compare", str(a), str(b), "--paraview", "--out", str(tmp_path / "cmp"))
    assert proc.returncode == 0, proc.stderr
    script = tmp_path / "cmp" / "compare_paraview.py"
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    run = subprocess.run(
        [PVBATCH, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env
    )
    assert run.returncode == 0, run.stderr
    lines = [line.split() for line in run.stdout.splitlines() if line.startswith("RUN")]
    assert len(lines) == 2
    for line in lines:
        assert line[line.index("points") + 1] == str(33 * 33)
        assert line[line.index("times") + 1] == "6"
        assert line[line.index("arrays") + 1] == "density"
