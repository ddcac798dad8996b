"""``wgf converge``: run a refinement ladder and print the EOC table.

Level k refines one parameter by ``factor``^k: the time step (``--refine tau``), the mesh
(``h``: a box's cells × factor^k; a disk's h / factor^k; a mesh file is refined k times
by :func:`dolfinx.mesh.refine`, which halves h, so ``factor`` must be 2) or the number of
particles (``particles``).  With ``--refine h`` and ``--tau-with-h P`` the time step
shrinks with the mesh, τ_k = τ_0 / factor^(P·k): a method of order q in h and 1 in τ then
has the error C_h h^q + C_τ τ ∝ h^q when P = q, so the time error does not hide the
spatial order.  Each level runs on all ranks of the communicator and writes its own results
file under ``OUT/level<k>/``.  With ``--expect-order P+-TOL`` the command exits with status
4 when the fitted order of the primary error (L1) is outside [P - TOL, P + TOL].

The errors at T are measured against a reference (``--reference``):

* ``exact`` (default): the closed form of the case; relative L1 and L2 errors of the
  sampled density and W2 to the exact density.
* ``finest``: self-convergence, for a case without a closed form.  Every level is sampled
  at T on the same grid (the case's sample grid on the domain's bounding box, which
  refining the mesh or τ does not move), and level k < K is compared with the finest level
  K on it:  e_k = ‖ρ_k − ρ_K‖ / ‖ρ_K‖ (L1, L2: midpoint sums on the grid; W2 of the two
  densities in 1-D, where it is exact).  If ρ_k = ρ + C h_k^p + o(h_k^p), then
  ρ_k − ρ_K = C h_k^p (1 − (h_K/h_k)^p) + …, so e_k ∝ h_k^p up to the factor
  1 − factor^(−p(K−k)); the EOCs between consecutive levels k−1, k < K estimate p, the
  last one (k = K−1) biased upwards by log(1 − f^{−2p}) − log(1 − f^{−p}) over log f
  (≈ 0.32 for p = 2, f = 2) and the others by much less.  The finest level has no error
  (it is the reference) and enters neither the EOCs nor the fitted order.

A transport solver (``fem-bb``) has no time step and no particles: only ``--refine h``
applies, and it refines the space-time mesh as a whole (``domain.cells`` and the solver's
``time_cells`` by the same factor).  Its error is the relative error of the computed W2
distance against the exact W2 of the case (:func:`wgf.transport.exact_w2`), the quantity
the expectation then refers to; a case without a closed-form W2 is refused.
"""

from __future__ import annotations

import csv
import math
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from mpi4py import MPI

from wgf.cases import Case, load_case
from wgf.cases.errors import UserError
from wgf.dispatch import check_kind, check_runnable, run_solver
from wgf.postprocess.clouds import cloud, exact_cloud, relative_errors, w2_options
from wgf.postprocess.eoc import fitted_order, rates
from wgf.postprocess.results import Results, read_results
from wgf.postprocess.w2 import w2
from wgf.progress import note
from wgf.run import RunSummary
from wgf.solvers import get_solver, solver_tables
from wgf.transport import exact_w2

ORDER_NOT_MET = 4

#: What the errors are measured against (``--reference``).
REFERENCES = ("exact", "finest")


@dataclass
class Ladder:
    """The refinement ladder and its errors at T."""

    refine: str
    params: np.ndarray
    labels: list[str]
    errors: dict[str, np.ndarray]
    files: list[Path]
    #: The error whose order ``--expect-order`` checks.
    primary: str = "L1"
    #: ``"exact"`` or ``"finest"`` (then the last level's errors are NaN).
    reference: str = "exact"
    #: What ``params`` are, for the figure's axis.
    param_name: str = ""

    def eocs(self, name: str) -> np.ndarray:
        """EOC of error ``name`` between consecutive levels (NaN where undefined)."""
        return rates(self.params, self.errors[name])

    def fitted_order(self, name: str | None = None) -> float:
        """Least-squares slope of log e against log p over the levels that have an error."""
        err = self.errors[name or self.primary]
        keep = np.isfinite(err) & (err > 0)
        if keep.sum() < 2:
            return float("nan")
        return fitted_order(self.params[keep], err[keep])


