"""Small diffusion: every flow solver on the Ornstein–Uhlenbeck cases at D = 0.05, 0.02, 0.01.

For ``fokker_planck_ou_1d`` and ``fokker_planck_ou_2d`` (∂_t ρ = D Δρ + div(ρ x), Gaussian
closed form) and each D, every flow solver that can run the case runs at the shipped
resolution and one refinement (FE: twice the cells per direction; particles: 4× the
particles).  The table gives the relative L1 error at T, or the exit status, and whether
the run logged a warning (fem-implicit's cell-Péclet warning, for one).  A row marked
``SILENT`` finished with exit status 0, an L1 error above ``--bad`` and no warning: the
failure mode issue 12 asks to remove.  ``crash`` is an exception that is neither
error of the one-line contract (a traceback from ``wgf run``).

    .venv/bin/python benchmarks/small_diffusion.py                 # T = 0.5 (the cases')
    .venv/bin/python benchmarks/small_diffusion.py --t-end 0.2 --solver fem-implicit

Runs go through the Python API (:mod:`wgf.api`) in this process, one after the other.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import tempfile
import time
from dataclasses import dataclass

from wgf import api
from wgf.cases.errors import SolverError, UserError
from wgf.solvers import SOLVERS

CASES = ("fokker_planck_ou_1d", "fokker_planck_ou_2d")
DIFFUSIVITIES = (0.05, 0.02, 0.01)


class _Warnings(logging.Handler):
    """Collects the WARNING records of the ``wgf`` loggers during one run."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@dataclass
class Row:
    """One run: what it was and how it ended."""

    case: str
    D: float
    solver: str
    resolution: str
    l1: float | None
    outcome: str
    warned: bool
    wall: float


def resolutions(case: api.Case, solver: str) -> list[tuple[str, dict]]:
    """The shipped resolution and one refinement, as labels and ``--set`` overrides."""
    params = case.solver_params(solver)
    if "particles" in params:
        n = params["particles"] or _default_particles(solver, case.dim)
        return [(f"N={m}", {f"solver.{solver}.particles": m}) for m in (n, 4 * n)]
    cells = list(case.section("domain")["cells"])
    return [("x".join(map(str, c)), {"domain.cells": c}) for c in (cells, [2 * k for k in cells])]


def _default_particles(solver: str, dim: int) -> int:
    """The particle count a solver takes when the case does not set one."""
    default = importlib.import_module(SOLVERS[solver].module).DEFAULT_PARTICLES
    return int(default[dim] if isinstance(default, dict) else default)


def runnable(case: api.Case) -> list[str]:
    """The flow solvers that accept the case (their own capability checks)."""
    names = []
    for info in SOLVERS.values():
        if info.kind != "flow":
            continue
        try:
            info.check(case)
        except UserError:
            continue
        names.append(info.name)
    return names


def run_one(case: api.Case, solver: str, out: str, bad: float) -> tuple[float | None, str, bool]:
    """Run and classify: (L1 at T or None, outcome, warned)."""
    handler = _Warnings()
    logger = logging.getLogger("wgf")
    logger.addHandler(handler)
    try:
        res = api.run(case, solver, out=out)
        l1 = float(res.diagnostics["l1_error"][-1])
        outcome = "ok"
    except SolverError as err:
        l1, outcome = None, f"exit 3{'' if err.tau_helps else ' (τ no cure)'}"
    except UserError as err:
        l1, outcome = None, f"exit 2: {err}"[:60]
    except Exception as err:  # a traceback is an outcome worth a row too
        l1, outcome = None, f"crash: {type(err).__name__}"
    finally:
        logger.removeHandler(handler)
    warned = bool(handler.messages)
    if outcome == "ok" and l1 is not None and l1 > bad and not warned:
        outcome = "SILENT"
    return l1, outcome, warned


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--t-end", type=float, default=None, help="T (default: the case's)")
    parser.add_argument("--solver", action="append", default=None, help="only these solvers")
    parser.add_argument("--case", action="append", default=None, help="only these cases")
    parser.add_argument("--D", type=float, action="append", default=None, help="diffusivities")
    parser.add_argument("--bad", type=float, default=0.1, help="L1 that needs a warning")
    args = parser.parse_args()
    logging.getLogger("wgf").setLevel(logging.WARNING)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as out:
        for name in args.case or CASES:
            for D in args.D or DIFFUSIVITIES:
                base = {"energy.diffusivity": D, "output.snapshots": 1}
                if args.t_end is not None:
                    base["time.t_end"] = args.t_end
                case = api.load(name, base)
                for solver in runnable(case):
                    if args.solver and solver not in args.solver:
                        continue
                    for label, sets in resolutions(case, solver):
                        start = time.perf_counter()
                        l1, outcome, warned = run_one(
                            api.load(case.config, sets), solver, out, args.bad
                        )
                        row = Row(name, D, solver, label, l1, outcome, warned, 0.0)
                        row.wall = time.perf_counter() - start
                        rows.append(row)
                        print(_line(row), flush=True)
    print()
    print(table(rows))


def _line(r: Row) -> str:
    l1 = "–" if r.l1 is None else f"{r.l1:.3g}"
    return (
        f"| {r.case} | {r.D:g} | {r.solver} | {r.resolution} | {l1} | {r.outcome} | "
        f"{'yes' if r.warned else 'no'} | {r.wall:.1f} |"
    )


def table(rows: list[Row]) -> str:
    """The Markdown table of every run."""
    head = "| case | D | solver | resolution | L1 at T | outcome | warning | wall [s] |"
    rule = "|---|---|---|---|---|---|---|---|"
    return "\n".join([head, rule, *(_line(r) for r in rows)])


if __name__ == "__main__":
    main()
