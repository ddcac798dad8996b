"""Array namespaces: one formula serves NumPy arrays and UFL expressions.

An energy term writes each formula once against a namespace ``xp`` that provides the
few functions it needs.  The particle solvers pass :data:`NUMPY`, the finite-element
solvers :func:`ufl_namespace`, and so they evaluate the very same expressions.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np


class ArrayNamespace(Protocol):
    """What an energy formula may call on its arrays."""

    log: Callable[[Any], Any]
    maximum: Callable[[Any, Any], Any]
    zero: Callable[[Any], Any]


#: NumPy face: the default ``xp`` of every energy method.
NUMPY: ArrayNamespace = types.SimpleNamespace(log=np.log, maximum=np.maximum, zero=np.zeros_like)


def ufl_namespace() -> ArrayNamespace:
    """UFL face: ``xp`` for evaluating the energy on UFL expressions (imports UFL lazily)."""
    import ufl

    return types.SimpleNamespace(log=ufl.ln, maximum=ufl.max_value, zero=lambda r: 0.0 * r)
