"""The solver registry: one declaration per solver.

Each solver is declared once, by a :class:`SolverInfo`: its name, the module holding its
``Solver`` class, its kind and one-line summary, its :class:`Capabilities` and its
parameter dataclass (the ``[solver.<name>]`` table).  Everything else is derived from
that declaration:

* the case schema of ``[solver.<name>]`` (:func:`solver_tables`, as
  :class:`~wgf.cases.schema.Key` objects: a field's type gives the key's kind, a ``Literal``
  its choices, its default the default, and :func:`param`'s help the help);
* the listing of ``wgf solvers`` (:meth:`SolverInfo.describe`);
* the generic half of every ``check_case`` and hence ``--solver all``'s skipping (with
  :attr:`SolverInfo.costly_dims`: where a solver runs, but far too slowly to be run unasked).

Modules are imported lazily, so that listing solvers or validating a case does not load
DOLFINx.  A new solver is one module plus one entry in :data:`SOLVERS`.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from wgf.cases.errors import UserError
from wgf.cases.schema import Key
from wgf.solvers.protocols import DOMAIN_SHAPES, MANIFOLD_SHAPES, Capabilities, Kind


def param(default: Any, help: str) -> Any:
    """A parameter field: its default and one line of help (shown by ``wgf keys``)."""
    return dataclasses.field(default=default, metadata={"help": help})


_KINDS = {int: "int", float: "float", str: "str", bool: "bool"}


def _key(hint: Any, field: dataclasses.Field) -> Key:
    """The schema :class:`Key` of one parameter field."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):  # X | None
        (hint,) = [a for a in args if a is not type(None)]
        args = typing.get_args(hint)
    help_ = field.metadata.get("help", "")
    if typing.get_origin(hint) is Literal:
        return Key("str", field.default, choices=tuple(args), help=help_)
    return Key(_KINDS[hint], field.default, help=help_)


def parameter_keys(params: type) -> dict[str, Key]:
    """The ``[solver.<name>]`` schema of a parameter dataclass, in field order."""
    hints = typing.get_type_hints(params)
    return {f.name: _key(hints[f.name], f) for f in dataclasses.fields(params)}


# -- the parameters of each solver ---------------------------------------------------------
_PAIR_SUM_HELP = "interaction sums: direct up to 2·10⁴ particles, particle-mesh FFT above (auto)"


@dataclass(frozen=True)
class FemImplicitParams:
    """``[solver.fem-implicit]``: the PETSc SNES tolerances."""

    rtol: float = param(1e-10, "SNES relative tolerance")
    atol: float = param(1e-12, "SNES absolute tolerance")
    max_it: int = param(100, "SNES maximum Newton iterations")


@dataclass(frozen=True)
class FemJKOParams:
    """``[solver.fem-jko]``: the inner solver and its tolerances."""

    inner: Literal["newton", "alg2"] = param("newton", "inner solver")
    rtol: float = param(1e-10, "Newton relative tolerance (residual norm)")
    atol: float = param(1e-11, "Newton absolute tolerance (residual norm)")
    max_it: int = param(100, "Newton iterations per step (a first step's barrier continuation in)")
    monitor: bool = param(False, "print the Newton residuals (rank 0)")
    mobility: Literal["centred", "upwind"] = param("centred", "edge mobility ρ_ij")
    upwind_smoothing: float = param(1e-6, "width δ in ϕ of the smoothed upwind switch")
    floor: float = param(1e-10, "initial density floor, relative to its maximum")
    barrier: float = param(1e-8, "power law: log-barrier weight / mean density")
    nested_coarsest: int = param(
        50000,
        "power law: each step solved first on the coarser meshes (every edge doubled) of at "
        "least this many vertices (0: off)",
    )
    alg2_time_cells: int = param(1, "inner = alg2: cells of the space-time mesh in t ∈ [0, 1]")
    alg2_r: float = param(1.0, "inner = alg2: augmentation parameter r (> 0)")
    alg2_relaxation: float = param(1.5, "inner = alg2: over-relaxation ω ∈ (0, 2)")
    alg2_tol: float = param(3e-4, "inner = alg2: relative residual tolerance")
    alg2_max_it: int = param(2000, "inner = alg2: ALG2 iterations per step")


