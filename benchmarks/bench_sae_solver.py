"""Benchmark the SAE advantage estimators and the exact QP solver against SLSQP.

For each group size G it builds random MCTS-like prefix trees, samples groups of G
prefixes, draws 0/1 rewards with the success probability ``V(p)`` of each prefix,
and measures:

- time per group of every estimator method (end to end, one ``estimator(...)``
  call, order pairs included), with the best of ``--repeats`` runs of each group
  and the median over groups;
- for ``qp_soft`` and ``qp_hard``: the exact solver and SLSQP on the same QP
  (solver time only, pairs built beforehand), their time ratio and the maximum
  absolute difference of the advantages over the groups where SLSQP succeeded.

SLSQP is slow for large groups (its constraint Jacobian has one row per
sample-level pair), so it runs on at most ``--slsqp-groups`` groups per size
(``--slsqp-groups-large`` for G >= 256) and is skipped when a group has more
than ``--slsqp-max-pairs`` pairs; the JSON records how many groups it ran on.

Usage::

    python benchmarks/bench_sae_solver.py                  # full run, writes results/
    python benchmarks/bench_sae_solver.py --sizes 8 32 --groups 10 --slsqp-groups 3
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from sae import (
    METHODS,
    PrefixTree,
    StagedAdvantageEstimator,
    build_order_constraints,
    prefix_value,
    sample_prefixes,
    solve_sae_qp,
    solve_sae_qp_slsqp,
)

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def random_tree(
    rng: np.random.Generator, traces: int = 16, max_depth: int = 5, branching: int = 5
) -> PrefixTree:
    """Build a tree shaped like an MCTS teacher's output: shared step prefixes, distinct final answers."""
    tree = PrefixTree({"id": f"bench-{rng.integers(1 << 30)}"})
    for index in range(traces):
        depth = int(rng.integers(1, max_depth + 1))
        steps = [f"step {rng.integers(0, branching)}" for _ in range(depth - 1)]
        tree.add_trace([*steps, f"answer {index}"], float(rng.random() < 0.5))
    return tree


def random_group(
    rng: np.random.Generator, size: int, noisy: bool = False
) -> tuple[PrefixTree, list[int], np.ndarray]:
    """Sample a group; ``noisy`` turns 0/1 rewards into ``2 r - 1 + N(0, 1)`` to stress the solver."""
    tree = random_tree(rng)
    node_ids = sample_prefixes(tree, size, rng=rng)
    success = np.array([prefix_value(tree, node) for node in node_ids])
    rewards = (rng.random(size) < success).astype(np.float64)
    if noisy:
        rewards = 2.0 * rewards - 1.0 + rng.normal(size=size)
    return tree, node_ids, rewards


