"""The Python API (wgf.api) and the scripts in examples/.

Every ``examples/*.py`` is run here, so a new example must take ``--out DIR`` and
``--quick`` (a run of seconds) and end by printing a table whose rows are a label
followed by numbers.
"""

import importlib.util
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import MPIEXEC, ROOT, read

EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


def _run_example(path, out, ranks=0):
    cmd = [sys.executable, str(path), "--out", str(out), "--quick"]
    if ranks:
        cmd = [str(MPIEXEC), "-n", str(ranks), sys.executable, "-m", "mpi4py", *cmd[1:]]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)


def _rows(stdout):
    """The table rows of an example's output: {label: [numbers]}."""
    rows = {}
    for line in stdout.splitlines():
        label, *values = line.split() or [""]
        try:
            rows[label] = [float(v) for v in values]
        except ValueError:
            continue
    return {k: v for k, v in rows.items() if v}


def _example(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs_and_prints_a_table(path, tmp_path):
    proc = _run_example(path, tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = _rows(proc.stdout)
    assert rows, proc.stdout
    assert all(math.isfinite(v) for values in rows.values() for v in values), rows


def test_compare_solvers_on_2_ranks_prints_what_the_cli_computes(tmp_path):
    """The example under mpiexec -n 2 prints the CLI's numbers (same case, 2 ranks)."""
    example = _example("compare_solvers")
    proc = _run_example(ROOT / "examples" / "compare_solvers.py", tmp_path / "api", ranks=2)
    assert proc.returncode == 0, proc.stderr
    rows = _rows(proc.stdout)
    assert sorted(rows) == sorted(example.SOLVERS), proc.stdout
    sets = [a for k, v in example.QUICK.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    solvers = [a for s in example.SOLVERS for a in ("--solver", s)]
    cmd = [str(MPIEXEC), "-n", "2", sys.executable, "-m", "mpi4py", "-m", "wgf", "run"]
    cli = subprocess.run(
        [*cmd, example.CASE, *solvers, *sets, "--out", str(tmp_path / "cli")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
    )
    assert cli.returncode == 0, cli.stderr
    for solver, (t, l1, energy) in rows.items():
        h5 = read(tmp_path / "cli" / f"{example.CASE}_{solver}.h5")
        assert h5["attrs"]["mpi_size"] == 2
        assert t == pytest.approx(example.QUICK["time.t_end"], rel=1e-12)
        # The table prints 11 significant digits.
        assert l1 == pytest.approx(h5["diagnostics/l1_error"][-1], rel=1e-10), solver
        assert energy == pytest.approx(h5["diagnostics/energy"][-1], rel=1e-11), solver
        assert 1e-3 < l1 < 0.05, solver  # a real error against the exact solution


def test_load_takes_a_name_a_dict_and_both_override_forms(tmp_path):
    from wgf import api

    by_name = api.load("heat_1d", {"time.tau": 0.01, "domain.cells": [50]})
    by_strings = api.load("heat_1d", ["time.tau=0.01", "domain.cells=[50]"])
    assert by_name.config == by_strings.config
    assert by_name.section("time")["tau"] == 0.01 and by_name.config["domain"]["cells"] == [50]
    as_dict = {  # heat_1d, written out as a notebook would
        "name": "heat_1d",
        "energy": {"internal": "entropy", "diffusivity": 1.0},
        "domain": {"shape": "box", "lower": [-3.0], "upper": [3.0], "cells": [50]},
        "initial": {"kind": "gaussian", "mean": [0.0], "cov": [[0.05]]},
        "time": {"t_end": 0.02, "tau": 0.01},
        "exact": {"kind": "gaussian"},
    }
    from_dict = api.load(as_dict)
    assert from_dict.section("time")["t_end"] == 0.02 and from_dict.name == "heat_1d"
    assert from_dict.config["output"]["snapshots"] == 11  # the schema default filled in
    res = api.run(from_dict, "quantile-1d", out=tmp_path)
    np.testing.assert_allclose(res.time, [0.0, 0.01, 0.02], rtol=0, atol=1e-15)
    assert res.solver == "quantile-1d" and res.case_name == "heat_1d"
    assert res.config["time"]["t_end"] == 0.02
    assert res.positions.shape == (len(res.snapshot_time), 400, 1)
    assert res.weights.shape == (400,)
    assert res.snapshot_density.shape == (len(res.snapshot_time), len(res.sample_points))
    assert set(res.diagnostics) >= {"energy", "mass", "l1_error", "iterations", "wall_time"}
    assert all(len(v) == 3 for v in res.diagnostics.values())
    again = api.read(tmp_path / "heat_1d_quantile-1d.h5")
    np.testing.assert_array_equal(again.diagnostics["energy"], res.diagnostics["energy"])


def test_api_errors_are_user_errors(tmp_path):
    from wgf import api
    from wgf.cases.errors import UserError

    with pytest.raises(UserError, match="unknown case key"):
        api.load("heat_1d", {"time.dt": 0.1})
    case = api.load("heat_1d")
    with pytest.raises(UserError, match="did you mean"):
        api.run(case, "quantile1d", out=tmp_path)
    (tmp_path / "not.h5").write_text("not hdf5")
    with pytest.raises(UserError, match="not a readable HDF5 file"):
        api.read(tmp_path / "not.h5")


def test_importing_wgf_imports_nothing_heavy():
    code = (
        "import sys, wgf; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'numpy', 'mpi4py', 'h5py', 'dolfinx', 'petsc4py', 'sympy', 'scipy'}))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr


@pytest.mark.mpi
def test_api_on_2_ranks_matches_the_cli(shared_tmp):
    """In one 2-rank process: api.run and the CLI's main() give the same diagnostics."""
    from mpi4py import MPI

    from wgf import api
    from wgf.cli import main

    comm = MPI.COMM_WORLD
    assert comm.size == 2, "run this under mpiexec -n 2"
    example = _example("compare_solvers")
    case = api.load(example.CASE, example.QUICK)
    sets = [a for k, v in example.QUICK.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    for solver in example.SOLVERS:
        res = api.run(case, solver, comm=comm, out=shared_tmp / "api")
        argv = ["run", example.CASE, "--solver", solver, *sets, "--out", str(shared_tmp / "cli")]
        assert main(argv) == 0
        # Every rank holds the same results.
        finals = comm.allgather(res.diagnostics["l1_error"][-1])
        assert finals[0] == finals[1]
        if comm.rank == 0:
            cli = api.read(shared_tmp / "cli" / f"{example.CASE}_{solver}.h5")
            assert cli.attrs["mpi_size"] == 2 and res.attrs["mpi_size"] == 2
            np.testing.assert_allclose(res.time, cli.time, rtol=0, atol=1e-14)
            for key in ("l1_error", "l2_error", "energy", "mass"):
                np.testing.assert_allclose(
                    res.diagnostics[key], cli.diagnostics[key], rtol=0, atol=1e-10, err_msg=key
                )
            assert 1e-3 < res.diagnostics["l1_error"][-1] < 0.05
        comm.Barrier()


def test_a_loaded_case_can_be_changed_through_its_config():
    from wgf import api

    case = api.load("porous_quartic_2d")
    changed = api.load(case.config, {"time.tau": 0.05, "domain.cells": [16, 16]})
    assert changed.section("time")["tau"] == 0.05
    assert changed.section("domain")["cells"] == [16, 16]
    assert changed.config["energy"] == case.config["energy"]
    assert changed.potential_expression().text == case.potential_expression().text
