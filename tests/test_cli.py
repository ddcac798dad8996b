"""The command line: listing verbs, bad input (exit 2, one line, nothing written) on 1 and
2 ranks, solver failure (exit 3, completed steps kept), PETSc options."""

import csv
import json

import h5py
import numpy as np
import pytest

from tests.conftest import assert_user_error, read, wgf

BAD_INPUT = {
    "missing case file": (["run", "no_such_case.toml"], "not found"),
    "unknown key": (["run", "{bad_key}"], "did you mean 'internal'"),
    "toml parse": (["run", "{bad_toml}"], "TOML does not parse"),
    "wrong type": (["run", "heat_2d", "--set", "time.tau=[1]"], "expected a number"),
    "negative tau": (["run", "heat_2d", "--set", "time.tau=-0.1"], "time.tau' must be > 0"),
    "zero t_end": (["run", "heat_2d", "--set", "time.t_end=0"], "time.t_end' must be > 0"),
    "m <= 1": (["run", "porous_medium_2d", "--set", "energy.m=1"], "energy.m' must be > 1"),
    "A not spd": (
        ["run", "fokker_planck_ou_2d", "--set", "energy.potential.A=[[1.0, 0.0], [0.0, -2.0]]"],
        "not positive semidefinite",
    ),
    "dimension mismatch": (["run", "heat_2d", "--set", "initial.mean=[0.0]"], "dimension mismatch"),
    "zero mass": (["run", "heat_2d", "--set", "initial.mass=0"], "positive mass"),
    "density outside the domain": (
        ["run", "heat_2d", "--set", "initial.mean=[50.0, 50.0]"],
        "no mass on the mesh",
    ),
    "non-finite density": (["run", "heat_2d", "--set", "initial.mass=1e308"], "non-finite values"),
    "missing mesh": (
        [
            "run",
            "heat_2d",
            "--set",
            "domain.shape=file",
            "--set",
            "domain.path=/nonexistent/mesh.msh",
        ],
        "does not exist",
    ),
    "unreadable mesh": (
        ["run", "heat_2d", "--set", "domain.shape=file", "--set", "domain.path={garbage_mesh}"],
        "cannot be read",
    ),
    "unknown solver": (["run", "heat_2d", "--solver", "fem-implict"], "did you mean"),
    "--set unknown key": (["run", "heat_2d", "--set", "time.dt=0.1"], "unknown case key"),
    # A solver of the other kind (flow vs transport), in each verb that runs a case.
    "run: flow solver, transport case": (
        ["run", "ot_shapes_1d", "--solver", "fem-implicit"],
        "fem-implicit is a gradient-flow solver, but case 'ot_shapes_1d' has a [target]",
    ),
    "run: transport solver, flow case": (
        ["run", "heat_1d", "--solver", "fem-bb"],
        "fem-bb is a transport solver and needs a [target]",
    ),
    "converge: flow solver, transport case": (
        ["converge", "ot_shapes_1d", "--solver", "blob", "--refine", "particles"],
        "blob is a gradient-flow solver",
    ),
    "converge: transport solver, flow case": (
        ["converge", "heat_1d", "--solver", "fem-bb", "--refine", "h"],
        "fem-bb is a transport solver",
    ),
    "converge: transport solver, --refine tau": (
        ["converge", "ot_shapes_1d", "--solver", "fem-bb", "--refine", "tau"],
        "use --refine h",
    ),
    "sweep: flow solver, transport case": (
        ["sweep", "ot_shapes_1d", "--solver", "fem-jko", "--grid", "domain.cells=[16],[32]"],
        "fem-jko is a gradient-flow solver",
    ),
    "sweep: transport solver, flow case": (
        ["sweep", "heat_1d", "--solver", "fem-bb", "--grid", "solver.fem-bb.time_cells=4,8"],
        "fem-bb is a transport solver",
    ),
}


@pytest.fixture
def inputs(tmp_path):
    bad_key = tmp_path / "bad_key.toml"
    bad_key.write_text('name = "x"\n[energy]\ninternall = "power"\n')
    bad_toml = tmp_path / "bad_toml.toml"
    bad_toml.write_text('name = "x"\n[energy\n')
    garbage = tmp_path / "garbage.msh"
    garbage.write_text("this is not a mesh\n")
    return {"bad_key": bad_key, "bad_toml": bad_toml, "garbage_mesh": garbage}


def _check_bad_input(args, message, inputs, tmp_path, ranks):
    out = tmp_path / "out"
    args = [a.format(**inputs) for a in args] + ["--out", str(out)]
    assert_user_error(wgf(*args, ranks=ranks), message)
    assert not out.exists(), "bad input must not leave output behind"


@pytest.mark.parametrize("name", list(BAD_INPUT))
def test_bad_input_serial(name, inputs, tmp_path):
    _check_bad_input(*BAD_INPUT[name], inputs, tmp_path, ranks=0)