def best_time(function, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def bench_methods(groups, repeats: int) -> dict[str, dict[str, float]]:
    timings: dict[str, dict[str, float]] = {}
    for method in METHODS:
        for track in (True, False):
            if method in ("qp_soft", "qp_hard") and not track:
                continue  # the QP always builds its pairs
            estimator = StagedAdvantageEstimator(method=method, track_constraints=track)
            per_group = [
                best_time(lambda e=estimator, g=g: e(g[2], g[1], g[0]), repeats) for g in groups
            ]
            key = method if track else f"{method} (no pair metrics)"
            timings[key] = {
                "median_us": statistics.median(per_group) * 1e6,
                "max_us": max(per_group) * 1e6,
            }
    return timings


def bench_batched_heuristics(groups, repeats: int) -> dict[str, float]:
    """Time per group when all groups go through one ``batch`` call (how a trainer calls it)."""
    rewards = np.concatenate([g[2] for g in groups])
    group_ids = [k for k, g in enumerate(groups) for _ in g[1]]
    node_ids = [n for g in groups for n in g[1]]
    trees = {k: g[0] for k, g in enumerate(groups)}
    result = {}
    for method in ("grpo", "flat", "expectation", "optimistic", "pessimistic"):
        estimator = StagedAdvantageEstimator(method=method, track_constraints=False)
        elapsed = best_time(
            lambda e=estimator: e.batch(rewards, group_ids, node_ids, trees), repeats
        )
        result[method] = elapsed / len(groups) * 1e6
    return result


def bench_solvers(
    groups, repeats: int, slsqp_groups: int, slsqp_max_pairs: int, margin: float
) -> dict:
    report = {}
    for norm in ("soft", "hard"):
        exact_times, slsqp_times, diffs = [], [], []
        slsqp_failures, slsqp_skipped, active_groups, slsqp_changed = 0, 0, 0, 0
        for index, (tree, node_ids, rewards) in enumerate(groups):
            constraints = build_order_constraints(rewards, node_ids, [tree] * len(rewards))
            r0 = rewards - rewards.mean()
            class_r0 = np.zeros(constraints.num_classes)
            class_r0[constraints.class_of] = r0

            radius2 = float(len(rewards))

            def run_exact(c=constraints, x=class_r0, n=norm, bound=radius2):
                return solve_sae_qp(
                    x, c.class_weight, c.lower, c.upper, delta=margin, norm=n, radius2=bound
                )

            exact_times.append(best_time(run_exact, repeats))
            solution = run_exact()
            exact_advantages = solution.advantages[constraints.class_of]
            changed = bool(np.max(np.abs(exact_advantages - r0)) > 1e-12)
            active_groups += changed

            if index >= slsqp_groups:
                continue
            if constraints.num_pairs > slsqp_max_pairs:
                slsqp_skipped += 1
                continue
            pairs = constraints.sample_pairs()
            start = time.perf_counter()
            reference = solve_sae_qp_slsqp(r0, pairs, delta=margin, norm=norm)
            slsqp_times.append(time.perf_counter() - start)
            if reference.status != "optimal":
                slsqp_failures += 1
                continue
            diffs.append(float(np.max(np.abs(reference.advantages - exact_advantages))))
            slsqp_changed += changed

        exact_median = statistics.median(exact_times)
        entry = {
            "exact_median_us": exact_median * 1e6,
            "groups": len(groups),
            "groups_changed_by_projection": active_groups,
            "slsqp_groups_run": len(slsqp_times),
            "slsqp_groups_skipped_too_many_pairs": slsqp_skipped,
            "slsqp_failures": slsqp_failures,
            "slsqp_compared_groups_changed_by_projection": slsqp_changed,
        }
        if slsqp_times:
            slsqp_median = statistics.median(slsqp_times)
            entry["slsqp_median_us"] = slsqp_median * 1e6
            entry["speedup"] = slsqp_median / exact_median
            entry["max_abs_diff"] = max(diffs) if diffs else None
        report[norm] = entry
    return report


def machine_description() -> dict[str, object]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "load_average_at_start": load,
    }