@dataclass(frozen=True)
class BlobParams:
    """``[solver.blob]``: lattice, mollifier and substep."""

    particles: int | None = param(None, "lattice cells on the support (1/2/3-D: 200/1600/4096)")
    epsilon: float | None = param(None, "mollifier variance ε (default 2 h^1.9 L^0.1)")
    cfl: float = param(0.5, "substep = cfl x Heun stability bound")
    dt: float | None = param(None, "forced substep (clamped to the stable one)")
    pair_sum: Literal["auto", "direct", "mesh"] = param("auto", _PAIR_SUM_HELP)


@dataclass(frozen=True)
class Quantile1DParams:
    """``[solver.quantile-1d]``: particles and the Newton solve of each step."""

    particles: int | None = param(None, "particles at equal mass quantiles (400)")
    rtol: float = param(1e-12, "Newton stops at step < rtol x support width")
    max_it: int = param(50, "Newton iterations per step")


@dataclass(frozen=True)
class LangevinParams:
    """``[solver.langevin]``: samples, seed and substep."""

    particles: int | None = param(None, "number of samples (10000)")
    seed: int = param(1, "seed of the initial samples and the noise")
    dt: float | None = param(None, "forced substep (default τ; clamped to 1/‖A‖)")
    pair_sum: Literal["auto", "direct", "mesh"] = param("auto", _PAIR_SUM_HELP)


@dataclass(frozen=True)
class FemBBParams:
    """``[solver.fem-bb]``: the space-time mesh and the ALG2 iteration."""

    time_cells: int = param(8, "cells of the space-time mesh in t ∈ [0, 1]")
    degree: int = param(2, "Lagrange degree of the potential φ (1 or 2)")
    r: float = param(4.0, "augmentation parameter of ALG2 (> 0), initial value")
    adapt_r: bool = param(False, "balance the primal and dual residuals by doubling/halving r")
    relaxation: float = param(1.5, "over-relaxation ω ∈ (0, 2) of the q/σ steps (1 = plain ALG2)")
    max_it: int = param(3000, "maximum ALG2 iterations")
    tol: float = param(1e-4, "stop when the relative residual is below")


# -- the declaration -----------------------------------------------------------------------
@dataclass(frozen=True)
class SolverInfo:
    """Everything the suite knows about a solver before importing it.

    Attributes:
        name: The name used on the command line and in ``[solver.<name>]``.
        module: The module holding the solver class ``Solver``.
        summary: One line: the method.
        capabilities: What it runs (kind, energies, dimensions, domains, cells).
        params: Its parameter dataclass (the ``[solver.<name>]`` table).
        costly_dims: Dimensions in which ``--solver all`` leaves the solver out, each with
            the reason (printed): it runs there, but at a cost far above the other
            solvers' for a coarse result.  Naming it (``--solver NAME``) still runs it.
    """

    name: str
    module: str
    summary: str
    capabilities: Capabilities
    params: type
    costly_dims: Mapping[int, str] = dataclasses.field(default_factory=dict)

    def costly_for(self, case: Any) -> str | None:
        """Why ``--solver all`` should leave the solver out of ``case``, or None.

        (The costs are those of flat domains: on a circle or sphere there is no box lattice.)
        """
        return None if case.on_sphere else self.costly_dims.get(case.dim)

    @property
    def kind(self) -> Kind:
        """``"flow"`` or ``"transport"``: which driver runs it."""
        return self.capabilities.kind

    @property
    def parameters(self) -> dict[str, Key]:
        """Its ``[solver.<name>]`` keys, derived from :attr:`params`."""
        return parameter_keys(self.params)

    def load(self) -> type:
        """Import the module and return its ``Solver`` class."""
        return importlib.import_module(self.module).Solver

    def check(self, case: Any) -> None:
        """Raise :class:`UserError` unless the solver runs ``case``.

        The capabilities first, without importing the module (so a flow case never loads
        the transport solver, and the other way round), then the class's own rules.
        """
        self.capabilities.check(case, self.name)
        self.load().check_case(case)

    def describe(self) -> str:
        """The ``wgf solvers`` entry: summary, what it supports and its parameters."""
        lines = [
            f"{self.name:14s} {self.summary}",
            f"{'':14s} supports: {self.capabilities.describe()}",
        ]
        for key, spec in self.parameters.items():
            choices = f" ({' | '.join(spec.choices)})" if spec.choices else ""
            lines.append(
                f"{'':14s}   [solver.{self.name}] {key} = {spec.default!r}{choices}  {spec.help}"
            )
        return "\n".join(lines)


