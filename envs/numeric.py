"""Exact rational evaluation of syntax trees and size guards that run before sympy.

:func:`evaluate_rational` computes a tree with :class:`fractions.Fraction` when it contains
only rational arithmetic, which settles most grade-school answers without sympy.
:func:`check_limits` rejects trees whose numbers would be too large to build, such as
``10^{10^{10}}`` or ``100000!``, so the sympy worker never starts on them.
"""

from __future__ import annotations

import math
from fractions import Fraction

from envs.parsing import Node, ParseError

__all__ = [
    "DECIMAL_RTOL",
    "EXACT_RTOL",
    "MAX_EXPONENT",
    "MAX_FACTORIAL",
    "MAX_NUMBER_BITS",
    "LimitError",
    "check_limits",
    "evaluate_rational",
]

# Relative tolerance when either answer has a decimal literal, so 0.0833333333333333
# matches 1/12 but 1/2006! does not match 1/2004!.
DECIMAL_RTOL = 1e-6
# Relative tolerance for numeric checks between exact values that sympy could not simplify.
EXACT_RTOL = 1e-12
MAX_EXPONENT = 10_000
MAX_FACTORIAL = 5_000
MAX_NUMBER_BITS = 100_000


class LimitError(ParseError):
    """Raised when a number in an answer would exceed the size limits."""


def _bits(value: Fraction) -> int:
    return value.numerator.bit_length() + value.denominator.bit_length()


def _checked(value: Fraction) -> Fraction:
    if _bits(value) > MAX_NUMBER_BITS:
        raise LimitError(f"number exceeds {MAX_NUMBER_BITS} bits")
    return value


def _power(base: Fraction, exponent: Fraction) -> Fraction | None:
    if exponent.denominator != 1:
        return None  # a root: leave it to sympy
    power = exponent.numerator
    if abs(power) > MAX_EXPONENT and abs(base) not in (0, 1):
        raise LimitError(f"exponent {power} exceeds the limit of {MAX_EXPONENT}")
    if base == 0 and power < 0:
        return None
    if abs(base) not in (0, 1):
        estimated_bits = abs(power) * max(
            base.numerator.bit_length(), base.denominator.bit_length()
        )
        if estimated_bits > MAX_NUMBER_BITS:
            raise LimitError(f"power would exceed {MAX_NUMBER_BITS} bits")
    if abs(base) in (0, 1):
        sign = -1 if base < 0 and power % 2 else 1
        return Fraction(sign * abs(base))
    return _checked(base**power)


def _factorial(argument: Fraction) -> Fraction | None:
    if argument.denominator != 1 or argument < 0:
        return None
    if argument > MAX_FACTORIAL:
        raise LimitError(f"factorial of {argument} exceeds the limit of {MAX_FACTORIAL}!")
    return Fraction(math.factorial(argument.numerator))


def evaluate_rational(node: Node) -> Fraction | None:
    """Return the exact value of a purely rational tree, or None when it is not one.

    Raises :class:`LimitError` when an intermediate number would exceed the limits.
    """
    kind = node[0]
    if kind == "num":
        return Fraction(node[1])
    if kind == "neg":
        value = evaluate_rational(node[1])
        return None if value is None else -value
    if kind in ("add", "mul"):
        total = Fraction(0 if kind == "add" else 1)
        for child in node[1]:
            value = evaluate_rational(child)
            if value is None:
                return None
            total = _checked(total + value if kind == "add" else total * value)
        return total
    if kind == "div":
        numerator = evaluate_rational(node[1])
        denominator = evaluate_rational(node[2])
        if numerator is None or denominator is None or denominator == 0:
            return None
        return _checked(numerator / denominator)
    if kind == "pow":
        base = evaluate_rational(node[1])
        exponent = evaluate_rational(node[2])
        if base is None or exponent is None:
            return None
        return _power(base, exponent)
    if kind == "fact":
        argument = evaluate_rational(node[1])
        return None if argument is None else _factorial(argument)
    if kind == "abs":
        value = evaluate_rational(node[1])
        return None if value is None else abs(value)
    return None


def check_limits(node: Node) -> None:
    """Raise :class:`LimitError` when any numeric subtree of ``node`` exceeds the limits.

    Exponents and factorial arguments are evaluated exactly when they are rational; a
    numeric exponent above ``MAX_EXPONENT`` is rejected even under a symbolic base, because
    sympy would expand ``x^{10^{10}}`` term by term.
    """
    kind = node[0]
    if kind in ("num", "sym", "const"):
        return
    if kind == "pow":
        check_limits(node[1])
        check_limits(node[2])
        exponent = evaluate_rational(node[2])
        if exponent is not None and abs(exponent) > MAX_EXPONENT:
            raise LimitError(f"exponent {float(exponent):.3g} exceeds the limit of {MAX_EXPONENT}")
        evaluate_rational(node)
        return
    if kind == "fact":
        check_limits(node[1])
        argument = evaluate_rational(node[1])
        if argument is not None and argument > MAX_FACTORIAL:
            raise LimitError(f"factorial argument exceeds the limit of {MAX_FACTORIAL}")
        return
    for child in node[1:]:
        if isinstance(child, tuple):
            if child and isinstance(child[0], str):
                check_limits(child)
            else:
                for item in child:
                    check_limits(item)
