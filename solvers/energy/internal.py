"""Internal energies U(ρ): the local part ∫ D·U(ρ) dx of the free energy.

For an internal energy U the pressure is P(ρ) = ρU'(ρ) - U(ρ), so that ρ∇U'(ρ) = ∇P(ρ)
and its flow reads ∂_t ρ = D·div(∇P(ρ)).  Each term gives the pointwise maps that the
solvers need, so that no solver has to know which term it holds:

* :meth:`U`, :meth:`dU` (= U'), :meth:`pressure`, :meth:`dpressure` (= P' = ρU''), on
  NumPy arrays or UFL expressions (see :mod:`wgf.solvers.energy.backend`);
* :meth:`invert_first_variation`: the ρ > 0 with D·U'(ρ) - ε/ρ = y (the Hamilton–Jacobi
  row of the JKO Newton solver, ε its log-barrier weight);
* :meth:`prox`: argmin_ρ c·U(ρ) + ½(ρ - z)² (the terminal step of ALG2);
* two facts: ``linear_pressure`` (P(ρ) = ρ: linear diffusion, Slotboom variables and
  Brownian noise apply) and ``compact_support`` (minimisers may vanish on open sets, so an
  interior-point solver needs a barrier to keep ρ > 0).

A new internal energy is one class here (or in a file of its own) registered with
:func:`register`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np

from wgf.solvers.energy.backend import NUMPY, ArrayNamespace

#: ρ log ρ is evaluated at max(ρ, TINY), so that 0·log 0 = 0.
TINY = 1e-300


class InternalEnergy(Protocol):
    """What every internal energy term provides (see the module docstring)."""

    name: ClassVar[str]
    linear_pressure: ClassVar[bool]
    compact_support: ClassVar[bool]
    #: True only for U = 0 (solvers then skip the density estimate their velocity needs).
    vanishes: ClassVar[bool]

    def U(self, rho: Any, xp: ArrayNamespace = NUMPY) -> Any: ...  # noqa: D102
    def dU(self, rho: Any, xp: ArrayNamespace = NUMPY) -> Any: ...  # noqa: D102
    def pressure(self, rho: Any, xp: ArrayNamespace = NUMPY) -> Any: ...  # noqa: D102
    def dpressure(self, rho: Any, xp: ArrayNamespace = NUMPY) -> Any: ...  # noqa: D102
    def invert_first_variation(  # noqa: D102
        self, y: np.ndarray, diffusivity: float, barrier: float, start: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]: ...
    def prox(self, z: np.ndarray, c: float) -> np.ndarray: ...  # noqa: D102


#: The internal energies by case-file name (``energy.internal``).
INTERNAL_ENERGIES: dict[str, type] = {}


def register(cls: type) -> type:
    """Class decorator: make an internal energy available under its ``name``."""
    INTERNAL_ENERGIES[cls.name] = cls
    return cls


class _LogNewtonInversion:
    """The generic inversion of D·U'(ρ) - ε/ρ = y, by Newton in s = log ρ."""

    def invert_first_variation(
        self, y: np.ndarray, diffusivity: float, barrier: float, start: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """ρ > 0 with D·U'(ρ) - ε/ρ = y, and dρ/dy; Newton in s = log ρ from ``start``.

        h(s) = D·U'(e^s) - ε e^{-s} is increasing in s (dh/ds = D·P'(ρ) + ε/ρ > 0), so the
        root is unique; steps are clipped to ±5 in log ρ.  Each entry stops at its first
        step below 1e-13: with a warm start most take a few steps, a handful near the
        free boundary fifteen or more, and iterating all of them as long as those cost
        fem-jko a tenth of its time (measured at 256²).
        """
        shape = np.shape(start)
        s = np.log(np.clip(start, 1e-300, 1e300)).ravel()
        y = np.broadcast_to(y, shape).ravel()
        active = np.arange(s.size)
        for _ in range(100):
            rho = np.exp(s[active])
            h = diffusivity * self.dU(rho) - barrier / rho - y[active]  # type: ignore[attr-defined]
            dh = diffusivity * self.dpressure(rho) + barrier / rho  # type: ignore[attr-defined]
            step = np.clip(h / dh, -5.0, 5.0)
            s[active] -= step
            active = active[np.abs(step) >= 1e-13]
            if not active.size:
                break
        rho = np.exp(s).reshape(shape)
        return rho, rho / (diffusivity * self.dpressure(rho) + barrier / rho)  # type: ignore[attr-defined]


def _quadratic_root(y: np.ndarray, diffusivity: float, barrier: float) -> np.ndarray:
    """The positive root of 2Dρ² - yρ - ε = 0 (m = 2).

    Without cancellation for either sign of y: (y + s)/4D where y ≥ 0 and 2ε/(s - y)
    where y < 0, s = √(y² + 8Dε).
    """
    s = np.sqrt(y * y + 8.0 * diffusivity * barrier)
    rho = np.empty_like(s)
    up = y >= 0.0
    rho[up] = (y[up] + s[up]) / (4.0 * diffusivity)
    rho[~up] = 2.0 * barrier / (s[~up] - y[~up])
    return rho


def _cubic_root(y: np.ndarray, diffusivity: float, barrier: float) -> np.ndarray:
    """The positive root of (3D/2)ρ³ - yρ - ε = 0 (m = 3).

    By the trigonometric and hyperbolic forms of the depressed cubic t³ + pt + q
    (p = -2y/3D, q = -2ε/3D < 0).  With a = 3q/(2p)·√(3/|p|): for y < 0 (p > 0) the
    single real root -2√(p/3) sinh(asinh(a)/3), which tends to ε/|y| on the barrier's
    branch without cancellation; for y > 0 the largest root 2√(-p/3) cos(acos(a)/3)
    where a ≤ 1 (three real roots), 2√(-p/3) cosh(acosh(a)/3) where a > 1 (one);
    ∛(-q) at y = 0.
    """
    p, q = -y / (1.5 * diffusivity), -barrier / (1.5 * diffusivity)
    scale = np.sqrt(np.abs(p) / 3.0)
    rho = np.empty_like(scale)
    with np.errstate(divide="ignore", invalid="ignore"):  # a at p = 0, replaced below
        a = 1.5 * q / (p * scale)
    drain, fill = p > 0.0, p < 0.0
    three, one = fill & (a <= 1.0), fill & (a > 1.0)
    rho[drain] = -2.0 * scale[drain] * np.sinh(np.arcsinh(a[drain]) / 3.0)
    rho[three] = 2.0 * scale[three] * np.cos(np.arccos(a[three]) / 3.0)
    rho[one] = 2.0 * scale[one] * np.cosh(np.arccosh(a[one]) / 3.0)
    rho[p == 0.0] = np.cbrt(-q)
    return rho


@register
@dataclass(frozen=True)
class Entropy:
    """U(ρ) = ρ log ρ: linear diffusion."""

    name: ClassVar[str] = "entropy"
    linear_pressure: ClassVar[bool] = True
    compact_support: ClassVar[bool] = False
    vanishes: ClassVar[bool] = False

    def U(self, rho: Any, xp: ArrayNamespace = NUMPY) -> Any:
        """Return the internal energy density ρ log ρ (0 at ρ = 0)."""
        return rho * xp.log(xp.maximum(rho, TINY))

    def dU(self, rho: Any, xp: ArrayNamespace = NUMPY) -> Any:
        """First variation U'(ρ) = log ρ + 1."""
        return xp.log(rho) + 1.0

    def pressure(self, rho: Any, xp: ArrayNamespace = NUMPY) -> Any:
        """P(ρ) = ρU'(ρ) - U(ρ) = ρ."""
        return rho

    def dpressure(self, rho: Any, xp: ArrayNamespace = NUMPY) -> Any:
        """P'(ρ) = ρU''(ρ) = 1."""
        return 1.0 + xp.zero(rho)

    def invert_first_variation(
        self, y: np.ndarray, diffusivity: float, barrier: float, start: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """ρ = exp(y/D - 1) and dρ/dy = ρ/D, in closed form (no barrier is needed)."""
        rho = np.exp(np.minimum(y / diffusivity - 1.0, 700.0))
        return rho, rho / diffusivity

    def prox(self, z: np.ndarray, c: float) -> np.ndarray:
        """argmin_{ρ>0} c·ρ log ρ + ½(ρ - z)²: solves c(log ρ + 1) + ρ = z (Newton in log ρ)."""
        w = z - c
        pos = w > 0.0
        s = w / c
        s[pos] = np.minimum(np.log(w[pos]), s[pos])
        for _ in range(100):
            e = np.exp(s)
            step = (c * s + e - w) / (c + e)
            s -= step
            if np.all(np.abs(step) <= 1e-13 * np.maximum(1.0, np.abs(s))):
                break
        return np.exp(s)


@register
@dataclass(frozen=True)
class PowerLaw(_LogNewtonInversion):
    """U(ρ) = ρ^m/(m-1), m > 1: porous-medium (slow) diffusion."""

    m: float
    name: ClassVar[str] = "power"
    linear_pressure: ClassVar[bool] = False
    compact_support: ClassVar[bool] = True
    vanishes: ClassVar[bool] = False

    def U(self, rho: Any, xp: ArrayNamespace = NUMPY) -> Any:
        """Return ρ^m/(m-1), with ρ clipped at 0 (a vanishing density has no energy)."""
        return xp.maximum(rho, 0.0) ** self.m / (self.m - 1.0)

    def dU(self, rho: Any, xp: ArrayNamespace = NUMPY) -> Any:
        """First variation U'(ρ) = m ρ^{m-1}/(m-1)."""
        return self.m * xp.maximum(rho, 0.0) ** (self.m - 1.0) / (self.m - 1.0)

    def pressure(self, rho: Any, xp: ArrayNamespace = NUMPY) -> Any:
        """P(ρ) = ρ^m."""
        return xp.maximum(rho, 0.0) ** self.m

    def dpressure(self, rho: Any, xp: ArrayNamespace = NUMPY) -> Any:
        """P'(ρ) = m ρ^{m-1}."""
        return self.m * xp.maximum(rho, 0.0) ** (self.m - 1.0)

    def invert_first_variation(
        self, y: np.ndarray, diffusivity: float, barrier: float, start: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """ρ > 0 with D·U'(ρ) - ε/ρ = y, and dρ/dy; m = 2 and 3 in closed form, else by Newton.

        fem-jko inverts at every vertex a dozen times per step, and the closed forms take
        a fraction of the Newton loop's passes (measured: benchmarks/README.md).  Both
        are accurate to a few units of round-off over ρ from 10⁻¹¹ to 20 and ε from
        10⁻¹² to 10⁻⁶ (:func:`_quadratic_root`, :func:`_cubic_root`).  Without a barrier
        (ε = 0) the root can be 0, and Newton's generic inversion is used.
        """
        if barrier > 0.0 and self.m in (2.0, 3.0):
            y = np.broadcast_to(np.asarray(y, dtype=float), np.shape(start))
            root = _quadratic_root if self.m == 2.0 else _cubic_root
            rho = root(y, diffusivity, barrier)
            return rho, rho / (diffusivity * self.dpressure(rho) + barrier / rho)
        return super().invert_first_variation(y, diffusivity, barrier, start)

    def prox(self, z: np.ndarray, c: float) -> np.ndarray:
        """argmin_{ρ≥0} c·U(ρ) + ½(ρ - z)²: solves c m ρ^{m−1}/(m − 1) + ρ = z (0 where z ≤ 0)."""
        m = self.m
        rho = np.zeros_like(z)
        pos = np.flatnonzero(z > 0.0)
        if not len(pos):
            return rho
        zp = z[pos]
        if m == 2.0:
            rho[pos] = zp / (1.0 + 2.0 * c)
            return rho
        k = c * m / (m - 1.0)
        lo, hi, x = np.zeros_like(zp), zp.copy(), zp.copy()
        for _ in range(200):
            f = k * x ** (m - 1.0) + x - zp
            lo = np.where(f < 0.0, x, lo)
            hi = np.where(f >= 0.0, x, hi)
            df = k * (m - 1.0) * np.maximum(x, 1e-300) ** (m - 2.0) + 1.0
            new = x - f / df
            bad = ~((new > lo) & (new < hi))
            new[bad] = 0.5 * (lo[bad] + hi[bad])
            done = np.max(np.abs(new - x) / np.maximum(zp, 1e-300), initial=0.0) < 1e-15
            x = new
            if done:
                break
        rho[pos] = x
        return rho


@register
@dataclass(frozen=True)
class NoInternal(_LogNewtonInversion):
    """U = 0: pure transport by the potential."""

    name: ClassVar[str] = "none"
    linear_pressure: ClassVar[bool] = False
    compact_support: ClassVar[bool] = True
    vanishes: ClassVar[bool] = True

    def U(self, rho: Any, xp: ArrayNamespace = NUMPY) -> Any:
        """Energy density 0."""
        return xp.zero(rho)

    dU = pressure = dpressure = U

    def prox(self, z: np.ndarray, c: float) -> np.ndarray:
        """argmin_{ρ≥0} ½(ρ - z)²: the projection onto ρ ≥ 0."""
        return np.maximum(z, 0.0)
