"""``fem-bb``: dynamic optimal transport (Benamou–Brenier) by the augmented Lagrangian ALG2.

The problem.  W2²(ρ0, ρ1)/2 is the value of

    min_{ρ ≥ 0, m}  ∫_0^1 ∫_Ω |m|²/(2ρ) dx dt   s.t.  ∂_t ρ + div m = 0,  m·n = 0 on ∂Ω,
                                                     ρ(0) = ρ0,  ρ(1) = ρ1,

whose dual is the Hamilton–Jacobi problem

    sup_φ  ∫ φ(1) ρ1 − ∫ φ(0) ρ0    s.t.  ∂_t φ + |∇φ|²/2 ≤ 0.

Write ∇_{x,t}φ = q = (b, a) (space part b, time part a) with q in the closed convex set
K = {(b, a): a + |b|²/2 ≤ 0}; the multiplier of the constraint ∇_{x,t}φ = q is the
space-time field σ = (m, ρ).  The augmented Lagrangian (r > 0)

    L_r(φ, q; σ) = ∫φ(0)ρ0 − ∫φ(1)ρ1 + ι_K(q) + ⟨σ, ∇φ − q⟩ + (r/2) ‖∇φ − q‖²

is minimised alternately in φ and q, followed by a multiplier step (ALG2,
Benamou–Brenier 2000; it is ADMM / Douglas–Rachford on the dual):

1. φ: for every test function ψ,
       r ⟨∇φ, ∇ψ⟩ = ⟨r q − σ, ∇ψ⟩ + ∫ψ(1)ρ1 − ∫ψ(0)ρ0       (space-time Neumann Poisson).
   Derivation: the first variation of L_r in φ is ∫ψ(0)ρ0 − ∫ψ(1)ρ1 + ⟨σ, ∇ψ⟩ +
   r⟨∇φ − q, ∇ψ⟩ = 0.  Consistency check: at the saddle point ∇φ = q and σ satisfies the
   weak continuity equation ⟨σ, ∇ψ⟩ = ∫ψ(1)ρ(1) − ∫ψ(0)ρ(0), and the equation holds.
   Testing with ψ = 1 gives 0 = ∫ρ1 − ∫ρ0: the Neumann problem is solvable exactly when the
   masses agree, which is why the two densities are normalised to the same discrete mass.
2. q = P_K(∇φ + σ/r), pointwise (see :func:`project_parabola`).
3. σ ← σ + r (∇φ − q).

Steps 2–3 are over-relaxed by default (ADMM with relaxation: ∇φ is replaced by
ω∇φ + (1 − ω)q_old in them, ``relaxation`` ω = 1.5; ω = 1 is plain ALG2): it cuts the
iterations by a quarter on the translated Gaussian.  Residual balancing of r
(``adapt_r``) is available but off: it did not reduce the iteration counts (measured: see
benchmarks/README.md).

Discretisation.

* Space-time mesh Ω × [0, 1] with time as the *last* coordinate: a 1-D box becomes a
  rectangle (triangles), a 2-D box a box (tetrahedra) — or quadrilaterals/hexahedra with
  ``domain.cell_type = "hypercube"`` (tested in 1-D); ``domain.cells`` in space and
  ``time_cells`` layers in time.  Only ``domain.shape = "box"`` is supported (a product
  mesh of a disk or a file mesh with time is not built here).
* φ is continuous Lagrange of degree ``degree`` (default 2) on the space-time mesh.  Why P2:
  σ = (m, ρ) is the multiplier of ∇φ, so it lives where ∇φ lives.  With P1, ∇φ and hence ρ
  are piecewise constant per cell, the density is first-order and visibly blocky; with P2 the
  density is resolved piecewise linearly: at equal cost P2 is the more accurate, in W2
  and in ρ(½), with EOC ≈ 2 against ≈ 1 (measured: see benchmarks/README.md).
  ``degree = 1`` remains available.
* q and σ live at the points of a Gauss rule that integrates ⟨∇φ, ∇ψ⟩ exactly
  (degree 2(k−1) on simplices, 2k on hypercubes).  The discrete inner product ⟨u, v⟩ =
  Σ_points w |J| u·v is then diagonal, so step 2 is the *exact* projection for the discrete
  problem and ALG2 is an exact ADMM for a well-defined finite-dimensional saddle problem
  (convergence for any r > 0).  ∇φ at the points is a precomputed sparse matrix G (the
  basis gradients from a DOLFINx ``Expression``), so steps 2–3 and the right-hand side
  G^T W (q − σ/r) are a few sparse mat-vecs and vectorised NumPy: one ALG2 iteration costs
  a small multiple of one forward/backward substitution with the factorised operator,
  tending to 1.5 as the mesh grows (measured: see benchmarks/README.md).
* Step 1 is solved divided by r: the operator G^T W G + ε M (ε = 1e-9, M the mass matrix)
  does not depend on r, is assembled and factorised ONCE with MUMPS LU and reused for every
  iteration (and r may change without refactorising).  The tiny mass term removes the
  constant null space of the Neumann problem: the right-hand side is orthogonal to the
  constants, so the solution is the mean-free one, perturbed by O(ε) only.
* ρ0 and ρ1 are interpolated into P_k, checked for negative nodal values and scaled to the
  stated mass on the t = 0 and t = 1 faces (normalising the target to the initial mass with
  ``normalize = true``).

Outputs.  W2² from the primal value Σ w |m|²/ρ (over the points where ρ > 0) and from the
dual value 2(∫φ(1)ρ1 − ∫φ(0)ρ0); both are reported, the dual one is the headline
``/ot/w2``: at the stopping tolerance it is the more accurate of the two on every shipped
case (measured: see benchmarks/README.md), because the primal value Σ|m|²/ρ is
sensitive to the not yet converged multiplier in the tails where ρ is small.  The
geodesic ρ(t, ·) is the L2 projection of the point values of ρ onto continuous P1 on the
space-time mesh.
The continuity equation holds weakly against every ψ of the P_k space, in particular against
the piecewise-linear hat functions in t: the mass of every time slab, (1/Δt)∫_slab ρ, equals
the mass of ρ0 up to the ALG2 residual (``slab_mass``).

Stopping criterion, checked after every iteration k (the ADMM primal and dual residuals,
made relative):

    residual_k = max( ‖∇φ_k − q_k‖ / ‖∇φ_k‖ ,  r ‖q_k − q_{k−1}‖ / ‖σ_k‖ )

with ‖·‖ the discrete L2(Ω×[0,1]) norm at the points.  The first term is the violation of
the constraint ∇φ = q (= the multiplier change / r), the second measures how far the
φ-step optimality is from holding for the current q (the dual residual).  Converged when
residual_k < ``tol`` (default 1e-4).  The relative change of the W2² estimate per
iteration is recorded too (``w2sq_change``) but not used: it is small long before the
iterates converge (ALG2's slow O(1/k) tail), so it would stop too early.

PETSc options of the space-time solve take the prefix ``fem_bb_`` (e.g.
``-fem_bb_ksp_view``); the defaults are ``preonly`` + MUMPS LU.
"""

