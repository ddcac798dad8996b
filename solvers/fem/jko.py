"""``fem-jko``: the JKO scheme with the one-step Benamou–Brenier cost, Newton inner solver.

Each step solves the convex problem

    ρ^{n+1} = argmin_ρ  W̃²(ρ^n, ρ)/(2τ) + F_h(ρ),
    W̃²(ρ^n, ρ) = min_F { τ² Σ_{ij} F_ij²/(a_ij ρ_ij) :  m_i (ρ_i - ρ_i^n)/τ + Σ_j F_ij = 0 },

the linearised (one time step) Benamou–Brenier transport cost with the mobility ρ_ij taken
at the *new* density, upwind — the LJKO scheme of Cancès–Gallouët–Todeschi (2020), here on
the graph of a P1 finite-element mesh.

Spaces and why.  The unknowns are nodal: ρ_i and the potential ϕ_i at the vertices of the
mesh (P1), with lumped masses m_i = ∫φ_i.  The edges ij carry the transmissibilities
a_ij = -K_ij, K the P1 stiffness matrix: on a non-obtuse (Delaunay) mesh a_ij ≥ 0 and
Σ_j a_ij (ϕ_j - ϕ_i)(v_j - v_i) is exactly ∫∇ϕ·∇v, so the scheme is the mass-lumped P1
discretisation of ∂_t ρ + div(ρ∇ϕ) = 0 with an upwind edge mobility.  Two reasons for
edges rather than cells: the upwind mobility makes the cost F²/(aρ_up) jointly convex
(so the step is a convex problem on any non-obtuse mesh), and it makes the discrete
Hamilton–Jacobi equation monotone — with a centred, cellwise mobility the Newton
linearisation of the (τ/2)|∇ϕ|² term is a convection-dominated central operator wherever
τ|∇ϕ| > h (Gaussian tails), and Newton stalls.  Negative a_ij (obtuse cells of an
unstructured mesh) are clipped to 0, which keeps convexity and positivity at the price of
consistency on those edges.

The optimality system (F_ij = a_ij ρ_ij (ϕ_j - ϕ_i), ρ_ij = ρ_i if ϕ_j > ϕ_i else ρ_j):

    m_i (ρ_i - ρ_i^n)/τ + Σ_j F_ij = 0                                  (mass)
    ρ_i [ m_i (μ_i + ϕ_i) - (τ/2) Σ_{j: i upwind} a_ij (ϕ_j - ϕ_i)² ] = ε m_i   (Hamilton–Jacobi)

with μ_i = D·U'(ρ_i) + V(x_i).  The second row is multiplied by ρ_i, as in interior-point
methods; ε is the log-barrier weight (below).  Comparing with the admissible (ρ^n, F = 0)
gives the energy-dissipation inequality F_h(ρ^{n+1}) + W̃²/(2τ) ≤ F_h(ρ^n) up to the
Newton tolerance; the diagnostics ``transport_cost`` (= W̃²) and ``dissipation_gap``
(= F_h(ρ^n) - F_h(ρ^{n+1}) - W̃²/(2τ)) record it at every step.

Newton: the Jacobian is assembled from the same edge arrays (PETSc COO assembly, MPI
parallel; each edge belongs to the rank owning its endpoint with the smaller global index)
and solved with MUMPS LU by default.  Each step is cut so that ρ keeps at least 1% of its
value (fraction to the boundary), then halved until the residual norm decreases.  Every
Newton step conserves mass exactly (the fluxes cancel in Σ_i).

ρ → 0.  For the entropy, μ contains log ρ and the fraction-to-the-boundary rule keeps
every iterate positive.  For the power law ρ may vanish, so F_h gets the log barrier
-ε Σ_i m_i log ρ_i (interior point) with ε = ``barrier`` × the initial mean density: the
minimiser stays strictly positive and deviates from the barrier-free one by O(ε) where ρ
is small.

PETSc options of the linear solver can be changed on the command line under the prefix
``fem_jko_`` (e.g. ``-fem_jko_ksp_type gmres -fem_jko_pc_type bjacobi``).
"""

