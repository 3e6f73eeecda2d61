"""Tests for final-answer extraction from transcripts and gold strings."""

from __future__ import annotations

import pytest

from envs import extract_answer, extract_gold, has_final_answer
from envs.extraction import MAX_TEXT_CHARS, find_last_boxed


def test_find_last_boxed_nested_braces() -> None:
    assert find_last_boxed(r"so \boxed{\frac{1}{\sqrt{2}}} done") == r"\frac{1}{\sqrt{2}}"


def test_find_last_boxed_takes_last_box() -> None:
    assert find_last_boxed(r"\boxed{1} then \boxed{2}") == "2"


def test_find_last_boxed_unclosed_returns_none() -> None:
    # The earlier closed box must not be used when the final box is unclosed.
    assert find_last_boxed(r"\boxed{1} then \boxed{\frac{2}{3}") is None


def test_extract_answer_unclosed_box_falls_back_to_raw_text() -> None:
    assert extract_answer(r"first \boxed{1}, finally \boxed{7") == "7"


def test_extract_answer_fbox() -> None:
    assert extract_answer(r"\fbox{12}") == "12"


def test_extract_answer_hash_marker_first_wins() -> None:
    text = "work\n#### 18\nQuestion: more?\n#### 2"
    assert extract_answer(text) == "18"


def test_extract_answer_tag_last_wins() -> None:
    assert extract_answer("<answer>1</answer> <answer> 5 </answer>") == "5"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is 72, in total.", "72"),
        ("So the final answer is: $\\frac{3}{4}$ as required", "\\frac{3}{4}"),
        ("**Answer:** 12 apples", "12"),
        ("Final answer: x = 5", "x = 5"),
        ("Answer: 3.5\n", "3.5"),
        ("The answer is 1.5. Next we check.", "1.5"),
        ("The answer is (1, 2) because both work", "(1, 2)"),
        ("The answer is \\sqrt{2}.", "\\sqrt{2}"),
    ],
)
def test_extract_answer_phrase(text: str, expected: str) -> None:
    assert extract_answer(text) == expected


def test_extract_answer_last_phrase_wins() -> None:
    assert extract_answer("The answer is 3. Wait, the answer is 4.") == "4"


def test_extract_answer_bare_answer_kept_whole() -> None:
    assert extract_answer(r"\left( 3, \frac{\pi}{2} \right)") == r"\left( 3, \frac{\pi}{2} \right)"


def test_extract_answer_prose_uses_last_number() -> None:
    assert extract_answer("She has 3 apples and buys 1,200 more") == "1,200"


def test_extract_answer_sign_only_at_word_start() -> None:
    assert extract_answer("so we get 3-1 which is it") == "1"


def test_extract_answer_empty_and_none() -> None:
    assert extract_answer("") is None
    assert extract_answer("   \n ") is None
    assert extract_answer("no digits in this long sentence at all\nsecond line here") is None


def test_extract_answer_rejects_non_str() -> None:
    assert extract_answer(None) is None  # type: ignore[arg-type]


def test_extract_answer_rejects_too_long_text() -> None:
    assert extract_answer("1" * (MAX_TEXT_CHARS + 1)) is None


def test_extract_gold_keeps_bare_gold_whole() -> None:
    assert extract_gold(r"\frac{\pi}{2} + 3") == r"\frac{\pi}{2} + 3"


def test_extract_gold_gsm8k_solution() -> None:
    assert extract_gold("Janet sells 9 eggs.\nShe makes $18.\n#### 18") == "18"


def test_extract_gold_boxed() -> None:
    assert extract_gold(r"\boxed{\frac{1}{2}}") == r"\frac{1}{2}"


@pytest.mark.parametrize(
    "text",
    [
        r"so \boxed{5}",
        "#### 7",
        "The answer is 3",
        "**Answer:** 4",
        "<answer>2</answer>",
        "Answer: 9",
    ],
)
def test_has_final_answer_marker(text: str) -> None:
    assert has_final_answer(text)


@pytest.mark.parametrize(
    "text",
    [
        "3 + 4 = 7",
        "Let us compute the total.",
        r"\boxed{",
        r"\boxed{}",
        "#### ",
        "The answer is",
        "",
    ],
)
def test_has_final_answer_without_marker(text: str) -> None:
    assert not has_final_answer(text)
