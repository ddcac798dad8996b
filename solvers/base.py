"""The base class of the gradient-flow solvers (:mod:`wgf.run` drives them).

A solver is built from a validated case, advances by ``step(τ)`` and answers questions
about its current state; the driver does the clock, the results file and resuming.  The
methods are those of :class:`wgf.solvers.protocols.GradientFlowSolver`; those marked
optional here have a do-nothing default.

Reporting: solvers never ``print``.  A module logs through
``logger = logging.getLogger(__name__)`` (names under ``wgf.solvers``), progress notes
at INFO and problems the run survives at WARNING.  The command line (:mod:`wgf.cli`)
configures the ``wgf`` logger: rank 0 prints INFO and above to stdout as plain lines,
the other ranks WARNING and above, so a note needs no ``if comm.rank == 0``.  A script
that uses the Python API sees nothing unless it configures logging itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from mpi4py import MPI

from wgf.cases import Case
from wgf.solvers.registry import capabilities


class FlowSolver:
    """Base class of all solvers of ∂_t ρ = div(ρ∇δF/δρ).

    Args:
        case: The validated case.
        comm: The communicator of the run.
        params: The solver's ``[solver.<name>]`` table, defaults filled in.
    """

    name = "solver"
    #: Whether ``step``'s iteration count measures how hard the step was (Newton
    #: iterations), so that ``time.adaptive`` may grow τ after easy steps.  Not for solvers
    #: that substep by a stability bound, whose counts grow with τ by design.
    adaptive_tau = False
    #: The size of the density (mass/|Ω|), the scale of the positivity check.
    density_scale = 1.0
    #: What resolves the density and the rule of its limit, for the blow-up line of
    #: :func:`~wgf.solvers.acceptance.check_resolved` (``{limit}``: the limit's value).
    #: Used when :meth:`diagnostics` reports ``peak_density`` and ``resolved_density``.
    resolves = "the solver resolves ({limit})"

    def __init__(self, case: Case, comm: MPI.Comm, params: dict[str, Any]) -> None:
        self.check_case(case)
        self.case, self.comm, self.params = case, comm, params

    @classmethod
    def check_case(cls, case: Case) -> None:
        """Raise :class:`~wgf.cases.errors.UserError` if this solver cannot run ``case``.

        Called without building anything, so ``--solver all`` can skip such solvers.
        The default applies the solver's registered
        :class:`~wgf.solvers.protocols.Capabilities` (kind, dimension, domain, cells,
        energy terms); a subclass adds its own rules after calling it.
        """
        capabilities(cls.name).check(case, cls.name)

    # -- required --------------------------------------------------------------------------
    def step(self, tau: float) -> int:
        """Advance by τ and return the inner iteration count.

        On failure raise :class:`~wgf.cases.errors.SolverError` and leave the state unchanged.
        """
        raise NotImplementedError

    def diagnostics(self, t: float) -> dict[str, float]:
        """Per-step diagnostics at time t (DESIGN §6), identical on every rank."""
        raise NotImplementedError

    def bounding_box(self) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper corners of the domain (for the sample grid)."""
        raise NotImplementedError

    def prepare_sampling(self, points: np.ndarray) -> None:
        """Get ready to evaluate the density at ``points`` (n, dim), called once."""
        raise NotImplementedError

    def sample(self) -> np.ndarray | None:
        """The density at the sample points, on rank 0 (None elsewhere)."""
        raise NotImplementedError

    def state(self) -> dict[str, np.ndarray]:
        """Everything needed to continue, as global arrays on rank 0 ({} elsewhere)."""
        raise NotImplementedError

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore a state written by :meth:`state`; ``state`` is given on every rank."""
        raise NotImplementedError

    def save(self) -> dict[str, Any]:
        """A copy of the state, for :meth:`restore` to undo a rejected step.

        The default is the checkpoint state broadcast to every rank, which works for any
        solver but gathers the whole state every step: the solvers here override both
        with copies of their local arrays.
        """
        return self.comm.bcast(self.state(), root=0)

    def restore(self, saved: dict[str, Any]) -> None:
        """Go back to the state :meth:`save` returned."""
        self.set_state(saved)

    def invariants(self) -> frozenset[str]:
        """What the scheme guarantees at every step, checked by :mod:`wgf.solvers.acceptance`.

        ``finite`` and ``mass`` always; add ``positivity``, ``energy_decay`` or
        ``dissipation`` only where the discrete scheme proves them.
        """
        return frozenset()

    # -- optional --------------------------------------------------------------------------
    def static_arrays(self) -> dict[str, np.ndarray]:
        """Datasets written once into a new results file (e.g. ``particles/weights``)."""
        return {}

    def snapshot_arrays(self) -> dict[str, np.ndarray]:
        """Datasets appended at each snapshot (e.g. ``particles/positions``), rank 0."""
        return {}

    def open_fields(self, path: Path) -> str | None:
        """Start a ParaView time series at ``path``; return its file name, or None."""
        return None

    def write_fields(self, t: float) -> None:
        """Append the current state at time t to the ParaView series."""

    def close(self) -> None:
        """Close any open files."""
