"""Safe formulas: the whitelist, exact derivatives, and the NumPy and UFL faces agreeing."""

import builtins
import math

import numpy as np
import pytest
import sympy
import sympy.parsing.sympy_parser
from scipy.special import erf

from wgf.cases.errors import UserError
from wgf.cases.expressions import MAX_LENGTH, SymbolicFunction, require_finite

KEY = "energy.potential.expression"
XY = ("x", "y")
DOUBLE_WELL = "x**4/4 - x**2/2 + 0.3*x + y**2/2"
MIXED = "exp(-x)*log(1 + y**2) + sqrt(abs(x)) - tanh(min(x, y, 0.5)) + max(x, 2*y)"
#: Smooth, with a hand-derived gradient and Hessian below.
SMOOTH = "exp(-x)*log(1 + y**2) + sqrt(1 + x**2)*tanh(y) + erf(x*y)"


def parse(text: str, variables=XY) -> SymbolicFunction:
    return SymbolicFunction.parse(text, variables, KEY)


@pytest.fixture
def points(rng) -> np.ndarray:
    return rng.uniform(-2.0, 2.0, size=(500, 2))


def test_double_well_values_gradient_hessian(points):
    f = parse(DOUBLE_WELL)
    x, y = points.T
    np.testing.assert_allclose(
        f(points), x**4 / 4 - x**2 / 2 + 0.3 * x + y**2 / 2, rtol=1e-14, atol=1e-15
    )
    np.testing.assert_allclose(
        f.gradient(points), np.stack([x**3 - x + 0.3, y], axis=1), rtol=0, atol=1e-12
    )
    hessian = np.zeros((len(x), 2, 2))
    hessian[:, 0, 0] = 3 * x**2 - 1
    hessian[:, 1, 1] = 1.0
    np.testing.assert_allclose(f.hessian(points), hessian, rtol=0, atol=1e-12)
    assert f.free_variables() == {"x", "y"}
    # The exact rationals survive: the derivative is x**3 - x + 0.3, not a float blur.
    assert f.diff("x").expr == sympy.Symbol("x", real=True) ** 3 - f.symbols[0] + sympy.Float(0.3)


def test_mixed_functions_match_numpy(points):
    f = parse(MIXED)
    x, y = points.T
    expected = (
        np.exp(-x) * np.log(1 + y**2)
        + np.sqrt(np.abs(x))
        - np.tanh(np.minimum(np.minimum(x, y), 0.5))
        + np.maximum(x, 2 * y)
    )
    np.testing.assert_allclose(f(points), expected, rtol=1e-14)


def test_smooth_gradient_and_hessian_match_hand_derivation(points):
    f = parse(SMOOTH)
    x, y = points.T
    L, s, T = np.log(1 + y**2), np.sqrt(1 + x**2), np.tanh(y)
    g = 2 / np.sqrt(np.pi) * np.exp(-(x**2) * y**2)  # erf'(xy)
    hx = -np.exp(-x) * L + x / s * T + g * y
    hy = np.exp(-x) * 2 * y / (1 + y**2) + s * (1 - T**2) + g * x
    hxx = np.exp(-x) * L + T / s**3 - 2 * x * y**3 * g
    hxy = -np.exp(-x) * 2 * y / (1 + y**2) + x / s * (1 - T**2) + g * (1 - 2 * x**2 * y**2)
    hyy = np.exp(-x) * 2 * (1 - y**2) / (1 + y**2) ** 2 - 2 * s * T * (1 - T**2) - 2 * x**3 * y * g
    hessian = np.stack([np.stack([hxx, hxy], -1), np.stack([hxy, hyy], -1)], -2)
    np.testing.assert_allclose(f(points), np.exp(-x) * L + s * T + erf(x * y), rtol=1e-14)
    np.testing.assert_allclose(f.gradient(points), np.stack([hx, hy], 1), rtol=0, atol=1e-12)
    np.testing.assert_allclose(f.hessian(points), hessian, rtol=0, atol=1e-12)


