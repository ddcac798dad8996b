"""Formulas from case files, parsed safely and evaluated by NumPy or UFL.

A case file may come from a colleague, so a formula in it must not be able to run code.
``sympy.sympify`` and ``parse_expr`` call :func:`eval` on the text, so they are never used
here. Instead the text is parsed by :mod:`ast` (``mode="eval"``, which admits one expression
and no statements) and the tree is walked with an explicit whitelist; the SymPy expression is
*built* from the accepted nodes, one SymPy operation per node. The grammar is ::

    expr := number | variable | pi | E
          | (+|-) expr | expr (+ | - | * | / | **) expr
          | f(expr, ...)       f in exp, log, sqrt, sin, cos, tan, sinh, cosh, tanh,
                               asin, acos, atan, abs, erf (one argument), min, max (two or more)

where the variables are given by the caller (``x, y, z`` for a potential, ``r`` for a radial
kernel). Anything else (attribute access, calls of other names, lambdas, keywords, subscripts,
comparisons, strings, ...) is a :class:`UserError` of one line that names the case key and the
offending token. Sizes are bounded too: the text has at most :data:`MAX_LENGTH` characters,
nesting at most :data:`MAX_DEPTH` levels, and a power of two exact numbers at most
:data:`MAX_DIGITS` digits and an exponent up to :data:`MAX_EXPONENT`, because SymPy evaluates
such powers at once, exactly for integers (``10**10**10`` would never finish).

Derivatives are exact (:func:`sympy.diff`). Where ``abs``, ``min`` or ``max`` have a kink the
derivative is taken almost everywhere: ``d|u|/du = sign(u)``, ``d min(u, v)/du = H(v - u)``
with the Heaviside step H(0) = ½, and the Dirac masses of second derivatives are dropped,
since they vanish away from the kink (a set of measure zero that no quadrature point or
particle hits in practice).

Evaluation walks the SymPy tree once into a tree of NumPy closures (one vectorised call per
node), cached on the instance; no source code is generated or executed. Values are returned
raw, non-finite ones included, and :func:`require_finite` turns them into a UserError that
says where.
"""

from __future__ import annotations

import ast
import functools
import math
import operator
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy

from wgf.cases.errors import UserError

#: The longest formula accepted, in characters.
MAX_LENGTH = 2000
#: The deepest nesting accepted (chains of + - or * / count as one level).
MAX_DEPTH = 100
#: The largest exact power of numbers (in decimal digits) that the parser lets SymPy compute.
MAX_DIGITS = 1000
#: The largest exponent of a power of two numbers.
MAX_EXPONENT = 10**6

#: Named constants, always available.
CONSTANTS: dict[str, sympy.Expr] = {"pi": sympy.pi, "E": sympy.E}


@dataclass(frozen=True)
class _Function:
    """A whitelisted function: its SymPy constructor and its arity (max None: unbounded)."""

    build: Callable[..., sympy.Expr]
    min_args: int
    max_args: int | None


def _unary(f: Callable[..., sympy.Expr]) -> _Function:
    return _Function(f, 1, 1)


#: The functions a formula may call, by the name it uses.
FUNCTIONS: dict[str, _Function] = {
    "exp": _unary(sympy.exp),
    "log": _unary(sympy.log),
    "sqrt": _unary(sympy.sqrt),
    "sin": _unary(sympy.sin),
    "cos": _unary(sympy.cos),
    "tan": _unary(sympy.tan),
    "sinh": _unary(sympy.sinh),
    "cosh": _unary(sympy.cosh),
    "tanh": _unary(sympy.tanh),
    "asin": _unary(sympy.asin),
    "acos": _unary(sympy.acos),
    "atan": _unary(sympy.atan),
    "abs": _unary(sympy.Abs),
    "erf": _unary(sympy.erf),
    "min": _Function(sympy.Min, 2, None),
    "max": _Function(sympy.Max, 2, None),
}

