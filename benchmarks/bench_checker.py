"""Measure the answer checker: checks per second and agreement with math-verify.

Cases built from each data set (GSM8K and MATH-500 test files):

* ``self``: ``check_answer(gold, gold)`` for every problem (must be 100% correct);
* ``solution``: the reference solution as the response against the gold answer (a correct
  transcript, so the expected verdict is True);
* ``shifted``: the reference solution of problem ``k`` against the gold of problem
  ``k + 1`` (usually a wrong answer; the verdict is compared with math-verify only).

Both checkers run in the same process on the same cases. Run from the repository root:

    python benchmarks/bench_checker.py --data-dir ../shared/data

It writes ``benchmarks/results/checker.json`` and ``benchmarks/results/checker.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from envs import check_answer, load_problems, shutdown_workers
from envs.problems import Problem

RESULTS_DIR = Path(__file__).resolve().parent / "results"
DATA_SETS = {"gsm8k": "gsm8k/test.jsonl", "math500": "math500/test.jsonl"}


def _build_cases(problems: list[Problem]) -> dict[str, list[tuple[str, str]]]:
    cases: dict[str, list[tuple[str, str]]] = {"self": [], "solution": [], "shifted": []}
    for index, problem in enumerate(problems):
        cases["self"].append((problem.answer, problem.answer))
        if problem.solution:
            cases["solution"].append((problem.solution, problem.answer))
            following = problems[(index + 1) % len(problems)]
            cases["shifted"].append((problem.solution, following.answer))
    return cases


def _run_ours(cases: list[tuple[str, str]], timeout: float) -> tuple[list[bool], float, int]:
    start = time.perf_counter()
    verdicts = []
    failures = 0
    for response, gold in cases:
        result = check_answer(response, gold, timeout=timeout)
        verdicts.append(result.correct)
        if result.reason is not None and result.reason.startswith(("timed out", "internal")):
            failures += 1
    return verdicts, time.perf_counter() - start, failures


def _math_verify_input(text: str) -> str:
    """Wrap a bare one-line answer in ``$...$``, which math-verify's LaTeX extraction needs."""
    if "\\boxed" in text or "$" in text or "\n" in text.strip():
        return text
    return f"${text}$"


def _run_math_verify(cases: list[tuple[str, str]], timeout: int) -> tuple[list[bool], float]:
    from math_verify import parse, verify

    start = time.perf_counter()
    verdicts = []
    for response, gold in cases:
        gold_parsed = parse(_math_verify_input(gold))
        response_parsed = parse(_math_verify_input(response))
        verdicts.append(bool(verify(gold_parsed, response_parsed, timeout_seconds=timeout)))
    return verdicts, time.perf_counter() - start


def _summarize(
    ours: list[bool], reference: list[bool], seconds_ours: float, seconds_reference: float
) -> dict[str, Any]:
    count = len(ours)
    agree = sum(a == b for a, b in zip(ours, reference, strict=True))
    return {
        "cases": count,
        "ours_correct_rate": sum(ours) / count if count else float("nan"),
        "math_verify_correct_rate": sum(reference) / count if count else float("nan"),
        "agreement": agree / count if count else float("nan"),
        "ours_true_math_verify_false": sum(
            a and not b for a, b in zip(ours, reference, strict=True)
        ),
        "ours_false_math_verify_true": sum(
            b and not a for a, b in zip(ours, reference, strict=True)
        ),
        "ours_checks_per_second": count / seconds_ours if seconds_ours else float("nan"),
        "math_verify_checks_per_second": count / seconds_reference
        if seconds_reference
        else float("nan"),
    }


def _disagreements(
    cases: list[tuple[str, str]], ours: list[bool], reference: list[bool], limit: int
) -> list[dict[str, Any]]:
    rows = []
    for (response, gold), mine, theirs in zip(cases, ours, reference, strict=True):
        if mine != theirs and len(rows) < limit:
            rows.append(
                {
                    "response_tail": response[-160:],
                    "gold": gold,
                    "ours": mine,
                    "math_verify": theirs,
                }
            )
    return rows


def _markdown(report: dict[str, Any]) -> str:
    lines = [
        "## Answer checker",
        "",
        f"Command: `{report['command']}`  ",
        f"Machine: {report['machine']}  ",
        f"Date: {report['date']}  ",
        f"1-minute load average at start: {report['load_average_1min_at_start']}",
        "",
        "Cases: `self` checks each gold answer against itself, `solution` checks the "
        "reference solution against its gold answer, and `shifted` checks the solution of "
        "problem k against the gold of problem k + 1 (mostly wrong answers). Most `self` "
        "and `solution` pairs are equal after normalisation and never reach sympy, so the "
        "MATH-500 `shifted` row shows the rate of the sympy path (GSM8K answers are integers "
        "and compare exactly without sympy). Checks per second include "
        "extraction, normalisation and the sympy worker round trip; the first sympy check "
        "also pays the worker start-up.",
        "",
        "| data set | case | cases | ours correct | math-verify correct | agreement | ours/s | math-verify/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, by_case in report["results"].items():
        for case, row in by_case.items():
            lines.append(
                f"| {name} | {case} | {row['cases']} | {row['ours_correct_rate']:.2%} | "
                f"{row['math_verify_correct_rate']:.2%} | {row['agreement']:.2%} | "
                f"{row['ours_checks_per_second']:.0f} | {row['math_verify_checks_per_second']:.0f} |"
            )
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path("../shared/data"),
        help="folder with gsm8k/test.jsonl and math500/test.jsonl",
    )
    parser.add_argument(
        "--limit", type=int, default=None, help="problems per data set (default: all)"
    )
    parser.add_argument(
        "--timeout", type=float, default=5.0, help="seconds per check for both checkers"
    )
    parser.add_argument(
        "--output-dir", type=Path, default=RESULTS_DIR, help="where the JSON and markdown go"
    )
    args = parser.parse_args(argv)

    load_at_start = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    results: dict[str, Any] = {}
    examples: dict[str, Any] = {}
    for name, relative in DATA_SETS.items():
        path = args.data_dir / relative
        if not path.is_file():
            print(f"skipping {name}: {path} not found")
            continue
        problems = load_problems(path, limit=args.limit)
        results[name] = {}
        for case, pairs in _build_cases(problems).items():
            ours, seconds_ours, failures = _run_ours(pairs, args.timeout)
            reference, seconds_reference = _run_math_verify(pairs, int(max(1, args.timeout)))
            row = _summarize(ours, reference, seconds_ours, seconds_reference)
            row["ours_timeouts_or_errors"] = failures
            results[name][case] = row
            examples[f"{name}/{case}"] = _disagreements(pairs, ours, reference, limit=10)
            print(f"{name:8s} {case:9s} " + json.dumps(row))
    shutdown_workers()
    if not results:
        print("no data set found; pass --data-dir")
        return 1

    report = {
        "command": "python benchmarks/bench_checker.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores, Python {platform.python_version()}",
        "date": datetime.date.today().isoformat(),
        "load_average_1min_at_start": load_at_start,
        "timeout_seconds": args.timeout,
        "results": results,
        "disagreement_examples": examples,
    }
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "checker.json").write_text(
        json.dumps(report, indent=2) + "\n", encoding="utf-8"
    )
    (args.output_dir / "checker.md").write_text(_markdown(report), encoding="utf-8")
    print(f"wrote {args.output_dir / 'checker.json'} and {args.output_dir / 'checker.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