def _equal_steps(t_end: float, tau: float) -> float:
    """The τ the run uses: [0, T] in equal steps no longer than ``tau``."""
    return t_end / math.ceil(t_end / tau - 1e-9)


def level_overrides(
    case: Case,
    sets: list[str],
    refine: str,
    solver: str,
    level: int,
    factor: float,
    tau_power: float = 0.0,
) -> tuple[list[str], float, str]:
    """The ``--set`` overrides of one level of the base ``case``, its parameter and a label.

    ``tau_power`` P > 0 (only with ``refine == "h"``) also divides τ by factor^(P·level).
    """
    scale = factor**level
    if refine == "tau":
        # The run divides [0, T] into equal steps: use that τ, which the EOC must see.
        tau = _equal_steps(case.section("time")["t_end"], case.section("time")["tau"] / scale)
        return [*sets, f"time.tau={tau!r}"], tau, f"tau={tau:.4g}"
    if refine == "h":
        sets, h, label = _mesh_overrides(case, sets, solver, level, factor)
        if tau_power > 0:
            tau0 = case.section("time")["tau"]
            tau = _equal_steps(case.section("time")["t_end"], tau0 / factor ** (tau_power * level))
            sets, label = [*sets, f"time.tau={tau!r}"], f"{label} tau={tau:.3g}"
        return sets, h, label
    params = case.solver_params(solver)
    if "particles" not in params:
        raise UserError(f"converge --refine particles: solver '{solver}' has no particles key")
    if params["particles"] is None:
        # Unset means the solver picks a count by dimension when it is built; the ladder
        # needs the coarsest count now, to scale it.
        raise UserError(
            f"converge --refine particles: set solver.{solver}.particles=N, the coarsest "
            "level's count (the case leaves it to the solver's default)"
        )
    n = round(params["particles"] * scale)
    # The particle spacing N^{-1/d} is the natural "h" of a particle method.
    return [*sets, f"solver.{solver}.particles={n}"], n ** (-1.0 / case.dim), f"N={n}"


def _mesh_overrides(
    case: Case, sets: list[str], solver: str, level: int, factor: float
) -> tuple[list[str], float, str]:
    """``--refine h``: the overrides of one level, its h and a label."""
    scale = factor**level
    dom = case.section("domain")
    if dom["shape"] == "box":
        cells = [round(n * scale) for n in dom["cells"]]
        time_cells = case.solver_params(solver).get("time_cells")
        if get_solver(solver).kind == "transport" and time_cells is not None:
            # The space-time mesh: h in t shrinks with h in x.
            steps = round(time_cells * scale)
            return (
                [*sets, f"domain.cells={cells}", f"solver.{solver}.time_cells={steps}"],
                1.0 / cells[0],
                f"cells={cells} nt={steps}",
            )
        return [*sets, f"domain.cells={cells}"], 1.0 / cells[0], f"cells={cells}"
    if dom["shape"] == "disk":
        h = dom["h"] / scale
        return [*sets, f"domain.h={h!r}"], h, f"h={h:.4g}"
    # A mesh file: uniform refinement halves h, whatever the mesh's own h is.
    if factor != 2.0:
        raise UserError("converge --refine h: a mesh file is refined by halving h; use --factor 2")
    times = dom["refinements"] + level
    return [*sets, f"domain.refinements={times}"], 2.0**-level, f"refinements={times}"


