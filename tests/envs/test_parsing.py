"""Tests for the whitelisted answer parser, the rational evaluator and the size guards."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envs.numeric import LimitError, check_limits, evaluate_rational
from envs.parsing import MAX_DEPTH, MAX_TOKENS, ParseError, has_decimal, parse_answer


def test_parse_implicit_product_of_symbol_and_group() -> None:
    assert parse_answer("x(y-z)") == (
        "mul",
        (("sym", "x"), ("add", (("sym", "y"), ("neg", ("sym", "z"))))),
    )


def test_parse_two_letter_word_is_product() -> None:
    assert parse_answer("ab") == ("mul", (("sym", "a"), ("sym", "b")))


def test_parse_constants() -> None:
    assert parse_answer("i") == ("const", "I")
    assert parse_answer("e") == ("const", "E")
    assert parse_answer(r"\pi") == ("const", "pi")
    assert parse_answer(r"\infty") == ("const", "oo")


def test_parse_unbraced_frac_arguments() -> None:
    assert parse_answer(r"\frac12") == ("div", ("num", "1"), ("num", "2"))
    assert parse_answer(r"\frac9{19}") == ("div", ("num", "9"), ("num", "19"))


def test_parse_function_power_applies_to_value() -> None:
    assert parse_answer(r"\sec^2(y)") == ("pow", ("func", "sec", (("sym", "y"),)), ("num", "2"))


def test_parse_interval_and_tuple() -> None:
    assert parse_answer("(1, 2]") == ("tuple", "(", "]", (("num", "1"), ("num", "2")))
    assert parse_answer("(1, 2)") == ("tuple", "(", ")", (("num", "1"), ("num", "2")))


def test_parse_set_and_union() -> None:
    assert parse_answer(r"\{1, 2\}") == ("set", (("num", "1"), ("num", "2")))
    assert parse_answer(r"(1,2) \cup (3,4)")[0] == "union"


def test_parse_equation() -> None:
    assert parse_answer("y = 2x")[0:2] == ("rel", "=")


def test_parse_right_associative_power() -> None:
    assert parse_answer("2^3^2") == ("pow", ("num", "2"), ("pow", ("num", "3"), ("num", "2")))


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('ls')",
        "exec(open('x').read())",
        "lambda: 0",
        "x; y",
        "a.b",
        "unknownword",
        "1 < x < 2",
        r"\input{file}",
        "(1, 2",
        "{1",
        "",
    ],
)
def test_parse_rejects_unsupported_input(text: str) -> None:
    with pytest.raises(ParseError):
        parse_answer(text)


def test_parse_rejects_deep_nesting() -> None:
    with pytest.raises(ParseError, match="nested"):
        parse_answer("(" * (MAX_DEPTH + 5) + "1" + ")" * (MAX_DEPTH + 5))


def test_parse_rejects_too_many_tokens() -> None:
    with pytest.raises(ParseError, match="tokens"):
        parse_answer("+".join(["1"] * MAX_TOKENS))


def test_has_decimal() -> None:
    assert has_decimal(parse_answer("1 + 0.5x"))
    assert not has_decimal(parse_answer(r"\frac{1}{2}"))


def test_evaluate_rational_hand_computed() -> None:
    # 3/4 + 2^{-2} * 5! = 3/4 + 120/4 = 123/4
    assert evaluate_rational(parse_answer(r"\frac{3}{4} + 2^{-2} \cdot 5!")) == Fraction(123, 4)


def test_evaluate_rational_not_rational() -> None:
    assert evaluate_rational(parse_answer(r"\sqrt{2}")) is None
    assert evaluate_rational(parse_answer("2^{1/2}")) is None
    assert evaluate_rational(parse_answer("x + 1")) is None
    assert evaluate_rational(parse_answer("1/0")) is None


@pytest.mark.parametrize(
    "text", ["10^{10^{10}}", "2^{100001}", "100000!", "x^{10^{10}}", "(10^{5000})!"]
)
def test_check_limits_rejects_huge_numbers(text: str) -> None:
    with pytest.raises(LimitError):
        check_limits(parse_answer(text))


def test_check_limits_accepts_moderate_numbers() -> None:
    check_limits(parse_answer("2^{1000} + 200! + x^{50}"))


_INTEGERS = st.integers(min_value=-50, max_value=50)


@st.composite
def _expressions(draw: st.DrawFn, depth: int = 3) -> tuple[str, Fraction]:
    """Draw a random arithmetic expression together with its value computed independently."""
    if depth == 0 or draw(st.booleans()):
        value = draw(_INTEGERS)
        return (f"({value})" if value < 0 else str(value)), Fraction(value)
    left_text, left_value = draw(_expressions(depth - 1))
    right_text, right_value = draw(_expressions(depth - 1))
    operator = draw(st.sampled_from(["+", "-", "*", "/"]))
    if operator == "/" and right_value == 0:
        operator = "+"
    value = {
        "+": left_value + right_value,
        "-": left_value - right_value,
        "*": left_value * right_value,
        "/": left_value / right_value if right_value else left_value,
    }[operator]
    return f"({left_text}{operator}{right_text})", value


@settings(max_examples=200, deadline=None)
@given(_expressions())
def test_evaluate_rational_matches_fraction_reference(case: tuple[str, Fraction]) -> None:
    text, expected = case
    assert evaluate_rational(parse_answer(text)) == expected