#: Particle solvers move particles in a box whose faces are reflecting walls; they build
#: no mesh, so the cell type does not matter to them.
_PARTICLES_BOX = {"shapes": "the box faces are the particles' reflecting walls"}
#: blob and langevin also run on the unit circle and sphere (projection and retraction).
_PARTICLE_SHAPES = ("box", "circle", "sphere")
#: fem-implicit and fem-jko (LJKO) also run on the circle and sphere meshes (S¹ ⊂ ℝ², S² ⊂ ℝ³).
_FE_SHAPES = (*DOMAIN_SHAPES, *MANIFOLD_SHAPES)
_FE_SPHERE = {"sphere_dims": "its mesh is a triangulated icosahedron; run blob or langevin"}

SOLVERS: dict[str, SolverInfo] = {
    info.name: info
    for info in [
        SolverInfo(
            "fem-implicit",
            "wgf.solvers.fem.implicit_euler",
            "implicit Euler + Newton (PETSc SNES) on the PDE, mass-lumped P1",
            Capabilities(interaction=True, shapes=_FE_SHAPES, sphere_dims=(3,), reasons=_FE_SPHERE),
            FemImplicitParams,
        ),
        SolverInfo(
            "fem-jko",
            "wgf.solvers.fem.jko",
            "JKO with the one-step Benamou–Brenier cost (LJKO, centred or upwind mobility) on "
            "the P1 mesh graph, Newton on the potential",
            Capabilities(
                internal=("entropy", "power"),
                cell_types=("simplex",),
                interaction=True,
                reasons={
                    "internal": "ρ is recovered from its first variation U'(ρ)",
                    "cell_types": "its transmissibilities are those of P1 on simplices",
                    **_FE_SPHERE,
                },
                shapes=_FE_SHAPES,
                sphere_dims=(3,),
            ),
            FemJKOParams,
        ),
        SolverInfo(
            "blob",
            "wgf.solvers.particles.blob",
            "deterministic blob method (mollified energy, neighbour lists, Heun substeps)",
            Capabilities(
                shapes=_PARTICLE_SHAPES,
                interaction=True,
                non_gradient=True,
                models=True,
                reasons=_PARTICLES_BOX,
            ),
            BlobParams,
            # Its cost is N × (neighbours within 5√ε ≈ 9 lattice spacings) per substep:
            # ~3000 neighbours per particle in 3-D, against ~18 in 1-D.
            costly_dims={
                3: "in 3-D its kernel sums cost minutes and GBs even at the default 4096 "
                "particles (~3000 neighbours each), for an L1 error of tens of per cent; "
                "name it to run it: --solver blob",
            },
        ),
        SolverInfo(
            "quantile-1d",
            "wgf.solvers.particles.quantile_1d",
            "exact 1-D Lagrangian JKO in quantile coordinates (Newton, tridiagonal)",
            Capabilities(dims=(1,), shapes=("box",), interaction=True, reasons=_PARTICLES_BOX),
            Quantile1DParams,
        ),
        SolverInfo(
            "langevin",
            "wgf.solvers.particles.langevin",
            "stochastic particles, Euler–Maruyama (the sampling baseline)",
            Capabilities(
                internal=("entropy", "none"),
                shapes=_PARTICLE_SHAPES,
                interaction=True,
                non_gradient=True,
                models=True,
                reasons={
                    **_PARTICLES_BOX,
                    "internal": "Langevin noise is linear diffusion only; for the power law "
                    "use blob or quantile-1d",
                },
            ),
            LangevinParams,
        ),
        SolverInfo(
            "fem-bb",
            "wgf.solvers.fem.benamou_brenier",
            "dynamic optimal transport [initial] -> [target]: W2 and geodesic by ALG2 "
            "(Benamou-Brenier) on a space-time P2 mesh",
            Capabilities(
                kind="transport",
                internal=(),
                potential=False,
                dims=(1, 2),
                shapes=("box",),
                reasons={"dims": "the space-time mesh is Ω × [0, 1]"},
            ),
            FemBBParams,
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


def capabilities(name: str) -> Capabilities:
    """The capabilities of the solver ``name`` (for its ``check_case``).

    A solver class outside the registry (a user's own, a test double) gets the defaults:
    a gradient-flow solver of any energy, dimension and domain.
    """
    return SOLVERS[name].capabilities if name in SOLVERS else Capabilities()


def solver_tables() -> dict[str, dict[str, Key]]:
    """Schema of ``[solver]``: each solver's parameter keys, by solver name."""
    return {name: info.parameters for name, info in SOLVERS.items()}
