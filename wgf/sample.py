"""``wgf sample``: noise at T → data at 0 by the reversed Fokker–Planck flow (issue 15).

The Python API behind the verb::

    from wgf import api, sample

    case = api.load("gaussian_mixture_2d")
    result = sample.sample(case, "exact", samples=4000)            # every rank: same samples
    result.trajectories.samples, sample.diagnostics(case, result.trajectories.samples)
    sample.write(result, case, "out")                               # <case>_sample-exact.h5

The scores (:mod:`wgf.solvers.particles.probability_flow`):

* ``exact``: the case's closed form (``exact.kind = "gaussian_mixture"``);
* ``fem``: ∇log ρ_h of a stored ``fem-implicit`` or ``fem-jko`` run of the same case, from
  its snapshots on the sample grid (more snapshots, ``output.snapshots``, follow the fast
  change of the score near t = 0 better);
* ``blob``: the mollified score of a stored particle run (``blob`` or ``langevin``).

Without a stored run (``source`` None) a ``fem`` or ``blob`` score first runs the forward
flow (``fem-implicit`` or ``blob``) into ``out``.  The samples start from the noise law
π = N(c, D A⁻¹); a forward flow too short for ρ_T to be near π is warned about with the
bound KL(ρ_T‖π) ≤ Σ_k w_k KL(N_k(T)‖π).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from mpi4py import MPI

from wgf.cases import Case
from wgf.cases import closed_forms as cf
from wgf.cases.case import mixture_parameters
from wgf.cases.errors import UserError
from wgf.postprocess import sampling as diag
from wgf.postprocess.results import Results, read_results
from wgf.results import ResultsFile, on_rank_0
from wgf.solvers.particles import probability_flow as pf
from wgf.solvers.particles.kernels import tensor_grid_axes
from wgf.solvers.particles.xdmf import PolyvertexSeries

log = logging.getLogger("wgf.sample")

SCORES = ("exact", "fem", "blob")
#: The forward solvers whose runs give each score, the first one run when none is given.
SOURCES = {"fem": ("fem-implicit", "fem-jko"), "blob": ("blob", "langevin")}
#: Warn when the bound on KL(ρ_T‖π) exceeds this (TV ≤ √(KL/2) ≈ 0.07).
KL_WARN = 1e-2
#: The Philox seed of the data samples the diagnostics compare with (not the noise's).
DATA_SEED = 12345


@dataclass
class Sampled:
    """What :func:`sample` returns.

    Attributes:
        score: ``"exact"``, ``"fem"`` or ``"blob"``.
        trajectories: The samples from T (first) down to 0 (last).
        kl_bound: The bound on KL(ρ_T‖π), or None (no Gaussian or mixture initial data).
        source: The forward run the score came from, or None.
        sde: Whether the reverse SDE was used instead of the ODE.
    """

    score: str
    trajectories: pf.Trajectories
    kl_bound: float | None = None
    source: Path | None = None
    sde: bool = False
    wall_time: float = field(default=0.0)


def kl_bound(case: Case, flow: pf.OrnsteinUhlenbeck, t_end: float) -> float | None:
    """Σ_k w_k KL(N_k(T)‖π), a bound on KL(ρ_T‖π), for Gaussian or mixture initial data."""
    ini = case.config["initial"]
    if ini["kind"] == "gaussian_mixture":
        weights, means0, covs0 = mixture_parameters(ini, case.dim)
    elif ini["kind"] == "gaussian":
        weights = np.ones(1)
        means0 = np.array([ini["mean"]])
        covs0 = np.array(
            [
                np.asarray(ini["cov"]) * np.eye(case.dim)
                if isinstance(ini["cov"], float)
                else ini["cov"]
            ]
        )
    else:
        return None
    means, covs = cf.mixture_ou(t_end, means0, covs0, flow.A, flow.center, flow.diffusivity)
    return flow.kl_to_noise(weights, means, covs)


def _stored_run(case: Case, score: str, source: Path | None, out: Path, comm: MPI.Comm) -> Results:
    """The forward run a ``fem``/``blob`` score reads: the given file, or a new run."""
    if source is None:
        from wgf.api import run

        solver = SOURCES[score][0]
        log.info(f"sample --score {score}: running the forward flow with {solver} first")
        return run(case, solver, comm=comm, out=out)
    results = on_rank_0(comm, lambda: read_results(source))
    if results.solver not in SOURCES[score]:
        raise UserError(
            f"sample --score {score}: '{source}' is a {results.solver} run; the score needs "
            f"a run of {' or '.join(SOURCES[score])}"
        )
    if results.case_name != case.name:
        raise UserError(
            f"sample --score {score}: '{source}' is a run of case '{results.case_name}', "
            f"not '{case.name}'"
        )
    return results


def build_score(
    case: Case, score: str, source: Path | None, out: Path, comm: MPI.Comm
) -> tuple[pf.Score, float, Path | None]:
    """The score function, the final time T it starts from, and the run it came from."""
    if score not in SCORES:
        raise UserError(f"sample: --score {score!r} is not one of {', '.join(SCORES)}")
    if score == "exact":
        if case.config["exact"]["kind"] != "gaussian_mixture":
            raise UserError(
                "sample --score exact: the case has no closed-form score (it needs "
                f'exact.kind = "gaussian_mixture", not "{case.config["exact"]["kind"]}")'
            )
        return pf.MixtureScore(case), float(case.config["time"]["t_end"]), None
    results = _stored_run(case, score, source, out, comm)
    times = results.snapshot_time
    if score == "fem":
        axes = tensor_grid_axes(results.sample_points)
        if axes is None:
            raise UserError(f"sample --score fem: '{results.path}' has no tensor sample grid")
        return pf.GridScore(times, axes, results.snapshot_density), float(times[-1]), results.path
    assert results.positions is not None and results.weights is not None  # a particle run
    return (
        pf.KernelScore(times, results.positions, results.weights),
        float(times[-1]),
        results.path,
    )


def sample(
    case: Case,
    score: str,
    *,
    samples: int = 4000,
    source: str | Path | None = None,
    sde: bool = False,
    seed: int = 1,
    method: str = "RK45",
    rtol: float = 1e-6,
    atol: float = 1e-6,
    steps: int = 200,
    snapshots: int = 11,
    out: str | Path = "out",
    comm: MPI.Comm | None = None,
) -> Sampled:
    """Draw ``samples`` noise samples at T and carry them back to t = 0.

    Collective on ``comm``; every rank computes (and returns) the same samples.

    Args:
        case: A case with linear diffusion and a quadratic, confining V.
        score: ``"exact"``, ``"fem"`` or ``"blob"``.
        samples: How many.
        source: The stored forward run of a ``fem``/``blob`` score (None: run it).
        sde: Use the reverse SDE (Euler–Maruyama, ``steps`` steps) instead of the ODE.
        seed: The noise stream (the start samples, and the SDE's increments).
        method: ODE integrator, ``"RK45"``, ``"DOP853"`` or ``"rk4"`` (``steps`` steps).
        rtol: Relative tolerance of the adaptive integrators.
        atol: Absolute tolerance of the adaptive integrators.
        steps: Steps of ``rk4`` and of the SDE over [0, T].
        snapshots: Output times of the trajectories, evenly spaced from T to 0.
        out: Where a forward run that ``source`` does not give is written.
        comm: The communicator (default ``MPI.COMM_WORLD``).

    Raises:
        UserError: A case or score the sampler cannot use, with a one-line message.
    """
    comm = MPI.COMM_WORLD if comm is None else comm
    if samples < 1 or steps < 1 or snapshots < 2:
        raise UserError("sample: --samples and --steps must be >= 1, snapshots >= 2")
    flow = pf.OrnsteinUhlenbeck.of(case)
    function, t_end, path = build_score(
        case, score, None if source is None else Path(source), Path(out), comm
    )
    bound = kl_bound(case, flow, t_end)
    if bound is not None and bound > KL_WARN:
        log.warning(
            f"sample: the forward flow to T = {t_end:g} is short: KL(ρ_T‖noise) ≤ {bound:.3g} "
            f"(> {KL_WARN:g}), so samples started from the noise carry that error"
        )
    start = MPI.Wtime()
    noise = flow.noise(samples, seed)
    times = np.linspace(t_end, 0.0, snapshots)
    if sde:
        traj = pf.reverse_sde(flow, function, noise, t_end, steps, seed, times)
    else:
        traj = pf.probability_flow(
            flow, function, noise, t_end, times, method=method, rtol=rtol, atol=atol, steps=steps
        )
    return Sampled(score, traj, bound, path, sde, MPI.Wtime() - start)


def diagnostics(case: Case, x: np.ndarray, seed: int = DATA_SEED) -> dict[str, float]:
    """W2 and energy distance to as many data samples, their floors, and the mode masses.

    Needs a ``gaussian_mixture`` initial density (the data law).  The floors are the same
    distances between two independent data samples of the size of ``x``.
    """
    weights, means, covs = mixture_parameters(case.config["initial"], case.dim)
    data, _ = pf.mixture_samples(weights, means, covs, len(x), seed)
    other, _ = pf.mixture_samples(weights, means, covs, len(x), seed + 1)
    out = {
        "w2": diag.w2_samples(x, data),
        "w2_floor": diag.w2_samples(other, data),
        "energy_distance": diag.energy_distance(x, data),
        "energy_distance_floor": diag.energy_distance(other, data),
    }
    for k, mass in enumerate(diag.mode_masses(x, weights, means, covs)):
        out[f"mode_mass_{k}"] = float(mass)
        out[f"mode_weight_{k}"] = float(weights[k])
    return out


def output_path(out: str | Path, case: Case, result: Sampled) -> Path:
    """``<out>/<case>_sample-<score>[-sde].h5``."""
    tag = f"sample-{result.score}" + ("-sde" if result.sde else "")
    return Path(out) / f"{case.name}_{tag}.h5"


def write(
    result: Sampled,
    case: Case,
    out: str | Path,
    comm: MPI.Comm | None = None,
    extra: dict[str, float] | None = None,
) -> Path:
    """Write ``/sampling/time`` and ``/sampling/positions`` (DESIGN §6) and an XDMF file.

    The results file is ``<out>/<case>_sample-<score>.h5`` (its ``solver`` attribute says
    ``sample-<score>``); the particle ParaView file sits beside it as ``…_particles.xdmf``,
    coloured by the exact density at the samples when the case has one (else 0).
    ``extra`` (diagnostics) become attributes of ``/sampling/positions``.
    """
    comm = MPI.COMM_WORLD if comm is None else comm
    path = output_path(out, case, result)
    traj = result.trajectories
    dom = case.config["domain"]
    grid = (  # the case's sample grid, as in a run's file (no snapshots are written)
        case.sample_points(np.array(dom["lower"]), np.array(dom["upper"]))
        if dom["shape"] == "box"
        else np.zeros((1, case.dim))
    )
    tag = path.stem.removeprefix(f"{case.name}_")
    results = ResultsFile(path, comm, case.name, tag, case.dim, case.config, grid)
    attrs = {
        "score": result.score,
        "method": traj.method,
        "evaluations": traj.evaluations,
        "wall_time": result.wall_time,
        "source": str(result.source or ""),
        **({"kl_bound": result.kl_bound} if result.kl_bound is not None else {}),
        **(extra or {}),
    }
    results.write_array("sampling/time", traj.time)
    results.write_array("sampling/positions", traj.positions, **attrs)
    results.close()
    if comm.rank == 0:
        exact = case.exact_solution()
        n = traj.positions.shape[1]
        series = PolyvertexSeries(path.with_name(f"{path.stem}_particles.xdmf"), np.full(n, 1 / n))
        for t, x in zip(traj.time, traj.positions, strict=True):
            series.append(t, x, exact(t, x) if exact is not None else np.zeros(n))
        series.close()
    comm.Barrier()
    return path
