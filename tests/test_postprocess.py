"""compare / converge / sweep and the W2 code."""

import json

import h5py
import numpy as np
import ot
import pytest

from tests.conftest import assert_user_error, read, run_case, wgf
from wgf.cases.closed_forms import w2_gaussians
from wgf.postprocess.eoc import fitted_order, parse_expectation, rates
from wgf.postprocess.w2 import normalise, w2, w2_dense_emd, w2_quantile_1d, w2_sparse_emd


def test_w2_emd_matches_the_gaussian_closed_form_within_sampling_error():
    rng = np.random.default_rng(7)
    m1, c1 = np.array([0.0, 0.0]), np.array([[1.0, 0.3], [0.3, 0.5]])
    m2, c2 = np.array([1.0, -0.5]), np.array([[0.4, 0.0], [0.0, 1.2]])
    exact = w2_gaussians(m1, c1, m2, c2)
    values = []
    for _ in range(5):
        x = rng.multivariate_normal(m1, c1, 2000)
        y = rng.multivariate_normal(m2, c2, 2000)
        values.append(w2(x, np.ones(2000), y, np.ones(2000))[0])
    # Empirical W2 is biased upward by the sampling noise, O(N^{-1/2}) here (d = 2).
    assert abs(np.mean(values) - exact) < 0.05 * exact
    assert np.std(values) < 0.03


def test_quantile_w2_equals_emd_in_1d():
    rng = np.random.default_rng(3)
    x, y = rng.normal(0, 1, (300, 1)), rng.gamma(2.0, 1.0, (250, 1))
    a, b = rng.random(300), rng.random(250)
    emd = np.sqrt(ot.emd2(a / a.sum(), b / b.sum(), ot.dist(x, y)))
    assert w2_quantile_1d(x, a, y, b) == pytest.approx(emd, abs=1e-10)


