"""What every FE gradient-flow solver shares.

The density lives in P1 (continuous, piecewise linear).  Mass is lumped with the
vertex quadrature rule: the mass matrix is diagonal with positive entries, which is
what lets the time-stepping schemes keep ρ ≥ 0 and conserve mass exactly (the
constant 1 is a test function and every flux term vanishes against it).

Diagnostics are computed the same way by every FE solver:

* ``mass`` = ∫ρ_h, ``energy`` = ∫ D·U(ρ_h) + Vρ_h with the lumped rule (the discrete
  energy the schemes dissipate), ``second_moment`` = ∫|x|²ρ_h;
* ``l1_error``/``l2_error``: ‖ρ_h - ρ‖/‖ρ‖ against the closed form ρ, with a degree-6
  Gauss rule evaluated cell by cell (ρ is a NumPy function, so any closed form works);
* ``min_density``: the smallest nodal value;
* with an interaction kernel singular and attracting at the origin (the only term that can
  concentrate the density in finite time, :attr:`~wgf.solvers.energy.FreeEnergy.may_blow_up`):
  ``peak_density`` = max_i ρ_i and ``resolved_density`` = M/((2π)^{d/2} m_i) at that
  vertex, m_i = ∫φ_i its lumped mass (h² on a uniform 2-D mesh of spacing h).  The latter is
  the peak of a Gaussian of mass M whose standard deviation is the local cell size
  m_i^{1/d}; equivalently the patch of the peak vertex holds (2π)^{-d/2} of the mass.  A
  higher peak is a bump narrower than a cell, which the mesh does not resolve: the driver
  then stops the run (:func:`~wgf.solvers.acceptance.check_resolved`).  A start already
  more peaked than that is the user's choice, not a blow-up: the limit is then the initial
  peak, and the run stops only when the density concentrates beyond its start.

All reductions are over owned entities, so the numbers do not depend on the number of
ranks beyond round-off.
"""

from __future__ import annotations

import dolfinx_solver  # noqa: F401 - must precede dolfinx

import functools
from pathlib import Path
from typing import Any

import basix
import dolfinx.fem
import dolfinx.io
import dolfinx.la
import numpy as np
import ufl
from mpi4py import MPI

from wgf.cases import Case
from wgf.cases.density import check_density
from wgf.cases.errors import UserError
from wgf.meshes import bounding_box, build_mesh
from wgf.solvers.base import FlowSolver
from wgf.solvers.energy import FreeEnergy, ufl_namespace
from wgf.solvers.fem.interaction import MeshConvolution
from wgf.solvers.fem.sampling import PointSampler

ERROR_QUADRATURE_DEGREE = 6