#: How the refused operators read in the text, for the error message.
_OPERATOR_TOKENS: dict[type, str] = {
    ast.FloorDiv: "//",
    ast.Mod: "%",
    ast.MatMult: "@",
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.BitOr: "|",
    ast.BitXor: "^",
    ast.BitAnd: "&",
    ast.Not: "not",
    ast.Invert: "~",
    ast.And: "and",
    ast.Or: "or",
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.Is: "is",
    ast.IsNot: "is not",
    ast.In: "in",
    ast.NotIn: "not in",
}

#: Refused kinds of node that have no better message of their own.
_REFUSED_NODES: dict[type, str] = {
    ast.Lambda: "lambda is not allowed",
    ast.IfExp: "a conditional expression ('if ... else') is not allowed",
    ast.Subscript: "a subscript ('[...]') is not allowed",
    ast.Slice: "a slice (':') is not allowed",
    ast.List: "a list ('[...]') is not allowed",
    ast.Tuple: "a tuple ('(..., ...)') is not allowed",
    ast.Set: "a set ('{...}') is not allowed",
    ast.Dict: "a dict ('{...: ...}') is not allowed",
    ast.ListComp: "a comprehension ('for') is not allowed",
    ast.SetComp: "a comprehension ('for') is not allowed",
    ast.DictComp: "a comprehension ('for') is not allowed",
    ast.GeneratorExp: "a comprehension ('for') is not allowed",
    ast.JoinedStr: "an f-string is not allowed",
    ast.FormattedValue: "an f-string is not allowed",
    ast.NamedExpr: "an assignment (':=') is not allowed",
    ast.Starred: "a starred expression ('*') is not allowed",
    ast.Await: "'await' is not allowed",
    ast.Yield: "'yield' is not allowed",
    ast.YieldFrom: "'yield' is not allowed",
}


def _fail(key: str, problem: str) -> UserError:
    """The one-line error for a bad formula under case key ``key``."""
    return UserError(f"case key '{key}': {problem}")


