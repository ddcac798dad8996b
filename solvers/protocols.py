"""What the drivers ask of a solver, and what a solver declares it can run.

Two kinds of solver meet the command line:

* a :class:`GradientFlowSolver` follows ∂_t ρ = div(ρ∇δF/δρ) from ``[initial]`` over
  ``[time]``; the time loop of :mod:`wgf.run` calls ``step(τ)`` and records the state;
* a :class:`TransportSolver` computes the optimal transport from ``[initial]`` to
  ``[target]`` by one iterative solve; :mod:`wgf.transport` runs it and writes the file.

A case is a *transport case* exactly when it has a ``[target]`` table, and a *flow case*
otherwise (:func:`case_kind`).  The drivers dispatch on the solver's declared kind
(:attr:`Capabilities.kind`, in :mod:`wgf.solvers.registry`), never on duck typing, and
:meth:`Capabilities.check` refuses a mismatch before anything is built.

The protocols are structural (:class:`typing.Protocol`): a solver need not inherit from
anything to satisfy them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from wgf.cases.errors import UserError
from wgf.solvers.energy.internal import INTERNAL_ENERGIES as REGISTERED_INTERNAL_ENERGIES

if TYPE_CHECKING:
    import numpy as np
    from mpi4py import MPI

    from wgf.cases import Case

Kind = Literal["flow", "transport"]

#: The internal energies U of a case (``energy.internal``), as registered by the energy.
INTERNAL_ENERGIES = tuple(REGISTERED_INTERNAL_ENERGIES)
DOMAIN_SHAPES = ("box", "disk", "file")
#: The unit circle and sphere (manifolds without boundary): only solvers that name them run them.
MANIFOLD_SHAPES = ("circle", "sphere")
CELL_TYPES = ("simplex", "hypercube")


def case_kind(case: Case) -> Kind:
    """``"transport"`` for a case with a ``[target]`` table, else ``"flow"``."""
    return "transport" if case.section("target") is not None else "flow"


@runtime_checkable
class GradientFlowSolver(Protocol):
    """A solver of a gradient flow, driven step by step by :func:`wgf.run.run_flow`.

    The driver owns the clock, the snapshot schedule, step halving, the results file and
    ``--resume``; the solver owns its state.  :class:`wgf.solvers.base.FlowSolver` is a
    base class that documents each method and gives the optional ones a default.
    """

    name: str
    comm: MPI.Comm
    params: dict[str, Any]

    @classmethod
    def check_case(cls, case: Case) -> None:
        """Raise :class:`UserError` if the solver cannot run ``case`` (builds nothing)."""

    def step(self, tau: float) -> int:
        """Advance by τ; return the inner iteration count (SolverError: state unchanged)."""

    def diagnostics(self, t: float) -> dict[str, float]:
        """Per-step diagnostics at time t, identical on every rank."""

    def bounding_box(self) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper corners of the domain (for the sample grid)."""

    def prepare_sampling(self, points: np.ndarray) -> None:
        """Get ready to evaluate the density at ``points`` (n, dim), called once."""

    def sample(self) -> np.ndarray | None:
        """The density at the sample points, on rank 0 (None elsewhere)."""

    def state(self) -> dict[str, np.ndarray]:
        """Everything needed to continue, as global arrays on rank 0."""

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore a state written by :meth:`state` (given on every rank)."""

    def static_arrays(self) -> dict[str, np.ndarray]:
        """Datasets written once into a new results file."""

    def snapshot_arrays(self) -> dict[str, np.ndarray]:
        """Datasets appended at each snapshot, on rank 0."""

    def open_fields(self, path: Path) -> str | None:
        """Start a ParaView time series at ``path``; return its file name, or None."""

    def write_fields(self, t: float) -> None:
        """Append the current state at time t to the ParaView series."""

    def close(self) -> None:
        """Close any open files."""


@runtime_checkable
class TransportSolver(Protocol):
    """A dynamic optimal-transport solver, run once by :func:`wgf.transport.run_transport`.

    It iterates to convergence, keeps a per-iteration ``history`` and then answers
    questions about the geodesic ρ(t, ·), t ∈ [0, 1].
    """

    name: str
    comm: MPI.Comm
    params: dict[str, Any]
    #: Iterations done so far.
    iterations: int
    #: One list per quantity (``residual``, ``w2sq_primal``, ``w2sq_dual``, ``r``, …),
    #: one value per iteration.
    history: dict[str, list[float]]

    @classmethod
    def check_case(cls, case: Case) -> None:
        """Raise :class:`UserError` if the solver cannot run ``case`` (builds nothing)."""

    def run(self, callback: Callable[[int, dict[str, float]], None] | None = None) -> bool:
        """Iterate until converged or out of iterations; return whether it converged."""

    def bounding_box(self) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper corners of the spatial domain."""

    def sample(self, times: np.ndarray, points: np.ndarray) -> np.ndarray | None:
        """The geodesic density at ``times`` × ``points``, on rank 0 (None elsewhere)."""

    def slab_mass(self) -> np.ndarray:
        """The mass of each time slab of the space-time mesh."""

    def write_fields(self, path: Path) -> str | None:
        """Write the space-time fields for ParaView; return the file name."""

    def close(self) -> None:
        """Release the solver's resources."""


