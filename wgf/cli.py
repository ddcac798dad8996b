"""The ``wgf`` command line (DESIGN §7).

Exit status: 0 success, 2 bad input (one line on stderr, nothing written), 3 a solver
did not converge (completed steps kept; ``--resume`` continues), 4 ``converge
--expect-order`` not met, 130 Ctrl-C (stopped after a completed step).

PETSc options (single dash, e.g. ``-fem_implicit_snes_monitor``) may follow the wgf
options; they are handed to ``petsc4py.init`` before DOLFINx is imported.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path


def one_blas_thread_per_rank() -> None:
    """Under ``mpiexec -n k`` (k > 1), default OpenMP/OpenBLAS to one thread per rank.

    Each rank would otherwise start a thread pool as wide as the machine, and the ranks'
    pools fight for the cores (fem-jko steps took twice as long on 2 ranks with them).  It
    has to happen before NumPy loads its BLAS, hence before this module imports
    anything that loads NumPy; explicit settings win.
    """
    import os

    if int(os.environ.get("PMI_SIZE", os.environ.get("OMPI_COMM_WORLD_SIZE", "1"))) > 1:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ.setdefault(var, "1")


one_blas_thread_per_rank()

from wgf.cases.errors import SolverError, UserError  # noqa: E402 - after the thread settings

EPILOG = """\
exit status: 0 success; 2 bad input (case file, option, mesh, --resume file);
3 a solver did not converge (completed steps are kept; continue with --resume;
with several solvers the others still run, and the status is the worst one);
4 `wgf converge --expect-order` was not met; 130 Ctrl-C (the run stopped after a
completed step; continue with --resume).

PETSc options go after the wgf options, with the solver's prefix, e.g.
  wgf run heat_2d -fem_implicit_snes_monitor -fem_implicit_ksp_type cg -fem_implicit_pc_type gamg