from __future__ import annotations

import dolfinx_solver  # noqa: F401 - must precede dolfinx

from typing import Any

import dolfinx.fem
import dolfinx.la
import numpy as np
import ufl
from mpi4py import MPI
from petsc4py import PETSc

from cases import Case
from solvers.energy import Entropy
from solvers.fem.base import FEFlowSolver
from solvers.fem.petsc_options import set_default_options
from wgf.errors import SolverError, UserError

PREFIX = "fem_jko_"
FRACTION_TO_BOUNDARY = 0.99
ARMIJO = 1e-4


class Solver(FEFlowSolver):
    """LJKO steps on the P1 mesh graph (see the module docstring)."""

    name = "fem-jko"

    @classmethod
    def check_case(cls, case: Case) -> None:
        """Only the Newton inner solver exists so far."""
        inner = case.solver_params("fem-jko").get("inner", "newton")
        if inner != "newton":
            raise UserError(
                f'case key \'solver.fem-jko.inner\': "{inner}" is not available yet (only "newton")'
            )

    def __init__(self, case: Case, comm: MPI.Comm, params: dict[str, Any]) -> None:
        super().__init__(case, comm, params)
        imap = self.V.dofmap.index_map
        self.n_owned, n_local = imap.size_local, imap.size_local + imap.num_ghosts
        self.masses = self._lumped_masses()
        self.V_nodes = self._nodal_potential()
        self.edge_i, self.edge_j, self.edge_a = self._edges()
        self.barrier = 0.0
        if not isinstance(self.energy.internal, Entropy):
            mean_density = case.section("initial")["mass"] / self.integrate(1.0 * self.dx)
            self.barrier = params["barrier"] * mean_density
        # Newton unknowns, interleaved (ρ_i, ϕ_i), with ghosts; residual likewise.
        self.x = dolfinx.la.vector(imap, bs=2)
        self.r = dolfinx.la.vector(imap, bs=2)
        self.dx_newton = dolfinx.la.vector(imap, bs=2)
        peak = self.comm.allreduce(float(self.rho.x.array.max(initial=0.0)), op=MPI.MAX)
        floor = max(self.barrier, params["floor"] * peak)
        self.rho.x.array[:] = np.maximum(self.rho.x.array, floor)
        self.rho.x.array[:] *= case.section("initial")["mass"] / self.integrate(self._forms["mass"])
        self.rho_old.x.array[:] = self.rho.x.array
        self._set_unknowns_from_density()
        self.A = self._jacobian_matrix(imap, n_local)
        self.ksp = PETSc.KSP().create(comm)
        self.ksp.setOperators(self.A)
        self.ksp.setOptionsPrefix(PREFIX)
        set_default_options(
            PREFIX, {"ksp_type": "preonly", "pc_type": "lu", "pc_factor_mat_solver_type": "mumps"}
        )
        self.ksp.setFromOptions()
        self.transport_cost, self.energy_before, self._last_tau = 0.0, np.nan, 1.0

    # -- the mesh graph ----------------------------------------------------------------------
    def _lumped_masses(self) -> np.ndarray:
        v = ufl.TestFunction(self.V)
        vec = dolfinx.fem.assemble_vector(dolfinx.fem.form(v * self.dx_lumped))
        vec.scatter_reverse(dolfinx.la.InsertMode.add)
        vec.scatter_forward()
        return vec.array.copy()

    def _nodal_potential(self) -> np.ndarray:
        if self.energy.potential is None:
            return np.zeros(len(self.rho.x.array))
        coords = self.V.tabulate_dof_coordinates()[:, : self.case.dim]
        return self.energy.potential.value(coords)

    def _edges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Edges (i, j, a_ij > 0) in local indices, each global edge on exactly one rank."""
        u, v = ufl.TrialFunction(self.V), ufl.TestFunction(self.V)
        K = dolfinx.fem.assemble_matrix(
            dolfinx.fem.form(ufl.dot(ufl.grad(u), ufl.grad(v)) * self.dx)
        )
        K.scatter_reverse()
        csr = K.to_scipy().tocoo()
        gidx = self.V.dofmap.index_map.local_to_global(
            np.arange(len(self.rho.x.array), dtype=np.int32)
        )
        keep = (csr.row < self.n_owned) & (gidx[csr.row] < gidx[csr.col]) & (csr.data < 0.0)
        return csr.row[keep].astype(np.int64), csr.col[keep].astype(np.int64), -csr.data[keep]

    def _jacobian_matrix(self, imap: dolfinx.common.IndexMap, n_local: int) -> PETSc.Mat:
        """A 2×2-blocked AIJ matrix with a fixed COO pattern (vertex blocks + edge blocks)."""
        n_glob = imap.size_global
        A = PETSc.Mat().createAIJ(
            ((2 * self.n_owned, 2 * n_glob), (2 * self.n_owned, 2 * n_glob)),
            bsize=2,
            comm=self.comm,
        )
        l2g = imap.local_to_global(np.arange(n_local, dtype=np.int32)).astype(PETSc.IntType)
        lgmap = PETSc.LGMap().create(l2g, bsize=2, comm=self.comm)
        A.setLGMap(lgmap, lgmap)
        owned = np.arange(self.n_owned)
        # Vertex terms: the 2×2 block of each owned vertex.
        rows = [2 * owned, 2 * owned, 2 * owned + 1, 2 * owned + 1]
        cols = [2 * owned, 2 * owned + 1, 2 * owned, 2 * owned + 1]
        # Edge terms: rows and columns {ρ_i, ϕ_i, ρ_j, ϕ_j}, all 16 combinations.
        ends = [2 * self.edge_i, 2 * self.edge_i + 1, 2 * self.edge_j, 2 * self.edge_j + 1]
        for r in ends:
            for c in ends:
                rows.append(r)
                cols.append(c)
        A.setPreallocationCOOLocal(
            np.concatenate(rows).astype(PETSc.IntType), np.concatenate(cols).astype(PETSc.IntType)
        )
        return A

    # -- state -------------------------------------------------------------------------------
    def _set_unknowns_from_density(self) -> None:
        """(ρ, ϕ) from ``self.rho``, with ϕ = -μ(ρ), the τ → 0 limit of the HJ row."""
        xv = self.x.array.reshape(-1, 2)
        xv[:, 0] = self.rho.x.array
        xv[:, 1] = -self._mu(self.rho.x.array)

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore the density and re-derive the Newton unknowns from it."""
        super().set_state(state)
        self._set_unknowns_from_density()

    def _mu(self, rho: np.ndarray) -> np.ndarray:
        return self.energy.first_variation(rho, self.V_nodes)

    # -- residual and Jacobian ---------------------------------------------------------------
    def _edge_terms(self, tau: float) -> dict[str, np.ndarray]:
        """Per-edge flux, cost and the upwind weight w (ρ_ij = w ρ_i + (1 - w) ρ_j).

        w is the upwind switch 1{ϕ_j > ϕ_i}, smoothed over |ϕ_j - ϕ_i| < δ: the kink of
        the exact switch makes Newton cycle on edges where ϕ is flat.
        """
        xv = self.x.array.reshape(-1, 2)
        rho, phi = xv[:, 0], xv[:, 1]
        i, j, a = self.edge_i, self.edge_j, self.edge_a
        dphi = phi[j] - phi[i]
        delta = self.params["upwind_smoothing"]
        th = np.tanh(dphi / delta)
        w, dw = 0.5 * (1.0 + th), 0.5 * (1.0 - th**2) / delta
        mob = w * rho[i] + (1.0 - w) * rho[j]
        return {
            "dphi": dphi,
            "w": w,
            "dw": dw,
            "mob": mob,
            "flux": a * mob * dphi,
            "half_cost": 0.5 * tau * a * dphi**2,
        }

    def _residual_norm(self, tau: float) -> float:
        """Assemble the residual (owned rows complete after the reverse scatter)."""
        xv = self.x.array.reshape(-1, 2)
        rho, phi = xv[:, 0], xv[:, 1]
        e = self._edge_terms(tau)
        r = self.r.array.reshape(-1, 2)
        r[:] = 0.0
        m, own = self.masses, slice(0, self.n_owned)
        r[own, 0] = m[own] * (rho[own] - self.rho_old.x.array[own]) / tau
        r[own, 1] = rho[own] * m[own] * (self._mu(rho[own]) + phi[own]) - self.barrier * m[own]
        i, j = self.edge_i, self.edge_j
        np.add.at(r[:, 0], i, e["flux"])
        np.add.at(r[:, 0], j, -e["flux"])
        # ∂/∂ρ of the cost (τ/2) a ρ_ij (Δϕ)², times ρ (the scaled HJ row).
        np.add.at(r[:, 1], i, -rho[i] * e["w"] * e["half_cost"])
        np.add.at(r[:, 1], j, -rho[j] * (1.0 - e["w"]) * e["half_cost"])
        self.r.scatter_reverse(dolfinx.la.InsertMode.add)
        owned = r[own].ravel()
        return float(np.sqrt(self.comm.allreduce(owned @ owned, op=MPI.SUM)))

    def _assemble_jacobian(self, tau: float) -> None:
        xv = self.x.array.reshape(-1, 2)
        rho, phi = xv[:, 0], xv[:, 1]
        own = slice(0, self.n_owned)
        m = self.masses[own]
        dpressure = self.energy.dpressure(rho[own])  # ρ μ'(ρ) = D·P'(ρ)
        vertex = [
            m / tau,
            np.zeros_like(m),
            m * (self._mu(rho[own]) + phi[own]) + m * dpressure,
            rho[own] * m,
        ]
        e = self._edge_terms(tau)
        i, j = self.edge_i, self.edge_j
        dphi, w, dw, mob, g = (e[k] for k in ("dphi", "w", "dw", "mob", "half_cost"))
        a = self.edge_a
        # d(flux)/dϕ_j = a (mob + Δϕ w' (ρ_i - ρ_j)); d/dϕ_i is its negative.
        dflux = a * (mob + dphi * dw * (rho[i] - rho[j]))
        dg = tau * a * dphi  # d(half_cost)/dϕ_j
        hj_i_phi = rho[i] * (dw * g + w * dg)  # -d/dϕ_j of ρ_i w g
        hj_j_phi = rho[j] * (-dw * g + (1.0 - w) * dg)
        # Rows: mass_i, phi_i, mass_j, phi_j; columns: rho_i, phi_i, rho_j, phi_j.
        mass_i = [a * dphi * w, -dflux, a * dphi * (1.0 - w), dflux]
        mass_j = [-v for v in mass_i]
        zero = np.zeros_like(a)
        hj_i = [-w * g, hj_i_phi, zero, -hj_i_phi]
        hj_j = [zero, hj_j_phi, -(1.0 - w) * g, -hj_j_phi]
        values = vertex + [col for row in (mass_i, hj_i, mass_j, hj_j) for col in row]
        # COO entries repeat (a vertex block and its edges): ADD sums them, INSERT would not.
        self.A.zeroEntries()
        self.A.setValuesCOO(
            np.concatenate(values).astype(PETSc.ScalarType), addv=PETSc.InsertMode.ADD_VALUES
        )

    # -- Newton --------------------------------------------------------------------------------
    def _max_step(self) -> float:
        """Largest α ≤ 1 keeping ρ + α δρ ≥ (1 - 0.99) ρ at every vertex (all ranks)."""
        rho = self.x.array.reshape(-1, 2)[: self.n_owned, 0]
        drho = self.dx_newton.array.reshape(-1, 2)[: self.n_owned, 0]
        shrinking = drho < 0.0
        alpha = 1.0
        if np.any(shrinking):
            alpha = min(
                1.0, FRACTION_TO_BOUNDARY * float(np.min(-rho[shrinking] / drho[shrinking]))
            )
        return self.comm.allreduce(alpha, op=MPI.MIN)

    def _update(self, x0: np.ndarray, alpha: float, curved: bool) -> None:
        self.x.array[:] = x0 + alpha * self.dx_newton.array
        if curved:
            rho0 = x0.reshape(-1, 2)[:, 0]
            drho = self.dx_newton.array.reshape(-1, 2)[:, 0]
            shrink = drho < 0.0
            # At most a factor e^-30 per iteration: exp must not underflow to ρ = 0.
            self.x.array.reshape(-1, 2)[shrink, 0] = rho0[shrink] * np.exp(
                np.maximum(alpha * drho[shrink] / rho0[shrink], -30.0)
            )

    def _newton(self, tau: float) -> int:
        rtol, atol, max_it = self.params["rtol"], self.params["atol"], self.params["max_it"]
        norm0 = norm = self._residual_norm(tau)
        x0 = np.empty_like(self.x.array)
        for it in range(1, max_it + 1):
            if norm <= max(atol, rtol * norm0):
                return it - 1
            self._assemble_jacobian(tau)
            self.r.petsc_vec.scale(-1.0)
            self.ksp.solve(self.r.petsc_vec, self.dx_newton.petsc_vec)
            if (reason := self.ksp.getConvergedReason()) < 0:
                raise SolverError(f"linear solve failed (KSP reason {reason})")
            self.dx_newton.scatter_forward()
            # A full linear step that keeps ρ > 0 is taken as is; otherwise the decreasing
            # densities move along ρ·exp(α δρ/ρ) — Newton's step in log ρ, same tangent —
            # so that Gaussian tails can shrink by orders of magnitude in one iteration.
            curved = self._max_step() < 1.0
            if self.params["monitor"] and self.comm.rank == 0:
                print(f"    newton {it}: |F| = {norm:.3e}, curved {curved}", flush=True)
            x0[:] = self.x.array
            alpha = 1.0
            while True:
                self._update(x0, alpha, curved)
                trial = self._residual_norm(tau)
                if np.isfinite(trial) and trial <= (1.0 - ARMIJO * alpha) * norm:
                    break
                alpha *= 0.5
                if alpha < 1e-10:
                    self.x.array[:] = x0
                    raise SolverError(f"line search failed at Newton iteration {it}")
            norm = trial
        if norm <= max(atol, rtol * norm0):
            return max_it
        raise SolverError(
            f"Newton did not converge in {max_it} iterations (residual {norm:.3e}, "
            f"initial {norm0:.3e})"
        )

    def step(self, tau: float) -> int:
        """One JKO step of size τ; returns the Newton iterations."""
        self.rho_old.x.array[:] = self.rho.x.array
        saved = self.x.array.copy()
        self.energy_before = self.integrate(self._forms["energy"])
        self.x.array.reshape(-1, 2)[:, 0] = self.rho.x.array  # warm start: ϕ from last step
        try:
            its = self._newton(tau)
        except SolverError:
            self.x.array[:] = saved
            raise
        self.rho.x.array[:] = self.x.array.reshape(-1, 2)[:, 0]
        e = self._edge_terms(tau)
        self.transport_cost = self.comm.allreduce(
            float(np.sum(tau**2 * e["flux"] * e["dphi"])), op=MPI.SUM
        )
        self._last_tau = tau
        return its

    def diagnostics(self, t: float) -> dict[str, float]:
        """FE diagnostics plus the transport cost W̃² and the dissipation gap of the step."""
        out = super().diagnostics(t)
        out["transport_cost"] = self.transport_cost
        gap = 0.0
        if np.isfinite(self.energy_before):
            gap = self.energy_before - out["energy"] - self.transport_cost / (2 * self._last_tau)
        out["dissipation_gap"] = gap
        return out
