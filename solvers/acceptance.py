"""When a step is sound: the one rule every flow solver's steps must pass.

The driver (:mod:`wgf.run`) takes a step, asks the solver for its diagnostics and accepts
the step only if :func:`check_step` finds nothing wrong; otherwise the solver's
:meth:`~wgf.solvers.base.FlowSolver.restore` undoes it and the step is retried with a
smaller τ, or the run stops with exit 3 naming the check.  A solver states what its scheme
guarantees through :meth:`~wgf.solvers.base.FlowSolver.invariants`; the checks are

* ``finite`` (always): every diagnostic is a finite number;
* ``mass`` (always): the mass is the previous level's, to :data:`MASS_RTOL`;
* ``positivity``: ``min_density`` ≥ 0, to :data:`POSITIVITY_RTOL` of the mean density;
* ``energy_decay``: F(ρⁿ⁺¹) ≤ F(ρⁿ) + tol;
* ``dissipation``: the JKO energy–dissipation inequality F(ρⁿ⁺¹) + W̃²/(2τ) ≤ F(ρⁿ) + tol,
  i.e. ``dissipation_gap`` ≥ −tol.

A solver that can only represent densities up to some peak (a mesh: a bump narrower than a
cell; particles: a cloud narrower than the blob or the mollifier) reports that limit as
the diagnostic ``resolved_density`` next to its ``peak_density``; :func:`check_resolved`
stops the run when the peak exceeds it.  This is how a concentrating (blowing-up) flow,
supercritical Keller–Segel, ends: with the completed steps kept and one line naming the
time and the peak, not with ever smaller steps on a density the discretisation no longer
represents (a smaller τ cannot help, so the driver does not retry).

A step that treats an interaction explicitly (W∗ρⁿ) proves these bounds only up to its
``interaction_defect`` ½⟨W∗δρ, δρ⟩, δρ = ρⁿ⁺¹ − ρⁿ, which is then added to the tolerance.

The energy tolerance is relative, :data:`ENERGY_RTOL` × (|F(ρⁿ)| + |F(ρⁿ⁺¹)|): inner solves
stop at a relative residual of about 1e-8, which moves F by about that much relative to
itself.  That an inner solve reached its tolerance is checked by the solver itself (it
raises :class:`~wgf.cases.errors.SolverError` otherwise), since only it knows the residual.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

#: Checks every solver's steps pass, whatever its invariants say.
ALWAYS = frozenset({"finite", "mass"})
#: Relative mass change allowed per step.
MASS_RTOL = 1e-8
#: Undershoot of ``min_density`` below 0 allowed, relative to the mean density |M|/|Ω|.
POSITIVITY_RTOL = 1e-10
#: Energy rise (or dissipation-gap deficit) allowed per step, relative to |F|.
ENERGY_RTOL = 1e-7
#: The Péclet number |∇V|h/D (h: the mesh or particle spacing) above which a solver warns
#: that it does not resolve the drift: an FE step is then upwinding rather than centred
#: (B(-2)/B(2) = e² for the fitted flux, against 1 for a centred one), and the error can be
#: large while every check above still holds.
PECLET_LIMIT = 2.0


def check_step(
    before: Mapping[str, float],
    after: Mapping[str, float],
    invariants: frozenset[str],
    mean_density: float = 1.0,
) -> str | None:
    """The first check a step fails, as one line, or None if it is sound.

    Args:
        before: The diagnostics of the level the step started from.
        after: The diagnostics of the new level.
        invariants: What the solver's scheme guarantees (see the module docstring);
            ``finite`` and ``mass`` are always checked.
        mean_density: |M|/|Ω|, the scale of ``min_density``.
    """
    bad = sorted(k for k, v in after.items() if not math.isfinite(v))
    if bad:
        return f"non-finite {', '.join(bad)}"
    m0, m1 = before.get("mass"), after.get("mass")
    if m0 is not None and m1 is not None and abs(m1 - m0) > MASS_RTOL * abs(m0):
        return f"mass changed by {abs(m1 - m0) / abs(m0):.2e} (relative; allowed {MASS_RTOL:g})"
    if "positivity" in invariants and "min_density" in after:
        if after["min_density"] < -POSITIVITY_RTOL * abs(mean_density):
            return f"negative density (min {after['min_density']:.3e})"
    f0, f1 = before.get("energy"), after.get("energy")
    if f0 is None or f1 is None:
        return None
    # A step with an explicit interaction may exceed either bound by ½⟨W∗δρ, δρ⟩.
    tol = ENERGY_RTOL * (abs(f0) + abs(f1)) + max(after.get("interaction_defect", 0.0), 0.0)
    if "energy_decay" in invariants and f1 > f0 + tol:
        return f"the energy rose from {f0:.10g} to {f1:.10g}"
    if "dissipation" in invariants and after.get("dissipation_gap", 0.0) < -tol:
        return (
            f"F(ρⁿ⁺¹) + W̃²/(2τ) exceeds F(ρⁿ) by {-after['dissipation_gap']:.3e} "
            f"(the JKO step's energy–dissipation inequality; F = {f1:.10g})"
        )
    return None


def check_resolved(after: Mapping[str, float], t: float, resolves: str) -> str | None:
    """The blow-up line if the peak density exceeds the solver's resolution limit, else None.

    Args:
        after: The diagnostics of the new level; checked only if they hold both
            ``peak_density`` and ``resolved_density``.
        t: The time of the new level.
        resolves: What resolves the density and how the limit is defined, e.g.
            ``"the mesh resolves (…)"``; ``{limit}`` in it is replaced by the limit.
    """
    peak, limit = after.get("peak_density"), after.get("resolved_density")
    if peak is None or limit is None or not peak > limit:
        return None
    return f"blow-up: peak density {peak:.4g} at t = {t:.6g} exceeds what " + resolves.format(
        limit=f"{limit:.4g}"
    )