def _grid_cloud(shift: float, n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """A Gaussian bump sampled on an n² grid of [-2, 2]², every weight > 0 (as FE gives)."""
    h = 4.0 / n
    c = -2.0 + h * (np.arange(n) + 0.5)
    x = np.stack(np.meshgrid(c, c, indexing="ij"), axis=-1).reshape(-1, 2)
    a = np.exp(-np.sum((x - [shift, 0.0]) ** 2, axis=1) / 0.3) + 1e-12
    return x, a


@pytest.mark.parametrize(
    ("name", "clouds"),
    [
        # Two grid densities a fraction of a cell apart, with light tails everywhere: the
        # demo's situation (W2 below the grid spacing).
        ("grid vs grid", (*_grid_cloud(0.0), *_grid_cloud(0.03))),
        # Particles against a grid density.
        (
            "particles vs grid",
            (np.random.default_rng(5).normal(0.0, 0.4, (700, 2)), np.ones(700), *_grid_cloud(0.1)),
        ),
        # Far apart: the neighbour graph misses the plan; the duals add the pairs needed.
        (
            "far apart",
            (
                np.random.default_rng(6).normal(0.0, 0.3, (400, 2)),
                np.ones(400),
                np.random.default_rng(7).normal(1.5, 0.5, (500, 2)),
                np.random.default_rng(8).random(500),
            ),
        ),
    ],
)
def test_w2_agrees_with_dense_emd2_to_round_off(name, clouds):
    """The compare table states "exact to round-off"; this is that tolerance."""
    x, a, y, b = clouds
    value, method = w2(x, a, y, b)
    reference = w2_dense_emd(*normalise(x, a), *normalise(y, b))
    assert method == "emd"
    assert value == pytest.approx(reference, rel=1e-9), name
    # The sparse solver certified it (no fall-back to the dense one).
    sparse = w2_sparse_emd(*normalise(x, a), *normalise(y, b))
    assert sparse is not None and sparse[0] == pytest.approx(reference, rel=1e-9)


def test_eoc_helpers():
    p = np.array([0.1, 0.05, 0.025])
    e = 3.0 * p**1.5
    np.testing.assert_allclose(rates(p, e)[1:], 1.5)
    assert fitted_order(p, e) == pytest.approx(1.5)
    assert parse_expectation("1+-0.2") == (1.0, 0.2)
    assert parse_expectation("2±0.5") == (2.0, 0.5)


def test_compare_two_fe_runs(tmp_path):
    a = run_case("heat_1d", [], tmp_path / "a")
    b = run_case("heat_1d", ["time.tau=0.0025"], tmp_path / "b")
    proc = wgf("compare", str(a.path), str(b.path), "--out", str(tmp_path / "cmp"))
    assert proc.returncode == 0, proc.stderr
    assert "exact" in proc.stdout
    rows = (tmp_path / "cmp" / "compare.csv").read_text().splitlines()
    assert len(rows) == 1 + 6 * 3  # 6 common times × (2 runs vs exact + 1 pair)
    for png in ("energy.png", "errors.png", "slices.png"):
        assert (tmp_path / "cmp" / png).stat().st_size > 1000
    with h5py.File(tmp_path / "cmp" / "compare.h5") as f:
        last = f["time"][()] == f["time"][-1]
        against = f["against"][()][last]
        l1 = f["l1"][()][last][against == b"exact"]
    # The smaller τ is closer to the closed form, and both agree with the run's own error.
    assert l1[1] < l1[0]
    assert l1[0] == pytest.approx(read(a.path)["diagnostics/l1_error"][-1], rel=0.2)


def test_compare_refuses_bad_inputs(tmp_path):
    a = run_case("heat_1d", [], tmp_path / "a").path
    b = run_case("porous_medium_1d", [], tmp_path / "b").path
    bogus = tmp_path / "bogus.h5"
    with h5py.File(bogus, "w") as f:
        f.attrs["schema"] = "wgf-results/0"  # a results file, of a version we cannot read
    for args, message in [
        ((str(a), str(b)), "different cases"),
        ((str(a), str(bogus)), "is not a wgf-results/1"),
        ((str(a), str(tmp_path / "nope.h5")), "does not exist"),
    ]:
        assert_user_error(wgf("compare", *args, "--out", str(tmp_path / "c")), message)
    assert wgf("compare", str(a), str(b), "--force", "--out", str(tmp_path / "c")).returncode == 0


def test_compare_takes_the_readme_glob_and_skips_the_xdmf_heavy_data(tmp_path):
    out = tmp_path / "out"
    runs = [
        wgf("run", "heat_1d", "--solver", s, "--out", str(out)) for s in ("fem-implicit", "blob")
    ]
    assert all(p.returncode == 0 for p in runs), runs[0].stderr + runs[1].stderr
    # The run table says where each L1 error is measured.
    table = runs[0].stdout + runs[1].stdout
    assert "err on" in table and " mesh " in table and " grid " in table
    assert "degree-6 Gauss quadrature" in table and "nan" not in table
    files = sorted(out.glob("heat_1d_*.h5"))  # what `wgf compare out/heat_1d_*.h5` gets
    fields = [f for f in files if f.name.endswith("_fields.h5")]
    assert len(fields) == 2 and len(files) == 4
    proc = wgf("compare", *map(str, files), "--out", str(tmp_path / "cmp"))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert [line for line in lines if line.startswith("skipping")] == [
        f"skipping {f}: not a wgf results file (the heavy data of an XDMF?)" for f in fields
    ]
    assert sum(line.startswith("compare: snapshot ") for line in lines) == 6  # progress
    assert "L1 grid" in proc.stdout and "L1, L2 on the sample grid" in proc.stdout
    assert "W2: exact 1-D quantile formula" in proc.stdout
    assert len((tmp_path / "cmp" / "compare.csv").read_text().splitlines()) == 1 + 6 * 3
    # Only files that are not results files: one error line, exit 2.
    only = wgf("compare", *map(str, fields), "--out", str(tmp_path / "none"))
    assert_user_error(only, "none of the 2 files given is a wgf results file")
    assert not (tmp_path / "none").exists()


def test_tables_print_a_dash_where_there_is_no_value(tmp_path):
    run = wgf(
        "run", "heat_1d", "--solver", "blob", "--set", "exact.kind=none", "--out", str(tmp_path)
    )
    assert run.returncode == 0, run.stderr
    row = next(line for line in run.stdout.splitlines() if line.startswith("blob "))
    # L1, L2, err on and min rho do not exist: no closed form, particles.
    assert "nan" not in run.stdout and row.split()[3:6] == ["–", "–", "–"]
    assert row.split()[9] == "–"
    proc = wgf("compare", str(tmp_path / "heat_1d_blob.h5"), "--out", str(tmp_path / "cmp"))
    assert proc.returncode == 0, proc.stderr
    row = next(line for line in proc.stdout.splitlines() if line.startswith("blob "))
    assert "nan" not in proc.stdout and row.split()[2:5] == ["–", "–", "–"]
    assert "W2: none" in proc.stdout


def test_converge_prints_eoc_and_enforces_the_expected_order(tmp_path):
    ok = wgf(
        "converge",
        "porous_medium_1d",
        "--refine",
        "tau",
        "--levels",
        "3",
        "--set",
        "domain.cells=[1000]",
        "--set",
        "time.tau=0.01",
        "--expect-order",
        "1+-0.15",
        "--out",
        str(tmp_path / "ok"),
    )
    assert ok.returncode == 0, ok.stderr
    assert "fitted order" in ok.stdout
    with h5py.File(tmp_path / "ok" / "eoc.h5") as f:
        assert f["error/L1"].attrs["fitted_order"] == pytest.approx(1.0, abs=0.15)
    assert (tmp_path / "ok" / "eoc.png").is_file()
    bad = wgf(
        "converge",
        "porous_medium_1d",
        "--refine",
        "tau",
        "--levels",
        "2",
        "--expect-order",
        "3+-0.1",
        "--out",
        str(tmp_path / "bad"),
    )
    assert bad.returncode == 4 and "outside" in bad.stderr


def test_sweep_on_two_ranks_resumes_and_refuses_a_bad_point_before_running(tmp_path):
    out = tmp_path / "sw"
    args = [
        "sweep",
        "porous_medium_1d",
        "--grid",
        "time.tau=0.01,0.005",
        "--ranks-per-run",
        "1",
        "--out",
        str(out),
    ]
    # energy.m = 0.5 is invalid for the power law: refused before any point runs.
    bad = wgf(*args[:4], "--grid", "energy.m=2,0.5", *args[4:], ranks=2)
    assert_user_error(bad, "sweep point p001_time.tau=0.01-energy.m=0.5")
    assert not out.exists()
    first = wgf(*args, "--grid", "energy.m=2,3", ranks=2)
    assert first.returncode == 0, first.stderr
    status = {p.parent.name: json.loads(p.read_text()) for p in out.glob("*/status.json")}
    assert len(status) == 4 and all(s["status"] == "done" for s in status.values())
    summary = (out / "summary.csv").read_text()
    assert summary.count("done") == 4
    again = wgf(*args, "--grid", "energy.m=2,3", ranks=2)
    assert again.returncode == 0
    assert again.stdout.count("done already, skipped") == 4
    assert (out / "summary.csv").read_text() == summary


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--grid", "time.dt=0.1,0.2"], "unknown case key"),
        (["--grid", "time.tau="], "empty"),
        ([], "at least one --grid"),
        (["--grid", "time.tau=0.1", "--ranks-per-run", "3"], "does not divide"),
    ],
)
def test_sweep_bad_input(args, message, tmp_path):
    assert_user_error(
        wgf("sweep", "heat_1d", *args, "--out", str(tmp_path / "s"), ranks=2), message
    )
    assert not (tmp_path / "s").exists()