def solver_table(per_size: dict, key: str) -> list[str]:
    lines = [
        "| G | norm | exact (us) | SLSQP (us) | speedup | max abs diff | SLSQP run / failed / skipped "
        "| changed by the projection (all / SLSQP-compared) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for size, entry_by_norm in per_size.items():
        for norm, entry in entry_by_norm[key].items():
            slsqp = f"{entry['slsqp_median_us']:.0f}" if "slsqp_median_us" in entry else "not run"
            speedup = f"{entry['speedup']:.0f}x" if "speedup" in entry else "-"
            diff = entry.get("max_abs_diff")
            diff_text = f"{diff:.1e}" if diff is not None else "-"
            lines.append(
                f"| {size} | {norm} | {entry['exact_median_us']:.0f} | {slsqp} | {speedup} | {diff_text} | "
                f"{entry['slsqp_groups_run']} / {entry['slsqp_failures']} / "
                f"{entry['slsqp_groups_skipped_too_many_pairs']} | "
                f"{entry['groups_changed_by_projection']} of {entry['groups']} / "
                f"{entry['slsqp_compared_groups_changed_by_projection']} |"
            )
    return lines


def write_markdown(path: Path, results: dict) -> None:
    lines = [
        "## SAE estimators and QP solver",
        "",
        f"Command: `{results['command']}`",
        "",
        f"Machine: {results['machine']['cpu_count']}-core CPU ({results['machine']['processor']}), "
        f"Python {results['machine']['python']}, numpy {results['machine']['numpy']}, "
        f"load average at start {results['machine']['load_average_at_start']}. Date: {results['date']}.",
        "",
        "Random MCTS-like trees (16 traces, depth <= 5, branching <= 5), 0/1 rewards drawn with "
        "probability V(p). Times are the median over groups of the best of "
        f"{results['repeats']} runs per group.",
        "",
        "### Time per group (microseconds, one estimator call, end to end)",
        "",
    ]
    sizes = list(results["sizes"])
    header = "| method | " + " | ".join(f"G={size}" for size in sizes) + " |"
    lines += [header, "|---" * (len(sizes) + 1) + "|"]
    methods = list(results["sizes"][sizes[0]]["methods"])
    for method in methods:
        cells = [f"{results['sizes'][size]['methods'][method]['median_us']:.0f}" for size in sizes]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += ["", "### Heuristics in one batch call (microseconds per group)", ""]
    lines += [header, "|---" * (len(sizes) + 1) + "|"]
    for method in results["sizes"][sizes[0]]["batched_us_per_group"]:
        cells = [f"{results['sizes'][size]['batched_us_per_group'][method]:.1f}" for size in sizes]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += ["", "### Exact solver against SLSQP, 0/1 rewards (solver time only, same QP)", ""]
    lines += solver_table(results["sizes"], "solvers")
    if results.get("stress_sizes"):
        lines += [
            "",
            "### Exact solver against SLSQP, stress rewards 2r - 1 + N(0, 1)",
            "",
            "Real-valued rewards activate the norm bound and many sibling pairs. "
            "SLSQP failures are counted and left out of the difference column.",
            "",
        ]
        lines += solver_table(results["stress_sizes"], "solvers")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[8, 32, 128, 512], help="group sizes G"
    )
    parser.add_argument("--groups", type=int, default=30, help="random groups per size")
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed runs per group (the best counts)"
    )
    parser.add_argument(
        "--slsqp-groups", type=int, default=10, help="max groups per size solved with SLSQP"
    )
    parser.add_argument(
        "--slsqp-groups-large",
        type=int,
        default=2,
        help="max groups solved with SLSQP for G >= 256",
    )
    parser.add_argument(
        "--slsqp-max-pairs",
        type=int,
        default=20000,
        help="skip SLSQP on groups with more sample-level pairs",
    )
    parser.add_argument(
        "--stress-sizes",
        type=int,
        nargs="*",
        default=[8, 32, 128],
        help="group sizes of the stress run",
    )
    parser.add_argument(
        "--stress-groups", type=int, default=5, help="random groups per stress size"
    )
    parser.add_argument("--margin", type=float, default=0.01, help="order margin delta")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument(
        "--out-dir", type=Path, default=RESULTS_DIR, help="directory for the JSON and markdown"
    )
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    results: dict = {
        "command": "python benchmarks/bench_sae_solver.py "
        + " ".join(
            [
                f"--sizes {' '.join(map(str, args.sizes))}",
                f"--groups {args.groups}",
                f"--repeats {args.repeats}",
                f"--slsqp-groups {args.slsqp_groups}",
                f"--slsqp-groups-large {args.slsqp_groups_large}",
                f"--slsqp-max-pairs {args.slsqp_max_pairs}",
                f"--stress-sizes {' '.join(map(str, args.stress_sizes))}",
                f"--stress-groups {args.stress_groups}",
                f"--margin {args.margin}",
                f"--seed {args.seed}",
            ]
        ),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_description(),
        "repeats": args.repeats,
        "sizes": {},
        "stress_sizes": {},
    }
    # Import and warm up scipy's SLSQP once so its import time is not measured.
    solve_sae_qp_slsqp(np.array([-0.5, 0.5]), [(0, 1)], delta=args.margin)

    for size in args.sizes:
        groups = [random_group(rng, size) for _ in range(args.groups)]
        method_repeats = args.repeats if size <= 128 else max(1, args.repeats // 2)
        entry = {
            "methods": bench_methods(groups, method_repeats),
            "batched_us_per_group": bench_batched_heuristics(groups, method_repeats),
            "solvers": bench_solvers(
                groups,
                method_repeats,
                args.slsqp_groups if size < 256 else args.slsqp_groups_large,
                args.slsqp_max_pairs,
                args.margin,
            ),
        }
        results["sizes"][size] = entry
        print(f"G={size}: " + json.dumps(entry["solvers"]))

    for size in args.stress_sizes:
        groups = [random_group(rng, size, noisy=True) for _ in range(args.stress_groups)]
        solvers = bench_solvers(
            groups, 1, min(3, args.stress_groups), args.slsqp_max_pairs, args.margin
        )
        results["stress_sizes"][size] = {"solvers": solvers}
        print(f"stress G={size}: " + json.dumps(solvers))

    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "sae_solver.json").write_text(
        json.dumps(results, indent=2) + "\n", encoding="utf-8"
    )
    write_markdown(args.out_dir / "sae_solver.md", results)
    print(f"wrote {args.out_dir / 'sae_solver.json'} and {args.out_dir / 'sae_solver.md'}")


if __name__ == "__main__":
    main()