def _either(values: tuple[str, ...]) -> str:
    quoted = [f'"{v}"' for v in values]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


def _dims(dims: tuple[int, ...]) -> str:
    return "/".join(f"{d}-D" if i == len(dims) - 1 else str(d) for i, d in enumerate(dims))


@dataclass(frozen=True)
class Capabilities:
    """What a solver runs: the generic part of its ``check_case``.

    Attributes:
        kind: ``"flow"`` (a :class:`GradientFlowSolver`, runs cases without ``[target]``)
            or ``"transport"`` (a :class:`TransportSolver`, needs ``[target]``).
        internal: The internal energies U it supports (``energy.internal``); ignored for
            transport solvers, whose cases use ``[energy]`` only for a Barenblatt's m.
        potential: Whether it takes a potential V (``[energy.potential]``).
        interaction: Whether it takes an interaction W (``[energy.interaction]``).
        non_gradient: Whether it takes velocity fields that are not W2 gradients (SA
            attention): particle solvers integrate any velocity, the FE and JKO solvers
            need the energy.
        dims: The (flat) space dimensions it runs.
        sphere_dims: The ambient dimensions d of the spheres S^{d-1} ⊂ ℝ^d it runs, if it
            runs ``"sphere"``; None for every d (particles).
        shapes: The domain shapes it runs (``domain.shape``).
        cell_types: The mesh cells it runs (``domain.cell_type``).
        models: Whether it runs a case model (``[model]``, particles in parameter space
            ℝ^{1+d} of any dimension; ``dims`` and ``shapes`` then do not apply).
        reasons: Why a capability is missing, by field name (``"internal"``, ``"dims"``,
            …): appended to the refusal so that the user learns what to do instead.
    """

    kind: Kind = "flow"
    internal: tuple[str, ...] = INTERNAL_ENERGIES
    potential: bool = True
    interaction: bool = False
    non_gradient: bool = False
    dims: tuple[int, ...] = (1, 2, 3)
    sphere_dims: tuple[int, ...] | None = None
    shapes: tuple[str, ...] = DOMAIN_SHAPES
    cell_types: tuple[str, ...] = CELL_TYPES
    models: bool = False
    reasons: Mapping[str, str] = field(default_factory=dict)

    @property
    def needs_target(self) -> bool:
        """Whether the solver transports ``[initial]`` to a ``[target]``."""
        return self.kind == "transport"

    def check_kind(self, case: Case, solver: str = "this solver") -> None:
        """Refuse a transport case for a flow solver, and the other way round.

        Raises:
            UserError: One line naming ``[target]`` and the two kinds.
        """
        kind = case_kind(case)
        if kind == self.kind:
            return
        if self.kind == "flow":
            raise UserError(
                f"case key 'target': {solver} is a gradient-flow solver, but case "
                f"'{case.name}' has a [target], so it is a transport case "
                "(run it with a transport solver, see `wgf solvers`)"
            )
        raise UserError(
            f"case key 'target': {solver} is a transport solver and needs a [target] "
            f"(the density transported to); case '{case.name}' is a gradient-flow case"
        )

    def check(self, case: Case, solver: str = "this solver") -> None:
        """Raise a one-line :class:`UserError` unless the solver can run ``case``.

        The message names the offending case key, what the solver needs and what the case
        has.  Kind first (the most basic mismatch), then the geometry, then the energy.
        """
        self.check_kind(case, solver)
        if case.section("model") is not None:
            if not self.models:
                self._refuse(
                    "model",
                    f"{solver} solves densities on a mesh or a box; a [model] lives in "
                    f"parameter space ℝ^{case.dim} (run blob or langevin)",
                    "models",
                )
            return  # the model defines the energy and the space (validated)
        dom = case.section("domain")
        inter = case.section("energy").get("interaction")
        if (
            self.kind == "flow"
            and not self.non_gradient
            and inter is not None
            and inter.get("normalization") == "sa"
            and inter.get("kind") == "attention"
        ):
            self._refuse(
                "energy.interaction.normalization",
                f"{solver} solves W2 gradient flows only, and SA attention is not one (its "
                "velocity is normalised token by token); run blob or langevin, or use "
                'normalization = "usa"',
                "non_gradient",
            )
        on_sphere = dom["shape"] == "sphere" and "sphere" in self.shapes
        if on_sphere and self.sphere_dims is not None and case.dim not in self.sphere_dims:
            spaces = "/".join(map(str, self.sphere_dims))
            self._refuse(
                "domain.dimension",
                f"{solver} runs the sphere in ℝ^{spaces} only (the case's is in ℝ^{case.dim})",
                "sphere_dims",
            )
        if case.dim not in self.dims and not on_sphere:
            self._refuse(
                "domain",
                f"{solver} supports {_dims(self.dims)} only (the case is {case.dim}-D)",
                "dims",
            )
        if dom["shape"] not in self.shapes:
            self._refuse(
                "domain.shape",
                f'{solver} needs {_either(self.shapes)} (got "{dom["shape"]}")',
                "shapes",
            )
        if dom["cell_type"] not in self.cell_types:
            self._refuse(
                "domain.cell_type",
                f'{solver} needs {_either(self.cell_types)} cells (got "{dom["cell_type"]}")',
                "cell_types",
            )
        if self.kind == "transport":
            return  # the energy plays no part in a transport problem
        energy = case.section("energy")
        if energy["internal"] not in self.internal:
            self._refuse(
                "energy.internal",
                f'{solver} needs {_either(self.internal)} (got "{energy["internal"]}")',
                "internal",
            )
        if energy.get("potential") is not None and not self.potential:
            self._refuse("energy.potential", f"{solver} takes no potential", "potential")
        if energy.get("interaction") is not None and not self.interaction:
            self._refuse("energy.interaction", f"{solver} takes no interaction", "interaction")

    def _refuse(self, key: str, message: str, capability: str) -> None:
        why = self.reasons.get(capability)
        raise UserError(f"case key '{key}': {message}" + (f": {why}" if why else ""))

    def describe(self) -> str:
        """One line for ``wgf solvers``, e.g. ``flow; U: entropy, power; V; 1/2/3-D; box``."""
        parts = []
        if self.kind == "transport":
            parts.append("transport ([initial] -> [target])")
        else:
            energy = "U: " + ", ".join(self.internal)
            energy += "; V: " + ("yes" if self.potential else "no")
            energy += "; W: " + ("yes" if self.interaction else "no")
            if self.non_gradient:
                energy += " (SA attention too)"
            parts.append(f"gradient flow; {energy}")
        sphere = ""
        if "sphere" in self.shapes:
            d = self.sphere_dims
            sphere = " (sphere: any d)" if d is None else f" (sphere in ℝ^{'/'.join(map(str, d))})"
        parts.append(_dims(self.dims) + sphere)
        parts.append("domain " + "/".join(self.shapes))
        if self.models:
            parts.append("[model] two_layer")
        parts.append("cells " + "/".join(self.cell_types))
        return "; ".join(parts)
