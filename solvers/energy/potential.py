"""Potential energies ∫ V ρ dx: a confining or driving potential V(x).

A potential gives its value, gradient and Hessian at points (NumPy, for particles and
nodal FE quantities) and its UFL expression (for FE forms).  Two kinds ship:

* :class:`QuadraticPotential`, V = ½(x-c)ᵀA(x-c): the closed forms of DESIGN §5 need it;
* :class:`ExpressionPotential`, any smooth V given as a (safely parsed) SymPy expression in
  x, y, z; its gradient and Hessian are SymPy derivatives, not finite differences.

A new kind of potential is one class that provides :class:`Potential`, registered with
:func:`register_potential` (its case keys go into ``[energy.potential]`` of the schema).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from wgf.cases.closed_forms import quadratic_potential

if TYPE_CHECKING:
    from wgf.cases import Case
    from wgf.cases.expressions import SymbolicFunction


class Potential(Protocol):
    """What every potential term provides; points ``x`` have shape (n, d)."""

    @classmethod
    def from_case(cls, case: Case) -> Potential | None: ...  # noqa: D102

    def value(self, x: np.ndarray) -> np.ndarray: ...  # noqa: D102
    def gradient(self, x: np.ndarray) -> np.ndarray: ...  # noqa: D102
    def hessian(self, x: np.ndarray) -> np.ndarray: ...  # noqa: D102
    def hessian_norm(self, x: np.ndarray) -> float: ...  # noqa: D102
    def ufl_value(self, x: Any) -> Any: ...  # noqa: D102


def largest_hessian_norm(potential: Potential, x: np.ndarray) -> float:
    """Max over the points x of ‖∇²V(x)‖₂ from ``potential.hessian`` (0 for no points)."""
    x = np.atleast_2d(x)
    if len(x) == 0:
        return 0.0
    return float(np.abs(np.linalg.eigvalsh(potential.hessian(x))).max())


#: The potential kinds; :meth:`FreeEnergy.from_case` takes the first that a case selects.
POTENTIALS: list[type] = []


def register_potential(cls: type) -> type:
    """Class decorator: a kind of potential that ``from_case`` can select."""
    POTENTIALS.append(cls)
    return cls


@register_potential
@dataclass(frozen=True)
class QuadraticPotential:
    """V(x) = ½ (x-c)ᵀ A (x-c), A symmetric positive semidefinite."""

    A: np.ndarray
    center: np.ndarray

    @classmethod
    def from_case(cls, case: Case) -> QuadraticPotential | None:
        """``[energy.potential]`` with ``A`` (and ``center``)."""
        quadratic = case.potential()
        return None if quadratic is None else cls(*quadratic)

    def value(self, x: np.ndarray) -> np.ndarray:
        """V at points x of shape (n, d)."""
        return quadratic_potential(x, self.A, self.center)

    def gradient(self, x: np.ndarray) -> np.ndarray:
        """∇V = A(x-c) at points x of shape (n, d)."""
        return (np.atleast_2d(x) - self.center) @ self.A.T

    def hessian(self, x: np.ndarray) -> np.ndarray:
        """∇²V = A at every point, shape (n, d, d)."""
        return np.broadcast_to(self.A, (len(np.atleast_2d(x)), *self.A.shape))

    def hessian_norm(self, x: np.ndarray) -> float:
        """‖A‖₂, the same at every point."""
        return float(np.abs(np.linalg.eigvalsh(self.A)).max())

    def ufl_value(self, x: Any) -> Any:
        """V as a UFL expression of the spatial coordinate ``x``."""
        import ufl

        y = x - ufl.as_vector(self.center.tolist())
        return 0.5 * ufl.dot(y, ufl.as_matrix(self.A.tolist()) * y)


@register_potential
@dataclass(frozen=True)
class ExpressionPotential:
    """V(x) given by a formula in the coordinates x, y, z (DESIGN §4 ``expression``)."""

    function: SymbolicFunction

    @classmethod
    def from_case(cls, case: Case) -> ExpressionPotential | None:
        """``[energy.potential]`` with ``expression``."""
        function = case.potential_expression()
        return None if function is None else cls(function)

    def value(self, x: np.ndarray) -> np.ndarray:
        """V at points x of shape (n, d)."""
        return self.function(np.atleast_2d(x))

    def gradient(self, x: np.ndarray) -> np.ndarray:
        """∇V at points x of shape (n, d), from the SymPy derivatives."""
        return self.function.gradient(np.atleast_2d(x))

    def hessian(self, x: np.ndarray) -> np.ndarray:
        """∇²V at points x, shape (n, d, d), from the SymPy derivatives."""
        return self.function.hessian(np.atleast_2d(x))

    def hessian_norm(self, x: np.ndarray) -> float:
        """Max over the points x of the spectral norm of ∇²V (0 for no points)."""
        return largest_hessian_norm(self, x)

    def ufl_value(self, x: Any) -> Any:
        """V as a UFL expression of the spatial coordinate ``x``."""
        return self.function.to_ufl([x[i] for i in range(len(self.function.variables))])
