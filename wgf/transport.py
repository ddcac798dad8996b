"""The driver of transport solvers (``fem-bb``): one iterative solve, then the results file.

A transport solver is not a time-stepping flow, so :mod:`wgf.run` does not apply.  This
driver runs the solver's iteration to convergence and writes the results file of
DESIGN §6 with these meanings:

* ``/time`` is the ALG2 iteration index 1, 2, …, and ``/diagnostics/<name>`` the value
  after that iteration: ``residual`` (the stopping quantity), ``primal_residual``,
  ``dual_residual``, ``w2sq_change``, ``w2sq_primal``, ``w2sq_dual``, ``r``,
  ``wall_time``;
* ``/snapshots/time`` are ``output.snapshots`` times evenly spaced in [0, 1] (the
  geodesic's time) and ``/snapshots/density`` the geodesic ρ(t, ·) at the sample points;
* ``/ot/w2`` is the W2 distance (the dual estimate, see :mod:`wgf.solvers.fem.benamou_brenier`)
  with attributes ``converged``,
  ``iterations``, ``residual``, ``w2_primal``, ``w2_dual`` and, when the case has a
  closed form (two Gaussians, or any two 1-D densities), ``w2_exact``;
* ``/ot/slab_mass`` the mass (1/Δt)∫_slab ρ of each time slab of the space-time mesh;
* ``/fields`` names the XDMF file of ρ and φ on the space-time mesh.

A run that reaches ``max_it`` still writes everything, with ``converged = false``, and
then raises :class:`~wgf.cases.errors.SolverError` (exit status 3).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from wgf.cases import Case
from wgf.cases import closed_forms as cf
from wgf.cases.errors import SolverError
from wgf.progress import Progress
from wgf.results import OutputLock, ResultsFile, fields_path, results_path
from wgf.run import RunSummary
from wgf.solvers.protocols import TransportSolver


def exact_w2(case: Case) -> float | None:
    """The exact W2 between ``[initial]`` and ``[target]`` as the solver sees them.

    The solver transports the densities restricted to the box and renormalised.  For two
    Gaussians with diagonal covariances these are products of truncated 1-D Gaussians, and
    the coordinate-wise monotone map is optimal (it is the gradient of a separable convex
    function), so W2² = Σ_i W2²(marginal_i) with each term from 1-D quantile functions —
    exact for the truncated problem, which matters at the 1e-5 level (a Gaussian 4σ from the
    box side loses 3e-5 of its mass).  Other Gaussians: the closed form of DESIGN §5; any
    two 1-D densities: quantiles.  Otherwise None.
    """
    ini, tgt = case.section("initial"), case.section("target")
    dom = case.section("domain")
    if ini["kind"] == "gaussian" and tgt["kind"] == "gaussian":
        eye = np.eye(case.dim)
        covs = [np.asarray(s["cov"]) * (eye if np.ndim(s["cov"]) == 0 else 1.0) for s in (ini, tgt)]
        means = [np.array(ini["mean"]), np.array(tgt["mean"])]
        if all(np.allclose(c, np.diag(np.diag(c))) for c in covs):
            total = 0.0
            for i in range(case.dim):
                marg = [
                    (
                        lambda x, m=m[i], v=c[i, i]: cf.gaussian_density(
                            x, np.array([m]), np.array([[v]])
                        )
                    )
                    for m, c in zip(means, covs, strict=True)
                ]
                total += cf.w2_1d(marg[0], marg[1], dom["lower"][i], dom["upper"][i]) ** 2
            return float(np.sqrt(total))
        return cf.w2_gaussians(means[0], covs[0], means[1], covs[1])
    if case.dim == 1:
        return cf.w2_1d(
            case.density("initial"), case.density("target"), dom["lower"][0], dom["upper"][0]
        )
    return None


def run_transport(solver: TransportSolver, case: Case, out_dir: Path) -> RunSummary:
    """Run a constructed transport solver and write ``<out>/<case>_<solver>.h5``.

    Args:
        solver: The constructed solver (registered with kind ``"transport"``).
        case: The validated case.
        out_dir: Output directory.

    Returns:
        A summary (meaningful on rank 0): ``steps`` is the iteration count and
        ``diagnostics`` holds ``w2``, ``w2_primal``, ``w2_exact`` (NaN when unknown) and
        ``residual``.

    Raises:
        UserError: Another run is writing the same results file.
        SolverError: After writing the file, when ``max_it`` was reached.
    """
    comm = solver.comm
    path = results_path(out_dir, case.name, solver.name)
    lower, upper = solver.bounding_box()
    points = case.sample_points(lower, upper)
    if comm.rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
    comm.Barrier()
    start = time.perf_counter()
    # The iteration stops on convergence: no total, hence no bar and no ETA; the residual
    # against the tolerance is the measure of progress.
    bar = Progress(f"[{solver.name}]", None, comm=comm, unit="it")
    tol = solver.params.get("tol", float("nan"))

    def progress(k: int, info: dict[str, float]) -> None:
        bar.update(
            k,
            f"residual = {info['residual']:.3e} (tol {tol:g})  "
            f"W2 primal = {np.sqrt(max(info['w2sq_primal'], 0)):.8f}  "
            f"dual = {np.sqrt(max(info['w2sq_dual'], 0)):.8f}  r = {info['r']:.3g}",
        )

    lock = OutputLock(path, comm)  # before the file is truncated: see OutputLock
    try:
        converged = solver.run(progress)
        bar.close()
        wall = time.perf_counter() - start
        results = ResultsFile(path, comm, case.name, solver.name, case.dim, case.config, points)
        hist = solver.history
        n = solver.iterations
        for k in range(n):
            results.append_step(float(k + 1), {name: values[k] for name, values in hist.items()})
        times = np.linspace(0.0, 1.0, max(case.section("output")["snapshots"], 2))
        density = solver.sample(times, points)
        for i, t in enumerate(times):
            results.append_snapshot(t, density[i] if density is not None else None)
        w2sq_p, w2sq_d = hist["w2sq_primal"][-1], hist["w2sq_dual"][-1]
        w2 = float(np.sqrt(max(w2sq_d, 0.0)))
        attrs = {
            "converged": bool(converged),
            "iterations": n,
            "residual": hist["residual"][-1],
            "w2_primal": float(np.sqrt(max(w2sq_p, 0.0))),
            "w2_dual": w2,
        }
        exact = exact_w2(case)
        if exact is not None:
            attrs["w2_exact"] = exact
        results.write_array("ot/w2", w2, **attrs)
        results.write_array("ot/slab_mass", solver.slab_mass())
        results.set_fields(solver.write_fields(fields_path(path)))
        results.close()
    finally:
        lock.release()
        bar.close()
        solver.close()
        sys.stdout.flush()
    if comm.rank == 0:
        err = f"  (exact {exact:.8f}, rel. error {abs(w2 - exact) / exact:.3e})" if exact else ""
        print(
            f"\ncase {case.name}: {solver.name} W2 = {w2:.8f} (dual), "
            f"{attrs['w2_primal']:.8f} (primal){err}\n"
            f"  {n} ALG2 iterations, residual {attrs['residual']:.3e}, {wall:.2f} s\n"
            f"results: {path}",
            flush=True,
        )
    if not converged:
        raise SolverError(
            f"{solver.name}: no convergence in {n} ALG2 iterations (residual "
            f"{attrs['residual']:.3e} > tol {solver.params['tol']:g}); the results file "
            f"{path} marks converged = false; raise solver.fem-bb.max_it"
        )
    summary = RunSummary(solver.name, path, steps=n, t=1.0, wall_time=wall)
    summary.iterations = [n]
    summary.diagnostics = {
        "w2": w2,
        "w2_primal": attrs["w2_primal"],
        "w2_exact": float("nan") if exact is None else exact,
        "residual": attrs["residual"],
    }
    return summary