def test_kinks_differentiate_almost_everywhere():
    f = parse("abs(x) + max(x, y) - min(x, 0.5*y)")
    points = np.array([[1.0, 0.0], [-1.0, 3.0], [0.5, 0.5], [0.0, -1.0]])
    # d|x| = sign(x), d max(x, y)/dx = H(x - y), d min(x, v)/dx = H(v - x), with H(0) = 1/2:
    # the gradient is (sign(x) + H(x - y) - H(y/2 - x), H(y - x) - H(x - y/2)/2).
    np.testing.assert_allclose(
        f.gradient(points),
        [[1 + 1 - 0, 0 - 0.5], [-1 + 0 - 1, 1 - 0], [1 + 0.5 - 0, 0.5 - 0.5], [0 + 1 - 0, 0 - 0.5]],
    )
    # The Dirac masses of the second derivatives are dropped: zero away from the kinks.
    np.testing.assert_array_equal(f.hessian(points), np.zeros((4, 2, 2)))


def test_constants_radial_and_three_dimensional_functions():
    c = parse("2*pi - E", ("x",))
    np.testing.assert_array_equal(c(np.zeros((3, 1))), np.full(3, 2 * math.pi - math.e))
    np.testing.assert_array_equal(c.gradient(np.zeros((3, 1))), np.zeros((3, 1)))
    assert c.free_variables() == set()
    kernel = SymbolicFunction.parse("r**2/2 - log(r)", ("r",), "energy.interaction.kernel")
    r = np.array([0.5, 1.0, 2.0])
    np.testing.assert_allclose(kernel(r), r**2 / 2 - np.log(r), rtol=1e-15)
    np.testing.assert_allclose(kernel.diff("r")(r), r - 1 / r, rtol=1e-15)
    f = parse("x*y*z + z**2 - 1/x", ("x", "y", "z"))
    p = np.array([[1.0, 2.0, 3.0], [-2.0, 0.5, 1.0]])
    x, y, z = p.T
    np.testing.assert_allclose(f.gradient(p), np.stack([y * z + 1 / x**2, x * z, x * y + 2 * z], 1))
    assert parse("y + 1").free_variables() == {"y"}


@pytest.mark.parametrize(
    ("text", "token"),
    [
        ("q", "unknown name 'q' (allowed: x, y, pi, E)"),
        ("x + e", "unknown name 'e'"),
        ("eval('1')", "unknown function 'eval' (allowed: exp, log,"),
        ("__import__('os')", "unknown function '__import__'"),
        ("__import__('os').system('true')", "attribute access ('.system')"),
        ("().__class__.__bases__", "attribute access ('.__class__.__bases__')"),
        ("x.real", "attribute access ('.real')"),
        ("(lambda: 1)()", "lambda is not allowed"),
        ("lambda: x", "lambda is not allowed"),
        ("exp(x, y)", "function 'exp' takes 1 argument, got 2"),
        ("min(x)", "function 'min' takes at least 2 arguments, got 1"),
        ("exp(x=1)", "keyword argument 'x=' in 'exp(...)'"),
        ("max(x, **{})", "keyword argument '**'"),
        ("exp(*[x])", "starred argument ('*')"),
        ("x if x else y", "conditional expression ('if ... else')"),
        ("x < 1", "comparison ('<')"),
        ("'a'", "string ('a')"),
        ("b'a'", "bytes (b'a')"),
        ("[x]", "list ('[...]')"),
        ("x, y", "tuple"),
        ("{x: y}", "dict"),
        ("x[0]", "subscript ('[...]')"),
        ("[x for x in y]", "comprehension ('for')"),
        ("f'{x}'", "f-string"),
        ("(x := 1)", "assignment (':=')"),
        ("x // 2", "operator '//'"),
        ("x % 2", "operator '%'"),
        ("x and y", "operator 'and'"),
        ("not x", "operator 'not'"),
        ("~x", "operator '~'"),
        ("True", "constant True"),
        ("None", "constant None"),
        ("1j", "complex number 1j"),
        ("1e400", "not finite"),
        ("exp", "'exp' is a function"),
        ("x(2)", "'x' is not a function"),
        ("x +", "does not parse: invalid syntax"),
        ("2if x else y", "does not parse: invalid decimal literal"),
        ("import os", "does not parse"),
        ("x = 1", "does not parse"),
        ("", "the formula is empty"),
        ("x" + " + x" * MAX_LENGTH, "characters (at most 2000)"),
        ("-" * 500 + "x", "nested more than 100 levels"),
        ("10**10**10", "a power of numbers has an exponent above 1e+06"),
        ("9**999999", "a power of numbers has more than 1000 digits"),
        ("1.5**(10**7)", "a power of numbers has an exponent above 1e+06"),
        ("1/0", "infinite (a division by zero"),
        ("log(0)", "infinite"),
        ("sqrt(-1)", "not real"),
        ("0/0", "0/0"),
        ("min(x, 1/0)", "infinite (a division by zero"),
        ("atan(1/0)", "infinite (a division by zero"),
        ("abs(sqrt(-1))", "not real"),
        ("max(log(-1), x)", "not real (I*pi)"),
        ("x*1e308*10", "too large for a float"),
    ],
)
def test_bad_formulas_are_one_line_user_errors(text, token, recwarn):
    with pytest.raises(UserError) as raised:
        parse(text)
    assert len(recwarn) == 0, [str(w.message) for w in recwarn]  # nothing besides the line
    message = str(raised.value)
    assert message.startswith(f"case key '{KEY}': "), message
    assert token in message, message
    assert "\n" not in message and len(message) < 200, message