Run in parallel with:  mpiexec -n 2 python -m mpi4py -m wgf run CASE
"""


def split_petsc_options(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Separate PETSc options (``-name [value]``) from wgf arguments (``--name``)."""
    ours: list[str] = []
    petsc: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if (
            arg.startswith("-")
            and not arg.startswith("--")
            and arg not in ("-h",)
            and len(arg) > 1
            and not _is_number(arg)
        ):
            petsc.append(arg)
            if i + 1 < len(argv) and (not argv[i + 1].startswith("-") or _is_number(argv[i + 1])):
                petsc.append(argv[i + 1])
                i += 1
        else:
            ours.append(arg)
        i += 1
    return ours, petsc


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def add_quiet(parser: argparse.ArgumentParser) -> None:
    """The ``--quiet`` option of a verb that runs cases."""
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="no progress lines or notes (warnings, errors and the final table remain)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``wgf``."""
    parser = argparse.ArgumentParser(
        prog="wgf",
        description="Wasserstein gradient flows: FE and particle solvers of one case.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True

    run = sub.add_parser(
        "run",
        help="run a case with one or more solvers",
        description="Run CASE (a .toml path or a shipped case name) and write "
        "OUT/<case>_<solver>.h5 (+ .xdmf for FE solvers).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("case", help="case file or shipped case name (see `wgf cases`)")
    run.add_argument(
        "--solver",
        action="append",
        default=None,
        metavar="NAME",
        help="solver to run (repeatable), or 'all' (default: all that support "
        "the case); see `wgf solvers`",
    )
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="overrides",
        help="override a case key, e.g. --set time.tau=0.005",
    )
    run.add_argument(
        "--out",
        type=Path,
        default=Path("out"),
        metavar="DIR",
        help="output directory (default: ./out)",
    )
    run.add_argument(
        "--resume", action="store_true", help="continue an interrupted run from its results file"
    )
    add_quiet(run)

    cmp_ = sub.add_parser(
        "compare",
        help="compare runs of one case: errors, W2, energy curves",
        description="Compare results files of one case (any solvers) at their common "
        "snapshot times: errors against the closed form, L1/L2 and W2 between "
        "runs; writes compare.csv, compare.h5 and PNG figures into --out.",
    )
    cmp_.add_argument("runs", nargs="+", metavar="RUN.h5", help="results files")
    cmp_.add_argument("--out", type=Path, default=Path("out/compare"), metavar="DIR")
    cmp_.add_argument("--force", action="store_true", help="compare runs of different cases")
    cmp_.add_argument(
        "--paraview",
        action="store_true",
        help="also write compare_paraview.py: the runs side by side in ParaView "
        "(xvfb-run -a pvbatch compare_paraview.py renders compare_paraview.png)",
    )

    conv = sub.add_parser(
        "converge",
        help="run a refinement ladder and print the EOC table",
        description="Refine tau, the mesh (h) or the number of particles level by level, "
        "run each level (in parallel under mpiexec) and report the L1, L2 and "
        "W2 errors at T with their EOC; writes eoc.csv, eoc.h5, eoc.png.  With a "
        "transport solver (fem-bb) only --refine h applies (space and time cells "
        "together) and the error is that of the W2 distance against the exact one.",
        epilog="exit status 4: --expect-order was given and the fitted order (L1; W2 for a "
        "transport solver) is outside it.",
    )
    conv.add_argument("case", help="case file or shipped case name")
    conv.add_argument("--refine", choices=("tau", "h", "particles"), required=True)
    conv.add_argument("--levels", type=int, default=3, help="number of levels (default 3)")
    conv.add_argument("--factor", type=float, default=2.0, help="refinement factor (2)")
    conv.add_argument("--solver", default="fem-implicit", metavar="NAME")
    conv.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides")
    conv.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="default out/converge/<case>_<solver>_<refine>",
    )
    conv.add_argument(
        "--reference",
        choices=("exact", "finest"),
        default="exact",
        help="errors against the closed form (default) or, for a case without one, "
        "against the finest level (self-convergence; needs --levels >= 3)",
    )
    conv.add_argument(
        "--tau-with-h",
        type=float,
        default=0.0,
        metavar="P",
        help="with --refine h: also divide tau by factor**P per level (P = 2: tau ∝ h², "
        "so a first-order time error does not hide a second-order space error)",
    )
    conv.add_argument(
        "--expect-order",
        metavar="P+-TOL",
        help="fail (status 4) unless the fitted L1 (transport: W2) order is in P±TOL",
    )
    add_quiet(conv)

    swp = sub.add_parser(
        "sweep",
        help="run a grid of parameter values (under mpiexec)",
        description="Run CASE at every combination of the --grid values; under "
        "mpiexec -n P the ranks form P/K groups (K = --ranks-per-run) that share "
        "the points.  Re-running skips finished points and resumes interrupted "
        "ones; failed points are recorded, not fatal.",
    )
    swp.add_argument("case", help="case file or shipped case name")
    swp.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="a case key and its values (repeatable)",
    )
    swp.add_argument("--ranks-per-run", type=int, default=1, metavar="K")
    swp.add_argument("--solver", default="fem-implicit", metavar="NAME")
    swp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides")
    swp.add_argument(
        "--out", type=Path, default=None, metavar="DIR", help="default out/sweep/<case>_<solver>"
    )
    add_quiet(swp)

    add_sample(sub)

    sub.add_parser("cases", help="list the shipped cases")
    sub.add_parser(
        "keys",
        help="print the case-file reference (Markdown: every key, its default and help)",
    )
    sub.add_parser("solvers", help="list the solvers and what each supports")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args_in, petsc_args = split_petsc_options(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(args_in)
    try:
        if args.verb == "cases":
            return _cases()
        if args.verb == "solvers":
            return _solvers()
        if args.verb == "keys":
            return _keys()
        import dolfinx_solver  # noqa: F401 - loads MPI before petsc4py and dolfinx

        import petsc4py

        petsc4py.init([sys.argv[0], *petsc_args])
        from mpi4py import MPI

        configure_logging(MPI.COMM_WORLD.rank, quiet=getattr(args, "quiet", False))
        verbs = {
            "run": _run,
            "compare": _compare,
            "converge": _converge,
            "sweep": _sweep,
            "sample": _sample,
        }
        return verbs[args.verb](args)
    except (UserError, SolverError) as err:
        _report(err)
        return err.status
    except KeyboardInterrupt as err:  # wgf.run.Interrupted says where; a bare Ctrl-C does not
        _report(err, prefix="wgf: ")
        return INTERRUPTED
    except Exception as err:
        reason = _refused_petsc_option(err, petsc_args)
        if reason is None:
            raise
        _report(UserError(f"PETSc refused an option: {reason}"))
        return UserError.status


def _refused_petsc_option(err: Exception, petsc_args: Sequence[str]) -> str | None:
    """PETSc's reason if ``err`` is it refusing a value the user gave, else None.

    Every rank reads the same options, so every rank raises the same error.
    """
    import os

    if "petsc4py.PETSc" not in sys.modules or not (petsc_args or os.environ.get("PETSC_OPTIONS")):
        return None
    from wgf.solvers.fem.petsc_options import refused_option

    return refused_option(err)


def configure_logging(rank: int, quiet: bool = False) -> None:
    """Print the solvers' log records: rank 0 from INFO up, the other ranks WARNING up.

    Solvers log under ``wgf.solvers.…`` (see :mod:`wgf.solvers.base`) and need not ask
    which rank they are on: every rank computes the same notes, rank 0 prints them, as
    plain lines on stdout like the drivers' own progress lines.  A warning is printed on
    any rank, since it may concern that rank's part of the mesh.  ``quiet`` (``--quiet``)
    raises rank 0 to WARNING too and turns the drivers' progress output off
    (:func:`wgf.progress.set_quiet`).  Calling this again only resets the levels (the
    handler is installed once).
    """
    from wgf.progress import set_quiet

    set_quiet(quiet)
    logger = logging.getLogger("wgf")
    logger.setLevel(logging.INFO if rank == 0 and not quiet else logging.WARNING)
    logger.propagate = False  # the root logger's configuration is the user's
    if not any(isinstance(h, _StdoutHandler) for h in logger.handlers):
        handler = _StdoutHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)


