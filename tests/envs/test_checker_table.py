"""Known hard cases for answer checkers, as (response, gold, expected) rows.

Each row reproduces a kind of failure reported against other answer checkers: equations
written differently, factorial precision, tuple formatting, thousands separators, GSM8K
continuations after the answer, the last of several boxes, and so on.
"""

from __future__ import annotations

import pytest

from envs import check_answer

CASES = [
    (r"$y = -\frac{1}{2}x + \frac{3}{4}$", r"$2x+4y-3=0$", True),
    (r"3x + 4y + 14=0", r"3*x-1*y+13=0", False),
    (r"$\frac{1}{2006!}$", r"$\frac{1}{2004!}$", False),
    (r"$n=1, 2, 3$", r"$n=2, 3, 4$", False),
    (r"$13$", r"$\text{13}$", True),
    (r"0.0833333333333333", r"\frac{1}{12}", True),
    (r"(1,4.5)", r"(1,\frac{9}{2})", True),
    (r"\sec^2(y)", r"\tan^2(y)+1", True),
    (r"2.5", r"$2\frac{1}{2}$", True),
    (r"2 2/3", r"2", False),
    (r"$4\sqrt{2}$", r"$4$", False),
    (r"4.123105625617661", r"$\sqrt{17}$", True),
    (r"pi/2", r"\dfrac{\pi}{2}", True),
    (r"14.0 + -1.0i", r"14 - i", True),
    (r"The answer is \boxed{1}. To double-check: the answer is \boxed{1}.", r"1", True),
    (r"(3, \frac{\pi}{2})", r"\left( 3, \frac{\pi}{2} \right)", True),
    (r"(0,1)", r"0,1", True),
    (r"1234", r"12,34", False),
    (r"1.0", r"1", True),
    (r"(x-1)(x+1)", r"(x^2-1)", True),
    (r"\boxed{8,000}", r"8000", True),
    (r"The answer is $9{,}500.", r"9500", True),
    (r"The answer is 72, in total, so the farmer earns that much.", r"72", True),
    (r"Adding the tip, the delivery order costs $29.00.", r"29", True),
    (r"-3", r"#### -3", True),
    (r"3", r"#### -3", False),
    (
        "She earns 3*6 = 18 dollars.\n#### 18\n\nQuestion: Tom has 3 apples and eats 1. "
        "How many are left?\nAnswer: 3-1 = 2\n#### 2",
        r"#### 18",
        True,
    ),
    (r"\boxed{\frac{1}{3}}", r"\boxed{\frac{1}{2}}", False),
    (r"First try gives \boxed{2}. That is wrong; the correct value is \boxed{3}.", r"3", True),
    (r"<answer>\boxed{42}</answer>", r"42", True),
    (r"-\dfrac{n}{m}", r"-\frac{n}{m}", True),
    (r"\frac{a}{\frac{1}{b}}", r"ab", True),
]


@pytest.mark.parametrize(("response", "gold", "expected"), CASES)
def test_check_answer_known_case(response: str, gold: str, expected: bool) -> None:
    result = check_answer(response, gold)
    assert result.correct is expected, result
    # A decided comparison has no failure reason.
    assert not (result.reason or "").startswith(("timed out", "internal")), result