def run_ladder(
    case_source: str,
    sets: list[str],
    refine: str,
    levels: int,
    solver: str,
    out: Path,
    factor: float = 2.0,
    comm: MPI.Comm = MPI.COMM_WORLD,
    reference: str = "exact",
    tau_power: float = 0.0,
) -> Ladder:
    """Run every level and collect the errors at T (on rank 0).

    Args:
        case_source: A case file or shipped case name.
        sets: ``--set`` overrides applied to every level.
        refine: ``"tau"``, ``"h"`` or ``"particles"``.
        levels: Number of levels K + 1.
        solver: The solver's name.
        out: Level k writes ``out/level<k>/``.
        factor: Refinement factor per level.
        comm: Every level runs on all its ranks.
        reference: ``"exact"`` (the closed form) or ``"finest"`` (self-convergence).
        tau_power: With ``refine == "h"``, τ_k = τ_0 / factor^(tau_power·k).
    """
    _check_options(refine, levels, solver, reference, tau_power)
    if not factor > 1:  # also NaN; factor 1 gives equal levels and log(1) = 0 in the EOC
        raise UserError(f"converge: --factor must be > 1 (each level refines by it), got {factor}")
    transport = get_solver(solver).kind == "transport"
    base = load_case(case_source, sets, solver_tables())
    check_kind(base, solver)
    plans = [
        level_overrides(base, sets, refine, solver, k, factor, tau_power) for k in range(levels)
    ]
    # Every level is loaded and checked before the first one runs: a bad level fails now.
    cases = [_level_case(case_source, k, p[0], p[2], solver) for k, p in enumerate(plans)]
    if transport:
        exact = exact_w2(base)
        if exact is None:
            raise UserError(
                f"converge: case '{base.name}' has no closed-form W2 (two Gaussians, or 1-D)"
            )
    elif reference == "exact" and cases[0].exact_solution() is None:
        raise UserError(
            f"converge: case '{cases[0].name}' has no exact solution ([exact] kind); "
            "use --reference finest for self-convergence"
        )
    alignment = sample_alignment_note(cases) if refine == "h" else None
    if alignment:
        note(f"[converge] note: {alignment}", comm)
    summaries = _run_levels(cases, [p[2] for p in plans], solver, comm, out)
    files = [summary.path for summary in summaries]
    params, labels = np.array([p[1] for p in plans]), [p[2] for p in plans]
    param_name = _param_name(base, refine, tau_power)
    if transport:
        w2s = np.array([summary.diagnostics.get("w2", np.nan) for summary in summaries])
        return Ladder(
            refine,
            params,
            labels,
            {"W2": np.abs(w2s - exact) / exact},
            files,
            primary="W2",
            param_name=param_name,
        )
    errors: dict[str, np.ndarray] = {}
    if comm.rank == 0:
        runs = [read_results(path) for path in files]
        errors = errors_against_exact(runs) if reference == "exact" else errors_against_finest(runs)
    return Ladder(refine, params, labels, errors, files, reference=reference, param_name=param_name)


def _level_case(source: str, level: int, sets: list[str], label: str, solver: str) -> Case:
    """Load and check level ``level`` (one-line :class:`UserError` naming it)."""
    try:
        case = load_case(source, sets, solver_tables())
        check_runnable(case, solver)
    except UserError as err:
        raise UserError(f"converge level {level} ({label}): {err}") from None
    return case


def _check_options(refine: str, levels: int, solver: str, reference: str, tau_power: float) -> None:
    """Refuse (one line) option combinations that have no meaning."""
    if levels < 2:
        raise UserError("converge: --levels must be at least 2")
    if reference not in REFERENCES:
        raise UserError(f"converge: --reference must be one of {', '.join(REFERENCES)}")
    if reference == "finest" and levels < 3:
        raise UserError("converge --reference finest: --levels must be at least 3")
    if tau_power < 0 or (tau_power > 0 and refine != "h"):
        raise UserError("converge: --tau-with-h P needs --refine h and P > 0")
    if get_solver(solver).kind != "transport":
        return
    if refine != "h":
        raise UserError(
            f"converge --refine {refine}: {solver} is a transport solver (no time step, no "
            "particles); use --refine h"
        )
    if reference != "exact" or tau_power > 0:
        raise UserError(
            f"converge: {solver} is a transport solver; --reference finest and --tau-with-h "
            "apply to gradient flows"
        )


def _run_levels(
    cases: list[Case], labels: list[str], solver: str, comm: MPI.Comm, out: Path
) -> list[RunSummary]:
    """Run the levels in turn (``out/level<k>/``), a progress line as each starts and ends."""
    summaries = []
    for k, (case, label) in enumerate(zip(cases, labels, strict=True)):
        note(f"[converge] level {k + 1}/{len(cases)}: {label}: running", comm)
        start = time.perf_counter()
        summaries.append(run_solver(case, solver, comm, out / f"level{k}"))
        took = time.perf_counter() - start
        note(f"[converge] level {k + 1}/{len(cases)}: {label}: done in {took:.1f} s", comm)
    return summaries