class FEFlowSolver(FlowSolver):
    """Base class: a P1 density on a distributed mesh, with diagnostics and I/O.

    Subclasses implement :meth:`step`.

    Args:
        case: The validated case.
        comm: The communicator of the run.
        params: The solver's ``[solver.<name>]`` table.
    """

    name = "fem"
    resolves = (
        "the mesh resolves ({limit}: the larger of the initial peak and M/((2π)^{{d/2}} m_i), "
        "the peak of a Gaussian of the same mass whose standard deviation is the cell size "
        "m_i^{{1/d}} at the peak vertex)"
    )

    def __init__(self, case: Case, comm: MPI.Comm, params: dict[str, Any]) -> None:
        super().__init__(case, comm, params)
        self.energy = FreeEnergy.from_case(case)
        self.mesh = build_mesh(case.section("domain"), comm)
        if self.mesh.geometry.dim != case.dim:
            raise UserError(
                f"case: the mesh is {self.mesh.geometry.dim}-D but the case is "
                f"{case.dim}-D (dimension mismatch)"
            )
        self.V = dolfinx.fem.functionspace(self.mesh, ("Lagrange", 1))
        self.rho = dolfinx.fem.Function(self.V, name="density")
        self.rho_old = dolfinx.fem.Function(self.V, name="density_old")
        self.xp = ufl_namespace()
        self.x = ufl.SpatialCoordinate(self.mesh)
        self.dx = ufl.Measure("dx", domain=self.mesh)
        self.dx_lumped = ufl.Measure(
            "dx", domain=self.mesh, metadata={"quadrature_rule": "vertex", "quadrature_degree": 1}
        )
        self._check_potential()
        self.V_ufl = self.energy.potential_ufl(self.x)
        self._owned = self.V.dofmap.index_map.size_local
        self._set_initial()
        self._build_diagnostics()
        self._fields: dolfinx.io.XDMFFile | None = None
        self.density_scale = case.section("initial")["mass"] / self.integrate(1.0 * self.dx)
        #: Krylov iterations of the last step's linear solves (a direct solve counts one).
        self.linear_iterations = 0
        #: Linear solves that a Krylov solver failed and LU redid, since the start (cumulative).
        self.lu_fallbacks = 0
        self.convolution: MeshConvolution | None = None
        if self.energy.has_interaction:
            coords = self.V.tabulate_dof_coordinates()[:, : case.dim]
            imap = self.V.dofmap.index_map
            index = imap.local_to_global(np.arange(len(coords), dtype=np.int32))
            masses = self.lumped_masses()
            self.convolution = MeshConvolution(
                self.energy,
                coords,
                masses,
                self._owned,
                index,
                comm,
                cell_dim=self.mesh.topology.dim,
            )
            self._vertex_masses = masses[: self._owned]

    @classmethod
    def check_case(cls, case: Case) -> None:
        """The capabilities, then: a density cannot start from atoms (equiangular tokens)."""
        super().check_case(case)
        initial = case.section("initial")
        if initial is not None and initial["kind"] == "equiangular":
            raise UserError(
                f"case key 'initial.kind': {cls.name} evolves a density, and \"equiangular\" "
                "tokens are atoms; run blob or langevin"
            )

    # -- set-up ----------------------------------------------------------------------------
    def _check_potential(self) -> None:
        """A formula V must be finite at every owned vertex (the error is raised on every rank)."""
        owned = self.mesh.geometry.index_map().size_local
        self.case.check_potential(
            self.mesh.geometry.x[:owned, : self.case.dim], "on the mesh", self.comm
        )

    def _set_initial(self) -> None:
        density = self.case.density("initial")
        gdim = self.case.dim
        with np.errstate(all="ignore"):  # reported below as one clear error
            self.rho.interpolate(lambda x: density(x[:gdim].T))
        mass = self.integrate(self.rho * self.dx_lumped)
        check_density(self.rho.x.array[: self._owned], "initial", "on the mesh", self.comm, mass)
        # Normalise to the stated mass: the box truncates the closed form's tails.
        self.rho.x.array[:] *= self.case.section("initial")["mass"] / mass
        self.rho_old.x.array[:] = self.rho.x.array
        owned = self.rho.x.array[: self._owned]
        self._start_peak = self.comm.allreduce(float(owned.max(initial=-np.inf)), op=MPI.MAX)

    def _build_diagnostics(self) -> None:
        energy = self.energy.density(self.rho, self.V_ufl, self.xp)
        self._forms = {
            "mass": dolfinx.fem.form(self.rho * self.dx_lumped),
            "energy": dolfinx.fem.form(energy * self.dx_lumped),
            "second_moment": dolfinx.fem.form(ufl.dot(self.x, self.x) * self.rho * self.dx),
        }
        self.exact = self.case.exact_solution()
        if self.exact is None:
            return
        cell = self.mesh.topology.cell_type.name
        points, weights = basix.make_quadrature(
            getattr(basix.CellType, cell), ERROR_QUADRATURE_DEGREE
        )
        cells = np.arange(
            self.mesh.topology.index_map(self.mesh.topology.dim).size_local, dtype=np.int32
        )
        x_expr = dolfinx.fem.Expression(self.x, points)
        jac_expr = dolfinx.fem.Expression(abs(ufl.JacobianDeterminant(self.mesh)), points)
        self._q_cells = cells
        self._q_x = x_expr.eval(self.mesh, cells).reshape(-1, self.case.dim)
        self._q_w = (jac_expr.eval(self.mesh, cells).reshape(len(cells), -1) * weights).ravel()
        self._q_rho = dolfinx.fem.Expression(self.rho, points)

    def lumped_masses(self) -> np.ndarray:
        """m_i = ∫φ_i at this rank's dofs (owned and ghost), the vertex rule's weights."""
        v = ufl.TestFunction(self.V)
        vec = dolfinx.fem.assemble_vector(dolfinx.fem.form(v * self.dx_lumped))
        vec.scatter_reverse(dolfinx.la.InsertMode.add)
        vec.scatter_forward()
        return vec.array.copy()

    # -- numbers ---------------------------------------------------------------------------
    def energy_value(self, interaction: np.ndarray | None = None) -> float:
        """F_h(ρ_h): the vertex-rule integral of D·U(ρ) + Vρ, plus the pair energy.

        Args:
            interaction: W∗ρ_h at the vertices, if already evaluated.
        """
        value = self.integrate(self._forms["energy"])
        if self.convolution is not None:
            value += self.convolution.energy_of(self.rho.x.array, interaction)
        return value

    def integrate(self, integrand: ufl.Form | dolfinx.fem.Form) -> float:
        """Global value of a scalar form."""
        form = integrand if isinstance(integrand, dolfinx.fem.Form) else dolfinx.fem.form(integrand)
        return self.comm.allreduce(dolfinx.fem.assemble_scalar(form), op=MPI.SUM)

    def errors(self, t: float) -> dict[str, float]:
        """Relative L1 and L2 errors against the exact solution at time t."""
        if self.exact is None:
            return {}
        rho_q = self._q_rho.eval(self.mesh, self._q_cells).ravel()
        exact_q = self.exact(t, self._q_x)
        error, w = rho_q - exact_q, self._q_w
        # Dot products with the weights: half the cost of summing weighted copies, at a
        # million points (256²) and every step.
        sums = np.array(
            [np.abs(error) @ w, (error * error) @ w, np.abs(exact_q) @ w, (exact_q * exact_q) @ w]
        )
        self.comm.Allreduce(MPI.IN_PLACE, sums, op=MPI.SUM)
        return {"l1_error": sums[0] / sums[2], "l2_error": float(np.sqrt(sums[1] / sums[3]))}

    def diagnostics(self, t: float) -> dict[str, float]:
        """The per-step diagnostics (DESIGN §6) at time t."""
        out = {name: self.integrate(form) for name, form in self._forms.items()}
        if self.convolution is not None:
            out["interaction_energy"] = self.convolution.energy_of(self.rho.x.array)
            out["energy"] += out["interaction_energy"]
        owned = self.rho.x.array[: self._owned]
        out["min_density"] = self.comm.allreduce(float(owned.min(initial=np.inf)), op=MPI.MIN)
        if self.energy.may_blow_up:
            out.update(self.resolution())
        out.update(self.errors(t))
        out["linear_iterations"] = float(self.linear_iterations)
        out["lu_fallbacks"] = float(self.lu_fallbacks)
        return out

    def resolution(self) -> dict[str, float]:
        """``peak_density`` max_i ρ_i and ``resolved_density`` M/((2π)^{d/2} m_i) at it.

        The limit is taken at the peak vertex (its lumped mass m_i), so a locally refined
        mesh resolves more where it is finer; it is never below the initial peak.
        """
        owned = self.rho.x.array[: self._owned]
        local = (-np.inf, 1.0)
        if len(owned):
            i = int(np.argmax(owned))
            local = (float(owned[i]), float(self._vertex_masses[i]))
        peak, m_i = max(self.comm.allgather(local))  # the largest peak, ties by mass
        mass = self.case.section("initial")["mass"]
        # d is the cells' dimension: 2 on the sphere's surface mesh, not the ambient 3.
        limit = mass / ((2.0 * np.pi) ** (self.mesh.topology.dim / 2) * m_i)
        return {"peak_density": peak, "resolved_density": max(float(limit), self._start_peak)}

    def bounding_box(self) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper corners of the domain."""
        return bounding_box(self.mesh)

    # -- sampling --------------------------------------------------------------------------
    def prepare_sampling(self, points: np.ndarray) -> None:
        """Locate the sample points once (see :class:`PointSampler`)."""
        self._sampler = PointSampler(self.mesh, points)

    def sample(self) -> np.ndarray | None:
        """The density at the sample points (zero outside the domain), on rank 0."""
        return self._sampler.evaluate(self.rho)

    # -- checkpoint ------------------------------------------------------------------------
    @functools.cached_property
    def _input_indices(self) -> np.ndarray:
        """For each local dof, the mesh-input index of its vertex (rank-count independent)."""
        node_of_dof = np.empty(len(self.rho.x.array), dtype=np.int64)
        node_of_dof[self.V.dofmap.list.ravel()] = self.mesh.geometry.dofmaps[0].ravel()
        return self.mesh.geometry.input_global_indices[node_of_dof]

    def state(self) -> dict[str, np.ndarray]:
        """The density at every vertex, in mesh-input order, on rank 0."""
        idx = self._input_indices[: self._owned]
        parts = self.comm.gather((idx, self.rho.x.array[: self._owned].copy()), root=0)
        if parts is None:
            return {}
        n = sum(len(p[0]) for p in parts)
        full = np.empty(n)
        for i, v in parts:
            full[i] = v
        return {"density": full}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore a density written by :meth:`state` (any number of ranks)."""
        full = state["density"]
        idx = self._input_indices
        if idx.max(initial=-1) >= len(full):
            raise UserError("--resume: the checkpoint does not match this mesh")
        self.rho.x.array[:] = full[idx]
        self.rho_old.x.array[:] = self.rho.x.array

    def save(self) -> dict[str, Any]:
        """ρ and ρ_old on this rank (subclasses add their unknowns)."""
        return {"rho": self.rho.x.array.copy(), "rho_old": self.rho_old.x.array.copy()}

    def restore(self, saved: dict[str, Any]) -> None:
        """Undo to :meth:`save`'s ρ and ρ_old."""
        self.rho.x.array[:] = saved["rho"]
        self.rho_old.x.array[:] = saved["rho_old"]

    # -- ParaView --------------------------------------------------------------------------
    def open_fields(self, path: Path) -> str:
        """Start the XDMF time series of the density (written in parallel).

        Returns:
            The file name, for the results file's ``/fields`` attribute.
        """
        self._fields = dolfinx.io.XDMFFile(self.comm, str(path), "w")
        self._fields.write_mesh(self.mesh)
        return path.name

    def write_fields(self, t: float) -> None:
        """Append the density at time t to the XDMF file and flush it."""
        if self._fields is not None:
            self._fields.write_function(self.rho, t)
            self._fields.flush()

    def close(self) -> None:
        """Close the XDMF file."""
        if self._fields is not None:
            self._fields.close()
            self._fields = None
