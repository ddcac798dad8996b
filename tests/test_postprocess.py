"""compare / converge / sweep and the W2 code."""

import json

import h5py
import numpy as np
import ot
import pytest

from tests.conftest import assert_user_error, read, run_case, wgf
from wgf.cases.closed_forms import w2_gaussians
from wgf.postprocess.eoc import fitted_order, parse_expectation, rates
from wgf.postprocess.w2 import w2, w2_quantile_1d


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
        f.attrs["schema"] = "something-else/9"
    for args, message in [
        ((str(a), str(b)), "different cases"),
        ((str(a), str(bogus)), "is not a wgf-results/1"),
        ((str(a), str(tmp_path / "nope.h5")), "does not exist"),
    ]:
        assert_user_error(wgf("compare", *args, "--out", str(tmp_path / "c")), message)
    assert wgf("compare", str(a), str(b), "--force", "--out", str(tmp_path / "c")).returncode == 0


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


def test_sweep_on_two_ranks_resumes_and_records_failures(tmp_path):
    out = tmp_path / "sw"
    args = [
        "sweep",
        "porous_medium_1d",
        "--grid",
        "time.tau=0.01,0.005",
        "--grid",
        "energy.m=2,0.5",
        "--ranks-per-run",
        "1",
        "--out",
        str(out),
    ]
    first = wgf(*args, ranks=2)
    assert first.returncode == 0, first.stderr
    status = {p.parent.name: json.loads(p.read_text()) for p in out.glob("*/status.json")}
    assert len(status) == 4
    failed = [s for s in status.values() if s["status"] == "failed"]
    assert len(failed) == 2 and all("energy.m" in s["message"] for s in failed)
    summary = (out / "summary.csv").read_text()
    assert summary.count("done") == 2 and summary.count("failed") == 2
    again = wgf(*args, ranks=2)
    assert again.returncode == 0
    assert again.stdout.count("done already, skipped") == 2
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
