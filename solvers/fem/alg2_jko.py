"""ALG2-JKO: the inner solver ``inner = "alg2"`` of ``fem-jko`` (Benamou–Carlier–Laborde 2016).

One JKO step ρ^{n+1} = argmin_ρ W2²(ρ^n, ρ)/(2τ) + F(ρ) is, after multiplying by τ, the
dynamic problem on Ω × [0, 1] with a free end:

    min_{ρ, m}  ∫_0^1∫_Ω |m|²/(2ρ) + τ F(ρ(1))   s.t.  ∂_t ρ + div m = 0,  ρ(0) = ρ^n,

and ρ^{n+1} = ρ(1).  Its dual is  sup_φ −∫φ(0)ρ^n − G*(−φ(1))  over ∂_tφ + |∇φ|²/2 ≤ 0,
with G = τF.  Everything but the t = 1 face is fem-bb's ALG2
(:class:`wgf.solvers.fem.benamou_brenier.SpaceTimeALG2`: same space-time mesh, P2 potential,
(q, σ) at the Gauss points, exact pointwise projection onto K, over-relaxation, one MUMPS
factorisation).  The free end is split off as in Benamou–Carlier–Laborde: a new variable
ζ on the t = 1 face with the constraint ζ = φ(1), whose multiplier is the terminal density
ρ1.  The augmented Lagrangian (minimised in φ, then (q, ζ); multipliers (σ, ρ1)) is

    L_r = Σ_0 ρ0 φ(0) + ι_K(q) + G*(−ζ) + ⟨σ, ∇φ − q⟩ + (r/2)‖∇φ − q‖²
          + ⟨ρ1, ζ − φ(1)⟩_1 + (r/2)‖ζ − φ(1)‖²_1 .

Discretisation of the faces.  ⟨u, v⟩_1 = Σ_i w_i u_i v_i over the P2 dofs i of the t = 1
face with w_i = ∫_face ψ_i (the interpolatory rule of the P2 face space: exact for P2
integrands; in 1-D Simpson's weights, on the triangles of a 2-D face 0 at the vertices and
|T|/3 at the edge midpoints), and likewise Σ_0 ρ0 φ(0) = Σ_i w⁰_i ρ0_i φ_i(0) on the t = 0
face.  The inner product is diagonal, so the ζ-step is pointwise.  ρ^n enters as its P1
interpolant on the face (the lattice values of the spatial P1 density put on the
space-time P1 vertices of the face and interpolated into P2), and ρ^{n+1} is read off at
the face *vertices*: the spatial mesh and the faces of the space-time mesh (the product
box with the same ``domain.cells``) share their vertex lattice, so the transfer is an index
map, no interpolation.  The P1 density is for fem-jko's diagnostics and output; the next
step starts from the full P2 face density ρ1 of this one (carried from the t = 1 to the
t = 0 face through the lattice of step h/2), because the round trip through P1 cost an
O(h²) error per step, so the error grew with the number of steps (measured: see
benchmarks/README.md).  Only
``domain.shape = "box"`` is supported.  At vertices of weight
0 (2-D) ρ1 is still the pointwise prox, so it satisfies the optimality condition below.
The lumped P1 vertex rule instead (weights ∫λ_i, vertex dofs only) is not exact for the
P2 test functions and biased every step (measured: see benchmarks/README.md).

The steps (ω the relaxation; ω = 1 is plain ALG2):

1. φ:  ⟨∇φ, ∇ψ⟩ + ⟨φ(1), ψ(1)⟩_1 = ⟨q − σ/r, ∇ψ⟩ + ⟨ζ + ρ1/r, ψ(1)⟩_1 − Σ_0 ρ0 ψ(0)/r
   (the first variation of L_r in φ, divided by r).  The face term makes the operator
   definite (no null space, no ε); it is factorised once for all steps.
2. q = P_K(∇̂φ + σ/r) as in fem-bb, ∇̂φ = ω∇φ + (1 − ω)q_old.
   ζ = argmin G*(−ζ) + ⟨ρ1, ζ⟩ + (r/2)|ζ − φ̂(1)|², φ̂(1) = ωφ(1) + (1 − ω)ζ_old.
   By Moreau's identity (with h(ζ) = G*(−ζ), h*(ρ) = G(−ρ)) this is

       ρ̂ = prox_{rG}(ρ1 − r φ̂(1)),     ζ = φ̂(1) + (ρ̂ − ρ1)/r,

3. σ ← σ + r(∇̂φ − q) and ρ1 ← ρ1 + r(ζ − φ̂(1)) = ρ̂: the multiplier step *is* the prox.

Interaction (``[energy.interaction]``): explicit.  The prox is pointwise and W∗ρ is not,
so each step takes G = τ(F₀ + ⟨W∗ρⁿ, ·⟩): V_i below is V + W∗ρⁿ, with W∗ρⁿ evaluated
by fem-jko on its P1 mesh (:class:`~wgf.solvers.fem.interaction.MeshConvolution`) and
interpolated (P1) to the P2 dofs of the t = 1 face (:meth:`JKOSpaceTime.set_interaction`).
The step is then a JKO step of a convex energy, and F(ρ^{n+1}) + W2²/(2τ) ≤ F(ρ^n) holds
up to ½⟨W∗δρ, δρ⟩, which fem-jko records as ``interaction_defect``.

The prox is pointwise (face dof i, G = τ(D U + V_i ρ), the weight w_i cancels):
ρ = argmin_{ρ ≥ 0} rτ(D U(ρ) + V_i ρ) + ½(ρ − y)², i.e. c U'(ρ) + ρ = z with c = rτD,
z = y − rτV_i:

* entropy: c log ρ + ρ = z − c (ρ = c W(e^{(z−c)/c}/c), Lambert W), solved by Newton in
  s = log ρ from the upper bound s = min(log(z − c), (z − c)/c): the function is convex
  and increasing in s, so Newton decreases monotonically to the root (no overflow);
* power law: c m ρ^{m−1}/(m − 1) + ρ = z, ρ = 0 if z ≤ 0; m = 2 in closed form
  ρ = z/(1 + 2c), otherwise safeguarded Newton on [0, z].

At the saddle point ρ1 = prox(ρ1 − rφ(1)) gives τ(D U'(ρ1) + V) = −φ(1) where ρ1 > 0 —
the JKO optimality condition (the velocity at t = 1 is ∇φ(1) = −τ∇δF/δρ) — and ζ = φ(1).

Stopping: fem-bb's relative primal/dual residuals with the face parts added,
max(‖(∇φ − q, φ(1) − ζ)‖/‖(∇φ, φ(1))‖, r‖(Δq, Δζ)‖/‖(σ, ρ1)‖) < ``alg2_tol``; a step
that reaches ``alg2_max_it`` raises :class:`~wgf.cases.errors.SolverError` and is undone.
Every step is warm-started from the previous step's (φ, q, σ, ζ, ρ1).

Mass.  Testing step 1 with ψ = 1 shows Σ w_i ρ1_i = Σ w⁰_i ρ0_i up to the residual; the
vertex values read back carry fem-jko's lumped mass only up to O(h²) and the residual.
So after each step ρ^{n+1} is rescaled to the stated mass with fem-jko's lumped mass; the
factor is recorded (diagnostic ``mass_rescale`` = |factor − 1|).

Defaults (``alg2_*`` keys; measured: see benchmarks/README.md): one time cell (P2 in t;
two cells gave the same errors at twice the cost), r = 1 (smaller and larger r need more
iterations on the porous medium), ω = 1.5, tol = 3e-4 (a looser one lets the error grow, a
tighter one hardly changes it at several times the iterations).  The tolerance is per
step, so its error accumulates over the steps: refine ``alg2_tol`` with τ in τ-studies.

PETSc options of the space-time solve take the prefix ``fem_jko_alg2_`` (MUMPS LU default).

The transport cost of the step is the primal estimate Σ_points w |m|²/ρ (W2² of the step in
the rescaled time [0, 1]).
"""