from __future__ import annotations

import dolfinx_solver  # noqa: F401 - must precede dolfinx

import time
from pathlib import Path
from typing import Any

import basix
import dolfinx.fem
import dolfinx.fem.petsc
import dolfinx.io
import dolfinx.mesh
import numpy as np
import scipy.sparse as sp
import ufl
from mpi4py import MPI
from petsc4py import PETSc

from wgf.cases import Case
from wgf.cases.density import check_density
from wgf.cases.errors import UserError
from wgf.meshes import box_mesh
from wgf.solvers.fem.petsc_options import use_direct_lu
from wgf.solvers.fem.sampling import PointSampler
from wgf.solvers.registry import capabilities

PREFIX = "fem_bb_"
NULLSPACE_EPS = 1e-9
#: Residual balancing: r is doubled/halved when one residual exceeds the other 10 times.
ADAPT_RATIO, ADAPT_FACTOR = 10.0, 2.0


# -- the pointwise projection ------------------------------------------------------------
def project_parabola(alpha: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project points (β, α) onto K = {(b, a): a + |b|²/2 ≤ 0}, vectorised.

    Outside K the projection is a = α − λ, b = β/(1 + λ) with λ > 0 the root of
    (α − λ)(1 + λ)² + |β|²/2 = 0.  With μ = 1 + λ this is the cubic
    μ³ − c μ² − s = 0 (c = α + 1, s = |β|²/2), which has exactly one positive root and it
    is > 1 for points outside K.  It is taken in closed form (Cardano, or the
    trigonometric form when the cubic has three real roots) and polished by two Newton
    steps, which cost nothing and remove the cancellation of Cardano's formula.

    Args:
        alpha: Time components, shape (n,).
        beta: Space components, shape (n, d).

    Returns:
        (a, b), the projected time and space components.
    """
    z = np.concatenate([beta, alpha[:, None]], axis=1)
    project_rows(z)
    return z[:, -1], z[:, :-1]


def project_rows(z: np.ndarray) -> None:
    """In place: each row (β, α) of z (time last) becomes its projection onto K."""
    d = z.shape[1] - 1
    beta = z[:, :d]
    s = 0.5 * np.einsum("ij,ij->i", beta, beta)
    out = np.flatnonzero(z[:, d] + s > 0.0)
    if not len(out):
        return
    c, so = z[out, d] + 1.0, s[out]
    # y = μ − c/3:  y³ + p y + q = 0.
    p = -(c * c) / 3.0
    q = -2.0 * c**3 / 27.0 - so
    disc = so * c**3 / 27.0 + 0.25 * so * so
    one = disc >= 0.0
    sq = np.sqrt(np.maximum(disc, 0.0))
    mu = np.cbrt(-0.5 * q + sq) + np.cbrt(-0.5 * q - sq) + c / 3.0
    three = np.flatnonzero(~one)  # only when c < 0, so p < 0
    if len(three):
        pt, qt = p[three], q[three]
        arg = np.clip(1.5 * qt / pt * np.sqrt(-3.0 / pt), -1.0, 1.0)
        mu[three] = 2.0 * np.sqrt(-pt / 3.0) * np.cos(np.arccos(arg) / 3.0) + c[three] / 3.0
    for _ in range(2):
        f = mu * mu * (mu - c) - so
        df = mu * (3.0 * mu - 2.0 * c)
        mu -= f / np.where(df > 0.0, df, 1.0)
    np.maximum(mu, 1.0, out=mu)
    z[out, d] -= mu - 1.0
    z[out, :d] /= mu[:, None]


# -- the space-time ALG2 machinery (shared by fem-bb and fem-jko's ALG2 inner solver) -----
class SpaceTimeALG2:
    """ALG2 on the space-time box Ω × [0, 1]: mesh, Gauss points, operator, projection, loop.

    Everything except the two ends of the time interval: a subclass provides the data on
    the t = 0 and t = 1 faces through the hooks

    * :meth:`_build_boundary_data` (called before the operator is assembled),
    * :meth:`_operator_diagonal` — an optional term added to the diagonal of the φ-operator
      (owned rows; ``None`` for none),
    * :meth:`_boundary_rhs` — the boundary part b of the φ-equation's right-hand side
      (owned entries; the equation is ⟨∇φ, ∇ψ⟩ + ... = ⟨q − σ/r, ∇ψ⟩ + b/r),
    * :meth:`_terminal_step` — a pointwise update of extra variables after the q-step
      (returns its local contributions to the squared residual norms),
    * :meth:`_estimates` — extra per-iteration numbers for the history.

    ``nullspace_eps`` is the weight of the mass term that removes the constant null space
    of the pure Neumann problem (0 when the operator is definite without it).

    Args:
        case: The validated case (its ``[domain]`` is the box Ω).
        comm: The communicator of the run.
        params: ``time_cells``, ``degree``, ``r``, ``adapt_r``, ``relaxation``,
            ``max_it``, ``tol``.
    """

    nullspace_eps = NULLSPACE_EPS
    #: Options prefix of the space-time solve.
    prefix = PREFIX

    def __init__(self, case: Case, comm: MPI.Comm, params: dict[str, Any]) -> None:
        self.case, self.comm, self.params = case, comm, params
        self.r = float(params["r"])
        self.adapt_r = bool(params["adapt_r"])
        self.omega = float(params["relaxation"])
        self.dim = case.dim
        dom = case.section("domain")
        self.n_time = int(params["time_cells"])
        self.mesh = box_mesh(
            comm,
            [*dom["lower"], 0.0],
            [*dom["upper"], 1.0],
            [*dom["cells"], self.n_time],
            dom["cell_type"],
        )
        self.tdim = self.mesh.topology.dim  # = dim + 1; time is coordinate `dim`
        k = int(params["degree"])
        self.V = dolfinx.fem.functionspace(self.mesh, ("Lagrange", k))
        self.phi = dolfinx.fem.Function(self.V, name="phi")
        self._build_points(k)
        self._build_boundary_data()
        self._build_operator()
        self.n_pts = self._w.size
        self.q = np.zeros((self.n_pts, self.tdim))
        self.sigma = np.zeros((self.n_pts, self.tdim))
        self.gphi = np.zeros((self.n_pts, self.tdim))
        self.iterations = 0
        self.history: dict[str, list[float]] = {}

    # -- hooks -----------------------------------------------------------------------------
    def _build_boundary_data(self) -> None:
        raise NotImplementedError

    def _operator_diagonal(self) -> np.ndarray | None:
        return None

    def _boundary_rhs(self) -> np.ndarray:
        raise NotImplementedError

    def _terminal_step(self, omega: float) -> np.ndarray:
        """Local contributions to ‖primal diff‖², ‖grad‖², ‖Δq‖², ‖multiplier‖²."""
        return np.zeros(4)

    def _estimates(self) -> dict[str, float]:
        return {}

    # -- set-up ----------------------------------------------------------------------------
    def _build_points(self, k: int) -> None:
        """Gauss points, their weights and the sparse gradient matrix G (points × dofs)."""
        mesh, tdim = self.mesh, self.tdim
        simplex = mesh.topology.cell_type.name in ("interval", "triangle", "tetrahedron")
        self.qdeg = max(2 * (k - 1), 1) if simplex else 2 * k
        cell = getattr(basix.CellType, mesh.topology.cell_type.name)
        points, weights = basix.make_quadrature(cell, self.qdeg)
        cells = np.arange(mesh.topology.index_map(tdim).size_local, dtype=np.int32)
        nc, nq = len(cells), len(weights)
        v = ufl.TestFunction(self.V)
        grads = dolfinx.fem.Expression(ufl.grad(v), points).eval(mesh, cells)
        grads = grads.reshape(nc, nq, tdim, -1)  # (cell, point, component, local dof)
        nd = grads.shape[-1]
        dofs = self.V.dofmap.list[cells]  # (cell, local dof)
        cols = np.broadcast_to(dofs[:, None, None, :], grads.shape).reshape(-1, nd)
        n_local = self.V.dofmap.index_map.size_local + self.V.dofmap.index_map.num_ghosts
        rows = nc * nq * tdim
        self.G = sp.csr_matrix(
            (grads.reshape(-1), cols.reshape(-1), np.arange(rows + 1) * nd),
            shape=(rows, n_local),
        )
        jac = dolfinx.fem.Expression(abs(ufl.JacobianDeterminant(mesh)), points)
        self._w = (jac.eval(mesh, cells).reshape(nc, nq) * weights).ravel()
        # G^T W with the weights folded in: the rhs is one mat-vec, no weighted copy.
        self.GTW = (self.G.T @ sp.diags(np.repeat(self._w, tdim))).tocsr()
        xq = dolfinx.fem.Expression(ufl.SpatialCoordinate(mesh), points).eval(mesh, cells)
        self._t_pts = xq.reshape(nc * nq, -1)[:, self.dim]
        self._cells, self._q_ref = cells, points

    def _build_operator(self) -> None:
        """Assemble (∇φ, ∇ψ) + ε(φ, ψ) (+ the hook's diagonal) once and factorise it."""
        u, v = ufl.TrialFunction(self.V), ufl.TestFunction(self.V)
        dx = ufl.Measure("dx", domain=self.mesh, metadata={"quadrature_degree": self.qdeg})
        dxm = ufl.Measure("dx", domain=self.mesh)
        a = ufl.inner(ufl.grad(u), ufl.grad(v)) * dx
        if self.nullspace_eps:
            a = a + self.nullspace_eps * u * v * dxm
        self.A = dolfinx.fem.petsc.assemble_matrix(dolfinx.fem.form(a))
        self.A.assemble()
        extra = self._operator_diagonal()
        if extra is not None:
            diag = self.A.createVecLeft()
            diag.array[:] = extra
            self.A.setDiagonal(diag, addv=PETSc.InsertMode.ADD_VALUES)
            self.A.assemble()
            diag.destroy()
        self.ksp = use_direct_lu(PETSc.KSP().create(self.comm))
        self.ksp.setOptionsPrefix(self.prefix)
        self.ksp.setOperators(self.A)
        self.ksp.setFromOptions()
        self._rhs = self.A.createVecRight()
        self._sol = self.A.createVecLeft()
        self._acc = dolfinx.fem.Function(self.V)  # rhs accumulator with ghosts
        t0 = time.perf_counter()
        self.ksp.setUp()  # the factorisation
        self.factor_time = time.perf_counter() - t0

    # -- global reductions -----------------------------------------------------------------
    def _sum(self, value: float) -> float:
        return self.comm.allreduce(float(value), op=MPI.SUM)

    def _norms(self, *fields: np.ndarray, extra: np.ndarray | None = None) -> np.ndarray:
        """Discrete L2(Ω×[0,1]) norms of vector fields at the points (one reduction).

        ``extra`` holds local squared contributions added to each norm (boundary parts).
        """
        local = np.array([np.einsum("i,ij,ij->", self._w, f, f) for f in fields])
        if extra is not None:
            local += extra
        self.comm.Allreduce(MPI.IN_PLACE, local, op=MPI.SUM)
        return np.sqrt(local)

    # -- ALG2 ------------------------------------------------------------------------------
    def solve_poisson(self, source: np.ndarray) -> None:
        """φ from (∇φ, ∇ψ) = ⟨source, ∇ψ⟩ + b/r, with ``source`` = q − σ/r at the points.

        This is step 1 divided by r, so the factorised operator does not depend on r.
        """
        local = self.GTW @ source.ravel()
        acc = self._acc.x
        acc.array[:] = local
        acc.scatter_reverse(dolfinx.la.InsertMode.add)
        b = self._boundary_rhs()
        n = len(b)
        self._rhs.array[:] = acc.array[:n] + b / self.r
        self.solve_factorised()
        self.phi.x.array[:n] = self._sol.array_r
        self.phi.x.scatter_forward()

    def solve_factorised(self) -> None:
        """Solve with the factorised φ-operator for the current right-hand side.

        One forward and one backward substitution, no assembly: the φ-step's linear algebra.
        """
        self.ksp.solve(self._rhs, self._sol)

    def iterate(self) -> dict[str, float]:
        """One ALG2 iteration; returns the residuals, the hook's estimates and r."""
        r = self.r
        q_old = self.q
        src = self.sigma * (-1.0 / r)
        src += self.q
        self.solve_poisson(src)
        self.gphi = (self.G @ self.phi.x.array).reshape(-1, self.tdim)
        # Over-relaxation (ADMM with relaxation ω ∈ (0, 2); ω = 1 is plain ALG2).
        omega = self.omega
        ghat = omega * self.gphi + (1.0 - omega) * q_old if omega != 1.0 else self.gphi
        z = self.sigma * (1.0 / r)
        z += ghat
        project_rows(z)
        self.q = z
        diff = self.gphi - self.q
        if omega == 1.0:
            self.sigma += r * diff
        else:
            self.sigma += r * (ghat - self.q)
        extra = self._terminal_step(omega)
        self.iterations += 1
        estimates = self._estimates()
        n_diff, n_grad, n_dq, n_sigma = self._norms(
            diff, self.gphi, self.q - q_old, self.sigma, extra=extra
        )
        primal = n_diff / max(n_grad, 1e-300)
        dual = r * n_dq / max(n_sigma, 1e-300)
        info = {
            "residual": max(primal, dual),
            "primal_residual": primal,
            "dual_residual": dual,
            **estimates,
            "r": r,
        }
        # Residual balancing (Boyd et al. 2011, §3.4.1): free here, r only scales the rhs.
        if self.adapt_r:
            if primal > ADAPT_RATIO * dual:
                self.r = r * ADAPT_FACTOR
            elif dual > ADAPT_RATIO * primal:
                self.r = r / ADAPT_FACTOR
        return info

    def w2sq_primal(self) -> float:
        """Σ_points w |m|²/ρ over the points where ρ > 0 (the primal estimate of W2²)."""
        rho, m = self.sigma[:, self.dim], self.sigma[:, : self.dim]
        inv = np.divide(self._w, rho, out=np.zeros_like(rho), where=rho > 1e-12 * self.mass)
        return self._sum(np.einsum("i,ij,ij->", inv, m, m))

    def slab_mass(self) -> np.ndarray:
        """(1/Δt)∫_slab ρ for each of the ``time_cells`` slabs (conserved by the scheme)."""
        dt = 1.0 / self.n_time
        slab = np.minimum((self._t_pts / dt).astype(int), self.n_time - 1)
        out = np.bincount(slab, weights=self._w * self.sigma[:, self.dim], minlength=self.n_time)
        self.comm.Allreduce(MPI.IN_PLACE, out, op=MPI.SUM)
        return out / dt

    def run(self, callback=None) -> bool:
        """Iterate until the residual is below ``tol`` or ``max_it`` is reached.

        Args:
            callback: Called as ``callback(k, info)`` after every iteration.

        Returns:
            Whether the run converged.
        """
        tol, max_it = self.params["tol"], self.params["max_it"]
        start = time.perf_counter()
        for _ in range(max_it):
            info = self.iterate()
            info["wall_time"] = time.perf_counter() - start
            for key, value in info.items():
                self.history.setdefault(key, []).append(value)
            if callback is not None:
                callback(self.iterations, info)
            if info["residual"] < tol:
                return True
        return False

    def close(self) -> None:
        """Free the PETSc objects."""
        for obj in (self.ksp, self.A, self._rhs, self._sol):
            obj.destroy()


# -- fem-bb ------------------------------------------------------------------------------
class Solver(SpaceTimeALG2):
    """Benamou–Brenier dynamic OT between ``[initial]`` and ``[target]`` by ALG2.

    Args:
        case: The validated case (must have ``[target]``).
        comm: The communicator of the run.
        params: The ``[solver.fem-bb]`` table.
    """

    name = "fem-bb"

    def __init__(self, case: Case, comm: MPI.Comm, params: dict[str, Any]) -> None:
        self.check_case(case, params)
        super().__init__(case, comm, params)
        self._w_prev = np.nan
        self.rho_h: dolfinx.fem.Function | None = None

    # -- validation ------------------------------------------------------------------------
    @classmethod
    def check_case(cls, case: Case, params: dict[str, Any] | None = None) -> None:
        """Raise :class:`UserError` unless this is a box transport case with valid parameters.

        The registered capabilities first (a ``[target]``, a 1-D/2-D box), then the
        parameters.
        """
        capabilities(cls.name).check(case, cls.name)
        p = params if params is not None else case.solver_params(cls.name)
        if not p["time_cells"] > 0:
            raise UserError(
                f"case key 'solver.fem-bb.time_cells' must be > 0, got {p['time_cells']}"
            )
        if not p["r"] > 0.0:
            raise UserError(f"case key 'solver.fem-bb.r' must be > 0, got {p['r']}")
        if not p["max_it"] > 0:
            raise UserError(f"case key 'solver.fem-bb.max_it' must be > 0, got {p['max_it']}")
        if not p["tol"] > 0.0:
            raise UserError(f"case key 'solver.fem-bb.tol' must be > 0, got {p['tol']}")
        if p["degree"] not in (1, 2):
            raise UserError(f"case key 'solver.fem-bb.degree' must be 1 or 2, got {p['degree']}")

    # -- the data at t = 0 and t = 1 ------------------------------------------------------
    def _build_boundary_data(self) -> None:
        """ρ0, ρ1 on the t = 0 and t = 1 faces; the fixed right-hand side b = ∫ψρ1 − ∫ψρ0."""
        mesh, fdim = self.mesh, self.tdim - 1
        d = self.dim
        facets0 = dolfinx.mesh.locate_entities_boundary(mesh, fdim, lambda x: np.isclose(x[d], 0))
        facets1 = dolfinx.mesh.locate_entities_boundary(mesh, fdim, lambda x: np.isclose(x[d], 1))
        ids = np.concatenate([facets0, facets1]).astype(np.int32)
        tags = np.concatenate([np.full(len(facets0), 1), np.full(len(facets1), 2)]).astype(np.int32)
        order = np.argsort(ids)
        mt = dolfinx.mesh.meshtags(mesh, fdim, ids[order], tags[order])
        ds = ufl.Measure("ds", domain=mesh, subdomain_data=mt, metadata={"quadrature_degree": 6})
        self._ds0, self._ds1 = ds(1), ds(2)
        ini, tgt = self.case.section("initial"), self.case.section("target")
        mass0 = ini["mass"]
        mass1 = mass0 if tgt["normalize"] else tgt["mass"]
        self.rho0 = self._boundary_density("initial", self._ds0, mass0)
        self.rho1 = self._boundary_density("target", self._ds1, mass1)
        self.mass = mass0
        v = ufl.TestFunction(self.V)
        form = dolfinx.fem.form(self.rho1 * v * self._ds1 - self.rho0 * v * self._ds0)
        b = dolfinx.fem.petsc.assemble_vector(form)
        b.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
        self._b_time = b.array_r.copy()  # owned entries
        b.destroy()

    def _boundary_density(self, table: str, ds: ufl.Measure, mass: float) -> dolfinx.fem.Function:
        density = self.case.density(table)
        d = self.dim
        f = dolfinx.fem.Function(self.V, name=f"rho_{table}")
        with np.errstate(all="ignore"):
            f.interpolate(lambda x: density(x[:d].T))
        owned = f.x.array[: self.V.dofmap.index_map.size_local]
        total = self.comm.allreduce(
            dolfinx.fem.assemble_scalar(dolfinx.fem.form(f * ds)), op=MPI.SUM
        )
        check_density(owned, table, "on the mesh", self.comm, total)
        f.x.array[:] *= mass / total
        return f

    def _boundary_rhs(self) -> np.ndarray:
        return self._b_time

    def _estimates(self) -> dict[str, float]:
        w_primal, w_dual = self.w2sq_primal(), self.w2sq_dual()
        change = abs(w_primal - self._w_prev) / max(abs(w_primal), 1e-300)
        self._w_prev = w_primal
        return {"w2sq_change": change, "w2sq_primal": w_primal, "w2sq_dual": w_dual}

    def w2sq_dual(self) -> float:
        """2(∫φ(1)ρ1 − ∫φ(0)ρ0), the dual estimate of W2²."""
        n = len(self._b_time)
        return 2.0 * self._sum(np.einsum("i,i->", self.phi.x.array[:n], self._b_time))

    # -- the geodesic ----------------------------------------------------------------------
    def project_density(self) -> dolfinx.fem.Function:
        """L2 projection of the point values of ρ onto continuous P1 (space-time)."""
        P1 = dolfinx.fem.functionspace(self.mesh, ("Lagrange", 1))
        u, v = ufl.TrialFunction(P1), ufl.TestFunction(P1)
        M = dolfinx.fem.petsc.assemble_matrix(dolfinx.fem.form(u * v * ufl.dx))
        M.assemble()
        vals = dolfinx.fem.Expression(v, self._q_ref).eval(self.mesh, self._cells)
        nc, nq = len(self._cells), len(self._q_ref)
        vals = vals.reshape(nc, nq, -1)
        dofs = P1.dofmap.list[self._cells]
        contrib = vals * (self._w * self.sigma[:, self.dim]).reshape(nc, nq, 1)
        rho = dolfinx.fem.Function(P1, name="density")
        np.add.at(rho.x.array, dofs, contrib.sum(axis=1))
        rho.x.scatter_reverse(dolfinx.la.InsertMode.add)
        rhs = M.createVecRight()
        n = P1.dofmap.index_map.size_local
        rhs.array[:] = rho.x.array[:n]
        sol = M.createVecLeft()
        ksp = PETSc.KSP().create(self.comm)
        ksp.setOperators(M)
        ksp.setType("cg")
        ksp.getPC().setType("jacobi")
        ksp.setTolerances(rtol=1e-12, atol=1e-300)
        ksp.solve(rhs, sol)
        rho.x.array[:n] = sol.array_r
        rho.x.scatter_forward()
        for obj in (ksp, rhs, sol, M):
            obj.destroy()
        self.rho_h = rho
        return rho

    def sample(self, times: np.ndarray, points: np.ndarray) -> np.ndarray | None:
        """ρ(t, x) at every time and sample point, (n_times, n_points), on rank 0."""
        rho = self.rho_h if self.rho_h is not None else self.project_density()
        n = len(points)
        pts = np.zeros((len(times) * n, 3))
        for i, t in enumerate(times):
            pts[i * n : (i + 1) * n, : self.dim] = points
            pts[i * n : (i + 1) * n, self.dim] = t
        values = PointSampler(self.mesh, pts).evaluate(rho)
        return None if values is None else values.reshape(len(times), n)

    def bounding_box(self) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper corners of the spatial domain."""
        dom = self.case.section("domain")
        return np.array(dom["lower"]), np.array(dom["upper"])

    def write_fields(self, path: Path) -> str:
        """Write ρ (P1) and φ (interpolated to P1) on the space-time mesh as XDMF.

        Time is the last coordinate of the mesh: in ParaView, slice normal to it (or use
        "Plot over line" along it) to see the geodesic ρ(t, ·).
        """
        rho = self.rho_h if self.rho_h is not None else self.project_density()
        phi1 = dolfinx.fem.Function(rho.function_space, name="phi")
        phi1.interpolate(self.phi)
        with dolfinx.io.XDMFFile(self.comm, str(path), "w") as xdmf:
            xdmf.write_mesh(self.mesh)
            xdmf.write_function(rho, 0.0)
            xdmf.write_function(phi1, 0.0)
        return path.name