class _StdoutHandler(logging.StreamHandler):
    """Writes to the current ``sys.stdout`` (which tests and notebooks replace).

    A progress bar being drawn on the line is ended first, so the record gets a line.
    """

    def emit(self, record: logging.LogRecord) -> None:
        from wgf.progress import clear_bar

        clear_bar()
        self.stream = sys.stdout
        super().emit(record)


#: Exit status after Ctrl-C: 128 + SIGINT, as a shell reports a process the signal ended.
INTERRUPTED = 130


def _report(err: BaseException, prefix: str = "wgf: error: ") -> None:
    try:
        from mpi4py import MPI

        rank = MPI.COMM_WORLD.rank
    except ImportError:  # pragma: no cover
        rank = 0
    if rank == 0:
        print(f"{prefix}{err or 'interrupted'}", file=sys.stderr, flush=True)


def _cases() -> int:
    from wgf.cases import load_case, shipped_cases
    from wgf.solvers import solver_tables

    for path in shipped_cases():
        case = load_case(path, (), solver_tables())
        print(f"{case.name:30s} {case.dim}-D  {case.config['description']}")
    return 0


def _solvers() -> int:
    from wgf.solvers import SOLVERS

    print("\n\n".join(info.describe() for info in SOLVERS.values()))
    return 0


def _keys() -> int:
    from wgf.cases.reference import render
    from wgf.solvers import solver_tables

    print(render(solver_tables()), end="")
    return 0


def _supports(info, case, comm) -> bool:
    """Whether ``--solver all`` runs a solver on ``case``; if not, say why (rank 0).

    The reason is the solver's own refusal: its registered capabilities, then its
    ``check_case`` (a solver of the other kind is skipped without importing it); or its
    registered cost (:attr:`~wgf.solvers.registry.SolverInfo.costly_dims`): a solver far
    slower than the others on this case runs only when named.
    """
    try:
        info.check(case)
    except UserError as err:
        reason = str(err)
    else:
        reason = info.costly_for(case)
    if reason is not None and comm.rank == 0:
        print(f"skipping {info.name}: {reason}", flush=True)
    return reason is None


def selected_solvers(names: list[str], case, comm) -> list:
    """The solvers that ``--solver`` selects.

    Without ``all``: those named, in order.  With ``all`` (registry order): every solver
    that supports ``case`` and is not too costly for it (each skip said in one line), plus
    those named besides, which run even where ``all`` would skip them.
    """
    from wgf.solvers import SOLVERS, get_solver

    named = {get_solver(n).name for n in names if n != "all"}
    if "all" not in names:
        return [get_solver(n) for n in dict.fromkeys(names)]
    infos = [i for i in SOLVERS.values() if i.name in named or _supports(i, case, comm)]
    if not infos:
        raise UserError(f"no solver can run case '{case.name}' (see the lines above)")
    return infos


