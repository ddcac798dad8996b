"""Loading and validating case files (DESIGN §4).

A :class:`Case` is the resolved, checked case: a plain ``config`` dict (stored as JSON
in every results file) plus the derived facts every solver needs — the dimension, the
initial density and, where one is known, the exact solution.
"""

from __future__ import annotations

import copy
import functools
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from wgf.cases import closed_forms as cf
from wgf.cases.errors import UserError
from wgf.cases.schema import SCHEMA, Key, key_at, resolve
from wgf.cases.sphere import (
    DEFAULT_SAMPLE_CELLS,
    MANIFOLD_SHAPES,
    SPHERE_KINDS,
    harmonic,
    sample_grid,
    sphere_area,
)

if TYPE_CHECKING:  # SymPy takes a second to import: only cases with formulas pay for it
    from wgf.cases.expressions import SymbolicFunction

CASES_DIR = Path(__file__).resolve().parent

Density = Callable[[np.ndarray], np.ndarray]

#: The names of the coordinates in formulas, by dimension.
COORDINATES = ("x", "y", "z")

#: ``energy.interaction.kind = "newtonian"``: W = -N_d, N_d the free-space fundamental
#: solution of -Δ (-ΔN_d = δ), as a formula in r = |x - y|, by dimension.  With this sign
#: W increases with r, so ½∬W ρρ is attractive and W∗ρ = -c, -Δc = ρ: strength χ gives
#: Keller–Segel, ∂_t ρ = DΔρ - χ div(ρ∇c).  3-D is left out (give the formula instead).
NEWTONIAN = {1: "r/2", 2: "log(r)/(2*pi)"}


def shipped_cases() -> list[Path]:
    """Return the case files shipped with wgf, sorted by name."""
    return sorted(CASES_DIR.glob("*.toml"))


