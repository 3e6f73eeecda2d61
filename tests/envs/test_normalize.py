"""Tests for answer normalisation."""

from __future__ import annotations

import pytest

from envs import normalize_answer


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("$\\frac{1}{2}$", "\\frac{1}{2}"),
        ("\\dfrac{3}{4}", "\\frac{3}{4}"),
        ("\\left( 1, 2 \\right)", "( 1, 2 )"),
        ("10,\\!080", "10080"),
        ("11,\\! 111,\\! 111,\\! 100", "11111111100"),
        ("12,34", "12,34"),
        ("1,000.5", "1000.5"),
        ("\\$18.90", "18.90"),
        ("18 dollars", "18"),
        ("28\\%", "28"),
        ("90^\\circ", "90"),
        ("15\\mbox{ cm}^2", "15"),
        ("\\text{Evelyn}", "Evelyn"),
        ("2\\frac{1}{2}", "(2+1/2)"),
        ("-1 1/4", "-(1+1/4)"),
        ("x \\in [-2,7]", "[-2,7]"),
        ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "(1,2)"),
        ("\\begin{pmatrix} 1 & 0 \\\\ 0 & 1 \\end{pmatrix}", "((1,0),(0,1))"),
        ("9{,}500.", "9500"),
        ("\u2212\u03c0", "-\\pi"),
    ],
)
def test_normalize_answer_case(raw: str, expected: str) -> None:
    assert normalize_answer(raw) == expected