def _run(args: argparse.Namespace) -> int:
    from mpi4py import MPI

    from wgf.cases import load_case
    from wgf.dispatch import check_resumable, check_runnable, run_built
    from wgf.results import check_writable, results_path
    from wgf.run import build_solver
    from wgf.solvers import solver_tables
    from wgf.summary import FailedRun, print_summary

    comm = MPI.COMM_WORLD
    case = load_case(args.case, args.overrides, solver_tables())
    infos = selected_solvers(args.solver or ["all"], case, comm)
    for info in infos:  # a solver that cannot run the case: one line, before anything is built
        check_runnable(case, info.name)
        check_resumable(info.name, args.resume)
    check_writable(args.out, comm)  # a bad --out: one line, before minutes of set-up
    # Build every solver before running any: bad input fails before any file is written.
    solvers = [(info, build_solver(case, info.name, comm)) for info in infos]
    resume = _resumable(case.name, [info.name for info in infos], args, comm)
    summaries: list = []
    status = 0
    for info, solver in solvers:
        try:
            summary = run_built(solver, case, args.out, resume=resume.get(solver.name, False))
        except SolverError as err:
            # With several solvers, one that does not converge must not keep the others
            # from running: say so now, give it a row, exit with the worst status.  Bad
            # input (UserError) and Ctrl-C (Interrupted) still end everything.
            if len(solvers) == 1:
                raise
            _report(err)
            status, summary = max(status, err.status), None
            if comm.rank == 0:
                path = results_path(args.out, case.name, solver.name)
                summary = FailedRun.from_file(solver.name, err.status, str(err), path)
        if info.kind == "flow":  # a transport run prints its own result
            summaries.append(summary)
    if comm.rank == 0 and summaries:
        print_summary(case, summaries)
    return status


def _compare(args: argparse.Namespace) -> int:
    from mpi4py import MPI

    from wgf.postprocess.compare import compare, final_table, load_runs, write_outputs

    if MPI.COMM_WORLD.rank != 0:  # post-processing is serial: rank 0 does it
        return 0
    runs = load_runs(args.runs, force=args.force, note=print)
    result = compare(runs, progress=lambda line: print(line, flush=True))
    print(final_table(result))
    for path in write_outputs(result, args.out):
        print(f"wrote {path}")
    if args.paraview:
        from wgf.postprocess.labels import run_labels
        from wgf.postprocess.paraview import write_script

        script = write_script([r.path for r in result.runs], run_labels(result.runs), args.out)
        print(
            f"wrote {script} (render it: cd {script.parent} && xvfb-run -a pvbatch {script.name})"
        )
    return 0


def _converge(args: argparse.Namespace) -> int:
    from mpi4py import MPI

    from wgf.converge import ORDER_NOT_MET, report, run_ladder
    from wgf.postprocess.eoc import parse_expectation

    expect = None
    if args.expect_order is not None:
        try:
            expect = parse_expectation(args.expect_order)
        except ValueError as err:
            raise UserError(f"--expect-order: {err}") from None
    out = args.out or Path("out/converge") / f"{Path(args.case).stem}_{args.solver}_{args.refine}"
    ladder = run_ladder(
        args.case,
        args.overrides,
        args.refine,
        args.levels,
        args.solver,
        out,
        args.factor,
        reference=args.reference,
        tau_power=args.tau_with_h,
    )
    status = 0
    if MPI.COMM_WORLD.rank == 0:
        print(report(ladder, out, Path(args.case).stem, args.solver))
        print(f"wrote {out / 'eoc.csv'}, {out / 'eoc.h5'}, {out / 'eoc.png'}")
        if expect is not None:
            order = ladder.fitted_order()
            if abs(order - expect[0]) > expect[1]:
                print(
                    f"wgf: error: fitted {ladder.primary} order {order:.3f} is outside "
                    f"{expect[0]}±{expect[1]}",
                    file=sys.stderr,
                    flush=True,
                )
                status = ORDER_NOT_MET
    return MPI.COMM_WORLD.bcast(status, root=0)


def _sweep(args: argparse.Namespace) -> int:
    from mpi4py import MPI

    from wgf.solvers import get_solver
    from wgf.sweep import sweep, table

    out = args.out or Path("out/sweep") / f"{Path(args.case).stem}_{args.solver}"
    records = sweep(args.case, args.overrides, args.grid, args.solver, out, args.ranks_per_run)
    if MPI.COMM_WORLD.rank == 0:
        print(table(records, args.grid, get_solver(args.solver).kind))
        print(f"wrote {out / 'summary.csv'}")
    return 0