from __future__ import annotations

import dolfinx_solver  # noqa: F401 - must precede dolfinx

from typing import Any

import dolfinx.fem
import dolfinx.fem.petsc
import dolfinx.mesh
import numpy as np
import ufl
from mpi4py import MPI
from petsc4py import PETSc

from wgf.cases.errors import SolverError
from wgf.solvers.energy import FreeEnergy
from wgf.solvers.fem.benamou_brenier import SpaceTimeALG2


def lattice_index(coords: np.ndarray, lower: np.ndarray, h: np.ndarray, cells: list[int]):
    """Flat index of box-lattice vertices (coords (n, d)); -1 for points off the lattice."""
    u = (coords - lower) / h
    k = np.rint(u).astype(np.int64)
    on = np.all(np.abs(u - k) < 1e-6, axis=1)
    out = np.full(len(coords), -1, dtype=np.int64)
    if np.any(on):
        out[on] = np.ravel_multi_index(k[on].T, [c + 1 for c in cells])
    return out


class JKOSpaceTime(SpaceTimeALG2):
    """The space-time ALG2 of one JKO step (see the module docstring).

    Args:
        case: The validated case (a box).
        comm: The communicator.
        params: ``time_cells``, ``degree``, ``r``, ``adapt_r``, ``relaxation``, ``max_it``,
            ``tol`` (fem-jko's ``alg2_*`` keys).
        energy: The free energy F.
    """

    nullspace_eps = 0.0
    prefix = "fem_jko_alg2_"

    def __init__(self, case, comm: MPI.Comm, params: dict[str, Any], energy: FreeEnergy) -> None:
        self.energy = energy
        dom = case.section("domain")
        self.cells = list(dom["cells"])
        self.lower = np.array(dom["lower"], dtype=float)
        self.h = (np.array(dom["upper"], dtype=float) - self.lower) / np.array(self.cells)
        self.n_lattice = int(np.prod([c + 1 for c in self.cells]))
        self.tau = 1.0
        super().__init__(case, comm, params)

    # -- the faces -----------------------------------------------------------------------------
    def _build_boundary_data(self) -> None:
        """Owned P2 dofs of the t = 0/1 faces, their weights ∫_face ψ_i, lattice indices, V."""
        mesh, fdim, d = self.mesh, self.tdim - 1, self.dim
        n_own = self.V.dofmap.index_map.size_local
        self.n_owned = n_own
        x = self.V.tabulate_dof_coordinates()[:n_own]
        lat = lattice_index(x[:, :d], self.lower, self.h, self.cells)
        v = ufl.TestFunction(self.V)
        faces = []
        for t in (0.0, 1.0):
            facets = dolfinx.mesh.locate_entities_boundary(
                mesh, fdim, lambda y, t=t: np.isclose(y[d], t)
            )
            mt = dolfinx.mesh.meshtags(mesh, fdim, np.sort(facets), np.ones(len(facets), np.int32))
            ds = ufl.Measure("ds", domain=mesh, subdomain_data=mt)
            vec = dolfinx.fem.petsc.assemble_vector(dolfinx.fem.form(v * ds(1)))
            vec.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
            weights = vec.array_r.copy()
            vec.destroy()
            dofs = np.flatnonzero(np.isclose(x[:, d], t))
            faces.append((dofs, weights[dofs], lat[dofs]))
        (self.dofs0, self.w0, _), (self.dofs1, self.w1, self.lat1) = faces
        # The P2 face dofs on the lattice of step h/2: carries ρ1 of a step to ρ0 of the next.
        half = [2 * c for c in self.cells]
        self.n_half = int(np.prod([c + 1 for c in half]))
        self.half0, self.half1 = (
            lattice_index(x[dofs, :d], self.lower, self.h / 2, half)
            for dofs in (self.dofs0, self.dofs1)
        )
        self._carry: np.ndarray | None = None
        #: V at the t = 1 face dofs; the prox's potential V1 adds W∗ρⁿ to it (interaction).
        self.V1_external = self.energy.potential_value(x[self.dofs1, :d])
        self.V1 = self.V1_external
        self.rho0 = np.zeros(len(self.dofs0))
        self.rho1 = np.zeros(len(self.dofs1))
        self.zeta = np.zeros(len(self.dofs1))
        self._b0 = np.zeros(n_own)
        # P1 on the space-time mesh: a lattice density → its P1 interpolant on a face → P2.
        self.P1 = dolfinx.fem.functionspace(mesh, ("Lagrange", 1))
        x1 = self.P1.tabulate_dof_coordinates()
        self._lat_p1 = lattice_index(x1[:, :d], self.lower, self.h, self.cells)
        self._t_p1 = x1[:, d]
        self._p1, self._p2 = dolfinx.fem.Function(self.P1), dolfinx.fem.Function(self.V)

    def face_values(self, rho_lattice: np.ndarray, t: float, dofs: np.ndarray) -> np.ndarray:
        """The P1 interpolant (on the face's triangulation) of lattice values at P2 face dofs."""
        on = np.isclose(self._t_p1, t) & (self._lat_p1 >= 0)
        self._p1.x.array[:] = 0.0
        self._p1.x.array[on] = rho_lattice[self._lat_p1[on]]
        self._p2.interpolate(self._p1)
        return self._p2.x.array[dofs].copy()

    def set_interaction(self, potential_lattice: np.ndarray) -> None:
        """V1 = V + W∗ρⁿ in the prox, W∗ρⁿ given at the lattice vertices (P1 on the face)."""
        self.V1 = self.V1_external + self.face_values(potential_lattice, 1.0, self.dofs1)

    def _operator_diagonal(self) -> np.ndarray:
        diag = np.zeros(self.n_owned)
        diag[self.dofs1] = self.w1
        return diag

    def _boundary_rhs(self) -> np.ndarray:
        b = self._b0.copy()
        b[self.dofs1] += self.w1 * (self.rho1 + self.r * self.zeta)
        return b

    def prox(self, y: np.ndarray) -> np.ndarray:
        """argmin_{ρ ≥ 0} rτ(D U(ρ) + Vρ) + ½(ρ − y)² at the t = 1 vertices."""
        return self.energy.prox(y - self.r * self.tau * self.V1, self.r * self.tau)

    def _terminal_step(self, omega: float) -> np.ndarray:
        phi1 = self.phi.x.array[self.dofs1]
        zeta_old, rho_old = self.zeta, self.rho1
        phihat = omega * phi1 + (1.0 - omega) * zeta_old if omega != 1.0 else phi1
        rho = self.prox(rho_old - self.r * phihat)
        self.zeta = phihat + (rho - rho_old) / self.r
        self.rho1 = rho
        w = self.w1
        diff, dz = phi1 - self.zeta, self.zeta - zeta_old
        return np.array([w @ diff**2, w @ phi1**2, w @ dz**2, w @ rho**2])

    # -- one JKO step ----------------------------------------------------------------------------
    def set_initial(self, rho_lattice: np.ndarray, first: bool, mass: float) -> None:
        """ρ^n on the t = 0 face, scaled to ``mass``.

        The previous step's P2 face density ρ1 (no loss), or on the first step the P1
        interpolant of the lattice values, and then also ρ1 = ρ^n.
        """
        if first or self._carry is None:
            self.rho0 = self.face_values(rho_lattice, 0.0, self.dofs0)
        else:
            self.rho0 = self._carry[self.half0]
        self.rho0 = self.rho0 * (mass / self._sum(self.w0 @ self.rho0))
        self._b0 = np.zeros(self.n_owned)
        self._b0[self.dofs0] = -self.w0 * self.rho0
        if first:
            self.rho1 = self.face_values(rho_lattice, 1.0, self.dofs1)

    def carry_terminal(self) -> None:
        """Keep ρ1 (all P2 face dofs) for the t = 0 face of the next step."""
        glob = np.zeros(self.n_half)
        glob[self.half1] = self.rho1
        self.comm.Allreduce(MPI.IN_PLACE, glob, op=MPI.SUM)
        self._carry = glob

    def terminal_lattice(self) -> np.ndarray:
        """ρ1 at the vertices of the t = 1 face, on the global lattice, on every rank."""
        glob = np.zeros(self.n_lattice)
        at = self.lat1 >= 0
        glob[self.lat1[at]] = self.rho1[at]
        self.comm.Allreduce(MPI.IN_PLACE, glob, op=MPI.SUM)
        return glob

    def save(self) -> tuple:
        """The ALG2 state (to undo a failed step)."""
        return (
            self.phi.x.array.copy(),
            self.q.copy(),
            self.sigma.copy(),
            self.zeta.copy(),
            self.rho1.copy(),
            self.r,
            self.iterations,
        )

    def restore(self, saved: tuple) -> None:
        """Undo to a state from :meth:`save`."""
        phi, self.q, self.sigma, self.zeta, self.rho1, self.r, self.iterations = saved
        self.phi.x.array[:] = phi

    def solve_step(self, tau: float) -> int:
        """Run ALG2 for one step of size τ; return its iterations (SolverError at the cap)."""
        self.tau = tau
        start, saved = self.iterations, self.save()
        if not self.run():
            res = self.history["residual"][-1]
            self.restore(saved)
            raise SolverError(
                f"ALG2 did not converge in {self.params['max_it']} iterations "
                f"(residual {res:.3e} > tol {self.params['tol']:g})"
            )
        return self.iterations - start

    def w2sq_primal(self) -> float:
        """Σ_points w |m|²/ρ over the points where ρ > 0 (W2² of the step, time in [0, 1])."""
        rho, m = self.sigma[:, self.dim], self.sigma[:, : self.dim]
        floor = 1e-12 * max(float(np.max(self.rho1, initial=0.0)), 1e-300)
        floor = self.comm.allreduce(floor, op=MPI.MAX)
        inv = np.divide(self._w, rho, out=np.zeros_like(rho), where=rho > floor)
        return self._sum(np.einsum("i,ij,ij->", inv, m, m))
