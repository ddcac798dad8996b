"""The free energy shared by every solver, as a sum of terms (DESIGN §1).

    F(ρ) = ∫ D·U(ρ) dx + ∫ V ρ dx + ½∬ W(x - y) ρ(x) ρ(y) dx dy

* :mod:`.internal`: internal energies U (entropy, power law, none);
* :mod:`.potential`: potentials V (quadratic, any SymPy expression);
* :mod:`.interaction`: the radial pair kernel W (any formula in r, the Newtonian kernel),
  with :mod:`.pair_sums` for W∗μ (direct, or particle-mesh FFT);
* :mod:`.network`: the risk of a two-layer network (``[model]``) as a potential and a
  non-radial pair term on neurons θ = (a, w);
* :mod:`.free_energy`: :class:`FreeEnergy`, the sum that the solvers ask;
* :mod:`.backend`: the array namespaces (NumPy, UFL) the formulas are written against.
"""

from wgf.solvers.energy.backend import NUMPY, ArrayNamespace, ufl_namespace
from wgf.solvers.energy.free_energy import FreeEnergy
from wgf.solvers.energy.interaction import Interaction
from wgf.solvers.energy.internal import (
    INTERNAL_ENERGIES,
    Entropy,
    InternalEnergy,
    NoInternal,
    PowerLaw,
    register,
)
from wgf.solvers.energy.potential import (
    POTENTIALS,
    ExpressionPotential,
    Potential,
    QuadraticPotential,
    register_potential,
)

__all__ = [
    "INTERNAL_ENERGIES",
    "NUMPY",
    "POTENTIALS",
    "ArrayNamespace",
    "Entropy",
    "ExpressionPotential",
    "FreeEnergy",
    "Interaction",
    "InternalEnergy",
    "NoInternal",
    "Potential",
    "PowerLaw",
    "QuadraticPotential",
    "register",
    "register_potential",
    "ufl_namespace",
]
