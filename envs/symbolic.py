"""Compare two syntax trees with sympy. This module runs inside the checker worker process.

Trees are built into sympy objects with explicit constructors, never from strings. The
rules, in order:

* containers: a bracketed tuple or interval compares item by item with the same brackets;
  a bare list compares with a ``(...)`` tuple in order and with another bare list or a set
  as a multiset; ``a \\pm b`` is the set ``{a + b, a - b}``;
* an assignment ``x = v`` against a non-equation compares ``v``;
* two equations are equal when ``(l1 - r1) / (l2 - r2)`` simplifies to a nonzero constant,
  so ``y = -x/2 + 3/4`` equals ``2x + 4y - 3 = 0``; inequalities need the same direction;
* two values are compared numerically: numbers at 40 significant digits, expressions with
  symbols at five random rational points in [0.5, 2.5], with a relative tolerance of
  ``DECIMAL_RTOL`` when either side has a decimal literal and ``EXACT_RTOL`` otherwise.
  When no evaluation is defined, the difference must simplify to zero.

NOTE: agreement at random points is a probabilistic identity test; two expressions that
differ only outside the sample region (for example ``sqrt(x^2)`` and ``x``) compare equal.
"""

from __future__ import annotations

import random
from typing import Any

import sympy

from envs.numeric import DECIMAL_RTOL, EXACT_RTOL

__all__ = ["compare_trees", "to_sympy"]
_SAMPLE_POINTS = 5
_PRECISION = 40

_FUNCTIONS = {
    "sin": sympy.sin,
    "cos": sympy.cos,
    "tan": sympy.tan,
    "sec": sympy.sec,
    "csc": sympy.csc,
    "cot": sympy.cot,
    "arcsin": sympy.asin,
    "arccos": sympy.acos,
    "arctan": sympy.atan,
    "sinh": sympy.sinh,
    "cosh": sympy.cosh,
    "tanh": sympy.tanh,
    "exp": sympy.exp,
    "sqrt": sympy.sqrt,
    "ln": sympy.log,
    "floor": sympy.floor,
    "ceiling": sympy.ceiling,
    "binomial": sympy.binomial,
}
_CONSTANTS = {"pi": sympy.pi, "E": sympy.E, "I": sympy.I, "oo": sympy.oo}
_INFINITIES = (sympy.oo, -sympy.oo, sympy.zoo)
_CONTAINERS = ("tuple", "list", "set", "union", "pm")


def to_sympy(node: Any) -> sympy.Expr:
    """Build a sympy expression from a scalar tree node."""
    kind = node[0]
    if kind == "num":
        return sympy.Rational(node[1])
    if kind == "sym":
        return sympy.Symbol(node[1])
    if kind == "const":
        return _CONSTANTS[node[1]]
    if kind == "neg":
        return -to_sympy(node[1])
    if kind == "add":
        return sympy.Add(*[to_sympy(child) for child in node[1]])
    if kind == "mul":
        return sympy.Mul(*[to_sympy(child) for child in node[1]])
    if kind == "div":
        return to_sympy(node[1]) / to_sympy(node[2])
    if kind == "pow":
        return sympy.Pow(to_sympy(node[1]), to_sympy(node[2]))
    if kind == "fact":
        return sympy.factorial(to_sympy(node[1]))
    if kind == "abs":
        return sympy.Abs(to_sympy(node[1]))
    if kind == "func":
        name, args = node[1], [to_sympy(arg) for arg in node[2]]
        if name == "log":
            return sympy.log(args[0], args[1]) if len(args) == 2 else sympy.log(args[0])
        if name == "root":
            return sympy.root(args[0], args[1])
        return _FUNCTIONS[name](*args)
    raise ValueError(f"expected a scalar node, got kind {kind!r}")


def _is_zero_numerically(difference: sympy.Expr, scale: sympy.Expr, rtol: float) -> bool | None:
    """Return whether ``|difference| <= rtol * |scale|`` numerically, or None if undefined."""
    value = sympy.N(difference, _PRECISION)
    size = sympy.N(scale, _PRECISION)
    if not (value.is_number and size.is_number) or value.has(sympy.zoo, sympy.nan):
        return None
    magnitude = abs(complex(value)) if value.is_finite else None
    reference = abs(complex(size)) if size.is_finite else None
    if magnitude is None or reference is None:
        return None
    return magnitude <= rtol * max(reference, 1e-300) or magnitude == 0


def _numeric_verdict(difference: sympy.Expr, scale: sympy.Expr, rtol: float) -> bool | None:
    """Decide ``difference == 0`` numerically: at 40 digits, or at random points if symbolic.

    Returns None when no evaluation was defined (for example a pole at every point).
    """
    symbols = sorted(difference.free_symbols, key=lambda symbol: symbol.name)
    if not symbols:
        return _is_zero_numerically(difference, scale, rtol)
    rng = random.Random(0)
    checked = 0
    for _ in range(_SAMPLE_POINTS * 2):
        point = {symbol: sympy.Rational(rng.randint(50, 250), 100) for symbol in symbols}
        verdict = _is_zero_numerically(difference.subs(point), scale.subs(point), rtol)
        if verdict is None:
            continue
        if not verdict:
            return False
        checked += 1
        if checked >= _SAMPLE_POINTS:
            return True
    return None