def _param_name(case: Case, refine: str, tau_power: float) -> str:
    """The refinement parameter as the EOC figure's x label."""
    if refine == "tau":
        return "τ"
    if refine == "particles":
        return "N^(-1/d)"
    shape = case.section("domain")["shape"]
    name = {"box": "h ∝ 1/cells", "disk": "h", "file": "h / h₀ (refinements of the file mesh)"}
    tied = f", τ ∝ h^{tau_power:g}" if tau_power > 0 else ""
    return name[shape] + tied


def sample_alignment_note(cases: list[Case]) -> str | None:
    """A warning when the sample points are mesh vertices at some levels and not at others.

    The sample midpoints lower + (i + ½)·L/n_s of a box with n_c cells per direction are
    all vertices exactly when n_c is a multiple of 2·n_s.  A P1 density is more accurate at
    the vertices than between them (in 1-D its nodal values superconverge), so a ladder
    that samples between vertices on its coarse levels and at vertices on its fine ones
    shows an error drop that is not the method's order.  A sample grid with a factor the
    mesh lacks (300 points for 200·2^k cells) never lands on vertices.
    """
    if any(case.section("domain")["shape"] != "box" for case in cases):
        return None
    aligned = [
        all(
            n_c % (2 * n_s) == 0
            for n_c, n_s in zip(case.section("domain")["cells"], case.sample_cells(), strict=True)
        )
        for case in cases
    ]
    if all(aligned) or not any(aligned):
        return None
    at = ", ".join(str(k) for k, a in enumerate(aligned) if a)
    return (
        f"the sample points (output.sample_cells = {cases[0].sample_cells()}) are mesh "
        f"vertices at level(s) {at} only, where P1 values are more accurate: the EOCs mix "
        "in that difference; choose output.sample_cells with a factor the cells lack "
        "(e.g. 1.5 × domain.cells)"
    )


def errors_against_exact(runs: list[Results]) -> dict[str, np.ndarray]:
    """Relative L1, L2 errors and W2 of each run's last snapshot to the closed form."""
    errors: dict[str, list[float]] = {"L1": [], "L2": [], "W2": []}
    for run in runs:
        last = len(run.snapshot_time) - 1
        rel = relative_errors(run, last)
        errors["L1"].append(rel["l1"])
        errors["L2"].append(rel["l2"])
        exact = exact_cloud(run, run.snapshot_time[last])
        errors["W2"].append(w2(*cloud(run, last), *exact, **w2_options(run))[0])
    return {k: np.array(v) for k, v in errors.items()}


def errors_against_finest(runs: list[Results]) -> dict[str, np.ndarray]:
    """Relative L1, L2 differences (and W2 in 1-D) of each run to the last one at T.

    All runs must end at the same time and be sampled on the same grid; the last entry of
    every array is NaN (the reference has no error).  W2 is left out above 1-D: there two
    grid clouds are binned before ``ot.emd2`` (:mod:`wgf.postprocess.w2`), and the binning
    error would floor the differences being measured.  On the circle W2 is exact (the
    geodesic one, :mod:`wgf.postprocess.circle`) and is reported.
    """
    ref = runs[-1]
    t_ref = ref.snapshot_time[-1]
    rho_ref = ref.snapshot_density[-1]
    names = ["L1", "L2"] + (["W2"] if ref.dim == 1 or ref.shape == "circle" else [])
    errors = {name: np.full(len(runs), np.nan) for name in names}
    for k, run in enumerate(runs[:-1]):
        if not np.isclose(run.snapshot_time[-1], t_ref, rtol=1e-9, atol=1e-12):
            raise UserError(
                f"converge --reference finest: level {k} ends at t = {run.snapshot_time[-1]:g}, "
                f"the finest at t = {t_ref:g}"
            )
        if run.sample_points.shape != ref.sample_points.shape or not np.allclose(
            run.sample_points, ref.sample_points
        ):
            raise UserError(
                f"converge --reference finest: level {k} is sampled on another grid than the "
                "finest level (output.sample_cells and the domain's bounding box must agree)"
            )
        diff = run.snapshot_density[-1] - rho_ref
        errors["L1"][k] = np.sum(np.abs(diff)) / np.sum(np.abs(rho_ref))
        errors["L2"][k] = np.sqrt(np.sum(diff**2) / np.sum(rho_ref**2))
        if "W2" in errors:
            errors["W2"][k] = w2(*cloud(run, -1), *cloud(ref, -1), **w2_options(run, ref))[0]
    return errors


