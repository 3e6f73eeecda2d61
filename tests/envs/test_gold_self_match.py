"""Every gold answer of the shared reference sets must match itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from envs import check_answer, load_problems


@pytest.mark.parametrize("relative", ["gsm8k/test.jsonl", "math500/test.jsonl"])
def test_gold_matches_itself(shared_data: Path, relative: str) -> None:
    path = shared_data / relative
    if not path.is_file():
        pytest.skip(f"{path} not found")
    failures = []
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            gold = json.loads(line)["answer"]
            result = check_answer(gold, gold, timeout=30)
            if not result.correct:
                failures.append((line_number, gold, result.reason))
    assert failures == []


@pytest.mark.parametrize("relative", ["gsm8k/test.jsonl", "math500/test.jsonl"])
def test_reference_solution_matches_gold(shared_data: Path, relative: str) -> None:
    path = shared_data / relative
    if not path.is_file():
        pytest.skip(f"{path} not found")
    problems = load_problems(path, limit=200)
    failures = [
        (problem.id, problem.answer)
        for problem in problems
        if problem.solution
        and not check_answer(problem.solution, problem.answer, timeout=30).correct
    ]
    assert failures == []
