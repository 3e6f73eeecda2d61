"""Measure the MCTS teacher's cost with and without prefix reuse.

For each setting the teacher searches the same problems with the same seeds. With prefix
reuse the policy encodes an expansion's prompt once and copies its key/value cache to
all candidate samples. Without it, the policy encodes the prompt once per sample. Reported per
setting: forward tokens per simulation (token positions run through the model, summed
over batch rows), generated tokens per simulation, simulations per second and wall time.
Writes ``benchmarks/results/teacher.json`` and the markdown section
``benchmarks/results/teacher.md``.

    python benchmarks/bench_teacher.py --num-problems 4 --simulations 8
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from agents import LMPolicy, MCTSConfig, MCTSTeacher
from envs import default_problems

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default", help="'default', a HF id or a local path")
    parser.add_argument("--device", default=None, help="torch device; default: cuda if present")
    parser.add_argument("--num-problems", type=int, default=4, help="problems per setting (count)")
    parser.add_argument("--simulations", type=int, default=8, help="simulations per problem")
    parser.add_argument("--branching", type=int, default=5, help="candidate steps per expansion")
    parser.add_argument("--max-depth", type=int, default=5, help="maximum tree depth (steps)")
    parser.add_argument(
        "--step-max-new-tokens", type=int, default=48, help="token limit of one step (tokens)"
    )
    parser.add_argument(
        "--rollout-max-new-tokens", type=int, default=128, help="rollout token limit (tokens)"
    )
    parser.add_argument("--seed", type=int, default=0, help="search and problem seed")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads; default: torch's choice"
    )
    parser.add_argument(
        "--output-dir", type=Path, default=RESULTS_DIR, help="folder for teacher.json/.md"
    )
    return parser.parse_args()


def search_problem(policy: LMPolicy, problem, config: MCTSConfig, reuse_prefix: bool) -> dict:
    """Search one problem with one prefix-reuse setting and return its cost numbers."""
    policy.reuse_prefix = reuse_prefix
    started = time.perf_counter()
    result = MCTSTeacher(policy, config).search(problem)
    return {
        "simulations": result.stats["simulations"],
        "forward_tokens": result.stats["forward_tokens"],
        "generated_tokens": result.stats["generated_tokens"],
        "solved": int(result.solved),
        "wall_s": time.perf_counter() - started,
    }


def run_settings(policy: LMPolicy, problems, config: MCTSConfig) -> list[dict]:
    """Search every problem with and without prefix reuse and return one summary per setting.

    The order of the two settings alternates from problem to problem, so that a change
    in machine load during the run affects both settings alike.
    """
    totals = {
        reuse: {
            "simulations": 0,
            "forward_tokens": 0,
            "generated_tokens": 0,
            "solved": 0,
            "wall_s": 0.0,
        }
        for reuse in (True, False)
    }
    for index, problem in enumerate(problems):
        order = (True, False) if index % 2 == 0 else (False, True)
        for reuse_prefix in order:
            numbers = search_problem(policy, problem, config, reuse_prefix)
            for key, value in numbers.items():
                totals[reuse_prefix][key] += value

    settings = []
    for reuse_prefix, numbers in totals.items():
        simulations = max(numbers["simulations"], 1)
        wall = numbers["wall_s"]
        settings.append(
            {
                "reuse_prefix": reuse_prefix,
                **numbers,
                "forward_tokens_per_simulation": numbers["forward_tokens"] / simulations,
                "generated_tokens_per_simulation": numbers["generated_tokens"] / simulations,
                "simulations_per_s": numbers["simulations"] / wall if wall > 0 else None,
            }
        )
    return settings


def write_markdown(path: Path, record: dict) -> None:
    rows = [
        "| prefix reuse | forward tokens / sim | generated tokens / sim | sims / s | wall s | solved |",
        "|---|---|---|---|---|---|",
    ]
    for setting in record["settings"]:
        rows.append(
            f"| {'yes' if setting['reuse_prefix'] else 'no'} "
            f"| {setting['forward_tokens_per_simulation']:.0f} "
            f"| {setting['generated_tokens_per_simulation']:.0f} "
            f"| {setting['simulations_per_s']:.3f} "
            f"| {setting['wall_s']:.1f} "
            f"| {setting['solved']}/{record['num_problems']} |"
        )
    text = "\n".join(
        [
            "## MCTS teacher cost",
            "",
            f"Command: `{record['command']}`",
            "",
            f"Machine: {record['machine']}; torch {record['torch']}, {record['threads']} "
            f"threads, device {record['device']}. Date: {record['date']}.",
            "",
            f"Model {record['model']}, {record['num_problems']} default-source problems, "
            f"config {json.dumps(record['config'])}.",
            "",
            *rows,
            "",
            "Forward tokens count every token position run through the model, summed over "
            "batch rows: prompt positions at prefill plus one per sampled token per row. "
            "Without prefix reuse an expansion encodes its prompt once per candidate sample. "
            "Both settings draw the same samples (same seeds), so their generated tokens match. "
            "Wall times on a shared CPU vary with machine load.",
            "",
        ]
    )
    path.write_text(text, encoding="utf-8")


def main() -> None:
    args = parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    problems = default_problems(args.num_problems, seed=args.seed)
    policy = LMPolicy.from_pretrained(args.model, device=args.device)
    config = MCTSConfig(
        simulations=args.simulations,
        branching=args.branching,
        max_depth=args.max_depth,
        step_max_new_tokens=args.step_max_new_tokens,
        rollout_max_new_tokens=args.rollout_max_new_tokens,
        seed=args.seed,
    )

    # Warm up (first-call allocations) before timing.
    policy.generate_steps(policy.build_prompt("Calculate 1 + 1."), 2, max_new_tokens=4, seed=0)
    settings = run_settings(policy, problems, config)
    for setting in settings:
        print(json.dumps(setting))

    record = {
        "benchmark": "teacher",
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.platform()}, {platform.processor() or 'unknown CPU'}, "
        f"{os.cpu_count()} logical CPUs",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": str(policy.device),
        "model": args.model,
        "num_problems": len(problems),
        "config": vars(config),
        "settings": settings,
    }
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "teacher.json").write_text(json.dumps(record, indent=2) + "\n")
    write_markdown(args.output_dir / "teacher.md", record)
    print(f"wrote {args.output_dir / 'teacher.json'} and {args.output_dir / 'teacher.md'}")


if __name__ == "__main__":
    main()