def report(ladder: Ladder, out: Path, case_name: str, solver: str) -> str:
    """Print-ready EOC table; also writes eoc.csv, eoc.h5 and eoc.png into ``out``."""
    from wgf.postprocess.plots import plot_convergence

    names = list(ladder.errors)
    eocs = {n: ladder.eocs(n) for n in names}
    head = f"{'level':>5s} {'':24s}" + "".join(f" {n + ' err':>10s} {'EOC':>5s}" for n in names)
    if ladder.primary == "W2":
        what = "relative error of W2 against the exact W2"
    elif ladder.reference == "finest":
        what = (
            f"self-convergence: differences at T to the finest level "
            f"({len(ladder.labels) - 1}: {ladder.labels[-1]})"
        )
    else:
        what = "errors at T against the exact solution"
    lines = [f"{case_name} / {solver}: {what}, refining {ladder.refine}", head, "-" * len(head)]
    for k, label in enumerate(ladder.labels):
        cells = "".join(_cell(ladder.errors[n][k], eocs[n][k]) for n in names)
        if ladder.reference == "finest" and k == len(ladder.labels) - 1:
            cells = f" {'(reference)':>16s}"
        lines.append(f"{k:5d} {label:24s}{cells}")
    fits = {n: ladder.fitted_order(n) for n in names}
    levels = "" if ladder.reference == "exact" else " over levels 0..K-1"
    lines.append(
        f"fitted order (np.polyfit{levels}): " + ", ".join(f"{n} {fits[n]:.2f}" for n in names)
    )
    if ladder.reference == "finest":
        lines.append(_bias_note(ladder.params[0] / ladder.params[1]))
    out.mkdir(parents=True, exist_ok=True)
    with (out / "eoc.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["level", "parameter", "label"]
            + [f"{n}_error" for n in names]
            + [f"{n}_eoc" for n in names]
        )
        for k, label in enumerate(ladder.labels):
            writer.writerow(
                [k, ladder.params[k], label]
                + [ladder.errors[n][k] for n in names]
                + [eocs[n][k] for n in names]
            )
    with h5py.File(out / "eoc.h5", "w") as f:
        f.attrs.update(
            {
                "case": case_name,
                "solver": solver,
                "refine": ladder.refine,
                "reference": ladder.reference,
            }
        )
        f["parameter"] = ladder.params
        for n in names:
            f[f"error/{n}"] = ladder.errors[n]
            f[f"eoc/{n}"] = eocs[n]
            f[f"error/{n}"].attrs["fitted_order"] = fits[n]
    xlabel = ladder.param_name or ladder.refine
    if ladder.primary == "W2" and len(names) == 1:
        ylabel = "relative error of W2"
    elif ladder.reference == "finest":
        ylabel = "difference to the finest level at T\n(L1, L2 relative)"
    else:
        ylabel = "error at T (L1, L2 relative)"
    plot_convergence(
        ladder.params,
        ladder.errors,
        xlabel,
        f"{case_name} / {solver}" + (": self-convergence" if ladder.reference == "finest" else ""),
        out / "eoc.png",
        ylabel=ylabel,
    )
    return "\n".join(lines)


def _bias_note(factor: float) -> str:
    """How much the EOC next to the reference level over-estimates p (module docstring)."""

    def bias(p: float) -> float:
        return math.log((1 - factor ** (-2 * p)) / (1 - factor ** (-p))) / math.log(factor)

    return (
        "note: against the finest level e_k ∝ h_k^p (1 - f^(-p(K-k))), so the last EOC "
        f"over-estimates p by {bias(1):.2f} for p = 1, {bias(2):.2f} for p = 2 (f = {factor:g})"
    )


def _cell(error: float, eoc: float) -> str:
    """One error and its EOC; blanks where the EOC is undefined (first level)."""
    return f" {error:10.3e} " + (f"{eoc:5.2f}" if np.isfinite(eoc) else f"{'':5s}")
