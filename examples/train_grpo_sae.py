"""Train a small language model on math problems with GRPO and Staged Advantage Estimation.

With no arguments this runs the whole pipeline on the CPU:

1. load the default model (SmolLM2-135M-Instruct) and the default problems, split
   into training problems and held-out evaluation problems;
2. build MCTS teacher prefix trees for the training problems, or load them from
   the cache file written by an earlier run;
3. evaluate greedy pass@1 on the held-out problems, train with ``expectation``
   SAE advantages, evaluate again;
4. write TensorBoard logs, checkpoints, the final model and ``summary.json``
   under ``runs/<name>``.

Examples:
    python examples/train_grpo_sae.py
    python examples/train_grpo_sae.py --advantage grpo          # standard GRPO, root prompts only
    python examples/train_grpo_sae.py --dataset ../shared/data/gsm8k/train.jsonl \\
        --eval-dataset ../shared/data/gsm8k/test.jsonl --steps 200 --device cuda
    python examples/train_grpo_sae.py --resume runs/expectation-seed0
    tensorboard --logdir runs
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from pathlib import Path

import numpy as np

from agents.checkpoint import resolve_checkpoint
from agents.losses import LOSS_AGGREGATIONS
from agents.trainer import ADVANTAGE_METHODS, GRPOSAEConfig, GRPOSAETrainer


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    data = parser.add_argument_group("model and data")
    data.add_argument(
        "--model",
        default="default",
        help="Hugging Face id, local model directory, or 'default' (SmolLM2-135M-Instruct)",
    )
    data.add_argument(
        "--device",
        default=None,
        help="torch device such as 'cpu' or 'cuda'; None picks cuda when available",
    )
    data.add_argument(
        "--dtype",
        default=None,
        choices=["float32", "bfloat16", "float16"],
        help="model dtype; None picks bfloat16 on CUDA and float32 on CPU",
    )
    data.add_argument(
        "--dataset",
        default="default",
        help="'default' (seeded reasoning-gym problems) or a GSM8K/MATH JSONL file",
    )
    data.add_argument(
        "--problem-kinds",
        type=lambda text: tuple(part.strip() for part in text.split(",") if part.strip()),
        default=("arithmetic",),
        help="comma-separated kinds of the 'default' dataset: 'arithmetic' (one +, - or * "
        "on 1-2 digit numbers) and/or 'word' (GSM-style word problems, which the 135M "
        "default model almost never solves)",
    )
    data.add_argument(
        "--dataset-format",
        default="auto",
        choices=["auto", "gsm8k", "math"],
        help="format of --dataset and --eval-dataset files",
    )
    data.add_argument(
        "--eval-dataset",
        default=None,
        help="JSONL file of held-out problems; None splits held-out problems off --dataset",
    )
    data.add_argument("--num-train", type=int, default=8, help="number of training problems")
    data.add_argument(
        "--num-eval", type=int, default=12, help="number of held-out evaluation problems"
    )

    teacher = parser.add_argument_group("MCTS teacher trees")
    teacher.add_argument(
        "--trees",
        default=None,
        help="prefix-tree JSONL cache file; None uses a file under <output-dir>/cache named for the settings. Missing problems are searched and appended",
    )
    teacher.add_argument(
        "--teacher-simulations", type=int, default=3, help="MCTS simulations per problem"
    )
    teacher.add_argument(
        "--teacher-max-depth", type=int, default=3, help="maximum steps on a tree path"
    )
    teacher.add_argument(
        "--teacher-branching", type=int, default=3, help="candidate steps sampled per expansion"
    )
    teacher.add_argument(
        "--teacher-step-max-new-tokens",
        type=int,
        default=32,
        help="token limit of one teacher reasoning step",
    )
    teacher.add_argument(
        "--teacher-max-new-tokens", type=int, default=64, help="token limit of one teacher rollout"
    )

    train = parser.add_argument_group("training")
    train.add_argument(
        "--steps", type=int, default=20, help="training steps (one batch of problems each)"
    )
    train.add_argument("--batch-size", type=int, default=2, help="problems per step")
    train.add_argument(
        "--group-size", type=int, default=4, help="prefixes per problem (samples per group)"
    )
    train.add_argument(
        "--completions-per-prefix",
        type=int,
        default=1,
        help="student completions per sampled prefix",
    )
    train.add_argument(
        "--micro-batch-size",
        type=int,
        default=2,
        help="samples per micro-batch (gradient accumulation; also the grad/variance samples)",
    )
    train.add_argument(
        "--max-new-tokens", type=int, default=64, help="token limit of one training completion"
    )
    train.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        help="sampling temperature of training completions",
    )
    train.add_argument(
        "--advantage",
        default="expectation",
        choices=ADVANTAGE_METHODS,
        help="advantage estimator; 'grpo' trains from root prompts only (standard GRPO)",
    )
    train.add_argument(
        "--alpha", type=float, default=0.5, help="SAE baseline weight in a = r - alpha * V(p)"
    )
    train.add_argument(
        "--value-source",
        default="teacher",
        choices=["teacher", "student", "both"],
        help="counts behind the prefix values V(p)",
    )
    train.add_argument(
        "--prefix-distribution",
        default="uniform_depth",
        choices=["uniform_nodes", "uniform_depth", "curriculum"],
        help="how prefixes are drawn from a tree",
    )
    train.add_argument("--learning-rate", type=float, default=1e-5, help="peak AdamW learning rate")
    train.add_argument(
        "--warmup-steps", type=int, default=1, help="linear warmup steps before the cosine decay"
    )
    train.add_argument(
        "--max-grad-norm", type=float, default=1.0, help="gradient clipping threshold (L2 norm)"
    )
    train.add_argument(
        "--epsilon", type=float, default=0.2, help="clip range of the probability ratio"
    )
    train.add_argument(
        "--epsilon-high", type=float, default=None, help="upper clip range; None uses --epsilon"
    )
    train.add_argument(
        "--beta",
        type=float,
        default=0.0,
        help="KL coefficient to the frozen initial model (0: no reference model is loaded)",
    )
    train.add_argument("--num-iterations", type=int, default=1, help="updates per batch of samples")
    train.add_argument(
        "--loss-aggregation",
        default="token_mean",
        choices=LOSS_AGGREGATIONS,
        help="how per-token losses are averaged",
    )
    train.add_argument(
        "--lora", action="store_true", help="train LoRA adapters (peft) instead of all weights"
    )
    train.add_argument("--lora-r", type=int, default=16, help="LoRA rank")
    train.add_argument(
        "--no-grad-variance",
        action="store_true",
        help="skip the per-micro-batch gradient statistics (saves one parameter-sized buffer)",
    )

    run = parser.add_argument_group("run")
    run.add_argument(
        "--seed", type=int, default=0, help="seed of the problem split, sampling and training"
    )
    run.add_argument(
        "--output-dir",
        default="runs",
        help="parent directory of the run directory and the tree cache",
    )
    run.add_argument(
        "--name", default=None, help="run directory name; None uses '<advantage>-seed<seed>'"
    )
    run.add_argument(
        "--eval-every",
        type=int,
        default=0,
        help="evaluate every N steps (0: only before and after training)",
    )
    run.add_argument(
        "--eval-max-new-tokens",
        type=int,
        default=96,
        help="token limit of one evaluation completion",
    )
    run.add_argument(
        "--save-every", type=int, default=5, help="checkpoint every N steps (0: only on Ctrl-C)"
    )
    run.add_argument(
        "--resume", default=None, help="run directory or checkpoint directory to continue from"
    )
    run.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads; None keeps torch's default. On a CPU shared with other jobs, 1 can be several times faster",
    )
    run.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return parser.parse_args(argv)


def load_problem_split(args: argparse.Namespace) -> tuple[list, list]:
    from envs import default_problems, load_problems

    if args.eval_dataset is not None:
        if args.dataset == "default":
            train = default_problems(n=args.num_train, seed=args.seed, kinds=args.problem_kinds)
        else:
            train = load_problems(args.dataset, fmt=args.dataset_format)[: args.num_train]
        held_out = load_problems(args.eval_dataset, fmt=args.dataset_format)[: args.num_eval]
        return train, held_out

    total = args.num_train + args.num_eval
    if args.dataset == "default":
        problems = default_problems(n=total, seed=args.seed, kinds=args.problem_kinds)
    else:
        problems = load_problems(args.dataset, fmt=args.dataset_format)
    if len(problems) < total:
        sys.exit(
            f"error: {args.dataset} has {len(problems)} problems, but --num-train + --num-eval "
            f"needs {total}; lower them"
        )
    order = np.random.default_rng(args.seed).permutation(len(problems))[:total]
    chosen = [problems[i] for i in order]
    return chosen[: args.num_train], chosen[args.num_train :]


def teacher_trees(args: argparse.Namespace, policy, problems: list, output_dir: Path) -> list:
    from agents import MCTSConfig, MCTSTeacher

    path = Path(args.trees) if args.trees else output_dir / "cache" / tree_cache_name(args)
    path.parent.mkdir(parents=True, exist_ok=True)
    print(f"teacher trees: {path}")
    teacher = MCTSTeacher(
        policy,
        MCTSConfig(
            simulations=args.teacher_simulations,
            max_depth=args.teacher_max_depth,
            branching=args.teacher_branching,
            step_max_new_tokens=args.teacher_step_max_new_tokens,
            rollout_max_new_tokens=args.teacher_max_new_tokens,
            seed=args.seed,
        ),
    )
    started = time.perf_counter()
    trees = teacher.build_trees(problems, path, progress=not args.no_progress)
    solved = sum(1 for tree in trees if any(node.successes > 0 for node in tree.nodes))
    print(
        f"teacher trees ready in {time.perf_counter() - started:.0f} s: {len(trees)} trees, "
        f"{sum(len(tree) for tree in trees)} nodes, {solved} problems with a correct trace"
    )
    return trees


def tree_cache_name(args: argparse.Namespace) -> str:
    if args.dataset == "default":
        dataset = "default-" + "+".join(args.problem_kinds)
    else:
        dataset = Path(args.dataset).stem
    model = re.sub(r"[^A-Za-z0-9._-]+", "_", str(args.model))
    return (
        f"trees-{model}-{dataset}-n{args.num_train}-seed{args.seed}-sim{args.teacher_simulations}"
        f"-d{args.teacher_max_depth}-b{args.teacher_branching}.jsonl"
    )


def build_config(args: argparse.Namespace) -> GRPOSAEConfig:
    return GRPOSAEConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        group_size=args.group_size,
        completions_per_prefix=args.completions_per_prefix,
        micro_batch_size=args.micro_batch_size,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        advantage=args.advantage,
        alpha=args.alpha,
        value_source=args.value_source,
        prefix_distribution=args.prefix_distribution,
        learning_rate=args.learning_rate,
        warmup_steps=args.warmup_steps,
        max_grad_norm=args.max_grad_norm,
        epsilon=args.epsilon,
        epsilon_high=args.epsilon_high,
        beta=args.beta,
        num_iterations=args.num_iterations,
        loss_aggregation=args.loss_aggregation,
        use_lora=args.lora,
        lora_r=args.lora_r,
        grad_variance=not args.no_grad_variance,
        seed=args.seed,
        eval_every=args.eval_every,
        eval_max_new_tokens=args.eval_max_new_tokens,
        save_every=args.save_every,
    )


def run_directory(args: argparse.Namespace) -> Path:
    if args.resume is not None:
        resume = Path(args.resume)
        if (resume / "checkpoints").is_dir():
            return resume
        return resolve_checkpoint(resume).parent.parent
    name = args.name or f"{args.advantage}-seed{args.seed}"
    return Path(args.output_dir) / name


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    started = time.perf_counter()
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    config = build_config(args)
    run_dir = run_directory(args)
    run_dir.mkdir(parents=True, exist_ok=True)

    # Model and problems
    from agents import LMPolicy

    policy = LMPolicy.from_pretrained(args.model, device=args.device, dtype=args.dtype)
    train_problems, eval_problems = load_problem_split(args)
    print(
        f"model {args.model} on {policy.device}; {len(train_problems)} training and {len(eval_problems)} held-out problems"
    )

    # Teacher prefix trees (standard GRPO needs none)
    trees = None
    if args.advantage != "grpo":
        trees = teacher_trees(args, policy, train_problems, Path(args.output_dir))

    # Training
    trainer = GRPOSAETrainer(
        policy,
        config,
        train_problems,
        trees,
        eval_problems=eval_problems,
        log_dir=run_dir,
        output_dir=run_dir / "checkpoints",
    )
    if args.resume is not None:
        step = trainer.resume(resolve_checkpoint(run_dir / "checkpoints"))
        print(f"resumed from step {step}")
    summary = trainer.train(progress=not args.no_progress)
    trainer.close()

    # Final model and summary
    final_dir = None
    if not summary["interrupted"]:
        final_dir = trainer.save_model(run_dir / "final_model")
    wall = time.perf_counter() - started
    write_summary(run_dir, args, config, summary, wall)
    print_report(run_dir, summary, final_dir, wall)
    return 130 if summary["interrupted"] else 0


def write_summary(run_dir: Path, args, config: GRPOSAEConfig, summary: dict, wall: float) -> None:
    record = {
        "args": vars(args),
        "config": config.to_dict(),
        "wall_seconds": wall,
        "steps": summary["steps"],
        "interrupted": summary["interrupted"],
        "eval_before": summary["eval_before"],
        "eval_after": summary["eval_after"],
        "last_metrics": summary["last_metrics"],
    }
    (run_dir / "summary.json").write_text(
        json.dumps(record, indent=2, default=str), encoding="utf-8"
    )


def print_report(run_dir: Path, summary: dict, final_dir: Path | None, wall: float) -> None:
    before = (summary["eval_before"] or {}).get("eval/accuracy")
    after = (summary["eval_after"] or {}).get("eval/accuracy")
    print()
    print(f"steps done:          {summary['steps']} in {wall / 60:.1f} min")
    if before is not None:
        print(f"held-out accuracy:   {before:.3f} before training")
    if after is not None:
        print(f"held-out accuracy:   {after:.3f} after training")
    if summary["interrupted"]:
        print(f"interrupted; continue with: python examples/train_grpo_sae.py --resume {run_dir}")
    print(f"TensorBoard logs:    {run_dir}")
    print(f"checkpoints:         {run_dir / 'checkpoints'}")
    if final_dir is not None:
        print(f"final model:         {final_dir}")
    print(f"summary:             {run_dir / 'summary.json'}")
    print(f"open TensorBoard:    tensorboard --logdir {run_dir.parent}")


if __name__ == "__main__":
    sys.exit(main())
