"""Supercritical Keller–Segel: every solver stops at the blow-up with exit 3, before T*."""

import math
import re

import numpy as np
import pytest

from tests.conftest import read, wgf
from wgf.cases import load_case
from wgf.solvers import solver_tables
from wgf.solvers.acceptance import check_resolved

CASE = "keller_segel_2d_supercritical"


def test_check_resolved_names_the_time_and_the_peak():
    resolves = "the mesh resolves ({limit}, one cell)"
    assert check_resolved({"peak_density": 5.0}, 0.1, resolves) is None  # no limit declared
    assert check_resolved({"peak_density": 5.0, "resolved_density": 5.0}, 0.1, resolves) is None
    line = check_resolved({"peak_density": 7.25, "resolved_density": 5.0}, 0.0125, resolves)
    assert line == (
        "blow-up: peak density 7.25 at t = 0.0125 exceeds what the mesh resolves (5, one cell)"
    )


def _blowup_bound(case) -> float:
    """T* = 2πM₂(0)/(M(χM − 8π)) with M₂(0) = 2σ² of the Gaussian start about 0."""
    mass = case.section("initial")["mass"]
    chi = case.section("energy")["interaction"]["strength"]
    m2 = mass * np.trace(np.array(case.section("initial")["cov"]))
    return 2 * math.pi * m2 / (mass * (chi * mass - 8 * math.pi))


@pytest.mark.parametrize(
    ("solver", "sets"),
    [
        ("fem-jko", ["domain.cells=[16,16]"]),
        ("fem-implicit", ["domain.cells=[16,16]"]),  # semi-implicit W∗ρⁿ; stops at t = 0.016
        ("blob", []),  # the default 1600 particles: the start is resolved (K = 2)
        ("langevin", ["solver.langevin.particles=400"]),
    ],
)
def test_supercritical_keller_segel_stops_at_the_blow_up(solver, sets, tmp_path):
    case = load_case(CASE, sets, solver_tables())
    tau, t_star = case.section("time")["tau"], _blowup_bound(case)
    assert t_star == pytest.approx(0.04)  # M₂(0) = 0.08, χM = 12π
    args = [a for s in sets for a in ("--set", s)]
    p = wgf("run", CASE, "--solver", solver, "--out", str(tmp_path), *args)
    assert p.returncode == 3, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "blow-up: peak density" in lines[0]
    assert "cannot help" in lines[0] and "rejected" not in p.stdout  # no retries with τ/2
    found = re.search(r"blow-up: peak density (\S+) at t = (\S+) exceeds what the (\w+)", p.stderr)
    peak, t_stop = float(found[1]), float(found[2])
    assert found[3] == ("mesh" if solver.startswith("fem") else "particles")
    assert 0 < t_stop <= t_star + tau
    # The completed steps are kept: every level before the failed one, all resolved.
    r = read(tmp_path / f"{CASE}_{solver}.h5")
    d = {k.split("/")[1]: v for k, v in r.items() if k.startswith("diagnostics/")}
    assert r["time"][-1] == pytest.approx(t_stop - tau)
    assert np.all(d["peak_density"] <= d["resolved_density"])
    assert peak > d["resolved_density"][-1] and peak > d["peak_density"][-1]
    assert np.all(np.isfinite(d["energy"])) and np.abs(d["mass"] - 1.0).max() < 1e-10
    # The second moment falls while it lasts (d/dt M₂ = -2 for the smooth solution).
    assert np.all(np.diff(d["second_moment"]) < 0.0)
