"""The case-file schema (DESIGN §4): every key, its type and its default.

A schema is a nested ``dict``: a :class:`Key` describes a value, a :class:`Table` a
sub-table.  :func:`resolve` checks a parsed TOML document against it, names the
offending key on any error (with the closest valid key for a misspelling) and fills
in defaults, so that every solver sees a complete, plain ``dict``.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from typing import Any

from wgf.cases.errors import UserError

_MISSING = object()


@dataclass(frozen=True)
class Key:
    """One value of a case file.

    Attributes:
        kind: ``"str" | "float" | "int" | "bool" | "vector" | "ivector" | "matrix"
            | "matrices"``; a ``"matrix"`` may be given as a number ``s``, meaning ``s·I``,
            and each entry of a ``"matrices"`` list likewise.
        default: The value used when the key is absent; ``None`` means "not set".
        required: Whether the key must be present.
        choices: The allowed values of a string key.
        help: One line for the documentation.
    """

    kind: str
    default: Any = None
    required: bool = False
    choices: tuple[str, ...] = ()
    help: str = ""


@dataclass(frozen=True)
class Table:
    """A sub-table; an ``optional`` table is absent (``None``) unless given."""

    keys: dict[str, Key | Table]
    optional: bool = False
    help: str = ""
    open_keys: bool = field(default=False)  # keys are names (e.g. solver tables)


DENSITY = {
    "kind": Key(
        "str",
        "gaussian",
        choices=(
            "gaussian",
            "barenblatt",
            "exact",
            "expression",
            "gaussian_mixture",
            "uniform",
            "equiangular",
            "perturbed_uniform",
        ),
        help="Gaussian, Barenblatt profile, the exact solution at 0, a formula (`density`), "
        "or a mixture of Gaussians (`weights`, `means`, `covs`); on a circle or sphere: "
        "uniform (random tokens, `seed`), equiangular (n tokens with all pairwise inner "
        "products `rho0`, n ≤ d), perturbed_uniform (the density (1 + `amplitude`·Y)/|S^{d-1}|, "
        "Y = Re((x₁ + i x₂)^`mode`) a spherical harmonic, cos(`mode`·θ) on the circle; "
        "circle tokens: equally spaced, displaced to first order; sphere tokens: uniform "
        "random, weighted by the density)",
    ),
    "density": Key(
        "str",
        help="expression: the density as a formula in x, y, z (SymPy syntax, e.g. "
        '"exp(-(x**2 + y**2))"), normalised to `mass`',
    ),
    "mean": Key("vector", help="gaussian: mean"),
    "cov": Key("matrix", help="gaussian: covariance (a number s means s·I)"),
    "weights": Key("vector", help="gaussian_mixture: the components' weights (≥ 0, summing to 1)"),
    "means": Key("matrix", help="gaussian_mixture: the components' means, one row each"),
    "covs": Key(
        "matrices",
        help="gaussian_mixture: the components' covariances, one matrix each "
        "(a number s means s·I)",
    ),
    "t0": Key("float", 0.01, help="barenblatt: Barenblatt time (the profile is B(t0))"),
    "center": Key("vector", help="barenblatt: centre (default: the potential centre or 0)"),
    "mass": Key("float", 1.0, help="total mass the density is normalised to"),
    "seed": Key("int", 1, help="uniform (sphere): seed of the random tokens"),
    "rho0": Key(
        "float", help="equiangular: the inner product ⟨x_i, x_j⟩ of every pair at t = 0, in (-1, 1)"
    ),
    "mode": Key(
        "int",
        1,
        help="perturbed_uniform: the wave number (harmonic degree) k ≥ 1 of the perturbation",
    ),
    "amplitude": Key(
        "float", 1e-6, help="perturbed_uniform: the relative amplitude a of the harmonic (|a| < 1)"
    ),
}

SCHEMA: dict[str, Key | Table] = {
    "name": Key("str", required=True, help="case name, used for output file names"),
    "description": Key("str", "", help="free text"),
    "energy": Table(
        {
            "internal": Key(
                "str",
                "entropy",
                choices=("entropy", "power", "none"),
                help="U(ρ): ρ log ρ | ρ^m/(m-1) | 0",
            ),
            "m": Key("float", 2.0, help="exponent of the power law (m > 1)"),
            "diffusivity": Key("float", 1.0, help="D, the factor in front of ∫U(ρ)"),
            "potential": Table(
                {
                    "A": Key("matrix", help="V(x) = ½(x-c)ᵀA(x-c); A sym. pos. semidef."),
                    "center": Key("vector", help="c of the quadratic V (default 0)"),
                    "expression": Key(
                        "str",
                        help="or any smooth V as a formula in x, y, z (SymPy syntax, e.g. "
                        '"x**4/4 - x**2/2 + y**2/2"); functions: exp, log, sqrt, sin, cos, '
                        "tan, sinh, cosh, tanh, asin, acos, atan, abs, erf, min, max",
                    ),
                },
                optional=True,
                help="omit for V = 0; give either A (and center) or expression",
            ),
            "interaction": Table(
                {
                    "kernel": Key(
                        "str",
                        help="radial W(r), r = |x - y|, as a formula in r (SymPy syntax, e.g. "
                        '"r**2/2 - log(r)"); may be singular at r = 0 (log r, r**-a); same '
                        "functions as energy.potential.expression",
                    ),
                    "kind": Key(
                        "str",
                        choices=("newtonian", "attention"),
                        help='instead of kernel: "newtonian", W = -N_d with -ΔN_d = δ in free '
                        "space: |x|/2 in 1-D, log(r)/(2π) in 2-D (attractive; Keller–Segel "
                        'with chemotactic sensitivity `strength`); "attention" (circle or '
                        "sphere): tokens move by ẋ_i = P_{x_i}(Σ_j w_j e^{β⟨x_i,x_j⟩} x_j / Z_i)",
                    ),
                    "beta": Key("float", help="attention: the inverse temperature β > 0"),
                    "normalization": Key(
                        "str",
                        "usa",
                        choices=("usa", "sa"),
                        help="attention: usa, Z_i = 1 (the W2 gradient flow of "
                        "-½β⁻¹∬e^{β⟨x,y⟩}, i.e. the radial W(r) = -β⁻¹e^{β(1-r²/2)}); sa, "
                        "Z_i = Σ_j w_j e^{β⟨x_i,x_j⟩} (softmax self-attention: not a W2 "
                        "gradient flow, particle solvers only; its `energy` diagnostic is the "
                        "USA functional, which SA does not increase)",
                    ),
                    "strength": Key("float", 1.0, help="factor on W (χ for Keller–Segel)"),
                },
                optional=True,
                help="omit for no interaction; adds ½∬ W(x-y) ρ(x) ρ(y) dx dy; give kernel or kind",
            ),
        }
    ),
    "domain": Table(
        {
            "shape": Key(
                "str",
                "box",
                choices=("box", "disk", "file", "circle", "sphere"),
                help="circle: the unit circle S¹ ⊂ ℝ²; sphere: the unit sphere S^{d-1} ⊂ ℝ^d "
                "(particle solvers: velocities projected on the tangent space, positions "
                "retracted x/|x|)",
            ),
            "dimension": Key(
                "int", help="sphere: the ambient dimension d ≥ 2 of S^{d-1} ⊂ ℝ^d (default 3)"
            ),
            "lower": Key("vector", help="box: lower corner"),
            "upper": Key("vector", help="box: upper corner"),
            "cells": Key(
                "ivector",
                help="box: cells per direction; circle: [n] arcs (FE mesh, default 256); "
                "sphere in ℝ³: [n] subdivisions of each icosahedron edge (FE mesh, 20 n² "
                "triangles, default 16)",
            ),
            "cell_type": Key(
                "str",
                "simplex",
                choices=("simplex", "hypercube"),
                help="box: triangles/tetrahedra or quadrilaterals/hexahedra",
            ),
            "center": Key("vector", help="disk: centre"),
            "radius": Key("float", help="disk: radius"),
            "h": Key("float", help="disk: mesh size"),
            "path": Key("str", help="file: a meshio-readable mesh, relative to the case file"),
            "refinements": Key(
                "int",
                0,
                help="uniform refinements of the mesh (each halves h; simplex meshes); "
                "`wgf converge --refine h` sets it to refine a file mesh",
            ),
        }
    ),
    "initial": Table(DENSITY),
    "target": Table(
        {
            **DENSITY,
            "normalize": Key(
                "bool",
                False,
                help="fem-bb: rescale the target to the initial mass instead of "
                "rejecting different masses",
            ),
        },
        optional=True,
        help="fem-bb: the density transported to",
    ),
    "time": Table(
        {
            "t_end": Key("float", help="final time T (> 0); required unless [target] is given"),
            "tau": Key("float", help="time step τ (> 0); required unless [target] is given"),
            "adaptive": Key(
                "bool",
                False,
                help="adapt τ to the inner solver: ×1.2 after an easy Newton step, ÷1.2 after "
                "a hard one, ÷2 after a rejected one; snapshot times are still hit exactly",
            ),
            "tau_min": Key(
                "float",
                help="adaptive: the smallest τ tried before the run stops (default τ/64)",
            ),
            "tau_max": Key("float", help="adaptive: the largest τ (default τ)"),
        }
    ),
    "exact": Table(
        {
            "kind": Key(
                "str",
                "none",
                choices=(
                    "gaussian",
                    "barenblatt",
                    "nonlinear_fp",
                    "stationary",
                    "aggregation_quadratic",
                    "swarm_disk",
                    "gaussian_mixture",
                    "none",
                ),
                help="closed form to compare with; stationary: the steady state e^{-V/D}/Z "
                "(entropy) or ((C-V)(m-1)/(Dm))_+^{1/(m-1)} (power), normalised on the box; "
                "gaussian_mixture: each component of a gaussian_mixture initial density "
                "follows the linear Fokker–Planck flow of a quadratic V; "
                "aggregation_quadratic: W = a r²/2 (+ const) with linear diffusion and Gaussian "
                "data, the Ornstein–Uhlenbeck flow about the conserved centre of mass; "
                "swarm_disk: the steady state M/π on the unit disk about the centre of mass of "
                "W = κ(r²/2 - log r) without diffusion (2-D, Gaussian data)",
            ),
        }
    ),
    "output": Table(
        {
            "snapshots": Key("int", 11, help="number of snapshot times, evenly spaced in [0, T]"),
            "sample_cells": Key(
                "ivector",
                help="sample grid (cell midpoints) on the bounding box; "
                "default 200 in 1-D, 100² in 2-D, 30³ in 3-D; circle: [n] angles (default "
                "[200]); sphere in ℝ³: [n_polar, n_azimuth] cells in (θ, φ) (default [40, 80]); "
                "sphere in ℝ^d, d ≠ 3: the 2d points ±e_k",
            ),
        }
    ),
    "model": Table(
        {
            "kind": Key(
                "str",
                "two_layer",
                choices=("two_layer",),
                help="two_layer: neurons θ = (a, w) ∈ ℝ^{1+d} of f(x) = ∫ a σ(⟨w, x⟩) dμ, "
                "trained on the population risk ½E[(f(x) - y(x))²], x ~ N(0, I_d)",
            ),
            "activation": Key(
                "str",
                "relu",
                choices=("linear", "relu", "tanh", "erf"),
                help="σ; linear, relu and erf use closed-form Gaussian expectations, tanh a "
                "fixed sample of `samples` inputs",
            ),
            "d": Key("int", required=True, help="input dimension d (particles live in ℝ^{1+d})"),
            "teacher_a": Key("vector", help="teacher y(x) = Σ_k a*_k σ(⟨w*_k, x⟩): the a*_k"),
            "teacher_w": Key("matrix", help="the teacher's neurons w*_k, one row of length d each"),
            "beta": Key("vector", help="linear only, instead of teacher_a/teacher_w: y = ⟨β*, x⟩"),
            "lambda": Key("float", 0.0, help="regulariser λ|θ|² added to the risk (≥ 0)"),
            "temperature": Key(
                "float",
                0.0,
                help="> 0: mean-field Langevin, F + T∫μ log μ (noisy SGD; run with langevin)",
            ),
            "samples": Key("int", 10000, help="tanh: size of the fixed input sample"),
            "seed": Key(
                "int",
                1,
                help="seed of the initial neurons (i.i.d. from [initial]) and of the tanh sample",
            ),
        },
        optional=True,
        help="a case model: mean-field training of a two-layer network (particles only; "
        "[energy] follows from it, [domain] is ℝ^{1+d}, [initial] is a Gaussian on neurons)",
    ),
    "solver": Table({}, open_keys=True, help="one table per solver for its own parameters"),
}


def _type_error(path: str, kind: str, value: Any) -> UserError:
    return UserError(f"case key '{path}': expected {kind}, got {value!r}")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_value(path: str, key: Key, value: Any) -> Any:
    kind = key.kind
    if kind == "str":
        if not isinstance(value, str):
            raise _type_error(path, "a string", value)
        if key.choices and value not in key.choices:
            raise UserError(f"case key '{path}': {value!r} is not one of {', '.join(key.choices)}")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise _type_error(path, "true or false", value)
        return value
    if kind == "int":
        if not isinstance(value, int) or isinstance(value, bool):
            raise _type_error(path, "an integer", value)
        return value
    if kind == "float":
        if not _is_number(value):
            raise _type_error(path, "a number", value)
        if not math.isfinite(value):
            raise UserError(f"case key '{path}': {value!r} is not finite")
        return float(value)
    if kind in ("vector", "ivector"):
        ok = (
            _is_number
            if kind == "vector"
            else (lambda v: isinstance(v, int) and not isinstance(v, bool))
        )
        if not isinstance(value, list) or not value or not all(ok(v) for v in value):
            what = "a list of numbers" if kind == "vector" else "a list of integers"
            raise _type_error(path, what, value)
        if not all(math.isfinite(v) for v in value):
            raise UserError(f"case key '{path}': {value!r} is not finite")
        return [float(v) for v in value] if kind == "vector" else list(value)
    if kind == "matrix":
        if _is_number(value):
            return float(value)
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(r, list) and r and all(_is_number(v) for v in r) for r in value)
        ):
            raise _type_error(path, "a number or a list of lists of numbers", value)
        if len({len(r) for r in value}) != 1:
            raise UserError(f"case key '{path}': rows of different lengths")
        return [[float(v) for v in r] for r in value]
    if kind == "matrices":
        if not isinstance(value, list) or not value:
            raise _type_error(path, "a list of numbers or matrices", value)
        return [_check_value(f"{path}[{i}]", Key("matrix"), v) for i, v in enumerate(value)]
    raise AssertionError(kind)


def _unknown(path: str, name: str, valid: list[str]) -> UserError:
    where = f"'{path}.{name}'" if path else f"'{name}'"
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else f"; valid keys: {', '.join(sorted(valid))}"
    return UserError(f"unknown case key {where}{hint}")


def resolve(
    raw: dict,
    schema: dict[str, Key | Table] = SCHEMA,
    path: str = "",
    open_tables: dict[str, dict[str, Key]] | None = None,
) -> dict:
    """Check ``raw`` against ``schema`` and fill in defaults.

    Args:
        raw: The parsed TOML document (or a sub-table of it).
        schema: The schema of ``raw``.
        path: Dotted path of ``raw`` for messages.
        open_tables: For an ``open_keys`` table (``[solver]``): the schema of each
            allowed sub-table, by name.

    Returns:
        A new ``dict`` with every key of the schema (absent optional tables as ``None``).

    Raises:
        UserError: On an unknown key, a wrong type or a missing required key.
    """
    if not isinstance(raw, dict):
        raise _type_error(path, "a table", raw)
    out: dict[str, Any] = {}
    for name in raw:
        if name not in schema:
            raise _unknown(path, name, list(schema))
    for name, spec in schema.items():
        sub = f"{path}.{name}" if path else name
        value = raw.get(name, _MISSING)
        if value is None:  # TOML has no null: None comes from a resolved config (a dict)
            value = _MISSING
        if isinstance(spec, Table):
            if value is _MISSING:
                if spec.optional:
                    out[name] = None
                    continue
                value = {}
            if spec.open_keys:
                out[name] = _resolve_open(value, sub, open_tables or {})
            else:
                out[name] = resolve(value, spec.keys, sub)
        elif value is _MISSING:
            if spec.required:
                raise UserError(f"case key '{sub}' is required")
            out[name] = spec.default
        else:
            out[name] = _check_value(sub, spec, value)
    return out


def _resolve_open(raw: Any, path: str, tables: dict[str, dict[str, Key]]) -> dict:
    if not isinstance(raw, dict):
        raise _type_error(path, "a table", raw)
    out = {}
    for name in raw:
        if name not in tables:
            raise _unknown(path, name, list(tables))
    for name, keys in tables.items():
        out[name] = resolve(raw.get(name, {}), keys, f"{path}.{name}")
    return out


def key_at(
    dotted: str,
    schema: dict[str, Key | Table] = SCHEMA,
    open_tables: dict[str, dict[str, Key]] | None = None,
) -> Key:
    """Return the :class:`Key` at a dotted path, or raise :class:`UserError` naming it."""
    parts = dotted.split(".")
    node: dict[str, Key | Table] = schema
    done: list[str] = []
    for i, part in enumerate(parts):
        spec = node.get(part)
        if spec is None:
            raise _unknown(".".join(done), part, list(node))
        done.append(part)
        if isinstance(spec, Key):
            if i != len(parts) - 1:
                raise UserError(f"--set {dotted}: '{'.'.join(done)}' is a value, not a table")
            return spec
        node = (
            {k: Table(v) for k, v in (open_tables or {}).items()} if spec.open_keys else spec.keys
        )
    raise UserError(f"--set {dotted}: '{dotted}' is a table, not a value")