def _values_equal(left: sympy.Expr, right: sympy.Expr, rtol: float) -> bool:
    if left == right:
        return True
    if left.has(*_INFINITIES) or right.has(*_INFINITIES):
        return False  # structurally different infinite values: oo - oo is undefined
    difference = left - right
    verdict = _numeric_verdict(difference, abs(left) + abs(right), rtol)
    if verdict is not None:
        return verdict
    # Numeric evaluation was undefined everywhere; fall back to simplification.
    return bool(sympy.simplify(difference) == 0)


def _equations_equal(left: Any, right: Any, rtol: float) -> bool:
    op_left, op_right = left[1], right[1]
    left_lhs, left_rhs = to_sympy(left[2]), to_sympy(left[3])
    right_lhs, right_rhs = to_sympy(right[2]), to_sympy(right[3])
    flips = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}
    if op_left != op_right:
        if flips.get(op_left) != op_right:
            return False
        right_lhs, right_rhs = right_rhs, right_lhs
    difference_left = left_lhs - left_rhs
    difference_right = right_lhs - right_rhs
    if difference_left == 0 and difference_right == 0:
        return True
    if difference_right == 0 or difference_left == 0:
        return False
    if _values_equal(difference_left, difference_right, rtol):
        return True
    ratio = sympy.simplify(difference_left / difference_right)
    if ratio.free_symbols or not ratio.is_number or ratio == 0 or not ratio.is_finite:
        return False
    if op_left in ("=", "!="):
        return True
    # An inequality keeps its direction only under a positive factor.
    return bool(ratio.is_positive)


def _has_symbols(node: Any) -> bool:
    if not isinstance(node, tuple) or not node:
        return False
    if node[0] == "sym":
        return True
    return any(_has_symbols(child) for child in node[1:] if isinstance(child, tuple))


def _is_assignment(node: Any) -> bool:
    """Return whether ``node`` is ``x = v`` or a worked equation such as ``3 - 1 = 2``."""
    if node[0] != "rel" or node[1] != "=":
        return False
    return node[2][0] == "sym" or not _has_symbols(node[2])


def _strip_assignment(node: Any) -> Any:
    """Turn ``x = v`` and ``3 - 1 = v`` into ``v``, and ``n = 1, 2, 3`` into ``1, 2, 3``."""
    if _is_assignment(node):
        return node[3]
    if node[0] == "list" and node[1] and _is_assignment(node[1][0]):
        rest = node[1][1:]
        if all(item[0] != "rel" for item in rest):
            return ("list", (node[1][0][3], *rest))
        if all(_is_assignment(item) for item in rest):
            return ("list", tuple(item[3] for item in node[1]))
    return node


def _expand_pm(node: Any) -> Any:
    if node[0] == "pm":
        return ("set", (("add", (node[1], node[2])), ("add", (node[1], ("neg", node[2])))))
    return node


def _multiset_equal(left: tuple, right: tuple, rtol: float) -> bool:
    if len(left) != len(right):
        return False
    unmatched = list(right)
    for item in left:
        for index, candidate in enumerate(unmatched):
            if _trees_equal(item, candidate, rtol):
                del unmatched[index]
                break
        else:
            return False
    return True


def _containers_equal(left: Any, right: Any, rtol: float) -> bool:
    left, right = _expand_pm(left), _expand_pm(right)
    kinds = {left[0], right[0]}
    if left[0] not in _CONTAINERS or right[0] not in _CONTAINERS:
        return False
    if kinds == {"tuple"}:
        if left[1:3] != right[1:3] or len(left[3]) != len(right[3]):
            return False
        return all(_trees_equal(a, b, rtol) for a, b in zip(left[3], right[3], strict=True))
    if kinds == {"tuple", "list"}:
        tuple_node, list_node = (left, right) if left[0] == "tuple" else (right, left)
        if tuple_node[1:3] != ("(", ")") or len(tuple_node[3]) != len(list_node[1]):
            return False
        return all(
            _trees_equal(a, b, rtol) for a, b in zip(tuple_node[3], list_node[1], strict=True)
        )
    if kinds <= {"list", "set"} or kinds == {"union"}:
        return _multiset_equal(left[1], right[1], rtol)
    return False


def _trees_equal(left: Any, right: Any, rtol: float) -> bool:
    if left == right:
        return True
    if left[0] == "rel" and right[0] == "rel":
        return _equations_equal(left, right, rtol)
    left, right = _strip_assignment(left), _strip_assignment(right)
    if left[0] in _CONTAINERS or right[0] in _CONTAINERS:
        return _containers_equal(left, right, rtol)
    if left[0] == "rel" or right[0] == "rel":
        return False
    return _values_equal(to_sympy(left), to_sympy(right), rtol)


def compare_trees(left: Any, right: Any, inexact: bool) -> bool:
    """Return whether two syntax trees denote the same answer (rules in the module docstring).

    ``inexact`` selects the decimal tolerance: pass True when either answer had a decimal
    literal.
    """
    return _trees_equal(
        _as_tuples(left), _as_tuples(right), DECIMAL_RTOL if inexact else EXACT_RTOL
    )


def _as_tuples(node: Any) -> Any:
    """Convert lists from JSON back into tuples, recursively."""
    if isinstance(node, list):
        return tuple(_as_tuples(item) for item in node)
    return node