class _Builder:
    """Builds a SymPy expression from a whitelisted :mod:`ast` tree, refusing the rest."""

    def __init__(self, key: str, symbols: dict[str, sympy.Symbol]) -> None:
        self.key = key
        self.symbols = symbols

    def fail(self, problem: str) -> UserError:
        return _fail(self.key, problem)

    def build(self, node: ast.expr, depth: int = 0) -> sympy.Expr:
        """The SymPy expression of ``node``; a UserError for anything not whitelisted.

        Every subexpression is checked as soon as it is built, so that a non-real or
        infinite constant (``sqrt(-1)``, ``1/0``) is refused before SymPy has to compare or
        combine it (``min(x, 1/0)`` would make SymPy raise, ``atan(1/0)`` give an interval).
        """
        if depth > MAX_DEPTH:
            raise self.fail(f"the formula is nested more than {MAX_DEPTH} levels deep")
        try:
            result = self.node(node, depth)
        except (ValueError, TypeError, ArithmeticError) as error:
            message = str(error).replace("\n", " ")
            raise self.fail(f"the formula has no value: {_short(message, 80)}") from None
        self.check_value(result)
        return result

    def check_value(self, expr: sympy.Expr) -> None:
        """Refuse constants with no real, finite value (``1/0``, ``log(0)``, ``sqrt(-1)``)."""
        for bad, problem in _NO_VALUE:
            if expr.has(bad):
                raise self.fail(f"the formula has no value: {problem} ({_short(str(expr))})")

    def node(self, node: ast.expr, depth: int) -> sympy.Expr:
        """The SymPy expression of one whitelisted node (its children built by :meth:`build`)."""
        if isinstance(node, ast.Constant):
            return self.number(node.value)
        if isinstance(node, ast.Name):
            return self.name(node.id)
        if isinstance(node, ast.UnaryOp):
            return self.unary(node, depth)
        if isinstance(node, ast.BinOp):
            return self.binary(node, depth)
        if isinstance(node, ast.Call):
            return self.call(node, depth)
        if isinstance(node, ast.Attribute):
            raise self.fail(f"attribute access ('{_attribute_chain(node)}') is not allowed")
        if isinstance(node, ast.Compare):
            token = _OPERATOR_TOKENS.get(type(node.ops[0]), "?")
            raise self.fail(f"a comparison ('{token}') is not allowed")
        if isinstance(node, ast.BoolOp):
            raise self.fail(f"operator '{_OPERATOR_TOKENS[type(node.op)]}' is not allowed")
        problem = _REFUSED_NODES.get(type(node), f"'{type(node).__name__}' is not allowed")
        raise self.fail(problem)

    def number(self, value: object) -> sympy.Expr:
        # bool is a subclass of int: test it first.
        if isinstance(value, bool) or value is None or value is Ellipsis:
            raise self.fail(f"the constant {value!r} is not allowed")
        if isinstance(value, int):
            return sympy.Integer(value)
        if isinstance(value, float):
            if not np.isfinite(value):
                raise self.fail("a number is not finite (too large for a float)")
            return sympy.Float(value)
        if isinstance(value, complex):
            raise self.fail(f"the complex number {value!r} is not allowed")
        kind = "string" if isinstance(value, str) else "bytes"
        raise self.fail(f"a {kind} ({_short(repr(value))}) is not allowed")

    def name(self, name: str) -> sympy.Expr:
        if name in self.symbols:
            return self.symbols[name]
        if name in CONSTANTS:
            return CONSTANTS[name]
        if name in FUNCTIONS:
            raise self.fail(f"'{name}' is a function: call it, e.g. {name}(...)")
        allowed = ", ".join([*self.symbols, *CONSTANTS])
        raise self.fail(f"unknown name '{name}' (allowed: {allowed})")

    def unary(self, node: ast.UnaryOp, depth: int) -> sympy.Expr:
        if isinstance(node.op, ast.UAdd):
            return self.build(node.operand, depth + 1)
        if isinstance(node.op, ast.USub):
            return -self.build(node.operand, depth + 1)
        raise self.fail(f"operator '{_OPERATOR_TOKENS[type(node.op)]}' is not allowed")

    def binary(self, node: ast.BinOp, depth: int) -> sympy.Expr:
        # a + b - c + ... parses as a left-leaning chain as deep as it is long; walk the
        # chain in a loop so that a long polynomial does not count as deep nesting.
        chains = ((ast.Add, ast.Sub), (ast.Mult, ast.Div))
        for chain in chains:
            if isinstance(node.op, chain):
                return self.chain(node, chain, depth)
        if isinstance(node.op, ast.Pow):
            base = self.build(node.left, depth + 1)
            exponent = self.build(node.right, depth + 1)
            return self.power(base, exponent)
        raise self.fail(f"operator '{_OPERATOR_TOKENS[type(node.op)]}' is not allowed")

    def chain(self, node: ast.BinOp, ops: tuple[type, ...], depth: int) -> sympy.Expr:
        tail: list[tuple[ast.operator, ast.expr]] = []
        left: ast.expr = node
        while isinstance(left, ast.BinOp) and isinstance(left.op, ops):
            tail.append((left.op, left.right))
            left = left.left
        result = self.build(left, depth + 1)
        apply = {ast.Add: operator.add, ast.Sub: operator.sub}
        apply |= {ast.Mult: operator.mul, ast.Div: operator.truediv}
        for op, right in reversed(tail):
            result = apply[type(op)](result, self.build(right, depth + 1))
        return result

    def power(self, base: sympy.Expr, exponent: sympy.Expr) -> sympy.Expr:
        # SymPy computes a power of numbers right away, exactly for integers and fractions
        # (10**10**10 would never finish): bound its size first.
        if base.is_Number and exponent.is_Number and base not in (0, 1, -1):
            if abs(exponent) > MAX_EXPONENT:
                raise self.fail(f"a power of numbers has an exponent above {MAX_EXPONENT:.0e}")
            if base.is_Rational and exponent.is_Rational:
                size = math.log10(max(abs(base.p), abs(base.q)))
                if float(abs(exponent)) * size > MAX_DIGITS:
                    raise self.fail(f"a power of numbers has more than {MAX_DIGITS} digits")
        return base**exponent

    def call(self, node: ast.Call, depth: int) -> sympy.Expr:
        if isinstance(node.func, ast.Attribute):
            raise self.fail(f"attribute access ('{_attribute_chain(node.func)}') is not allowed")
        if isinstance(node.func, ast.Lambda):
            raise self.fail("lambda is not allowed")
        if not isinstance(node.func, ast.Name):
            raise self.fail("only the named functions can be called")
        name = node.func.id
        if name not in FUNCTIONS:
            if name in self.symbols or name in CONSTANTS:
                raise self.fail(f"'{name}' is not a function")
            raise self.fail(f"unknown function '{name}' (allowed: {', '.join(FUNCTIONS)})")
        for keyword in node.keywords:
            token = "**" if keyword.arg is None else f"{keyword.arg}="
            raise self.fail(f"keyword argument '{token}' in '{name}(...)' is not allowed")
        if any(isinstance(arg, ast.Starred) for arg in node.args):
            raise self.fail(f"a starred argument ('*') in '{name}(...)' is not allowed")
        function = FUNCTIONS[name]
        count = len(node.args)
        if function.max_args == 1 and count != 1:
            raise self.fail(f"function '{name}' takes 1 argument, got {count}")
        if count < function.min_args:
            need = f"at least {function.min_args} arguments"
            raise self.fail(f"function '{name}' takes {need}, got {count}")
        return function.build(*(self.build(arg, depth + 1) for arg in node.args))