def add_sample(sub: argparse._SubParsersAction) -> None:
    """The ``sample`` verb: noise at T → data at 0 by the reversed flow (wgf.sample)."""
    smp = sub.add_parser(
        "sample",
        help="generate samples: noise at T back to data at 0 (probability-flow ODE)",
        description="Draw samples of the noise law N(c, D A⁻¹) of an Ornstein–Uhlenbeck "
        "case and carry them from T back to t = 0 with the probability-flow ODE (or the "
        "reverse SDE), scored exactly, by an FE run or by a particle run.  Writes "
        "OUT/<case>_sample-<score>.h5 (/sampling/time, /sampling/positions) and "
        "OUT/<case>_sample-<score>_particles.xdmf; with a gaussian_mixture initial "
        "density it prints W2, energy distance and mode masses against data samples.",
    )
    smp.add_argument("case", help="case file or shipped case name")
    smp.add_argument("--score", choices=("exact", "fem", "blob"), required=True)
    smp.add_argument("--samples", type=int, default=4000, metavar="N")
    smp.add_argument(
        "--from",
        dest="source",
        type=Path,
        default=None,
        metavar="RUN.h5",
        help="the forward run of a fem/blob score (default: run fem-implicit/blob first)",
    )
    smp.add_argument("--sde", action="store_true", help="reverse SDE (Euler–Maruyama)")
    smp.add_argument("--method", choices=("RK45", "DOP853", "rk4"), default="RK45")
    smp.add_argument("--rtol", type=float, default=1e-6)
    smp.add_argument("--atol", type=float, default=1e-6)
    smp.add_argument("--steps", type=int, default=200, help="rk4 and SDE steps over [0, T]")
    smp.add_argument("--seed", type=int, default=1, help="the noise stream")
    smp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides")
    smp.add_argument("--out", type=Path, default=Path("out"), metavar="DIR")
    add_quiet(smp)


def _sample(args: argparse.Namespace) -> int:
    from mpi4py import MPI

    from wgf.cases import load_case
    from wgf.results import check_writable
    from wgf.sample import diagnostics, write
    from wgf.sample import sample as draw
    from wgf.solvers import solver_tables

    comm = MPI.COMM_WORLD
    case = load_case(args.case, args.overrides, solver_tables())
    check_writable(args.out, comm)
    result = draw(
        case,
        args.score,
        samples=args.samples,
        source=args.source,
        sde=args.sde,
        seed=args.seed,
        method=args.method,
        rtol=args.rtol,
        atol=args.atol,
        steps=args.steps,
        out=args.out,
        comm=comm,
    )
    found = {}
    if case.config["initial"]["kind"] == "gaussian_mixture":
        found = diagnostics(case, result.trajectories.samples)
    path = write(result, case, args.out, comm, found)
    if comm.rank == 0:
        traj = result.trajectories
        print(
            f"{args.score} score, {traj.method}: {traj.evaluations} evaluations, "
            f"{result.wall_time:.2f} s"
        )
        if found:
            print(
                f"W2 to data {found['w2']:.4f} (floor {found['w2_floor']:.4f}), energy "
                f"distance {found['energy_distance']:.2e} (floor "
                f"{found['energy_distance_floor']:.2e})"
            )
            k = len([name for name in found if name.startswith("mode_mass_")])
            masses = " ".join(f"{found[f'mode_mass_{i}']:.3f}" for i in range(k))
            weights = " ".join(f"{found[f'mode_weight_{i}']:.3f}" for i in range(k))
            print(f"mode masses {masses} (weights {weights})")
        print(f"wrote {path}")
    return 0


def _resumable(case: str, names: list[str], args: argparse.Namespace, comm) -> dict[str, bool]:
    """Which solvers ``--resume`` continues.

    A run of several solvers that was interrupted in one never reached the later ones:
    those have no results file yet and start from t = 0.  If no solver has a file, every
    one is resumed, so that the missing file is reported as the error it is.
    """
    from wgf.results import results_path

    if not args.resume:
        return dict.fromkeys(names, False)
    present = None
    if comm.rank == 0:
        present = {name: results_path(args.out, case, name).is_file() for name in names}
    present = comm.bcast(present, root=0)
    return present if any(present.values()) else dict.fromkeys(names, True)


def entry() -> None:
    """Console-script entry: run :func:`main` and exit with its status.

    Under ``python -m mpi4py`` a non-zero ``SystemExit`` becomes ``MPI_Abort``, which
    prints a line per rank after our one-line error.  Our errors are raised on every rank
    alike, so instead each rank finalises MPI itself and leaves with the status.
    """
    status = main()
    if status:
        mpi = sys.modules.get("mpi4py.MPI")
        if mpi is not None and mpi.Is_initialized() and not mpi.Is_finalized():
            import os

            sys.stdout.flush()
            sys.stderr.flush()
            mpi.Finalize()
            os._exit(status)
    sys.exit(status)
