"""The one check of a case's density (``[initial]`` or ``[target]``) where a solver samples it.

A density from a case file is only known to be usable once it has been evaluated where the
solver needs it: a closed form can overflow (``initial.mass = 1e308``), a formula can be
negative somewhere, and a Gaussian centred far outside the domain has no mass inside it.
Every solver evaluates the density its own way (P1 nodes, P2 nodes on the faces of a
space-time mesh, a probe grid for the particles), then calls :func:`check_density`, so that
every solver reports the same problem with the same one-line :class:`UserError`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from wgf.cases.errors import UserError

if TYPE_CHECKING:
    from mpi4py import MPI


def check_density(
    values: np.ndarray,
    key: str,
    where: str,
    comm: MPI.Comm | None = None,
    mass: float | None = None,
) -> None:
    """Raise a one-line :class:`UserError` unless the density is finite, ≥ 0 and has mass.

    Args:
        values: The density at this rank's points (each point on one rank only).
        key: The case table the density comes from, ``"initial"`` or ``"target"``.
        where: Where it was evaluated, for the message: ``"on the mesh"``, ...
        comm: With a communicator, the checks are over the values of all its ranks
            (collective: every rank raises the same error).
        mass: The density's mass as the solver integrates it (global); if omitted, the
            density has mass when some value is positive.

    Raises:
        UserError: naming ``key``, ``where`` and what is wrong.
    """
    values = np.asarray(values, dtype=float)
    bad = _reduce(int(np.count_nonzero(~np.isfinite(values))), "SUM", comm)
    if bad:
        raise UserError(f"case key '{key}': the {key} density has {bad} non-finite values {where}")
    low = _reduce(float(values.min(initial=np.inf)), "MIN", comm)
    if low < 0.0:
        raise UserError(f"case key '{key}': the {key} density is negative {where} (min {low:.3g})")
    if mass is None:
        mass = _reduce(float(values.max(initial=0.0)), "MAX", comm)
    if not mass > 0.0:
        raise UserError(
            f"case key '{key}': the {key} density has no mass {where} (is it inside the domain?)"
        )


def _reduce(value: float, op: str, comm: MPI.Comm | None) -> float:
    """``value`` reduced over ``comm`` by the MPI operation named ``op`` (as is without one)."""
    if comm is None:
        return value
    from mpi4py import MPI  # a communicator was given, so mpi4py is loaded already

    return comm.allreduce(value, op=getattr(MPI, op))