@pytest.mark.parametrize(
    "name",
    [
        "unknown key",
        "negative tau",
        "missing mesh",
        "unreadable mesh",
        "non-finite density",
        "unknown solver",
        "run: flow solver, transport case",
        "sweep: transport solver, flow case",
    ],
)
def test_bad_input_two_ranks(name, inputs, tmp_path):
    _check_bad_input(*BAD_INPUT[name], inputs, tmp_path, ranks=2)


def test_resume_from_another_case_is_refused(tmp_path):
    out = str(tmp_path)
    assert wgf("run", "heat_1d", "--out", out).returncode == 0
    before = read(tmp_path / "heat_1d_fem-implicit.h5")
    proc = wgf("run", "heat_1d", "--out", out, "--resume", "--set", "energy.diffusivity=2.0")
    assert_user_error(proc, "different case")
    after = read(tmp_path / "heat_1d_fem-implicit.h5")
    np.testing.assert_array_equal(before["time"], after["time"])


def test_listing_verbs_and_help():
    from wgf.cases.reference import render
    from wgf.solvers import SOLVERS, solver_tables

    cases = wgf("cases")
    assert cases.returncode == 0 and "porous_medium_2d" in cases.stdout
    solvers = wgf("solvers")
    assert solvers.returncode == 0
    # Each solver, its capabilities (from the registry, not prose) and its parameters.
    for info in SOLVERS.values():
        assert f"supports: {info.capabilities.describe()}" in solvers.stdout
        assert all(f"[solver.{info.name}] {key} = " in solvers.stdout for key in info.parameters)
    assert "langevin" in solvers.stdout and "U: entropy, none;" in solvers.stdout
    assert "supports: transport ([initial] -> [target]); 1/2-D; domain box" in solvers.stdout
    keys = wgf("keys")
    assert keys.returncode == 0 and keys.stdout == render(solver_tables())
    help_ = wgf("run", "--help")
    assert help_.returncode == 0 and "--resume" in help_.stdout and "PETSc" in help_.stdout


def test_petsc_options_reach_snes(tmp_path):
    proc = wgf(
        "run",
        "heat_1d",
        "--out",
        str(tmp_path),
        "--set",
        "time.t_end=0.01",
        "-fem_implicit_snes_monitor",
        "-fem_implicit_ksp_type",
        "gmres",
        "-fem_implicit_pc_type",
        "jacobi",
        "-fem_implicit_ksp_rtol",
        "1e-12",
    )
    assert proc.returncode == 0, proc.stderr
    assert "SNES Function norm" in proc.stdout


def test_fieldsplit_for_fem_implicits_one_field_systems_is_refused(tmp_path):
    # The (ρ, μ) fieldsplit of earlier versions: its systems are now reduced to ρ.
    out = tmp_path / "out"
    args = ["run", "porous_medium_2d", "--out", str(out), "-fem_implicit_pc_type", "fieldsplit"]
    assert_user_error(wgf(*args), "use -fem_implicit_pc_type gamg")
    assert not out.exists()


def test_solver_failure_keeps_completed_steps_and_resumes(tmp_path):
    out = str(tmp_path)
    # One Newton iteration cannot solve a porous-medium step: the run must stop after
    # halving twice, with status 3, a message naming the step, and a readable file.
    proc = wgf(
        "run",
        "porous_medium_1d",
        "--solver",
        "fem-implicit",
        "--out",
        out,
        "--set",
        "solver.fem-implicit.max_it=1",
    )
    assert proc.returncode == 3, proc.stderr
    assert "step 1 (t = 0" in proc.stderr and "--resume" in proc.stderr
    assert proc.stdout.count("rejected (SNES did not converge") == 2  # τ, τ/2; τ/4 stops
    kept = read(tmp_path / "porous_medium_1d_fem-implicit.h5")
    assert len(kept["time"]) == 1 and kept["checkpoint/density"].size > 0
    proc = wgf("run", "porous_medium_1d", "--solver", "fem-implicit", "--out", out, "--resume")
    assert proc.returncode == 0, proc.stderr
    done = read(tmp_path / "porous_medium_1d_fem-implicit.h5")
    assert done["time"][-1] == pytest.approx(0.1)
    assert np.all(np.diff(done["time"]) > 0)


