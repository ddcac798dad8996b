"""The solver registry: names, what each supports, and its ``[solver.<name>]`` keys.

Modules are imported lazily, so that listing solvers or validating a case does not
load DOLFINx.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field

from wgf.cases.errors import UserError
from wgf.cases.schema import Key


@dataclass(frozen=True)
class SolverInfo:
    """What the CLI needs to know about a solver.

    Attributes:
        name: The name used on the command line and in ``[solver.<name>]``.
        module: The module holding the solver class ``Solver``.
        summary: One line.
        supports: Energies, dimensions and domains it runs.
        parameters: Its ``[solver.<name>]`` keys.
    """

    name: str
    module: str
    summary: str
    supports: str
    parameters: dict[str, Key] = field(default_factory=dict)

    def load(self) -> type:
        """Import the module and return its ``Solver`` class."""
        return importlib.import_module(self.module).Solver


SOLVERS: dict[str, SolverInfo] = {
    info.name: info
    for info in [
        SolverInfo(
            "fem-implicit",
            "wgf.solvers.fem.implicit_euler",
            "implicit Euler + Newton (PETSc SNES) on the PDE, mass-lumped P1",
            "entropy, power, none; quadratic V; 1-D/2-D/3-D; box, disk, file",
            {
                "rtol": Key("float", 1e-10, help="SNES relative tolerance"),
                "atol": Key("float", 1e-12, help="SNES absolute tolerance"),
                "max_it": Key("int", 100, help="SNES maximum Newton iterations"),
            },
        ),
        SolverInfo(
            "fem-jko",
            "wgf.solvers.fem.jko",
            "JKO with the one-step Benamou–Brenier cost (LJKO, centred or upwind mobility) on the "
            "P1 mesh graph, Newton on the potential",
            "entropy, power (log barrier); quadratic V; simplex meshes 1-D/2-D/3-D; "
            "box, disk, file",
            {
                "inner": Key("str", "newton", choices=("newton", "alg2"), help="inner solver"),
                "rtol": Key("float", 1e-10, help="Newton relative tolerance (residual norm)"),
                "atol": Key("float", 1e-11, help="Newton absolute tolerance (residual norm)"),
                "max_it": Key("int", 100, help="Newton maximum iterations"),
                "monitor": Key("bool", False, help="print the Newton residuals (rank 0)"),
                "mobility": Key(
                    "str", "centred", choices=("centred", "upwind"), help="edge mobility ρ_ij"
                ),
                "upwind_smoothing": Key(
                    "float", 1e-6, help="width δ in ϕ of the smoothed upwind switch"
                ),
                "floor": Key("float", 1e-10, help="initial density floor, relative to its maximum"),
                "barrier": Key("float", 1e-8, help="power law: log-barrier weight / mean density"),
                "alg2_time_cells": Key(
                    "int", 1, help="inner = alg2: cells of the space-time mesh in t ∈ [0, 1]"
                ),
                "alg2_r": Key("float", 1.0, help="inner = alg2: augmentation parameter r (> 0)"),
                "alg2_relaxation": Key(
                    "float", 1.5, help="inner = alg2: over-relaxation ω ∈ (0, 2)"
                ),
                "alg2_tol": Key("float", 3e-4, help="inner = alg2: relative residual tolerance"),
                "alg2_max_it": Key("int", 2000, help="inner = alg2: ALG2 iterations per step"),
            },
        ),
        SolverInfo(
            "blob",
            "wgf.solvers.particles.blob",
            "deterministic blob method (mollified energy, neighbour lists, Heun substeps)",
            "entropy, power, none; quadratic V; 1-D/2-D/3-D; box",
            {
                "particles": Key(
                    "int", None, help="lattice cells on the support (1/2/3-D: 200/1600/4096)"
                ),
                "epsilon": Key("float", None, help="mollifier variance ε (default 2 h^1.9 L^0.1)"),
                "cfl": Key("float", 0.5, help="substep = cfl x Heun stability bound"),
                "dt": Key("float", None, help="forced substep (clamped to the stable one)"),
            },
        ),
        SolverInfo(
            "quantile-1d",
            "wgf.solvers.particles.quantile_1d",
            "exact 1-D Lagrangian JKO in quantile coordinates (Newton, tridiagonal)",
            "entropy, power, none; quadratic V; 1-D; box",
            {
                "particles": Key("int", None, help="particles at equal mass quantiles (400)"),
                "rtol": Key("float", 1e-12, help="Newton stops at step < rtol x support width"),
                "max_it": Key("int", 50, help="Newton iterations per step"),
            },
        ),
        SolverInfo(
            "langevin",
            "wgf.solvers.particles.langevin",
            "stochastic particles, Euler–Maruyama (the sampling baseline)",
            "entropy, none (no power law); quadratic V; 1-D/2-D/3-D; box",
            {
                "particles": Key("int", None, help="number of samples (10000)"),
                "seed": Key("int", 1, help="seed of the initial samples and the noise"),
                "dt": Key("float", None, help="forced substep (default τ; clamped to 1/‖A‖)"),
            },
        ),
        SolverInfo(
            "fem-bb",
            "wgf.solvers.fem.benamou_brenier",
            "dynamic optimal transport [initial] -> [target]: W2 and geodesic by ALG2 "
            "(Benamou-Brenier) on a space-time P2 mesh",
            "cases with [target]; 1-D/2-D box",
            {
                "time_cells": Key("int", 8, help="cells of the space-time mesh in t ∈ [0, 1]"),
                "degree": Key("int", 2, help="Lagrange degree of the potential φ (1 or 2)"),
                "r": Key("float", 4.0, help="augmentation parameter of ALG2 (> 0), initial value"),
                "adapt_r": Key(
                    "bool",
                    False,
                    help="balance the primal and dual residuals by doubling/halving r",
                ),
                "relaxation": Key(
                    "float",
                    1.5,
                    help="over-relaxation ω ∈ (0, 2) of the q/σ steps (1 = plain ALG2)",
                ),
                "max_it": Key("int", 3000, help="maximum ALG2 iterations"),
                "tol": Key("float", 1e-4, help="stop when the relative residual is below"),
            },
        ),
    ]
}


def get_solver(name: str) -> SolverInfo:
    """Return the registered solver ``name`` or raise a :class:`UserError` naming it."""
    if name in SOLVERS:
        return SOLVERS[name]
    close = difflib.get_close_matches(name, list(SOLVERS), n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise UserError(f"unknown solver '{name}' (available: {', '.join(SOLVERS)}){hint}")


def solver_tables() -> dict[str, dict[str, Key]]:
    """Schema of ``[solver]``: each solver's parameter keys, by solver name."""
    return {name: info.parameters for name, info in SOLVERS.items()}