def _attribute_chain(node: ast.Attribute) -> str:
    """The ``.a.b`` suffix of an attribute access, as the user wrote it."""
    names: list[str] = []
    current: ast.expr = node
    while isinstance(current, ast.Attribute):
        names.append(current.attr)
        current = current.value
    return "".join(f".{name}" for name in reversed(names))


def _short(text: str, limit: int = 40) -> str:
    """``text`` cut to ``limit`` characters, so that an error stays one short line."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _parse_tree(text: str, key: str) -> ast.expr:
    """The :mod:`ast` tree of one expression; a UserError if it does not parse."""
    try:
        # Python warns on stderr about some dubious tokens (``2if``): make that an error,
        # since the contract is one line and nothing else.
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            return ast.parse(text, mode="eval").body
    except SyntaxError as error:
        where = f" at column {error.offset}" if error.offset else ""
        if error.lineno and error.lineno > 1:
            where += f" of line {error.lineno}"
        message = str(error.msg).replace("\n", " ")
        raise _fail(key, f"the formula does not parse: {message}{where}") from None
    except (ValueError, RecursionError, MemoryError) as error:
        # null bytes, or nesting too deep for Python's own parser
        raise _fail(key, f"the formula does not parse: {error}") from None


#: Constants that have no real, finite value, and how they arise.
_NO_VALUE: tuple[tuple[sympy.Expr, str], ...] = (
    (sympy.zoo, "it is infinite (a division by zero, or log(0))"),
    (sympy.nan, "it contains 0/0"),
    (sympy.oo, "it is infinite"),
    (sympy.I, "it is not real"),
)

#: The kinds of SymPy node that a parsed formula may hold, beyond numbers and symbols; the
#: derivatives add sign and Heaviside. Both faces below evaluate exactly these.
_PARSED_NODES: tuple[type, ...] = (
    sympy.Add,
    sympy.Mul,
    sympy.Pow,
    sympy.Min,
    sympy.Max,
    sympy.exp,
    sympy.log,
    sympy.sin,
    sympy.cos,
    sympy.tan,
    sympy.sinh,
    sympy.cosh,
    sympy.tanh,
    sympy.asin,
    sympy.acos,
    sympy.atan,
    sympy.Abs,
    sympy.erf,
)


def _check_supported(expr: sympy.Expr, key: str) -> None:
    """Refuse what the NumPy and UFL faces cannot evaluate.

    That is a number beyond the float range (``1e308*10``: SymPy's floats have no upper
    limit), or a kind of node that SymPy's automatic simplification made of the formula and
    that the faces do not know (none is known; this keeps their TypeError unreachable).
    """
    for node in sympy.preorder_traversal(expr):
        if node.is_Number:
            if not math.isfinite(float(node)):
                raise _fail(key, f"a number is too large for a float ({_short(str(node))})")
        elif not isinstance(node, (sympy.Symbol, sympy.NumberSymbol, *_PARSED_NODES)):
            raise _fail(key, f"the formula simplifies to an unsupported {type(node).__name__}")


def _drop_point_masses(expr: sympy.Expr) -> sympy.Expr:
    """``expr`` with the Dirac masses (from differentiating a kink) set to zero."""
    return expr.replace(lambda e: isinstance(e, sympy.DiracDelta), lambda e: sympy.S.Zero)


# --- NumPy face ------------------------------------------------------------------------------

Value = np.ndarray | np.float64
Evaluator = Callable[[Sequence[np.ndarray]], Value]


def _scipy_erf(values: Value) -> Value:
    from scipy.special import erf

    return erf(values)


#: One-argument functions that may occur in a parsed formula or its derivatives.
_NUMPY_FUNCTIONS: dict[type, Callable[[Value], Value]] = {
    sympy.exp: np.exp,
    sympy.log: np.log,
    sympy.sin: np.sin,
    sympy.cos: np.cos,
    sympy.tan: np.tan,
    sympy.sinh: np.sinh,
    sympy.cosh: np.cosh,
    sympy.tanh: np.tanh,
    sympy.asin: np.arcsin,
    sympy.acos: np.arccos,
    sympy.atan: np.arctan,
    sympy.Abs: np.abs,
    sympy.erf: _scipy_erf,
    sympy.sign: np.sign,
}


def _integer_power(values: Value, n: int) -> Value:
    """``values**n`` by repeated squaring.

    libm's ``pow`` is far slower than a multiplication, and the powers in potentials are
    small integers (x**4 takes two multiplications); the rounding error grows only like
    log2(n) ulps.
    """
    if n < 0:
        return 1.0 / _integer_power(values, -n)
    result: Value = np.ones_like(values, dtype=np.float64) if n == 0 else None
    square = values
    while n:
        if n & 1:
            result = square if result is None else result * square
        n >>= 1
        if n:
            square = square * square
    return result


def _constant(value: sympy.Expr) -> Evaluator:
    number = np.float64(float(value))
    return lambda columns: number


def _compile(expr: sympy.Expr, index: dict[sympy.Symbol, int]) -> Evaluator:
    """A closure that evaluates ``expr`` on coordinate columns, one NumPy call per node.

    Raises:
        TypeError: ``expr`` holds a node that no parsed formula (or its derivative) holds.
    """
    if isinstance(expr, sympy.Symbol):
        i = index[expr]
        return lambda columns: columns[i]
    if expr.is_Number or isinstance(expr, sympy.NumberSymbol):
        return _constant(expr)
    args = [_compile(arg, index) for arg in expr.args]
    if isinstance(expr, sympy.Add):
        return lambda columns: functools.reduce(operator.add, (f(columns) for f in args))
    if isinstance(expr, sympy.Mul):
        return lambda columns: functools.reduce(operator.mul, (f(columns) for f in args))
    if isinstance(expr, sympy.Pow):
        base, exponent = args
        if expr.exp.is_Integer and abs(int(expr.exp)) <= 64:
            n = int(expr.exp)
            return lambda columns: _integer_power(base(columns), n)
        if expr.exp == sympy.S.Half:
            return lambda columns: np.sqrt(base(columns))
        if expr.exp == -sympy.S.Half:
            return lambda columns: 1.0 / np.sqrt(base(columns))
        return lambda columns: np.power(base(columns), exponent(columns), dtype=np.float64)
    if isinstance(expr, sympy.Min | sympy.Max):
        pick = np.minimum if isinstance(expr, sympy.Min) else np.maximum
        return lambda columns: functools.reduce(pick, (f(columns) for f in args))
    if isinstance(expr, sympy.Heaviside):
        at_zero = float(expr.args[1]) if len(expr.args) > 1 else 0.5
        step = args[0]
        return lambda columns: np.heaviside(step(columns), at_zero)
    function = _NUMPY_FUNCTIONS.get(type(expr))
    if function is not None and len(args) == 1:
        inner = args[0]
        return lambda columns: function(inner(columns))
    raise TypeError(f"cannot evaluate {type(expr).__name__} in {expr}")


# --- UFL face --------------------------------------------------------------------------------


@functools.cache
def _ufl_functions() -> dict[type, Callable[[Any], Any]]:
    """The UFL counterpart of each one-argument function (imports UFL lazily)."""
    import ufl

    return {
        sympy.exp: ufl.exp,
        sympy.log: ufl.ln,
        sympy.sin: ufl.sin,
        sympy.cos: ufl.cos,
        sympy.tan: ufl.tan,
        sympy.sinh: ufl.sinh,
        sympy.cosh: ufl.cosh,
        sympy.tanh: ufl.tanh,
        sympy.asin: ufl.asin,
        sympy.acos: ufl.acos,
        sympy.atan: ufl.atan,
        sympy.Abs: abs,
        sympy.erf: ufl.erf,
        sympy.sign: ufl.sign,
    }


def _to_ufl(expr: sympy.Expr, coordinates: dict[sympy.Symbol, Any], cache: dict) -> Any:
    """The UFL expression of ``expr``, with each symbol replaced by its coordinate.

    Raises:
        TypeError: ``expr`` holds a node that no parsed formula (or its derivative) holds.
    """
    if expr in cache:
        return cache[expr]
    import ufl

    if isinstance(expr, sympy.Symbol):
        result = coordinates[expr]
    elif not expr.free_symbols:
        # A constant takes its NumPy value: UFL would evaluate acos(-2) with math.acos and
        # raise, where NumPy (and the generated C code) give NaN for require_finite to catch.
        with np.errstate(all="ignore"):
            result = float(_compile(expr, {})([]))
    elif isinstance(expr, sympy.Pow):
        base = _to_ufl(expr.base, coordinates, cache)
        if expr.exp == sympy.S.Half:
            result = ufl.sqrt(base)
        elif expr.exp == -sympy.S.Half:
            result = 1.0 / ufl.sqrt(base)
        elif expr.exp.is_Integer:
            result = base ** int(expr.exp)
        else:
            result = base ** _to_ufl(expr.exp, coordinates, cache)
    else:
        args = [_to_ufl(arg, coordinates, cache) for arg in expr.args]
        if isinstance(expr, sympy.Add):
            result = functools.reduce(operator.add, args)
        elif isinstance(expr, sympy.Mul):
            result = functools.reduce(operator.mul, args)
        elif isinstance(expr, sympy.Min):
            result = functools.reduce(ufl.min_value, args)
        elif isinstance(expr, sympy.Max):
            result = functools.reduce(ufl.max_value, args)
        elif isinstance(expr, sympy.Heaviside):
            at_zero = float(expr.args[1]) if len(expr.args) > 1 else 0.5
            u = args[0]
            result = ufl.conditional(
                ufl.gt(u, 0.0), 1.0, ufl.conditional(ufl.lt(u, 0.0), 0.0, at_zero)
            )
        elif type(expr) in _ufl_functions() and len(args) == 1:
            result = _ufl_functions()[type(expr)](args[0])
        else:
            raise TypeError(f"no UFL form of {type(expr).__name__} in {expr}")
    cache[expr] = result
    return result


# --- the public face -------------------------------------------------------------------------


@dataclass(frozen=True)
class SymbolicFunction:
    """A real function of named variables, from a formula in a case file.

    Attributes:
        text: The formula as written (stripped of surrounding blanks); for a derivative,
            ``diff(<text>, <variable>)``.
        variables: The variable names, in the order of the columns of ``points``.
        expr: The SymPy expression; its symbols are real (``Symbol(name, real=True)``), so
            that ``diff(abs(x))`` is ``sign(x)``.
    """

    text: str
    variables: tuple[str, ...]
    expr: sympy.Expr

    @classmethod
    def parse(cls, text: str, variables: Sequence[str], key: str) -> SymbolicFunction:
        """Parse ``text`` under the whitelist of the module docstring; never calls ``eval``.

        Args:
            text: The formula, e.g. ``"x**4/4 - x**2/2 + 0.3*x + y**2/2"``.
            variables: The names it may use besides ``pi`` and ``E``, e.g. ``("x", "y")``.
            key: The dotted case key it came from, for the error message.

        Raises:
            UserError: One line naming ``key`` and the offending token.
            ValueError: ``variables`` are not distinct identifiers free of the reserved
                names (a programming error, not the user's).
        """
        names = tuple(variables)
        reserved = set(CONSTANTS) | set(FUNCTIONS)
        if len(set(names)) != len(names) or any(
            not name.isidentifier() or name in reserved for name in names
        ):
            raise ValueError(f"bad variable names {names!r}")
        if not isinstance(text, str):
            raise _fail(key, f"expected a formula as a string, got {_short(repr(text))}")
        if len(text) > MAX_LENGTH:
            raise _fail(key, f"the formula has {len(text)} characters (at most {MAX_LENGTH})")
        text = text.strip()
        if not text:
            raise _fail(key, "the formula is empty")
        symbols = {name: sympy.Symbol(name, real=True) for name in names}
        expr = _Builder(key, symbols).build(_parse_tree(text, key))
        _check_supported(expr, key)
        return cls(text, names, expr)

    @functools.cached_property
    def symbols(self) -> tuple[sympy.Symbol, ...]:
        """The SymPy symbols of :attr:`variables`, in order."""
        return tuple(sympy.Symbol(name, real=True) for name in self.variables)

    def free_variables(self) -> set[str]:
        """The variables that the formula actually uses."""
        return {s.name for s in self.expr.free_symbols if s.name in self.variables}

    def diff(self, variable: str) -> SymbolicFunction:
        """The exact partial derivative with respect to ``variable`` (a.e. at kinks)."""
        symbol = self.symbols[self.variables.index(variable)]
        derivative = _drop_point_masses(sympy.diff(self.expr, symbol))
        return SymbolicFunction(f"diff({self.text}, {variable})", self.variables, derivative)

    @functools.cached_property
    def _evaluator(self) -> Evaluator:
        return _compile(self.expr, dict(zip(self.symbols, range(len(self.symbols)), strict=True)))

    @functools.cached_property
    def _partials(self) -> tuple[SymbolicFunction, ...]:
        return tuple(self.diff(name) for name in self.variables)

    def _columns(self, points: np.ndarray) -> list[np.ndarray]:
        """The coordinate columns of ``points`` (n, k); (n,) is accepted when k = 1."""
        array = np.asarray(points, dtype=np.float64)
        if array.ndim == 1 and len(self.variables) == 1:
            array = array[:, None]
        if array.ndim != 2 or array.shape[1] != len(self.variables):
            raise ValueError(
                f"points of shape {array.shape} for variables {self.variables}: need (n, "
                f"{len(self.variables)})"
            )
        # contiguous copies: strided columns make every NumPy call of the tree slower
        return list(np.ascontiguousarray(array.T))

    def __call__(self, points: np.ndarray) -> np.ndarray:
        """The values at ``points`` (n, k), shape (n,); constants are broadcast.

        Non-finite values (``log`` of 0, ``sqrt`` of a negative number) are returned as
        they are, without warnings: check them with :func:`require_finite`.
        """
        columns = self._columns(points)
        n = len(columns[0]) if columns else np.asarray(points).shape[0]
        out = np.empty(n, dtype=np.float64)
        with np.errstate(all="ignore"):
            out[...] = self._evaluator(columns)
        return out

    def gradient(self, points: np.ndarray) -> np.ndarray:
        """The exact gradient at ``points`` (n, k), shape (n, k)."""
        if not self._partials:
            return np.empty((np.asarray(points).shape[0], 0))
        return np.stack([d(points) for d in self._partials], axis=-1)

    def hessian(self, points: np.ndarray) -> np.ndarray:
        """The exact Hessian at ``points`` (n, k), shape (n, k, k), symmetric by construction."""
        k = len(self.variables)
        n = np.asarray(points).shape[0]
        out = np.empty((n, k, k), dtype=np.float64)
        for i in range(k):
            for j in range(i, k):
                out[:, i, j] = out[:, j, i] = self._partials[i]._partials[j](points)
        return out

    def to_ufl(self, coordinates: Sequence[Any]) -> Any:
        """The formula as a UFL expression, ``coordinates[i]`` standing for ``variables[i]``.

        For example ``f.to_ufl(ufl.SpatialCoordinate(mesh))``. UFL is imported lazily, so
        the particle solvers do not need it.
        """
        import ufl

        substitution = {s: coordinates[i] for i, s in enumerate(self.symbols)}
        return ufl.as_ufl(_to_ufl(self.expr, substitution, {}))


def _format_point(point: np.ndarray) -> str:
    """A point as ``0.5`` (1-D) or ``(0.0, 1.0)``, six significant digits."""

    def number(v: float) -> str:
        text = f"{v:.6g}"
        return text + ".0" if text.lstrip("-").isdigit() else text

    coordinates = [number(float(v)) for v in np.atleast_1d(point)]
    return coordinates[0] if len(coordinates) == 1 else f"({', '.join(coordinates)})"


def require_finite(
    values: np.ndarray, points: np.ndarray, key: str, where: str, comm: Any = None
) -> None:
    """Raise a UserError naming the first point where ``values`` are not finite.

    Args:
        values: Values at the points, shape (n,) or (n, ...) (a row is bad if any entry is).
        points: The points, shape (n, d) or (n,).
        key: The case key of the formula.
        where: Where the points are, e.g. ``"on the mesh"`` or ``"at the initial particles"``.
        comm: An MPI communicator over which the points are distributed, or None. With it
            every rank raises the same error (the first bad point of the lowest rank that has
            one), so that no rank waits for another that has stopped. Collective.

    Raises:
        UserError: ``case key '<key>': not finite at x = (0.0, 1.0) <where> (3 of 100
            points)``.
    """
    values = np.asarray(values)
    bad = ~np.isfinite(values).all(axis=tuple(range(1, values.ndim)))
    count, total = int(bad.sum()), values.shape[0]
    first = np.asarray(points)[np.argmax(bad)] if count else None
    if comm is not None:
        gathered = comm.allgather((count, total, first))
        count = sum(c for c, _, _ in gathered)
        total = sum(t for _, t, _ in gathered)
        first = next((p for c, _, p in gathered if c), None)
    if count:
        raise _fail(
            key, f"not finite at x = {_format_point(first)} {where} ({count} of {total} points)"
        )