def test_sweep_of_a_transport_case_solves_each_point(tmp_path):
    out = tmp_path / "sweep"
    proc = wgf(
        "sweep",
        "ot_shapes_1d",
        "--solver",
        "fem-bb",
        "--grid",
        "solver.fem-bb.time_cells=4,8",
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    assert "W2 rel err" in proc.stdout and "ALG2 its" in proc.stdout
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert [r["status"] for r in rows] == ["done", "done"]
    for row in rows:
        path = next((out / row["point"]).glob("*_fem-bb.h5"))
        with h5py.File(path, "r") as f:
            w2, exact = float(f["ot/w2"][()]), float(f["ot/w2"].attrs["w2_exact"])
            iterations = len(f["time"])
        assert float(row["w2"]) == pytest.approx(w2, rel=1e-12)
        assert float(row["w2_error"]) == pytest.approx(abs(w2 - exact) / exact, rel=1e-9)
        assert float(row["w2_error"]) < 1e-3  # the 1-D W2 ≈ 0.3005 to 3 digits
        assert int(row["iterations"]) == iterations
    # More time cells, a smaller error (measured 4.4e-4 → 8.7e-5).
    assert float(rows[1]["w2_error"]) < float(rows[0]["w2_error"]) / 2


def test_converge_of_a_transport_case_refines_space_and_time(tmp_path):
    out = tmp_path / "conv"
    proc = wgf(
        "converge",
        "ot_shapes_1d",
        "--solver",
        "fem-bb",
        "--refine",
        "h",
        "--levels",
        "2",
        "--set",
        "domain.cells=[32]",
        "--set",
        "solver.fem-bb.time_cells=8",
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    assert "relative error of W2" in proc.stdout and "cells=[64] nt=16" in proc.stdout
    with h5py.File(out / "eoc.h5", "r") as f:
        errors = f["error/W2"][()]
    for level, err in enumerate(errors):
        with h5py.File(out / f"level{level}" / "ot_shapes_1d_fem-bb.h5", "r") as f:
            w2, exact = float(f["ot/w2"][()]), float(f["ot/w2"].attrs["w2_exact"])
            config = json.loads(f.attrs["config"])
        assert config["solver"]["fem-bb"]["time_cells"] == 8 * 2**level
        assert config["domain"]["cells"] == [32 * 2**level]
        assert err == pytest.approx(abs(w2 - exact) / exact, rel=1e-9)
    assert errors[1] < 2e-5  # 64 cells × 16 time cells: 7.7e-6 measured


def test_solver_all_goes_on_after_a_failing_solver(tmp_path):
    # fem-implicit cannot do a porous-medium step in one Newton iteration (exit 3); the
    # solvers after it must still run, and the table must show every one with its status.
    proc = wgf(
        "run",
        "porous_medium_1d",
        "--solver",
        "all",
        "--out",
        str(tmp_path),
        "--quiet",
        "--set",
        "time.t_end=0.02",
        "--set",
        "solver.fem-implicit.max_it=1",
    )
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.count("wgf: error: fem-implicit: step 1") == 1
    rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines() if line}
    assert rows["fem-implicit"][-2:] == ["exit", "3"]
    assert rows["fem-implicit"][1:3] == ["0", "0"]  # no completed step, t = 0
    for name in ("fem-jko", "blob", "quantile-1d"):
        assert rows[name][-1] == "ok" and rows[name][1] == "4", rows[name]
        assert (tmp_path / f"porous_medium_1d_{name}.h5").is_file()
    assert "fem-implicit: exit 3: fem-implicit: step 1" in proc.stdout


@pytest.mark.parametrize(
    ("ranks", "option", "reason", "written"),
    [
        # read by the solver's constructor, before the results file is opened
        (0, ["-fem_jko_pc_type", "bogus"], "Unable to find requested PC type bogus", False),
        # read at the first solve by the power law's split, with the initial state written
        (0, ["-fem_jko_ksp_rtol", "abc"], "Input string abc has no numeric value", True),
        # on 2 ranks by each rank's Schwarz block (a hang if one rank did not raise)
        (
            2,
            ["-fem_jko_fieldsplit_support_sub_pc_factor_mat_solver_type", "bogus"],
            "Could not locate solver type bogus",
            True,
        ),
    ],
)
def test_a_petsc_option_value_petsc_refuses_is_bad_input(tmp_path, ranks, option, reason, written):
    # Before, PETSc's error came out as a traceback and exit 1 (MPI_Abort on 2 ranks).
    args = ["run", "porous_medium_2d", "--solver", "fem-jko", "--out", str(tmp_path)]
    proc = wgf(*args, "--set", "domain.cells=[16,16]", *option, ranks=ranks, timeout=120)
    assert_user_error(proc, f"PETSc refused an option: {reason}")
    results = tmp_path / "porous_medium_2d_fem-jko.h5"
    assert results.exists() == written
    if written:  # readable, with the initial state
        with h5py.File(results, "r") as f:
            assert f["diagnostics/mass"][0] == pytest.approx(1.0)


def test_a_krylov_pc_other_than_gamg_leaves_no_unused_option(tmp_path):
    # fem-implicit sets GAMG's reuse of its prolongators by default; with ASM that option
    # went unused, and PETSc warned about it at exit.
    proc = wgf(
        "run",
        "porous_medium_2d",
        "--solver",
        "fem-implicit",
        "--out",
        str(tmp_path),
        "--set",
        "domain.cells=[16,16]",
        "--set",
        "time.t_end=0.01",
        "-fem_implicit_pc_type",
        "asm",
    )
    assert proc.returncode == 0, proc.stderr
    assert "not used" not in proc.stdout + proc.stderr
