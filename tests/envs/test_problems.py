"""Tests for Problem records and the problem loaders."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from envs import (
    Problem,
    check_answer,
    default_problems,
    load_hf_problems,
    load_problems,
    problems_from_records,
)


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_problem_round_trip() -> None:
    problem = Problem("p1", "What is 1+1?", "2", solution="1+1=2", source="hand")
    assert Problem.from_dict(problem.to_dict()) == problem
    assert json.loads(json.dumps(problem.to_dict())) == problem.to_dict()


def test_problem_from_dict_missing_key() -> None:
    with pytest.raises(ValueError, match="missing \\['answer'\\]"):
        Problem.from_dict({"id": "x", "question": "q"})


def test_problem_rejects_non_string_question() -> None:
    with pytest.raises(TypeError, match=r"Problem\.question"):
        Problem("x", 3, "1")  # type: ignore[arg-type]


def test_load_problems_gsm8k_format(tmp_path: Path) -> None:
    path = _write_lines(
        tmp_path / "tiny.jsonl",
        [
            json.dumps(
                {
                    "question": "Tom has 2 apples and buys 3. How many?",
                    "answer": "2+3=<<2+3=5>>5\n#### 5",
                }
            ),
            "",
            json.dumps({"question": "What is 10 * 100?", "answer": "#### 1,000"}),
        ],
    )
    problems = load_problems(path)
    assert [problem.answer for problem in problems] == ["5", "1,000"]
    assert problems[0].solution == "2+3=<<2+3=5>>5\n#### 5"
    assert problems[0].id == f"{tmp_path.name}/tiny/0"
    assert problems[1].id == f"{tmp_path.name}/tiny/1"


def test_load_problems_math_format(tmp_path: Path) -> None:
    record = {
        "problem": "Compute $1/2+1/2$.",
        "answer": "1",
        "solution": "It is $\\boxed{1}$.",
        "unique_id": "test/a/1.json",
    }
    problems = load_problems(
        _write_lines(tmp_path / "math.jsonl", [json.dumps(record)]), fmt="math"
    )
    assert problems == [
        Problem(
            "test/a/1.json", record["problem"], "1", record["solution"], f"{tmp_path.name}/math"
        )
    ]


def test_load_problems_limit(tmp_path: Path) -> None:
    lines = [json.dumps({"question": f"q{i}", "answer": f"#### {i}"}) for i in range(5)]
    assert len(load_problems(_write_lines(tmp_path / "p.jsonl", lines), limit=2)) == 2


def test_load_problems_invalid_json_names_line(tmp_path: Path) -> None:
    path = _write_lines(
        tmp_path / "bad.jsonl", [json.dumps({"question": "q", "answer": "#### 1"}), "{not json"]
    )
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: invalid JSON"):
        load_problems(path)


def test_load_problems_missing_field_names_line(tmp_path: Path) -> None:
    path = _write_lines(tmp_path / "bad.jsonl", [json.dumps({"title": "no question"})])
    with pytest.raises(ValueError, match=r"bad\.jsonl:1: expected a 'question'"):
        load_problems(path)


def test_load_problems_gsm8k_without_final_answer(tmp_path: Path) -> None:
    path = _write_lines(
        tmp_path / "bad.jsonl", [json.dumps({"question": "q", "answer": "work\n#### "})]
    )
    with pytest.raises(ValueError, match=r"bad\.jsonl:1: .*'####'"):
        load_problems(path)


def test_load_problems_non_object_line(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r":1: expected a JSON object"):
        load_problems(_write_lines(tmp_path / "list.jsonl", ["[1, 2]"]))


def test_load_problems_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"missing\.jsonl"):
        load_problems(tmp_path / "missing.jsonl")


def test_load_problems_invalid_format(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="expected fmt"):
        load_problems(tmp_path / "x.jsonl", fmt="csv")  # type: ignore[arg-type]


def test_problems_from_records_bad_record_names_index() -> None:
    with pytest.raises(ValueError, match="record 1"):
        problems_from_records(
            [{"question": "q", "answer": "#### 1"}, {"problem": 3, "answer": "1"}]
        )


def test_load_problems_shared_gsm8k(shared_data: Path) -> None:
    problems = load_problems(shared_data / "gsm8k" / "test.jsonl")
    assert len(problems) == 1319
    assert problems[0].answer == "18"
    assert len({problem.id for problem in problems}) == len(problems)


def test_load_problems_shared_math500(shared_data: Path) -> None:
    problems = load_problems(shared_data / "math500" / "test.jsonl")
    assert len(problems) == 500
    assert problems[0].answer == r"\left( 3, \frac{\pi}{2} \right)"
    assert problems[0].id == "test/precalculus/807.json"


def test_default_problems_deterministic_mix() -> None:
    first = default_problems(10, seed=3)
    second = default_problems(10, seed=3)
    assert first == second
    assert len(first) == 10
    assert [problem.source for problem in first[:2]] == [
        "reasoning_gym/basic_arithmetic",
        "reasoning_gym/gsm_symbolic",
    ]
    assert first[0].id == "reasoning_gym/arithmetic/3/0"
    assert len({problem.id for problem in first}) == 10
    assert default_problems(10, seed=4) != first


def test_default_problems_answers_self_check() -> None:
    for problem in default_problems(40, seed=0):
        assert check_answer(problem.answer, problem.answer).correct, problem
        assert check_answer(f"The answer is {problem.answer}.", problem.answer).correct, problem


def test_default_problems_single_kind() -> None:
    arithmetic = default_problems(6, seed=0, kinds=["arithmetic"])
    assert [problem.source for problem in arithmetic] == ["reasoning_gym/basic_arithmetic"] * 6
    assert default_problems(6, seed=0, kinds="word")[0].source == "reasoning_gym/gsm_symbolic"
    with pytest.raises(ValueError, match="expected kinds"):
        default_problems(4, kinds=["geometry"])
    with pytest.raises(ValueError, match="expected kinds"):
        default_problems(4, kinds=[])


def test_default_problems_odd_count_and_zero() -> None:
    assert len(default_problems(3, seed=0)) == 3
    assert default_problems(0) == []
    with pytest.raises(ValueError, match="n >= 0"):
        default_problems(-1)


def test_load_hf_problems_with_stub_datasets(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def load_dataset(name, config, split, **kwargs):
        calls.append((name, config, split, kwargs))
        return [{"question": "What is 6 * 7?", "answer": "6*7=42\n#### 42"}]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    problems = load_hf_problems("/local/gsm8k", split="test", config="main")
    assert calls == [("/local/gsm8k", "main", "test", {})]
    assert [problem.answer for problem in problems] == ["42"]
    assert problems[0].id == "/local/gsm8k/test/0"


def test_load_hf_problems_without_datasets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(ImportError, match="pip install datasets"):
        load_hf_problems("gsm8k")
