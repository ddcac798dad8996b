"""Transformer tokens on the sphere (issue 14): the acceptance figures, measured in one run.

    .venv/bin/python benchmarks/tokens.py equiangular     # ρ(t) against its ODE: error, order
    .venv/bin/python benchmarks/tokens.py instability     # growth rates of cos(kθ), k = 1..5
    .venv/bin/python benchmarks/tokens.py fe-instability  # the same rates by fem-implicit
    .venv/bin/python benchmarks/tokens.py fe-sphere-instability   # harmonics on S², FE
    .venv/bin/mpiexec -n 2 .venv/bin/python -m mpi4py benchmarks/tokens.py perf

* ``equiangular``: n = 8 equiangular tokens on S⁷ ⊂ ℝ⁸ (β = 1, ρ₀ = 0; the
  shipped case tokens_equiangular at T = 1), blob with forced Heun substeps dt; the mean pairwise
  inner product at T against SciPy's ``solve_ivp`` (DOP853, rtol 1e-10) of
  ρ' = 2e^{βρ}(1-ρ)(1+(n-1)ρ)/n (USA) and ρ' = 2(1-ρ)(1+(n-1)ρ)/(e^{β(1-ρ)}+n-1) (SA);
  the spread of the inner products (0 by symmetry) and the observed order in dt.
* ``instability``: N = 512 equally spaced tokens on the circle displaced so that the density
  is (1 + 10⁻⁶cos kθ)/2π, USA at β = 5; the growth rate log(|ĉ_k(T)|/|ĉ_k(0)|)/T of the
  k-th Fourier coefficient of the tokens against k²I_k(β)/β, for two substeps dt.
* ``fe-instability``: the same modes and β by fem-implicit on the circle mesh of n arcs,
  n = 64, 128, 256, from (1 + 10⁻⁶cos kθ)/2π.  Linearised about the uniform state (where
  W∗ρ₀ is constant at the vertices, so its gradient vanishes), the semi-implicit step is
  δρ^{n+1} = (I + τA_h)δρⁿ with A_h = -ρ₀M⁻¹K·W_h the space-discrete operator, and on the
  uniform circle mesh cos kθ_i is its eigenvector (circulant matrices): the amplitude
  ratio g of one step gives the space-discrete rate λ_h = (g - 1)/τ exactly, free of the
  time error.  Reported: λ_h against k²I_k(β)/β, its relative error and the order in h
  (log₂ of the ratio of successive errors).
* ``fe-sphere-instability``: the same on S² for the spherical harmonics Re((x + iy)^k),
  on icospheres of frequency 8, 16, 32 (10n² + 2 vertices), against
  κM k(k+1) i_k(β)/β (Funk–Hecke, :func:`wgf.cases.sphere.harmonic_growth_rate`).  The
  mesh is not rotation invariant: the uniform state drifts by O(h²), so the rate is taken
  from the difference of a perturbed and an unperturbed run, and Y is an eigenvector of
  A_h only up to O(h²).
* ``perf``: n = 10⁴ uniform tokens on S², one Heun substep of blob (two attention
  velocities, dense sums; USA also its local stiffness bound), on COMM_WORLD and, in the
  same run, on COMM_SELF of rank 0; wall and CPU time (busiest rank).  BLAS runs one
  thread per rank (set below, before NumPy loads), so that the split over ranks is what
  is measured.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import sys
import tempfile
import time

import numpy as np
from mpi4py import MPI
from scipy.integrate import solve_ivp
from timing import idle_barrier

from wgf import api
from wgf.cases.sphere import equiangular_rate, harmonic, harmonic_growth_rate, mode_growth_rate
from wgf.solvers.fem.implicit_euler import Solver as FEImplicit
from wgf.solvers.particles.blob import Solver


def equiangular() -> None:
    """Error at T and order in dt of the equiangular inner product, USA and SA."""
    n, beta, rho0, T = 8, 1.0, 0.0, 1.0
    dts = (0.04, 0.02, 0.01, 0.005)
    for norm in ("usa", "sa"):
        ode = solve_ivp(
            lambda t, r, norm=norm: [equiangular_rate(r[0], beta, n, norm)],
            (0.0, T),
            [rho0],
            method="DOP853",
            rtol=1e-10,
            atol=1e-14,
        )
        exact = float(ode.y[0, -1])
        errors = []
        for dt in dts:
            sets = {
                "energy.interaction.normalization": norm,
                "solver.blob.dt": dt,
                "time.tau": 0.2,
                "time.t_end": T,
                "output.snapshots": 2,
            }
            case = api.load("tokens_equiangular", sets)
            with tempfile.TemporaryDirectory() as out:
                run = api.run(case, "blob", comm=MPI.COMM_SELF, out=out)
            gram = run.positions[-1] @ run.positions[-1].T
            off = gram[~np.eye(n, dtype=bool)]
            errors.append(abs(off.mean() - exact))
            print(
                f"{norm}: dt = {dt:<6g} ρ(T) = {off.mean():.12f}  ODE {exact:.12f}  "
                f"error {errors[-1]:.3e}  spread {off.std():.1e}",
                flush=True,
            )
        slopes = np.diff(np.log(errors)) / np.diff(np.log(dts))
        print(f"{norm}: observed orders {np.array2string(slopes, precision=3)}", flush=True)


def mode_case(
    k: int, beta: float, amplitude: float, t_end: float, tau: float, shape: str = "circle"
) -> dict:
    """USA at β, no diffusion, from the uniform density perturbed by the harmonic k."""
    return {
        "name": f"mode{k}",
        "energy": {"internal": "none", "interaction": {"kind": "attention", "beta": beta}},
        "domain": {"shape": shape},
        "initial": {"kind": "perturbed_uniform", "mode": k, "amplitude": amplitude},
        "time": {"t_end": t_end, "tau": tau},
    }


def blob_mode_rate(
    k: int, beta: float, T: float, steps: int, dt: float, particles: int, out: str
) -> tuple[float, float]:
    """log(|ĉ_k(T)|/|ĉ_k(0)|)/T for blob's tokens on the circle (this rank alone), |ĉ_k(T)|."""
    case = mode_case(k, beta, 1e-6, T, T / steps)
    case["output"] = {"snapshots": 2}
    case["solver"] = {"blob": {"dt": dt, "particles": particles}}
    run = api.run(api.load(case), "blob", comm=MPI.COMM_SELF, out=out)
    theta = np.arctan2(run.positions[..., 1], run.positions[..., 0])
    c = np.abs(np.exp(-1j * k * theta).mean(axis=1))
    return float(np.log(c[-1] / c[0]) / T), float(c[-1])


