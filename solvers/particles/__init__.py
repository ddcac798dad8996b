"""Lagrangian particle solvers: particles move with v = -∇(δF/δρ).

* :mod:`solvers.particles.blob` — deterministic blob method (mollified energy);
* :mod:`solvers.particles.langevin` — stochastic Euler–Maruyama particles (entropy only);
* :mod:`solvers.particles.quantile_1d` — exact 1-D Lagrangian JKO in quantile coordinates.

Shared pieces, one idea per module: :mod:`~solvers.particles.initial` (particles from the
initial density), :mod:`~solvers.particles.kernels` (Gaussian kernel sums over neighbour
lists), :mod:`~solvers.particles.parallel` (block distribution over MPI ranks),
:mod:`~solvers.particles.xdmf` (the ParaView Polyvertex time series) and
:mod:`~solvers.particles.base` (the :class:`~solvers.base.FlowSolver` they all subclass).
"""