def test_a_formula_that_is_not_a_string_is_a_user_error():
    with pytest.raises(UserError, match=f"case key '{KEY}': expected a formula as a string"):
        parse(3.0)


def test_a_long_polynomial_is_not_deep_nesting(rng):
    # 200 terms parse into a 200-deep chain of BinOps; the chain is walked in a loop.
    text = " + ".join(f"{k % 10}*x**{k % 5}" for k in range(1, 201))
    p = rng.uniform(-1, 1, size=(10, 2))
    x = p[:, 0]
    expected = sum((k % 10) * x ** (k % 5) for k in range(1, 201))
    np.testing.assert_allclose(parse(text)(p), expected, rtol=1e-12)


def _refuse(*args, **kwargs):
    raise AssertionError("the formula parser must not evaluate text")


def test_parsing_and_evaluation_never_call_eval(monkeypatch, points):
    # SymPy imports some modules lazily, and importing runs exec: warm them up first, so that
    # exec can be refused too (it would catch a lambdify-style code generator).
    parse(DOUBLE_WELL).gradient(points)
    for target, name in [
        (builtins, "eval"),
        (builtins, "exec"),
        (sympy, "sympify"),
        (sympy, "parse_expr"),
        (sympy.parsing.sympy_parser, "parse_expr"),
    ]:
        monkeypatch.setattr(target, name, _refuse)
    f = parse(DOUBLE_WELL)
    x, y = points.T
    np.testing.assert_allclose(
        f(points), x**4 / 4 - x**2 / 2 + 0.3 * x + y**2 / 2, rtol=1e-14, atol=1e-15
    )
    np.testing.assert_allclose(f.gradient(points)[:, 0], x**3 - x + 0.3, atol=1e-12)
    with pytest.raises(UserError, match="unknown function '__import__'"):
        parse("x + __import__('os')")


def test_require_finite_names_the_first_bad_point():
    f = parse("log(x) + sqrt(y)")
    points = np.array([[1.0, 1.0], [0.0, 1.0], [2.0, -1.0], [3.0, 4.0]])
    values = f(points)  # -inf and nan, returned without a warning
    assert np.isneginf(values[1]) and np.isnan(values[2])
    with pytest.raises(UserError) as raised:
        require_finite(values, points, KEY, "on the mesh")
    assert str(raised.value) == (
        f"case key '{KEY}': not finite at x = (0.0, 1.0) on the mesh (2 of 4 points)"
    )
    with pytest.raises(UserError, match=r"not finite at x = 0.0 at the initial particles \(1 of"):
        kernel = SymbolicFunction.parse("log(r)", ("r",), KEY)
        r = np.array([0.0, 1.0])
        require_finite(kernel(r), r, KEY, "at the initial particles")
    require_finite(f(points[[0, 3]]), points[[0, 3]], KEY, "on the mesh")  # all finite: silent
    with pytest.raises(UserError, match=r"x = \(2.0, -1.0\)"):  # a gradient row counts too
        require_finite(f.gradient(points[2:]), points[2:], KEY, "on the mesh")