def find_case_file(source: str | Path) -> Path:
    """Resolve a case path or the name of a shipped case (with or without ``.toml``)."""
    path = Path(source)
    if path.is_file():
        return path
    for candidate in (CASES_DIR / path.name, CASES_DIR / f"{path.name}.toml"):
        if candidate.is_file() and path.parent == Path("."):
            return candidate
    names = ", ".join(p.stem for p in shipped_cases())
    raise UserError(f"case file '{source}' not found (shipped cases: {names})")


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``section.key=value``; the value is read as TOML, else as a bare string."""
    if "=" not in text:
        raise UserError(f"--set {text!r}: expected section.key=value")
    dotted, value = (s.strip() for s in text.split("=", 1))
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value
    return dotted, parsed


Overrides = Sequence[str] | Mapping[str, Any]


def apply_overrides(
    raw: dict, overrides: Overrides, solver_tables: dict[str, dict[str, Key]]
) -> None:
    """Apply overrides to the raw document, checking each key exists.

    Args:
        raw: The parsed document, changed in place.
        overrides: ``section.key=value`` strings (``--set``, values read as TOML), or a
            mapping ``{"section.key": value}`` of Python values (the API).
        solver_tables: The parameter schema of each solver.
    """
    pairs = (
        list(overrides.items())
        if isinstance(overrides, Mapping)
        else [parse_override(text) for text in overrides]
    )
    for dotted, value in pairs:
        try:
            key_at(dotted, SCHEMA, solver_tables)
        except UserError as err:
            raise UserError(f"--set {dotted}: {err}") from None
        node = raw
        *tables, last = dotted.split(".")
        for t in tables:
            node = node.setdefault(t, {})
            if not isinstance(node, dict):
                raise UserError(f"--set {dotted}: '{t}' is not a table in the case file")
        node[last] = value


@dataclass
class Case:
    """A resolved and validated case.

    Attributes:
        config: The resolved case (every key present), JSON-serialisable.
        path: The case file it came from.
        dim: Spatial dimension.
    """

    config: dict
    path: Path
    dim: int

    @property
    def name(self) -> str:
        """The case name."""
        return self.config["name"]

    def section(self, name: str) -> dict:
        """Return one section of the resolved config."""
        return self.config[name]

    def solver_params(self, solver: str) -> dict:
        """Return the ``[solver.<name>]`` table (defaults filled in)."""
        return self.config["solver"].get(solver, {})

    # -- the potential and the densities -------------------------------------------------
    def potential(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Return (A, c) of a quadratic potential, or None (V = 0 or a formula)."""
        pot = self.config["energy"]["potential"]
        if pot is None or pot["expression"] is not None:
            return None
        return _matrix(pot["A"], self.dim), _vector(pot["center"], self.dim)

    def potential_expression(self) -> SymbolicFunction | None:
        """The potential V as a formula, or None (V = 0 or quadratic)."""
        pot = self.config["energy"]["potential"]
        if pot is None or pot["expression"] is None:
            return None
        return _formula(pot["expression"], self.dim, "energy.potential.expression")

    def potential_function(self) -> Density | None:
        """V as a NumPy function of points (n, d), whichever form it was given in; None for 0."""
        if (formula := self.potential_expression()) is not None:
            return formula
        if (quadratic := self.potential()) is not None:
            A, c = quadratic
            return lambda x: cf.quadratic_potential(x, A, c)
        return None

    def check_potential(self, points: np.ndarray, where: str, comm: Any = None) -> None:
        """Raise a one-line :class:`UserError` if V is not finite at some of ``points``.

        Args:
            points: Points (n, d) where the solver will evaluate V.
            where: Says where they are, for the message ("on the mesh", ...).
            comm: The communicator the points are distributed over (collective: every
                rank raises the same error), or None.
        """
        if (potential := self.potential_function()) is None:
            return
        with np.errstate(all="ignore"):
            values = potential(np.atleast_2d(points))
        require_finite(values, points, _potential_key(self.config), where, comm)

    def interaction_kernel(self) -> SymbolicFunction | None:
        """The radial kernel W(r) of ``[energy.interaction]`` without its strength, or None."""
        inter = self.config["energy"]["interaction"]
        if inter is None:
            return None
        if inter["kind"] == "newtonian":
            return _kernel(NEWTONIAN[self.dim], "energy.interaction.kind")
        if inter["kind"] == "attention":
            return _kernel(attention_kernel(inter["beta"]), "energy.interaction.beta")
        return _kernel(inter["kernel"], "energy.interaction.kernel")

    @property
    def on_sphere(self) -> bool:
        """Whether the domain is the unit circle or sphere (a manifold without boundary)."""
        return self.config["domain"]["shape"] in MANIFOLD_SHAPES

    def interaction_strength(self) -> float:
        """The factor on W (0 without an interaction)."""
        inter = self.config["energy"]["interaction"]
        return 0.0 if inter is None else float(inter["strength"])

    def density(self, table: str = "initial") -> Density:
        """Return the density of ``[initial]`` (or ``[target]``) as a function of x (n, d).

        Gaussian and Barenblatt densities have the stated mass on ℝ^d; a formula is not
        normalised here (the solvers normalise every density to the mass on their domain).
        """
        spec = self.config[table]
        kind, mass = spec["kind"], spec["mass"]
        if kind == "uniform":
            area = sphere_area(self.dim)
            return lambda x: np.full(len(x), mass / area)
        if kind == "perturbed_uniform":
            k, a, area = spec["mode"], spec["amplitude"], sphere_area(self.dim)
            return lambda x: mass * (1.0 + a * harmonic(x, k)) / area
        if kind == "equiangular":
            raise UserError(
                f"case key '{table}.kind': \"equiangular\" tokens are atoms, not a density"
            )
        if kind == "gaussian":
            mean, cov = np.array(spec["mean"]), _matrix(spec["cov"], self.dim)
            return lambda x: cf.gaussian_density(x, mean, cov, mass)
        if kind == "barenblatt":
            m, s0 = self.config["energy"]["m"], self.barenblatt_time(spec)
            center = self._barenblatt_center(spec)
            return lambda x: cf.barenblatt(x, s0, m, mass, center)
        if kind == "expression":
            return _formula(spec["density"], self.dim, f"{table}.density")
        if kind == "gaussian_mixture":
            weights, means, covs = mixture_parameters(spec, self.dim)
            return lambda x: cf.mixture_density(x, weights, means, covs, mass)
        exact = self.exact_solution()
        assert exact is not None  # validated
        return lambda x: exact(0.0, x)

    def barenblatt_time(self, spec: dict | None = None) -> float:
        """Barenblatt time s0 = D·t0 of a ``barenblatt`` density."""
        spec = spec or self.config["initial"]
        return self.config["energy"]["diffusivity"] * spec["t0"]

    def _barenblatt_center(self, spec: dict) -> np.ndarray:
        if spec["center"] is not None:
            return np.array(spec["center"])
        pot = self.potential()
        return pot[1] if pot is not None else np.zeros(self.dim)

    def exact_solution(self) -> Callable[[float, np.ndarray], np.ndarray] | None:
        """Return ρ(t, x) in closed form, or None when ``[exact] kind = "none"``."""
        kind = self.config["exact"]["kind"]
        e, ini = self.config["energy"], self.config["initial"]
        D, m, mass = e["diffusivity"], e["m"], ini["mass"]
        if kind == "gaussian":
            mean0, cov0 = np.array(ini["mean"]), _matrix(ini["cov"], self.dim)
            A, c = self.potential() or (np.zeros((self.dim, self.dim)), np.zeros(self.dim))

            def gaussian(t: float, x: np.ndarray) -> np.ndarray:
                mean, cov = cf.ou_moments(t, mean0, cov0, A, c, D)
                return cf.gaussian_density(x, mean, cov, mass)

            return gaussian
        if kind == "barenblatt":
            s0, center = self.barenblatt_time(), self._barenblatt_center(ini)
            return lambda t, x: cf.barenblatt(x, s0 + D * t, m, mass, center)
        if kind == "nonlinear_fp":
            A, c = self.potential()  # type: ignore[misc]
            a, s0 = float(A[0, 0]), self.barenblatt_time()
            return lambda t, x: cf.nonlinear_fp(x, t, s0, a, m, D, mass, c)
        if kind == "stationary":
            steady = self._stationary
            return lambda t, x: steady(x)
        if kind == "gaussian_mixture":

            def mixture(t: float, x: np.ndarray) -> np.ndarray:
                return cf.mixture_density(x, *self.mixture(t), mass)

            return mixture
        if kind == "aggregation_quadratic":
            moments = self.gaussian_moments
            return lambda t, x: cf.gaussian_density(x, *moments(t), mass)
        if kind == "swarm_disk":
            center = np.array(ini["mean"])
            return lambda t, x: cf.uniform_disk(x, center, 1.0, mass)
        return None

    def second_moment_law(self) -> Callable[[float], float] | None:
        """The exact second moment M₂(t) = ∫|x|²ρ(t, x) dx (about the origin), or None.

        * A closed-form solution (``[exact]``): M₂ by the Gauss rule of
          :func:`~wgf.cases.closed_forms.box_quadrature` on the box.
        * Otherwise Keller–Segel (``kind = "newtonian"`` in 2-D, no potential): the virial
          law M₂(t) = M₂(0) + (2dDM − χM²/(2π)) t (2dD M only with the entropy), exact
          while the density is negligible at the wall and smooth (supercritical χM > 8π:
          until the blow-up, no later than when it reaches 0); M₂(0) of the initial
          density, by the same rule.  The origin does not matter: the pair terms depend
          on x − y only.
        * None for every other case.
        """
        lower = np.array(self.config["domain"]["lower"], dtype=float)
        upper = np.array(self.config["domain"]["upper"], dtype=float)
        if self.config["domain"]["shape"] != "box":
            return None
        points, weights = cf.box_quadrature(lower, upper)
        moment = weights * np.einsum("nk,nk->n", points, points)
        exact = self.exact_solution()
        if exact is not None:
            return lambda t: float(moment @ exact(t, points))
        e, inter = self.config["energy"], self.config["energy"]["interaction"]
        newtonian = inter is not None and inter["kind"] == "newtonian"
        if not newtonian or self.dim != 2 or self.potential_function() is not None:
            return None
        if e["internal"] == "power":
            return None  # d/dt M₂ would involve ∫ρ^m, which has no closed law
        mass = self.config["initial"]["mass"]
        rho0 = self.density("initial")(points)
        m2_0 = float(moment @ rho0) * mass / float(weights @ rho0)  # normalised on the box
        diffusion = 2 * self.dim * e["diffusivity"] * mass if e["internal"] == "entropy" else 0.0
        slope = diffusion - float(inter["strength"]) * mass**2 / (2 * np.pi)
        return lambda t: m2_0 + slope * t

    def mixture(self, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Weights (K,), means (K, d) and covariances (K, d, d) of the exact mixture at t.

        For ``exact.kind = "gaussian_mixture"``: each component of the initial mixture
        follows the linear Fokker–Planck flow of the quadratic V (or the heat flow, V = 0)
        with its weight unchanged (:func:`~wgf.cases.closed_forms.mixture_ou`).
        """
        weights, means0, covs0 = mixture_parameters(self.config["initial"], self.dim)
        A, c = self.potential() or (np.zeros((self.dim, self.dim)), np.zeros(self.dim))
        D = self.config["energy"]["diffusivity"]
        means, covs = cf.mixture_ou(t, means0, covs0, A, c, D)
        return weights, means, covs

    @property
    def exact_is_steady(self) -> bool:
        """Whether the exact solution does not depend on time (a steady state)."""
        return self.config["exact"]["kind"] in ("stationary", "swarm_disk")

    @functools.cached_property
    def _stationary(self) -> Density:
        """The steady state of ``exact.kind = "stationary"``, checked to be confined."""
        e, dom = self.config["energy"], self.config["domain"]
        potential = self.potential_function()
        assert potential is not None  # validated
        lower, upper = np.array(dom["lower"]), np.array(dom["upper"])
        points, _ = cf.box_quadrature(lower, upper)
        with np.errstate(all="ignore"):
            require_finite(potential(points), points, _potential_key(self.config), "on the domain")
        m = e["m"] if e["internal"] == "power" else None
        steady, at_faces = cf.stationary_density(
            potential, lower, upper, e["diffusivity"], self.config["initial"]["mass"], m
        )
        if at_faces > (0.0 if m is not None else cf.CONFINED_BELOW):
            raise UserError(
                f"case key 'exact.kind': \"stationary\" needs a potential that confines the "
                f"steady state inside the box, but at the box faces it is {at_faces:.2g} of its "
                "peak (V does not confine, so no finite Z on ℝ^d, or the box is too small)"
            )
        return steady

    def gaussian_moments(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Exact mean and covariance at t of a ``gaussian`` or ``aggregation_quadratic`` case.

        With W = κ(a r²/2 + b), W∗ρ = κaM(|x - m|² + const)/2 about the centre of mass m,
        so each particle feels the extra linear drift -κaM(x - m).  The mean moves only
        with V (the interaction's pair forces cancel), and the covariance follows the OU
        law with the drift matrix A + κaM·I (commutes with A): two :func:`ou_moments`.
        """
        ini, D = self.config["initial"], self.config["energy"]["diffusivity"]
        A, c = self.potential() or (np.zeros((self.dim, self.dim)), np.zeros(self.dim))
        mean0, cov0 = np.array(ini["mean"]), _matrix(ini["cov"], self.dim)
        mean, cov = cf.ou_moments(t, mean0, cov0, A, c, D)
        pull = self.interaction_strength() * ini["mass"] * self._quadratic_kernel_coefficient()
        if pull != 0.0:
            _, cov = cf.ou_moments(t, mean0, cov0, A + pull * np.eye(self.dim), c, D)
        return mean, cov

    def _quadratic_kernel_coefficient(self) -> float:
        """The a of a kernel W(r) = a r²/2 + b; 0 without an interaction (validated)."""
        kernel = self.interaction_kernel()
        a = None if kernel is None else quadratic_coefficient(kernel)
        return 0.0 if a is None else a

    # -- sampling --------------------------------------------------------------------------
    @property
    def model(self) -> dict | None:
        """The ``[model]`` table (a two-layer network), or None for a density flow."""
        return self.config.get("model")

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """The corners of the box the particles live in: ±∞ for a model (ℝ^{1+d})."""
        if self.model is not None:
            return np.full(self.dim, -np.inf), np.full(self.dim, np.inf)
        dom = self.config["domain"]
        return np.array(dom["lower"], dtype=float), np.array(dom["upper"], dtype=float)

    def sample_cells(self) -> list[int]:
        """Cells per direction of the sample grid (the case's or the default).

        A model has none: a grid on parameter space ℝ^{1+d} is not affordable for d > 2,
        and its state is the particles themselves.
        """
        if self.model is not None:
            return [0] * self.dim
        cells = self.config["output"]["sample_cells"]
        if cells is not None:
            return cells
        if self.on_sphere:
            return DEFAULT_SAMPLE_CELLS.get(self.dim, [])
        return [{1: 200, 2: 100, 3: 30}[self.dim]] * self.dim

    def sample_points(self, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
        """Midpoints of the uniform sample grid on the box [lower, upper], shape (n, dim).

        Midpoints keep samples off the domain boundary, and the midpoint rule then makes
        ``sum(|f|) · cell volume`` an O(h²) approximation of ∫|f|.  On a circle or sphere
        the grid lies on the sphere instead (:func:`wgf.cases.sphere.sample_grid`).
        """
        if self.on_sphere:
            return sample_grid(self.dim, self.sample_cells())[0]
        axes = [
            lo + (np.arange(n) + 0.5) * (hi - lo) / n
            for lo, hi, n in zip(lower, upper, self.sample_cells(), strict=True)
        ]
        grid = np.meshgrid(*axes, indexing="ij")
        return np.stack([g.ravel() for g in grid], axis=1)


@functools.lru_cache(maxsize=64)
def _formula(text: str, dim: int, key: str) -> SymbolicFunction:
    """The parsed formula (parsed once: validation, the case and its densities share it)."""
    from wgf.cases.expressions import SymbolicFunction

    return SymbolicFunction.parse(text, COORDINATES[:dim], key)


@functools.lru_cache(maxsize=64)
def _kernel(text: str, key: str) -> SymbolicFunction:
    """The radial kernel W(r) from its formula; one that uses x, y or z is refused."""
    from wgf.cases.expressions import SymbolicFunction

    if text.strip() == "newtonian":
        raise UserError(f"case key '{key}': for the Newtonian kernel write kind = \"newtonian\"")
    parsed = SymbolicFunction.parse(text, ("r", *COORDINATES), key)
    if used := sorted(parsed.free_variables() - {"r"}):
        raise UserError(
            f"case key '{key}': the kernel must be radial, a formula in r = |x - y| only, "
            f"but it uses {', '.join(used)}"
        )
    return SymbolicFunction(parsed.text, ("r",), parsed.expr)


def attention_kernel(beta: float) -> str:
    """USA attention as a radial kernel in the chord r = |x - y| on the unit sphere.

    On the sphere ⟨x, y⟩ = 1 - r²/2, so -½β⁻¹∬e^{β⟨x,y⟩} = ½∬W with
    W(r) = -β⁻¹e^{β(1 - r²/2)}, and ∇_x W(|x - y|) = W'(r)(x - y)/r = e^{β⟨x,y⟩}(x - y):
    the velocity -P_x Σ_j w_j ∇W = P_x Σ_j w_j e^{β⟨x,x_j⟩} x_j is USA (P_x x = 0).
    """
    return f"-exp({beta!r}*(1 - r**2/2))/{beta!r}"


def quadratic_coefficient(kernel: SymbolicFunction) -> float | None:
    """The a if the kernel is W(r) = a r²/2 + b (constants a, b), else None."""
    import sympy

    (r,) = kernel.symbols
    try:
        poly = sympy.Poly(sympy.expand(kernel.expr), r)
    except sympy.PolynomialError:
        return None
    coeffs = [*poly.all_coeffs()[::-1], 0, 0, 0]
    if poly.degree() > 2 or coeffs[1] != 0 or not coeffs[2].is_number:
        return None
    return 2.0 * float(coeffs[2])


def require_finite(
    values: np.ndarray, points: np.ndarray, key: str, where: str, comm: Any = None
) -> None:
    """See :func:`wgf.cases.expressions.require_finite` (imported when first needed)."""
    from wgf.cases.expressions import require_finite as check

    check(values, points, key, where, comm)


def _potential_key(cfg: dict) -> str:
    pot = cfg["energy"]["potential"]
    return "energy.potential." + ("expression" if pot["expression"] is not None else "A")


def _vector(value: list[float] | None, dim: int) -> np.ndarray:
    return np.zeros(dim) if value is None else np.asarray(value, dtype=float)


def _matrix(value: float | list, dim: int) -> np.ndarray:
    if isinstance(value, float):
        return value * np.eye(dim)
    return np.asarray(value, dtype=float)


def mixture_parameters(spec: dict, dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weights (K,), means (K, d) and covariances (K, d, d) of a ``gaussian_mixture`` table."""
    weights = np.asarray(spec["weights"], dtype=float)
    means = np.asarray(spec["means"], dtype=float).reshape(len(weights), dim)
    covs = np.array([_matrix(c, dim) for c in spec["covs"]])
    return weights, means, covs


def load_case(
    source: str | Path | Mapping[str, Any],
    overrides: Overrides = (),
    solver_tables: dict[str, dict[str, Key]] | None = None,
) -> Case:
    """Read, override, resolve and validate a case.

    Args:
        source: A path, the name of a shipped case, or the case itself as a (nested)
            dict with the layout of a case file; a dict's relative paths are relative
            to the working directory.
        overrides: ``section.key=value`` strings (``--set``), or ``{"section.key": value}``.
        solver_tables: The parameter schema of each solver, for ``[solver.<name>]``.

    Returns:
        The validated :class:`Case`.

    Raises:
        UserError: With a one-line message naming the problem.
    """
    if isinstance(source, Mapping):
        raw, path = copy.deepcopy(dict(source)), Path.cwd() / "<dict>"
    else:
        path = find_case_file(source)
        try:
            raw = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as err:
            raise UserError(f"case file '{path}': TOML does not parse: {err}") from None
        except (OSError, UnicodeDecodeError) as err:
            raise UserError(f"case file '{path}' cannot be read: {err}") from None
    apply_overrides(raw, overrides, solver_tables or {})
    config = resolve(raw, SCHEMA, "", solver_tables or {})
    dim = validate(config)
    if config["domain"]["shape"] == "file":
        config["domain"]["path"] = str((path.parent / config["domain"]["path"]).resolve())
    case = Case(config=config, path=path.resolve(), dim=dim)
    case.potential_expression()  # formulas parse (one-line errors) before anything runs
    if config["exact"]["kind"] == "stationary":
        case.exact_solution()  # and the steady state is confined
    return case


def _dimension(cfg: dict) -> int:
    """The dimension, from the first key that carries one; every other must agree.

    A ``[model]`` carries it first: its particles live in ℝ^{1+d} (any d ≥ 1).
    """
    dom, ini = cfg["domain"], cfg["initial"]
    pot = cfg["energy"]["potential"]
    if dom["shape"] in MANIFOLD_SHAPES:
        return _sphere_dimension(cfg)
    model = cfg.get("model")
    carriers: list[tuple[str, Any]] = [
        ("model.d", None if model is None else [0] * (1 + model["d"])),
        ("domain.lower", dom["lower"]),
        ("domain.upper", dom["upper"]),
        ("domain.cells", dom["cells"]),
        ("domain.center", dom["center"]),
        ("initial.mean", ini["mean"]),
        ("initial.center", ini["center"]),
        ("initial.means", ini["means"][0] if isinstance(ini["means"], list) else None),
        ("output.sample_cells", cfg["output"]["sample_cells"]),
    ]
    if pot is not None:
        carriers.append(("energy.potential.center", pot["center"]))
    if cfg["target"] is not None:
        carriers += [
            ("target.mean", cfg["target"]["mean"]),
            ("target.center", cfg["target"]["center"]),
        ]
    given = [(k, len(v)) for k, v in carriers if v is not None]
    if not given:
        raise UserError("case: cannot tell the dimension (give domain.lower or initial.mean)")
    first_key, dim = given[0]
    for key, n in given[1:]:
        if n != dim:
            raise UserError(
                f"case: dimension mismatch: '{key}' has length {n} but "
                f"'{first_key}' has length {dim}"
            )
    if model is None and dim not in (1, 2, 3):
        raise UserError(f"case: dimension {dim} from '{first_key}' is not 1, 2 or 3")
    return dim


def _sphere_dimension(cfg: dict) -> int:
    """The ambient d of a circle (2) or sphere (``domain.dimension``, default 3, any d ≥ 2)."""
    dom = cfg["domain"]
    if dom["shape"] == "circle":
        if dom["dimension"] not in (None, 2):
            raise UserError(
                f"case key 'domain.dimension': the circle lies in ℝ², got {dom['dimension']}"
            )
        dim = 2
    else:
        dim = 3 if dom["dimension"] is None else dom["dimension"]
        if dim < 2:
            raise UserError(f"case key 'domain.dimension' must be >= 2, got {dim}")
    pot = cfg["energy"]["potential"]
    if pot is not None and pot["center"] is not None and len(pot["center"]) != dim:
        raise UserError(
            f"case: dimension mismatch: 'energy.potential.center' has length "
            f"{len(pot['center'])} but the {dom['shape']} lies in ℝ^{dim}"
        )
    if pot is not None and pot["expression"] is not None and dim > len(COORDINATES):
        raise UserError(
            f"case key 'energy.potential.expression': formulas use x, y, z; the sphere lies "
            f"in ℝ^{dim} (give the quadratic A instead)"
        )
    return dim


def _validate_sphere(cfg: dict, dim: int) -> None:
    """The rules of a circle or sphere domain: its initial data, interaction and exact kind."""
    dom, ini, energy = cfg["domain"], cfg["initial"], cfg["energy"]
    shape = dom["shape"]
    for key in ("lower", "upper", "center", "radius", "h", "path"):
        if dom[key] is not None:
            raise UserError(
                f"case key 'domain.{key}' is not used by shape = \"{shape}\" (the unit "
                f"{shape} about 0)"
            )
    if dom["cells"] is not None and (len(dom["cells"]) != 1 or dom["cells"][0] < 1):
        raise UserError(
            f"case key 'domain.cells': the {shape} mesh takes one positive n "
            f"({'n arcs' if shape == 'circle' else 'n subdivisions of each icosahedron edge'}), "
            f"got {dom['cells']}"
        )
    if shape == "sphere" and dim != 3 and dom["cells"] is not None:
        raise UserError(
            f"case key 'domain.cells': the sphere mesh is built in ℝ³ only (dimension {dim})"
        )
    if ini["kind"] not in SPHERE_KINDS:
        raise UserError(
            f"case key 'initial.kind': on a {shape} give {', '.join(SPHERE_KINDS)}, "
            f'not "{ini["kind"]}"'
        )
    if ini["kind"] == "perturbed_uniform":
        if ini["mode"] < 1 or not abs(ini["amplitude"]) < 1.0:
            raise UserError(
                f"case keys 'initial.mode'/'initial.amplitude': need mode >= 1 and "
                f"|amplitude| < 1, got {ini['mode']} and {ini['amplitude']}"
            )
    if ini["kind"] == "equiangular":
        if ini["rho0"] is None:
            raise UserError("case key 'initial.rho0' is required for kind = \"equiangular\"")
        if not -1.0 < ini["rho0"] < 1.0:
            raise UserError(f"case key 'initial.rho0' must be in (-1, 1), got {ini['rho0']}")
    if ini["seed"] < 0:
        raise UserError(f"case key 'initial.seed' must be >= 0, got {ini['seed']}")
    if cfg["exact"]["kind"] != "none":
        raise UserError(
            f"case key 'exact.kind': no closed form is known on the {shape}; use \"none\""
        )
    if cfg["target"] is not None:
        raise UserError(f"case key 'target': transport on the {shape} is not built")
    if energy["internal"] == "power":
        raise UserError(
            f"case key 'energy.internal': \"power\" is not built on the {shape} "
            '(use "entropy" for noise or "none")'
        )


def _check_matrix(key: str, value: float | list, dim: int, definite: bool) -> np.ndarray:
    mat = _matrix(value, dim)
    if mat.shape != (dim, dim):
        raise UserError(
            f"case key '{key}': expected a {dim}x{dim} matrix, got shape "
            f"{mat.shape[0]}x{mat.shape[1]} (dimension mismatch)"
        )
    if not np.allclose(mat, mat.T, rtol=0.0, atol=1e-12 * (1.0 + np.abs(mat).max())):
        raise UserError(f"case key '{key}': matrix is not symmetric")
    low = np.linalg.eigvalsh(mat).min()
    scale = 1e-12 * (1.0 + np.abs(mat).max())
    if (definite and low <= scale) or low < -scale:
        what = "positive definite" if definite else "positive semidefinite"
        raise UserError(f"case key '{key}': matrix is not {what} (smallest eigenvalue {low:.3g})")
    return mat


def _validate_density(cfg: dict, table: str, dim: int) -> None:
    spec = cfg[table]
    if not spec["mass"] > 0.0:
        raise UserError(
            f"case key '{table}.mass': the density must have positive mass, got {spec['mass']}"
        )
    kind = spec["kind"]
    if kind == "gaussian":
        for key in ("mean", "cov"):
            if spec[key] is None:
                raise UserError(f"case key '{table}.{key}' is required for kind = \"gaussian\"")
        _check_matrix(f"{table}.cov", spec["cov"], dim, definite=True)
    elif kind == "barenblatt":
        if cfg["energy"]["internal"] != "power":
            raise UserError(
                f"case key '{table}.kind': \"barenblatt\" needs "
                'energy.internal = "power" (its shape uses m)'
            )
        if not spec["t0"] > 0.0:
            raise UserError(f"case key '{table}.t0' must be > 0, got {spec['t0']}")
    elif kind == "exact" and cfg["exact"]["kind"] in ("none", "stationary"):
        raise UserError(
            f"case key '{table}.kind': \"exact\" needs an [exact] kind with a time-dependent "
            'solution (not "none" or "stationary")'
        )
    elif kind == "gaussian_mixture":
        _validate_mixture(spec, table, dim)
    elif kind == "expression":
        if spec["density"] is None:
            raise UserError(f"case key '{table}.density' is required for kind = \"expression\"")
        _formula(spec["density"], dim, f"{table}.density")


def _validate_mixture(spec: dict, table: str, dim: int) -> None:
    """Weights ≥ 0 summing to 1, one mean of length d and one s.p.d. covariance each."""
    for key in ("weights", "means", "covs"):
        if spec[key] is None:
            raise UserError(f"case key '{table}.{key}' is required for kind = \"gaussian_mixture\"")
    weights, means, covs = spec["weights"], spec["means"], spec["covs"]
    if min(weights) < 0.0:
        raise UserError(f"case key '{table}.weights': weights must be >= 0, got {weights}")
    if abs(sum(weights) - 1.0) > 1e-12:
        raise UserError(
            f"case key '{table}.weights': weights must sum to 1, they sum to {sum(weights):.12g}"
        )
    if isinstance(means, float) or len(means) != len(weights):
        raise UserError(
            f"case key '{table}.means': expected {len(weights)} rows (one per weight), "
            f"got {1 if isinstance(means, float) else len(means)}"
        )
    if len(means[0]) != dim:
        raise UserError(f"case key '{table}.means': rows of length {len(means[0])}, not {dim}")
    if len(covs) != len(weights):
        raise UserError(
            f"case key '{table}.covs': expected {len(weights)} matrices (one per weight), "
            f"got {len(covs)}"
        )
    for k, cov in enumerate(covs):
        _check_matrix(f"{table}.covs[{k}]", cov, dim, definite=True)


def validate(cfg: dict) -> int:
    """Check the cross-key rules of a resolved case; return its dimension."""
    if cfg.get("model") is not None and cfg["model"]["d"] < 1:
        raise UserError(f"case key 'model.d' must be >= 1, got {cfg['model']['d']}")
    dim = _dimension(cfg)
    energy, dom, time = cfg["energy"], cfg["domain"], cfg["time"]
    for key in ("t_end", "tau"):
        if time[key] is None:
            if cfg["target"] is not None:
                continue  # a transport case (fem-bb) needs no clock
            raise UserError(f"case key 'time.{key}' is required")
        if not time[key] > 0.0:
            raise UserError(f"case key 'time.{key}' must be > 0, got {time[key]}")
    for key in ("tau_min", "tau_max"):
        if time[key] is not None and not time[key] > 0.0:
            raise UserError(f"case key 'time.{key}' must be > 0, got {time[key]}")
    lo, hi = time["tau_min"], time["tau_max"]
    if lo is not None and hi is not None and lo > hi:
        raise UserError(f"case key 'time.tau_min' ({lo}) must not exceed 'time.tau_max' ({hi})")
    if energy["internal"] == "power" and not energy["m"] > 1.0:
        raise UserError(
            f"case key 'energy.m' must be > 1 for internal = \"power\", got {energy['m']}"
        )
    if energy["internal"] != "none" and not energy["diffusivity"] > 0.0:
        raise UserError(f"case key 'energy.diffusivity' must be > 0, got {energy['diffusivity']}")
    if energy["potential"] is not None:
        _validate_potential(energy["potential"], dim)
    if energy["interaction"] is not None:
        _validate_interaction(energy["interaction"], dim)
    if cfg.get("model") is not None:
        _validate_model(cfg, dim)
        _validate_time_output(cfg)
        return dim
    shape = dom["shape"]
    if energy["interaction"] is not None:
        _validate_attention(energy["interaction"], shape)
    if shape in MANIFOLD_SHAPES:
        _validate_sphere(cfg, dim)
    elif cfg["initial"]["kind"] in SPHERE_KINDS:
        raise UserError(
            f"case key 'initial.kind': \"{cfg['initial']['kind']}\" needs domain.shape = "
            '"circle" or "sphere"'
        )
    if dom["dimension"] is not None and shape != "sphere":
        raise UserError("case key 'domain.dimension' is for shape = \"sphere\" only")
    needed = {
        "box": ("lower", "upper", "cells"),
        "disk": ("center", "radius", "h"),
        "file": ("path",),
        "circle": (),
        "sphere": (),
    }[shape]
    for key in needed:
        if dom[key] is None:
            raise UserError(f"case key 'domain.{key}' is required for shape = \"{shape}\"")
    if dom["refinements"] < 0:
        raise UserError(f"case key 'domain.refinements' must be >= 0, got {dom['refinements']}")
    if shape == "box":
        if any(hi <= lo for lo, hi in zip(dom["lower"], dom["upper"], strict=True)):
            raise UserError("case keys 'domain.lower'/'domain.upper': need lower < upper")
        if any(n < 1 for n in dom["cells"]):
            raise UserError(f"case key 'domain.cells' must be positive, got {dom['cells']}")
    elif shape == "disk":
        if dim != 2:
            raise UserError(f"case key 'domain.shape': \"disk\" is 2-D, the case is {dim}-D")
        for key in ("radius", "h"):
            if not dom[key] > 0.0:
                raise UserError(f"case key 'domain.{key}' must be > 0, got {dom[key]}")
    if shape not in MANIFOLD_SHAPES:
        _validate_density(cfg, "initial", dim)
    if cfg["target"] is not None:
        _validate_density(cfg, "target", dim)
        tgt, ini = cfg["target"], cfg["initial"]
        if not tgt["normalize"] and not np.isclose(tgt["mass"], ini["mass"], rtol=1e-12, atol=0):
            raise UserError(
                f"case key 'target.mass': {tgt['mass']} differs from initial.mass = "
                f"{ini['mass']} (set target.normalize = true to rescale the target)"
            )
    _validate_time_output(cfg)
    _validate_exact(cfg, dim)
    return dim


def _validate_time_output(cfg: dict) -> None:
    out = cfg["output"]
    if out["snapshots"] < 1:
        raise UserError(f"case key 'output.snapshots' must be >= 1, got {out['snapshots']}")
    if out["sample_cells"] is not None and any(n < 1 for n in out["sample_cells"]):
        raise UserError("case key 'output.sample_cells' must be positive")


def _validate_model(cfg: dict, dim: int) -> None:
    """A ``[model]`` case: a well-formed teacher, and [energy] derived from the model.

    The network's risk is the potential and the interaction (:mod:`wgf.solvers.energy.network`),
    so ``[energy.potential]``/``[energy.interaction]`` are refused; ``energy.internal`` and
    ``energy.diffusivity`` are set here from ``model.temperature`` T (``"entropy"`` with
    D = T for T > 0, else ``"none"``), so that every solver reads one energy.  The initial
    neurons are i.i.d. samples of a Gaussian ``[initial]`` of mass 1 (a probability measure).
    """
    model, energy, ini = cfg["model"], cfg["energy"], cfg["initial"]
    d = model["d"]
    for key in ("potential", "interaction"):
        if energy[key] is not None:
            raise UserError(
                f"case key 'energy.{key}': a [model] case takes its energy from [model] "
                "(the network's risk); leave [energy] out"
            )
    for key in ("lambda", "temperature"):
        if not model[key] >= 0.0:
            raise UserError(f"case key 'model.{key}' must be >= 0, got {model[key]}")
    if model["samples"] < 1:
        raise UserError(f"case key 'model.samples' must be >= 1, got {model['samples']}")
    if model["seed"] < 0:
        raise UserError(f"case key 'model.seed' must be >= 0, got {model['seed']}")
    _validate_teacher(model, d)
    temperature = model["temperature"]
    derived = ("entropy", temperature) if temperature > 0.0 else ("none", 1.0)
    given = (energy["internal"], energy["diffusivity"])
    if given not in (derived, ("entropy", 1.0)):  # ("entropy", 1.0): the schema defaults
        raise UserError(
            f"case key 'energy.internal': a [model] case takes its noise from "
            f"model.temperature (= {temperature:g}); leave [energy] out"
        )
    energy["internal"], energy["diffusivity"] = derived
    if ini["kind"] != "gaussian" or ini["mean"] is None or ini["cov"] is None:
        raise UserError(
            "case key 'initial.kind': a [model] case draws its neurons from a Gaussian: "
            'kind = "gaussian" with mean (length 1+d) and cov'
        )
    _check_matrix("initial.cov", ini["cov"], dim, definite=True)
    if ini["mass"] != 1.0:
        raise UserError(
            f"case key 'initial.mass': the neurons of a [model] are a probability measure "
            f"(mass 1), got {ini['mass']}"
        )
    if cfg["exact"]["kind"] != "none" or cfg["target"] is not None:
        raise UserError(
            "case key 'exact.kind': a [model] case has no closed-form density "
            '(exact.kind = "none", no [target])'
        )


def _validate_teacher(model: dict, d: int) -> None:
    """Either ``beta`` (linear) or ``teacher_a`` and ``teacher_w`` with rows of length d."""
    beta, a, w = model["beta"], model["teacher_a"], model["teacher_w"]
    if beta is not None:
        if a is not None or w is not None:
            raise UserError(
                "case key 'model.beta': give the teacher either as beta or as "
                "teacher_a/teacher_w, not both"
            )
        if model["activation"] != "linear":
            raise UserError(
                f"case key 'model.beta': y = ⟨β*, x⟩ is a linear teacher, but "
                f'model.activation = "{model["activation"]}" (give teacher_a/teacher_w)'
            )
        if len(beta) != d:
            raise UserError(
                f"case key 'model.beta': length {len(beta)}, but the input dimension model.d is {d}"
            )
        return
    if a is None or w is None:
        raise UserError(
            "case key 'model.teacher_w': the teacher is required: teacher_a and teacher_w "
            "(or beta for a linear model)"
        )
    rows = [[w]] if isinstance(w, float) else w
    if len(rows) != len(a):
        raise UserError(
            f"case key 'model.teacher_w': {len(rows)} neurons, but teacher_a has {len(a)}"
        )
    if len(rows[0]) != d:
        raise UserError(
            f"case key 'model.teacher_w': rows of length {len(rows[0])}, but the input "
            f"dimension model.d is {d}"
        )


def _validate_exact(cfg: dict, dim: int) -> None:
    kind = cfg["exact"]["kind"]
    energy, ini = cfg["energy"], cfg["initial"]
    pot = energy["potential"]
    if kind == "swarm_disk":
        _validate_swarm(cfg, dim)
        return
    if kind not in ("none", "aggregation_quadratic") and energy["interaction"] is not None:
        raise UserError(
            f"case key 'exact.kind': \"{kind}\" is a solution without interaction; with "
            '[energy.interaction] use "aggregation_quadratic" or "none"'
        )
    if kind == "stationary":
        _validate_stationary(cfg)
        return
    if kind == "aggregation_quadratic":
        _validate_aggregation(cfg)
        return
    quadratic_only = ("gaussian", "nonlinear_fp", "gaussian_mixture")
    if kind in quadratic_only and pot is not None and pot["expression"] is not None:
        raise UserError(
            f"case key 'exact.kind': \"{kind}\" needs a quadratic potential "
            "(energy.potential.A/center), not an expression"
        )
    need = {
        "gaussian": ("entropy", "gaussian"),
        "barenblatt": ("power", "barenblatt"),
        "nonlinear_fp": ("power", "barenblatt"),
        "gaussian_mixture": ("entropy", "gaussian_mixture"),
    }.get(kind)
    if need is None:
        return
    if energy["internal"] != need[0] or ini["kind"] != need[1]:
        raise UserError(
            f"case key 'exact.kind': \"{kind}\" needs energy.internal = "
            f'"{need[0]}" and initial.kind = "{need[1]}"'
        )
    if kind == "barenblatt" and pot is not None:
        raise UserError(
            "case key 'exact.kind': \"barenblatt\" needs V = 0 "
            '(use "nonlinear_fp" with a potential)'
        )
    if kind == "nonlinear_fp":
        if pot is None:
            raise UserError("case key 'exact.kind': \"nonlinear_fp\" needs [energy.potential]")
        A = _matrix(pot["A"], dim)
        a = A[0, 0]
        if not (a > 0.0 and np.allclose(A, a * np.eye(dim))):
            raise UserError("case key 'energy.potential.A': \"nonlinear_fp\" needs A = a·I, a > 0")
        c = np.zeros(dim) if pot["center"] is None else np.array(pot["center"])
        if ini["center"] is not None and not np.allclose(ini["center"], c):
            raise UserError(
                "case key 'initial.center': \"nonlinear_fp\" needs the Barenblatt "
                "centred at the potential centre"
            )


def _validate_potential(pot: dict, dim: int) -> None:
    """Either a formula or a matrix (with its centre), each well formed."""
    if pot["expression"] is not None:
        if pot["A"] is not None or pot["center"] is not None:
            raise UserError(
                "case key 'energy.potential.expression': give the potential either as "
                "A/center or as expression, not both"
            )
        _formula(pot["expression"], dim, "energy.potential.expression")
    elif pot["A"] is None:
        raise UserError(
            "case key 'energy.potential.A' is required (or give energy.potential.expression)"
        )
    else:
        _check_matrix("energy.potential.A", pot["A"], dim, definite=False)


def _validate_interaction(inter: dict, dim: int) -> None:
    """Either a kernel formula in r or ``kind = "newtonian"`` (in 1-D or 2-D)."""
    if inter["kernel"] is not None and inter["kind"] is not None:
        raise UserError(
            "case key 'energy.interaction.kernel': give the interaction either as kernel "
            '(a formula in r) or as kind = "newtonian", not both'
        )
    if inter["kernel"] is None and inter["kind"] is None:
        raise UserError(
            "case key 'energy.interaction.kernel' is required (or give "
            'energy.interaction.kind = "newtonian")'
        )
    if inter["kind"] == "attention":
        return  # validated with the domain (_validate_attention)
    if inter["kind"] == "newtonian" and dim not in NEWTONIAN:
        raise UserError(
            f"case key 'energy.interaction.kind': \"newtonian\" is supported in 1-D and 2-D "
            f'(the case is {dim}-D); in 3-D give the formula, kernel = "-1/(4*pi*r)"'
        )
    if inter["kernel"] is not None:
        _kernel(inter["kernel"], "energy.interaction.kernel")


def _validate_attention(inter: dict, shape: str) -> None:
    """``kind = "attention"``: β > 0, on a circle or sphere; its keys only with it."""
    if inter["kind"] != "attention":
        if inter["beta"] is not None:
            raise UserError("case key 'energy.interaction.beta' is for kind = \"attention\" only")
        return
    if inter["beta"] is None:
        raise UserError("case key 'energy.interaction.beta' is required for kind = \"attention\"")
    if not inter["beta"] > 0.0:
        raise UserError(f"case key 'energy.interaction.beta' must be > 0, got {inter['beta']}")
    if shape not in MANIFOLD_SHAPES:
        raise UserError(
            "case key 'energy.interaction.kind': \"attention\" moves tokens on the unit "
            f'sphere: it needs domain.shape = "circle" or "sphere", got "{shape}"'
        )


def _validate_aggregation(cfg: dict) -> None:
    energy, ini = cfg["energy"], cfg["initial"]
    pot, inter = energy["potential"], energy["interaction"]
    if energy["internal"] != "entropy" or ini["kind"] != "gaussian":
        raise UserError(
            "case key 'exact.kind': \"aggregation_quadratic\" needs energy.internal = "
            '"entropy" and initial.kind = "gaussian"'
        )
    if pot is not None and pot["expression"] is not None:
        raise UserError(
            "case key 'exact.kind': \"aggregation_quadratic\" needs a quadratic potential "
            "(energy.potential.A/center) or none, not an expression"
        )
    kernel = None if inter is None or inter["kernel"] is None else inter["kernel"]
    key = "energy.interaction.kernel"
    a = None if kernel is None else quadratic_coefficient(_kernel(kernel, key))
    if a is None:
        raise UserError(
            "case key 'exact.kind': \"aggregation_quadratic\" needs [energy.interaction] with "
            'kernel = a·r²/2 + b, e.g. kernel = "r**2/2"'
        )


def _validate_swarm(cfg: dict, dim: int) -> None:
    import sympy

    energy, inter = cfg["energy"], cfg["energy"]["interaction"]
    kernel = None if inter is None or inter["kernel"] is None else inter["kernel"]
    swarm = False
    if kernel is not None:
        r = sympy.Symbol("r", real=True)
        expr = _kernel(kernel, "energy.interaction.kernel").expr
        ratio = sympy.simplify(expr / (r**2 / 2 - sympy.log(r)))
        swarm = ratio.is_number and bool(ratio > 0)
    if not swarm or dim != 2:
        raise UserError(
            "case key 'exact.kind': \"swarm_disk\" needs a 2-D case with [energy.interaction] "
            'kernel = "r**2/2 - log(r)" (a positive multiple)'
        )
    if (
        energy["internal"] != "none"
        or energy["potential"] is not None
        or cfg["initial"]["kind"] != "gaussian"
    ):
        raise UserError(
            'case key \'exact.kind\': "swarm_disk" needs energy.internal = "none", no '
            '[energy.potential] and initial.kind = "gaussian" (its mean is the centre of mass)'
        )


def _validate_stationary(cfg: dict) -> None:
    energy = cfg["energy"]
    if energy["internal"] == "none":
        raise UserError(
            'case key \'exact.kind\': "stationary" needs energy.internal = "entropy" or '
            '"power" (without diffusion the steady state is not a density)'
        )
    if energy["potential"] is None:
        raise UserError(
            "case key 'exact.kind': \"stationary\" needs [energy.potential] (with V = 0 "
            "nothing confines the steady state: no finite Z on ℝ^d)"
        )
    if cfg["domain"]["shape"] != "box":
        raise UserError(
            f'case key \'exact.kind\': "stationary" needs domain.shape = "box" (its '
            f'normalisation is integrated on the box), got "{cfg["domain"]["shape"]}"'
        )
