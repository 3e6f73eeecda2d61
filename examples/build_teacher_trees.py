"""Build MCTS teacher prefix trees for a set of problems and compare with greedy decoding.

Runs the MCTS teacher with the default policy (SmolLM2-135M-Instruct) over N problems
of the offline reasoning-gym source (arithmetic, word problems or both) or a JSONL
dataset. One prefix tree per problem streams to a JSONL file, so a rerun resumes. Then
the same model's single greedy attempt is scored on the same problems, and a summary
is printed.

    python examples/build_teacher_trees.py --num-problems 20 --output runs/teacher_trees.jsonl
    python examples/build_teacher_trees.py --source mixed --simulations 10 --threads 1
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from pathlib import Path

import torch

from agents import LMPolicy, MCTSConfig, MCTSTeacher
from envs import DEFAULT_KINDS, check_answer, default_problems, load_problems
from sae import read_prefix_trees


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    data = parser.add_argument_group("problems")
    data.add_argument("--num-problems", type=int, default=20, help="number of problems (count)")
    data.add_argument(
        "--dataset",
        type=Path,
        default=None,
        help="JSONL file in GSM8K or MATH format; default: offline reasoning-gym problems (--source)",
    )
    data.add_argument(
        "--source",
        choices=["mixed", "arithmetic", "word"],
        default="arithmetic",
        help="kind of offline reasoning-gym problems when --dataset is not given: "
        "'arithmetic' (one +, - or * on 1-2 digit numbers), 'word' (GSM-style word "
        "problems) or 'mixed' (both, alternating)",
    )
    data.add_argument("--problem-seed", type=int, default=0, help="seed of the problem source")
    data.add_argument(
        "--id-prefix",
        default=None,
        help="keep only problems whose id starts with this text, e.g. reasoning_gym/arithmetic/0/1",
    )

    model = parser.add_argument_group("model")
    model.add_argument(
        "--model", default="default", help="'default', a Hugging Face id or a local directory"
    )
    model.add_argument("--device", default=None, help="torch device; default: cuda if present")
    model.add_argument("--dtype", default=None, help="float32, bfloat16 or float16")
    model.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads; default: torch's choice"
    )

    search = parser.add_argument_group("search")
    search.add_argument("--simulations", type=int, default=16, help="simulations per problem")
    search.add_argument("--max-depth", type=int, default=5, help="maximum tree depth (steps)")
    search.add_argument("--branching", type=int, default=5, help="candidate steps per expansion")
    search.add_argument("--c-puct", type=float, default=1.5, help="PUCT exploration weight")
    search.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    search.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (0, 1]")
    search.add_argument(
        "--step-max-new-tokens", type=int, default=48, help="token limit of one step (tokens)"
    )
    search.add_argument(
        "--rollout-max-new-tokens",
        type=int,
        default=160,
        help="token limit of one rollout completion (tokens)",
    )
    search.add_argument(
        "--expand-attempts",
        type=int,
        default=2,
        help="sampling rounds per expansion while fewer than --branching distinct steps exist",
    )
    search.add_argument("--seed", type=int, default=0, help="base seed of the search")

    output = parser.add_argument_group("output")
    output.add_argument(
        "--output",
        type=Path,
        default=Path("runs/teacher_trees.jsonl"),
        help="JSONL file of prefix trees; problems already in it are skipped",
    )
    output.add_argument(
        "--greedy-max-new-tokens",
        type=int,
        default=256,
        help="token limit of the greedy baseline completion (tokens)",
    )
    output.add_argument("--skip-greedy", action="store_true", help="skip the greedy baseline")
    output.add_argument(
        "--summary-json", type=Path, default=None, help="also write the summary to this JSON file"
    )
    output.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser.parse_args()


def select_problems(args: argparse.Namespace) -> list:
    """Load the requested problems, keeping only ids with ``--id-prefix`` when given."""
    if args.dataset is not None:
        problems = load_problems(args.dataset)
    else:
        kinds = DEFAULT_KINDS if args.source == "mixed" else (args.source,)
        # Draw extra problems when filtering by id, so that enough remain.
        pool = args.num_problems * (4 if args.id_prefix else 1)
        problems = default_problems(pool, seed=args.problem_seed, kinds=kinds)
    if args.id_prefix:
        problems = [problem for problem in problems if problem.id.startswith(args.id_prefix)]
    if not problems:
        raise SystemExit(f"no problems match --id-prefix {args.id_prefix!r}")
    return problems[: args.num_problems]


def greedy_accuracy(policy: LMPolicy, problems, max_new_tokens: int, batch_size: int = 8):
    """Return (accuracy, generated tokens) of one greedy completion per problem."""
    correct = 0
    tokens = 0
    for start in range(0, len(problems), batch_size):
        chunk = problems[start : start + batch_size]
        prompts = [policy.build_prompt(problem.question) for problem in chunk]
        generations = policy.generate_completions(
            prompts, greedy=True, max_new_tokens=max_new_tokens
        )
        for problem, generation in zip(chunk, generations, strict=True):
            correct += int(check_answer(generation.text, problem.answer).correct)
            tokens += len(generation.token_ids)
    return correct / max(len(problems), 1), tokens


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    # Problems and model
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    problems = select_problems(args)
    print(f"problems: {len(problems)} from {args.dataset or args.source}")
    started = time.perf_counter()
    policy = LMPolicy.from_pretrained(args.model, device=args.device, dtype=args.dtype)
    print(
        f"model: {args.model} on {policy.device} (loaded in {time.perf_counter() - started:.1f} s)"
    )

    # Teacher search, streamed to the output file
    config = MCTSConfig(
        simulations=args.simulations,
        max_depth=args.max_depth,
        branching=args.branching,
        c_puct=args.c_puct,
        temperature=args.temperature,
        top_p=args.top_p,
        step_max_new_tokens=args.step_max_new_tokens,
        rollout_max_new_tokens=args.rollout_max_new_tokens,
        expand_attempts=args.expand_attempts,
        seed=args.seed,
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    teacher = MCTSTeacher(policy, config)
    search_started = time.perf_counter()
    trees = teacher.build_trees(problems, args.output, progress=not args.no_progress)
    search_wall = time.perf_counter() - search_started
    new_results = teacher.last_results

    loaded = read_prefix_trees(args.output)
    loaded_ids = {str(tree.problem.get("id")) for tree in loaded}
    missing = [problem.id for problem in problems if problem.id not in loaded_ids]
    if missing:
        raise SystemExit(f"trees missing from {args.output} after the run: {missing}")

    # A tree is solved when any of its traces reached a correct final answer.
    teacher_solved = sum(int(tree.root.successes > 0) for tree in trees) / len(trees)

    # Greedy baseline with the same model
    greedy_acc = None
    greedy_tokens = 0
    greedy_wall = 0.0
    if not args.skip_greedy:
        greedy_started = time.perf_counter()
        greedy_acc, greedy_tokens = greedy_accuracy(policy, problems, args.greedy_max_new_tokens)
        greedy_wall = time.perf_counter() - greedy_started

    simulations = sum(result.stats["simulations"] for result in new_results)
    summary = {
        "problems": len(problems),
        "searched_now": len(new_results),
        "teacher_solved_rate": teacher_solved,
        "greedy_accuracy": greedy_acc,
        "nodes_per_tree": sum(len(tree) for tree in trees) / len(trees),
        "teacher_generated_tokens": sum(r.stats["generated_tokens"] for r in new_results),
        "teacher_forward_tokens": sum(r.stats["forward_tokens"] for r in new_results),
        "greedy_generated_tokens": greedy_tokens,
        "simulations": simulations,
        "simulations_per_s": simulations / search_wall if search_wall > 0 else None,
        "teacher_wall_s": search_wall,
        "greedy_wall_s": greedy_wall,
        "config": vars(config),
        "model": args.model,
        "device": str(policy.device),
        "machine": platform.platform(),
        "output": str(args.output),
    }

    print("\nsummary")
    print(f"  problems:              {summary['problems']} (searched now: {len(new_results)})")
    print(f"  teacher solved rate:   {teacher_solved:.3f}")
    if greedy_acc is not None:
        print(f"  greedy accuracy:       {greedy_acc:.3f}")
    print(f"  nodes per tree:        {summary['nodes_per_tree']:.1f}")
    print(
        f"  tokens generated:      {summary['teacher_generated_tokens']} (teacher), "
        f"{greedy_tokens} (greedy)"
    )
    print(f"  wall time:             {search_wall:.1f} s (teacher), {greedy_wall:.1f} s (greedy)")
    print(f"  trees:                 {args.output} ({len(loaded)} trees load back)")
    if args.summary_json is not None:
        args.summary_json.parent.mkdir(parents=True, exist_ok=True)
        args.summary_json.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        print(f"  summary JSON:          {args.summary_json}")


if __name__ == "__main__":
    main()