def instability() -> None:
    """Growth rates of the modes k = 1..5 on the circle (blob, USA, β = 5) against k²I_k/β."""
    beta, N, T = 5.0, 512, 0.5
    for dt in (0.002, 0.001):
        for k in range(1, 6):
            with tempfile.TemporaryDirectory() as out:
                rate, final = blob_mode_rate(k, beta, T, 5, dt, N, out)
            exact = mode_growth_rate(k, beta)
            print(
                f"dt = {dt}: k = {k}: rate {rate:.6f}  k²I_k(β)/β = {exact:.6f}  "
                f"relative error {abs(rate / exact - 1):.2e}  |ĉ_k(T)| = {final:.1e}",
                flush=True,
            )


def fe_mode_rate(
    k: int, beta: float, n: int, shape: str = "circle", tau: float = 0.01, steps: int = 4
) -> float:
    """λ_h of the harmonic Y = Re((x₁ + i x₂)^k) by fem-implicit (see the module docstring).

    Two runs, from ρ₀(1 + aY) and from ρ₀: the uniform state is steady on the circle mesh
    but drifts by O(h²) on the sphere's, and the difference of the runs is what the
    linearised step moves.  The amplitude is the lumped projection Σ m_i δρ_i Y_i.
    """
    comm = MPI.COMM_WORLD
    runs = []
    for amplitude in (1e-6, 0.0):
        settings = mode_case(k, beta, amplitude, steps * tau, tau, shape)
        settings["domain"]["cells"] = [n]
        case = api.load(settings)
        solver = FEImplicit(case, comm, case.solver_params("fem-implicit"))
        own = solver.V.dofmap.index_map.size_local
        x = solver.V.tabulate_dof_coordinates()[:own, : case.dim]
        weights = solver.lumped_masses()[:own] * harmonic(x, k)
        history = [solver.rho.x.array[:own].copy()]
        for _ in range(steps):
            solver.step(tau)
            history.append(solver.rho.x.array[:own].copy())
        runs.append(np.array(history))
    difference = runs[0] - runs[1]
    amplitudes = [comm.allreduce(float(weights @ d)) for d in difference]
    g = (amplitudes[-1] / amplitudes[0]) ** (1.0 / steps)
    return (g - 1.0) / tau