@pytest.mark.mpi
def test_require_finite_raises_on_every_rank():
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    # Only rank 1 holds a bad point; both ranks must raise the same error.
    points = np.array([[0.25 + comm.rank, 0.5], [-1.0 if comm.rank == 1 else 1.0, 0.5]])
    f = parse("sqrt(x) + y")
    with pytest.raises(UserError) as raised:
        require_finite(f(points), points, KEY, "on the mesh", comm=comm)
    assert "not finite at x = (-1.0, 0.5) on the mesh (1 of 4 points)" in str(raised.value)


def _interpolate(expr, space):
    """The UFL expression ``expr`` interpolated into ``space``, as the dof array."""
    import dolfinx

    u = dolfinx.fem.Function(space)
    points = space.element.interpolation_points
    u.interpolate(dolfinx.fem.Expression(expr, points, comm=space.mesh.comm))
    return u.x.array


def _unit_square(degree: int):
    import dolfinx_solver  # noqa: F401  (before dolfinx)

    import dolfinx
    import ufl
    from mpi4py import MPI

    mesh = dolfinx.mesh.create_unit_square(MPI.COMM_SELF, 4, 4)
    space = dolfinx.fem.functionspace(mesh, ("Lagrange", degree))
    return space, ufl.SpatialCoordinate(mesh), space.tabulate_dof_coordinates()[:, :2]


@pytest.mark.parametrize(
    "text",
    [
        DOUBLE_WELL,
        SMOOTH,
        # Kinks off the dofs (no dof has x = 0.3, x = 0.9 y + 0.03, ...): a P2 dof's mapped
        # coordinate may differ from the tabulated one in the last bit, which would flip a step.
        "exp(-x)*log(1 + y**2) + sqrt(abs(x - 0.3)) - tanh(min(x, 0.9*y + 0.03, 0.55))"
        " + max(x, 2*y - 0.3)",
        "2**x + (1 + x)**1.7 + 1/sqrt(1 + y) + asin(x/2) - acos(y/2) + atan(x) + sinh(y) + cosh(x)",
        "tan(x/2) + cos(pi*y) + sin(E*x)",
    ],
)
def test_ufl_face_matches_numpy_face_at_p2_dofs(text):
    space, x, dofs = _unit_square(2)
    f = parse(text)
    np.testing.assert_allclose(_interpolate(f.to_ufl(x), space), f(dofs), rtol=1e-13, atol=1e-13)
    # The derivatives' UFL face (with sign and Heaviside steps for the kinks).
    for i, name in enumerate(XY):
        np.testing.assert_allclose(
            _interpolate(f.diff(name).to_ufl(x), space),
            f.gradient(dofs)[:, i],
            rtol=1e-12,
            atol=1e-12,
            err_msg=name,
        )


def test_ufl_face_of_a_constant_is_a_number():
    import ufl

    c = parse("3*pi")
    assert float(c.to_ufl((None, None))) == pytest.approx(3 * math.pi, rel=1e-15)
    assert isinstance(c.to_ufl((None, None)), ufl.core.expr.Expr)
    # acos(-2) has no real value: NaN on both faces (UFL alone would raise in math.acos).
    nan = parse("x + acos(-2)")
    assert np.isnan(nan(np.zeros((1, 2)))[0])
    assert math.isnan(float(nan.to_ufl((0.0, 0.0))))


@pytest.mark.parametrize(
    ("point", "expected"), [((0.5, 0.5), -1.0), ((0.5, 0.25), 0.0), ((0.25, 0.25), -4.0)]
)
def test_ufl_face_takes_the_same_values_on_the_kinks(point, expected):
    # Mesh coordinates are not exact to the last bit, so the ties are hit with Constants.
    import dolfinx

    space, _, _ = _unit_square(1)
    f = parse("abs(x - 0.5) + 2*max(x, y) - 4*min(x, 0.5)")
    dfdx = f.diff("x")  # sign(x - 1/2) + 2 H(x - y) - 4 H(1/2 - x), with sign(0) = 0, H(0) = 1/2
    assert dfdx(np.array([point]))[0] == expected
    coordinates = [dolfinx.fem.Constant(space.mesh, value) for value in point]
    np.testing.assert_array_equal(_interpolate(dfdx.to_ufl(coordinates), space), expected)
