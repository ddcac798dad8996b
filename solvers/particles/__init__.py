"""Lagrangian particle solvers: particles move with v = -∇(δF/δρ).

* :mod:`wgf.solvers.particles.blob` — deterministic blob method (mollified energy);
* :mod:`wgf.solvers.particles.langevin` — stochastic Euler–Maruyama particles (entropy only);
* :mod:`wgf.solvers.particles.quantile_1d` — exact 1-D Lagrangian JKO in quantile coordinates.

Shared pieces, one idea per module: :mod:`~wgf.solvers.particles.initial` (particles from the
initial density), :mod:`~wgf.solvers.particles.kernels` (Gaussian kernel sums over neighbour
lists), :mod:`~wgf.solvers.particles.parallel` (block distribution over MPI ranks),
:mod:`~wgf.solvers.particles.xdmf` (the ParaView Polyvertex time series) and
:mod:`~wgf.solvers.particles.base` (the :class:`~wgf.solvers.base.FlowSolver` they all subclass).
"""