def fe_instability(shape: str = "circle") -> None:
    """fem-implicit's rates of the harmonics k = 1..5 at β = 5, three mesh sizes.

    Circle: 64, 128, 256 arcs; sphere: icospheres of frequency 8, 16, 32.
    """
    beta = 5.0
    sizes, dim = ((64, 128, 256), 2) if shape == "circle" else ((8, 16, 32), 3)
    print("| k | rate | " + " | ".join(f"n = {n}" for n in sizes) + " | order |")
    print("|---|---|" + "---|" * len(sizes) + "---|")
    for k in range(1, 6):
        exact = harmonic_growth_rate(k, beta, dim)
        errors = [abs(fe_mode_rate(k, beta, n, shape) / exact - 1.0) for n in sizes]
        orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
        print(
            f"| {k} | {exact:.6f} | "
            + " | ".join(f"{e:.2e}" for e in errors)
            + f" | {', '.join(f'{p:.2f}' for p in orders)} |",
            flush=True,
        )


def seconds_per_substep(comm: MPI.Comm, norm: str, n: int, repeat: int) -> tuple[float, float]:
    """Mean wall and CPU (busiest rank) seconds of one Heun substep of n tokens on S²."""
    sets = {
        "energy.interaction.normalization": norm,
        "solver.blob.particles": n,
        "solver.blob.dt": 1e-3,
    }
    case = api.load("tokens_sphere_sa", sets)
    solver = Solver(case, comm, case.solver_params("blob"))
    solver.step(1e-3)  # warm-up
    comm.Barrier()
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(repeat):
        solver.step(1e-3)
    cpu = comm.allreduce(time.process_time() - c0, op=MPI.MAX)
    comm.Barrier()
    return (time.perf_counter() - t0) / repeat, cpu / repeat


def perf(n: int = 10_000, repeat: int = 3) -> None:
    """One substep at n tokens on 1 and on all ranks (run under mpiexec -n 2)."""
    world = MPI.COMM_WORLD
    for norm in ("sa", "usa"):
        parallel, parallel_cpu = seconds_per_substep(world, norm, n, repeat)
        if world.rank == 0:
            serial, serial_cpu = seconds_per_substep(MPI.COMM_SELF, norm, n, repeat)
            print(f"{norm}: {n} tokens on S², one Heun substep")
            print(f"1 rank:  {serial:.3f} s (CPU {serial_cpu:.3f} s)")
            print(f"{world.size} ranks: {parallel:.3f} s (CPU {parallel_cpu:.3f} s, busiest rank)")
            print(
                f"speed-up: {serial / parallel:.2f} (wall), "
                f"{serial_cpu / parallel_cpu:.2f} (CPU time, insensitive to other load)",
                flush=True,
            )
        idle_barrier(world)


if __name__ == "__main__":
    commands = {
        "equiangular": equiangular,
        "instability": instability,
        "fe-instability": fe_instability,
        "fe-sphere-instability": lambda: fe_instability("sphere"),
        "perf": perf,
    }
    commands[sys.argv[1]]()
