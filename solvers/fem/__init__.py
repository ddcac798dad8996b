"""Finite-element solvers on DOLFINx meshes (P1, MPI-parallel).

:mod:`wgf.solvers.fem.base` holds what every FE solver shares — the mesh and P1 space, the
mass-lumped measure, diagnostics, point sampling, checkpoints and XDMF output; each
solver module adds only its time step.
"""
