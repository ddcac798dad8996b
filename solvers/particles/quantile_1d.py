"""``quantile-1d``: the exact Lagrangian JKO scheme in 1-D, in quantile coordinates.

In 1-D, W2 is the L2 distance of quantile functions, so the JKO step is a
finite-dimensional convex problem for the particle positions x_0 < x_1 < … < x_{N-1} at
the mass levels i/(N-1) (:func:`~wgf.solvers.particles.initial.quantiles_1d`).  Consecutive
particles enclose the same mass w = M/(N-1); the density on the cell (x_i, x_{i+1}) is
w/Δ_i, Δ_i = x_{i+1} - x_i (the pseudo-inverse form).  Each step solves

    min_x Φ(x) = Σ_i w̃_i |x_i - x_iⁿ|²/(2τ) + F_h(x),
    F_h(x) = Σ_i Δ_i D·U(w/Δ_i) + Σ_i w̃_i V(x_i),

with trapezoid weights w̃_i = w (w/2 at both ends; they sum to M), i.e. the exact W2 of the
piecewise-linear quantile functions' nodal values.  The cell term f(Δ) = Δ D U(w/Δ) has
f'(Δ) = -D P(w/Δ) and f''(Δ) = D P'(w/Δ) w/Δ² > 0 (P the pressure of
:mod:`wgf.solvers.energy`), so Φ is strictly convex and its Hessian is tridiagonal:
Newton's method (``scipy.linalg.solve_banded``), with a step cut to keep every Δ_i > 0
(at most 90 % of the way to the first cell collapse) and Armijo backtracking on Φ.
Newton stops when the step is below ``rtol`` × the support width; ``step`` returns the
iteration count.  The JKO structure makes F_h(xⁿ⁺¹) ≤ Φ(xⁿ⁺¹) ≤ Φ(xⁿ) = F_h(xⁿ): the
reported ``energy`` F_h never increases.

Interaction (``[energy.interaction]``): F_h gains E_W(x) = ½ Σ_{i≠j} w̃_i w̃_j W(|x_i - x_j|),
with the unmollified kernel: the particles stay ordered, so no two ever meet and a kernel
singular at 0 (log r) needs no mollifier.  The ordering also makes the sign of x_i - x_j
that of i - j, so for W = a·r + b (the 1-D Newtonian kernel |x|/2, a = κ/2) the force is
explicit from the ranks: ∂E_W/∂x_i = a w̃_i (m_i^- - m_i^+), m^∓ the mass left and right of
particle i, constant during the step (E_W is linear in x on the ordered cone), so Newton
needs no extra Hessian term and the cost stays O(N).  Any other kernel is summed over all
pairs, with the dense Hessian -w̃_i w̃_j W''(|x_i - x_j|) (off the diagonal; W'' clipped at
0, a convex model whose Newton direction is still a descent direction for the Armijo line
search), so N is limited to :data:`MAX_DENSE` there.

Outputs: the sample-grid density is the scheme's own piecewise-constant density w/Δ_i
(no kernel: it is what the scheme evolves).  When the case has a closed form,
``quantile_error`` is max_i |x_i - Q(t, i/(N-1))| against the exact quantile function Q,
``quantile_error_interior`` the same over the levels in [0.01, 0.99], and ``w2_error``
= (Σ w̃_i |x_i - Q(t, i/(N-1))|²)^{1/2} ≈ W2(ρ_h, ρ).  Why the interior one: at a
porous-medium free boundary the end particle (mass w/2) is pushed by the pressure of the
end cell's *mean* density, which for ρ ~ (R - x)^{1/(m-1)} is a fixed fraction of the exact
front speed (1/2 for m = 2), so the two end particles lag by O(end cell width) =
O(N^{-(m-1)/m}); the other quantiles converge at the scheme's rate.

Particles outside the box are counted in ``escaped`` but not moved (mirroring would
break the ordering the scheme relies on).  The problem is tiny (N ≲ 10⁴, O(N) per Newton
step), so every rank solves it redundantly: results do not depend on the number of ranks.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from mpi4py import MPI
from scipy.linalg import solve_banded

from wgf.cases import Case
from wgf.cases.errors import SolverError, UserError
from wgf.solvers.particles.base import ParticleSolver, positive_param
from wgf.solvers.particles.initial import quantiles_1d

#: Default number of particles.
DEFAULT_PARTICLES = 400
#: Fraction of the way to the nearest cell collapse a Newton step may go.
TO_BOUNDARY = 0.9
#: ``quantile_error_interior`` leaves out the mass levels below this and above 1 - this.
INTERIOR = 0.01
#: Points of the grid on which exact quantiles are computed (cumulative trapezoid rule).
EXACT_GRID = 200001
#: Relative residual at which the conjugate gradients of a dense Newton system stop.
CG_RTOL = 1e-12
#: Most particles for a kernel other than a·r + b (dense N×N pair matrices per Newton step).
MAX_DENSE = 4000


class Solver(ParticleSolver):
    """Lagrangian JKO in quantile coordinates (see the module docstring)."""

    name = "quantile-1d"
    adaptive_tau = True

    def __init__(self, case: Case, comm: MPI.Comm, params: dict[str, Any]) -> None:
        super().__init__(case, comm, params)
        n = self.n_requested or DEFAULT_PARTICLES
        if n < 3:
            raise UserError(f"case key 'solver.quantile-1d.particles' must be >= 3, got {n}")
        self.rtol = positive_param(self.name, params, "rtol")
        self.max_it = positive_param(self.name, params, "max_it")
        x, self.cell_mass = quantiles_1d(
            case.density("initial"), self.lower, self.upper, n, self.mass
        )
        w = np.full(n, self.cell_mass)
        w[[0, -1]] *= 0.5
        self.set_initial_particles(x[:, None], w)
        inter = self.energy.interaction
        self._dense_pairs = inter is not None and inter.linear_coefficient is None
        if self._dense_pairs and n > MAX_DENSE:
            raise UserError(
                f"case key 'solver.quantile-1d.particles': at most {MAX_DENSE} with the kernel "
                f"of energy.interaction (its Newton steps build dense N×N pair matrices), got "
                f"{n}; kernels a·r + b (the 1-D Newtonian) have no such limit"
            )
        self.levels = np.linspace(0.0, 1.0, n)
        self.interior = (self.levels >= INTERIOR) & (self.levels <= 1.0 - INTERIOR)
        self._steady_quantiles: np.ndarray | None = None
        self._pair_hessian: np.ndarray | None = None

    # -- the discrete energy -------------------------------------------------------------
    def _cells(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        gaps = np.diff(x)
        return gaps, self.cell_mass / gaps

    def discrete_energy(self, x: np.ndarray) -> float:
        """F_h(x) = Σ Δ_i D·U(w/Δ_i) + Σ w̃_i V(x_i) + E_W(x)."""
        gaps, rho = self._cells(x)
        internal = float(np.sum(gaps * self.energy.density(rho, 0.0)))
        potential = float(np.sum(self.w * self.energy.potential_value(x[:, None])))
        return internal + potential + self.pair_terms(x, order=0)[0]

    def pair_terms(
        self, x: np.ndarray, order: int = 2
    ) -> tuple[float, np.ndarray | None, np.ndarray | None]:
        """E_W(x), its gradient (order ≥ 1) and its dense convex Hessian model (order 2).

        The Hessian is None where it vanishes (no interaction, or W = a·r + b); see the
        module docstring.  ``x`` must be increasing.
        """
        inter, w = self.energy.interaction, self.w
        if inter is None:
            return 0.0, (np.zeros_like(x) if order else None), None
        a = inter.linear_coefficient
        if a is not None:
            left = np.cumsum(w) - w  # mass strictly left of each particle
            right = float(np.sum(w)) - left - w
            moment_left = np.cumsum(w * x) - w * x
            b = float(inter.W(np.zeros(1))[0])
            energy = a * float(w @ (x * left - moment_left))
            energy += 0.5 * b * (float(np.sum(w)) ** 2 - float(w @ w))
            return energy, (a * w * (left - right) if order else None), None
        diff = x[:, None] - x[None, :]
        r = np.abs(diff)
        np.fill_diagonal(r, 1.0)  # placeholder: the diagonal is masked below
        off = ~np.eye(len(x), dtype=bool)
        energy = 0.5 * float(w @ np.where(off, inter.W(r), 0.0) @ w)
        if not order:
            return energy, None, None
        grad = w * (np.where(off, inter.dW(r) * np.sign(diff), 0.0) @ w)
        if order < 2:
            return energy, grad, None
        c = np.where(off, np.maximum(inter.d2W(r), 0.0), 0.0) * np.outer(w, w)
        hess = np.diag(c.sum(axis=1)) - c
        return energy, grad, hess

    def _objective(self, x: np.ndarray, x_old: np.ndarray, tau: float) -> float:
        return float(np.sum(self.w * (x - x_old) ** 2)) / (2.0 * tau) + self.discrete_energy(x)

    def _gradient_hessian(
        self, x: np.ndarray, x_old: np.ndarray, tau: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """∇Φ and the banded (3, N) Hessian of Φ."""
        gaps, rho = self._cells(x)
        df = -self.energy.pressure(rho)  # f'(Δ)
        d2f = self.energy.dpressure(rho) * rho / gaps  # f''(Δ)
        grad = self.w * (x - x_old) / tau
        grad[1:] += df
        grad[:-1] -= df
        # V'' where the step problem is convex; a concave V (double wells) with 1/τ + V'' ≤ 0
        # would make the Hessian indefinite, so V'' is clipped there (a convex model).
        curvature = np.maximum(self.energy.potential_hessian(x[:, None])[:, 0, 0], -0.5 / tau)
        diag = self.w * (1.0 / tau + curvature)
        diag[1:] += d2f
        diag[:-1] += d2f
        grad += self.w * self.energy.potential_gradient(x[:, None])[:, 0]
        _, pair_grad, self._pair_hessian = self.pair_terms(x)
        assert pair_grad is not None
        grad += pair_grad
        bands = np.zeros((3, len(x)))
        bands[0, 1:] = -d2f
        bands[1] = diag
        bands[2, :-1] = -d2f
        return grad, bands

    def _newton_direction(self, grad: np.ndarray, bands: np.ndarray) -> np.ndarray:
        """-H⁻¹∇Φ: tridiagonal, or H = T + L with the pair terms' dense L.

        T + L is solved by conjugate gradients preconditioned with the tridiagonal T (one
        banded solve and one product with L per iteration).  Why not a dense LU: both are
        SPD, T⁻¹(T + L) has a condition number 1 + O(τ κ M) so CG takes a few iterations,
        and a threaded dense LAPACK solve was slow on the shared machine (benchmarks/README.md).
        """
        if self._pair_hessian is None:
            return -solve_banded((1, 1), bands, grad)
        pair = self._pair_hessian
        b = -grad
        x = solve_banded((1, 1), bands, b)
        r = b - self._banded_product(bands, x) - pair @ x
        z = solve_banded((1, 1), bands, r)
        p, rz = z.copy(), float(r @ z)
        target = CG_RTOL * float(np.linalg.norm(b))
        for _ in range(len(b)):
            if float(np.linalg.norm(r)) <= target:
                break
            q = self._banded_product(bands, p) + pair @ p
            alpha = rz / float(p @ q)
            x += alpha * p
            r -= alpha * q
            z = solve_banded((1, 1), bands, r)
            rz, rz_old = float(r @ z), rz
            p = z + (rz / rz_old) * p
        return x

    @staticmethod
    def _banded_product(bands: np.ndarray, v: np.ndarray) -> np.ndarray:
        """T v for the tridiagonal T stored as ``solve_banded`` bands (3, N)."""
        out = bands[1] * v
        out[:-1] += bands[0, 1:] * v[1:]
        out[1:] += bands[2, :-1] * v[:-1]
        return out

    # -- FlowSolver -----------------------------------------------------------------------
    def step(self, tau: float) -> int:
        """One JKO step by damped Newton; return the iteration count."""
        x_old = self.x[:, 0]
        x = x_old.copy()
        width = x[-1] - x[0]
        phi = self._objective(x, x_old, tau)
        for it in range(1, self.max_it + 1):
            grad, bands = self._gradient_hessian(x, x_old, tau)
            p = self._newton_direction(grad, bands)
            dp = np.diff(p)
            shrinking = dp < 0.0
            alpha = 1.0
            if shrinking.any():
                room = float(np.min(-np.diff(x)[shrinking] / dp[shrinking]))
                alpha = min(1.0, TO_BOUNDARY * room)
            slope = float(grad @ p)
            while True:
                trial = x + alpha * p
                phi_trial = self._objective(trial, x_old, tau)
                if phi_trial <= phi + 1e-4 * alpha * slope or alpha * np.abs(p).max() < (
                    1e-3 * self.rtol * width
                ):
                    break
                alpha *= 0.5
            x, phi = trial, phi_trial
            if not np.all(np.isfinite(x)) or not np.all(np.diff(x) > 0.0):
                break
            if alpha * np.abs(p).max() <= self.rtol * width:
                self._commit(x)
                return it
        raise SolverError(
            f"quantile-1d: Newton did not converge in {self.max_it} iterations (τ = {tau:.3g})",
            iterations=it,
        )

    def _commit(self, x: np.ndarray) -> None:
        self.escaped += int(np.count_nonzero((x < self.lower[0]) | (x > self.upper[0])))
        self.set_positions(x[:, None])

    def invariants(self) -> frozenset[str]:
        """Each step minimises F + W2²/(2τ) exactly, so F never rises above F(ρⁿ)."""
        return frozenset({"energy_decay"})

    def energy_value(self) -> float:
        """The discrete energy F_h."""
        return self.discrete_energy(self.x[:, 0])

    def interaction_energy_value(self) -> float:
        """E_W of the current particles, as the scheme computes it (exact, any N)."""
        return self.pair_terms(self.x[:, 0], order=0)[0]

    def second_moment(self) -> float:
        """∫ x² of the piecewise-constant density: Σ w (a² + ab + b²)/3 over cells (a, b)."""
        a, b = self.x[:-1, 0], self.x[1:, 0]
        return float(np.sum(self.cell_mass * (a * a + a * b + b * b) / 3.0))

    def density_at(self, points: np.ndarray) -> np.ndarray:
        """The piecewise-constant density w/Δ_i at points (0 outside the particles)."""
        x = self.x[:, 0]
        p = points[:, 0]
        cell = np.searchsorted(x, p, side="right") - 1
        inside = (cell >= 0) & (cell < len(x) - 1)
        out = np.zeros(len(p))
        out[inside] = self.cell_mass / np.diff(x)[cell[inside]]
        return out

    def density_at_particles(self) -> np.ndarray:
        """At each particle, the mean of w/Δ over its one or two cells.

        The scheme's density is constant on cells, so a node sits on a jump; the mean of
        the two sides is the value a line through the cell midpoints takes there.
        """
        rho = self.cell_mass / np.diff(self.x[:, 0])
        return np.concatenate([rho[:1], 0.5 * (rho[:-1] + rho[1:]), rho[-1:]])

    def exact_quantiles(self, t: float) -> np.ndarray | None:
        """Q(t, i/(N-1)) of the exact solution (cumulative trapezoid on a fine grid).

        Computed once for a steady exact solution (it costs more than a step).
        """
        if self.exact is None:
            return None
        if self.case.exact_is_steady:
            if self._steady_quantiles is None:
                self._steady_quantiles = self._quantiles_of(self.exact(0.0, self._fine_grid()))
            return self._steady_quantiles
        return self._quantiles_of(self.exact(t, self._fine_grid()))

    def _fine_grid(self) -> np.ndarray:
        return np.linspace(self.lower[0], self.upper[0], EXACT_GRID)[:, None]

    def _quantiles_of(self, rho: np.ndarray) -> np.ndarray:
        grid = self._fine_grid()[:, 0]
        cdf = np.concatenate([[0.0], np.cumsum(0.5 * (rho[1:] + rho[:-1]) * np.diff(grid))])
        cdf /= cdf[-1]
        up = np.diff(cdf) > 0.0
        ends = np.concatenate([up, [False]]) | np.concatenate([[False], up])
        return np.interp(self.levels, cdf[ends], grid[ends])

    def diagnostics(self, t: float) -> dict[str, float]:
        """The common diagnostics plus ``quantile_error`` (max over particles)."""
        out = super().diagnostics(t)
        exact = self.exact_quantiles(t)
        if exact is not None:
            err = np.abs(self.x[:, 0] - exact)
            out["quantile_error"] = float(err.max())
            out["quantile_error_interior"] = float(err[self.interior].max())
            out["w2_error"] = float(np.sqrt(np.sum(self.w * err**2)))
        return out
