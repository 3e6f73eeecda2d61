"""Fuzz check_answer with random and adversarial strings: no exception, no hang, no file."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from envs import CheckResult, check_answer, extract_answer, has_final_answer

FRAGMENTS = [
    r"\frac{",
    r"\boxed{",
    r"\sqrt{",
    r"\sqrt[",
    "^{",
    "_{",
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    r"\left(",
    r"\right)",
    r"\{",
    r"\}",
    "$",
    r"\$",
    "#### ",
    "The answer is ",
    "<answer>",
    "</answer>",
    "**Answer:** ",
    r"\text{",
    r"\pi",
    r"\infty",
    r"\cdot",
    r"\pm",
    "!",
    "=",
    "<",
    r"\le",
    ",",
    "{,}",
    ".",
    "%",
    r"\%",
    r"^\circ",
    "x",
    "y",
    "i",
    "e",
    "ab",
    "0",
    "1",
    "7",
    "12",
    "3.5",
    "1,000",
    "-",
    "+",
    "*",
    "/",
    "^",
    " ",
    "\n",
    "\\",
    "\u03c0",
    "\u221a",
    "\u00b1",
    "\u2212",
    "\x00",
    "\ufffd",
    r"\begin{pmatrix}",
    r"\end{pmatrix}",
    "&",
    r"\\",
    r"\sin",
    r"\log_",
    r"\binom{",
    "10^{10^{10}}",
    "9!!",
    "(10^{5000})!",
    "2^{99999}",
    "__import__('os').system('touch pwned')",
    "exec('import os')",
    "eval(input())",
    "lambda: open('pwned', 'w')",
    r"\input{/etc/passwd}",
    r"\write18{touch pwned}",
    "${jndi:ldap://x}",
    "'; DROP TABLE answers; --",
    "%s%s%n",
    "\u202e",
]
GOLDS = [
    "18",
    r"\frac{1}{2}",
    r"2\sqrt{2}",
    "(1, 2)",
    "y = 2x + 3",
    r"\text{Evelyn}",
    "#### 72",
    "x^2 - 1",
]


def _random_expression(rng: random.Random, depth: int) -> str:
    """Return a well-formed random expression, so that part of the fuzz reaches sympy."""
    if depth == 0 or rng.random() < 0.3:
        return rng.choice(["x", "y", "2", "3.5", r"\pi", "e", "i", "0"])
    left = _random_expression(rng, depth - 1)
    right = _random_expression(rng, depth - 1)
    return rng.choice(
        [
            f"{left}+{right}",
            f"{left}-{right}",
            f"({left})({right})",
            f"\\frac{{{left}}}{{{right}}}",
            f"({left})^{{{rng.randint(-3, 5)}}}",
            f"\\sqrt{{{left}}}",
            f"\\sin({left})",
            f"\\log({left})",
            f"{left} = {right}",
            f"({left}, {right})",
        ]
    )


def _adversarial_strings(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    fixed = [
        "(" * 5000 + "1" + ")" * 5000,
        "{" * 3000,
        "}" * 3000,
        r"\boxed{" * 500 + "1",
        r"\frac{1}{" * 400 + "2" + "}" * 400,
        "-" * 10000 + "1",
        "1" * 5000,
        "9" * 200 + "!",
        "x^" * 300 + "2",
        "2^" * 300 + "2",
        r"10^{10^{10}}",
        r"\boxed{10^{10^{10}}}",
        r"(10^{400})(y + \log(7!))",
        r"\sin(10^{400}) - i + 7!",
        "1" + "0" * 199_990,
    ]
    strings = list(fixed)
    while len(strings) < count:
        kind = rng.random()
        if kind < 0.1:
            strings.append(_random_expression(rng, rng.randint(1, 3)))
        elif kind < 0.6:
            pieces = rng.choices(FRAGMENTS, k=rng.randint(1, 12))
            strings.append("".join(pieces))
        elif kind < 0.85:
            length = rng.randint(0, 60)
            strings.append("".join(chr(rng.randint(0, 0x2FFF)) for _ in range(length)))
        else:
            depth = rng.randint(1, 200)
            opening, closing = rng.choice([("(", ")"), ("{", "}"), (r"\sqrt{", "}"), ("[", ")")])
            strings.append(
                opening * depth + rng.choice(FRAGMENTS) + closing * rng.randint(0, depth)
            )
    return strings[:count]


def _run_fuzz(
    count: int, seed: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, per_check: float
) -> None:
    monkeypatch.chdir(tmp_path)
    rng = random.Random(seed + 1)
    strings = _adversarial_strings(count, seed)
    assert len(strings) == count
    slowest = 0.0
    for text in strings:
        gold = rng.choice(GOLDS)
        start = time.perf_counter()
        forward = check_answer(text, gold, timeout=per_check)
        backward = check_answer(gold, text, timeout=per_check)
        extract_answer(text)
        has_final_answer(text)
        slowest = max(slowest, time.perf_counter() - start)
        assert isinstance(forward, CheckResult)
        assert isinstance(backward, CheckResult)
        assert isinstance(forward.correct, bool)
    # Each call is bounded by its timeout plus worker start-up after a kill.
    assert slowest < 2 * per_check + 30
    assert list(tmp_path.iterdir()) == []
    assert not (Path.cwd() / "pwned").exists()


def test_check_answer_fuzz_2000(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _run_fuzz(2000, seed=0, tmp_path=tmp_path, monkeypatch=monkeypatch, per_check=2.0)


@pytest.mark.slow
def test_check_answer_fuzz_20000(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _run_fuzz(20000, seed=1, tmp_path=tmp_path, monkeypatch=monkeypatch, per_check=5.0)
