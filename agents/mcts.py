"""MCTS teacher: search over reasoning steps and write one prefix tree per problem.

Each simulation runs four phases (see :mod:`agents.mcts_stats` for the pure math):

1. select: descend from the root by PUCT, with the language model's length-normalised
   step probabilities as priors; unvisited children are tried first.
2. expand: at a node visited before, sample ``branching`` candidate next steps in one
   batched call (prompt encoded once), deduplicate them after whitespace normalisation
   and add them as children with no visits. Terminal nodes are never expanded, and
   nodes at ``max_depth`` are only evaluated.
3. simulate: a terminal node returns its stored reward; any other leaf is scored by a
   rollout (one sampled completion) checked against the gold answer.
4. backpropagate: add one visit and the reward to every node on the path.

The exported :class:`sae.PrefixTree` holds every expanded node (with its prior) and
every simulated trace: the tree path plus the rollout's steps. Its ``visits``,
``successes`` and ``value_sum`` count traces through each prefix, so a node's successes
are the terminal successes at or below it.
"""

from __future__ import annotations

import logging
import math
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from agents.mcts_stats import (
    ROOT_INDEX,
    SearchTree,
    backpropagate,
    dedupe_steps,
    priors_from_logprobs,
    select_child,
    select_path,
)

logger = logging.getLogger(__name__)


class StepPolicy(Protocol):
    """Policy interface used by the teacher (:class:`agents.LMPolicy` or a scripted fake)."""

    def build_prompt(self, question: str, steps: Sequence[str] = ()) -> str: ...

    def generate_steps(
        self,
        prompt: str,
        n: int,
        *,
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_new_tokens: int = 64,
        seed: int | None = None,
    ) -> list[Any]: ...

    def generate_completions(
        self,
        prompts: Sequence[str],
        *,
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_new_tokens: int = 256,
        seed: int | None = None,
        greedy: bool = False,
    ) -> list[Any]: ...


@dataclass
class MCTSConfig:
    """Search settings of :class:`MCTSTeacher`.

    Attributes:
        simulations: simulations per problem (each ends in one scored trace).
        max_depth: maximum number of steps on a tree path; nodes at this depth are
            evaluated by rollouts but never expanded.
        branching: candidate steps sampled per expansion (before deduplication).
        c_puct: weight of the exploration term in PUCT.
        step_max_new_tokens: token limit of one sampled step.
        rollout_max_new_tokens: token limit of one rollout completion.
        temperature, top_p: sampling settings for steps and rollouts.
        seed: base seed; each problem derives its own seeds from it and its id.
        check_timeout: seconds allowed to the answer checker per trace.
        expand_after_visits: a non-root node is expanded once it has this many visits,
            so a new child is first scored by one rollout before it is expanded.
        expand_attempts: sampling rounds per expansion while fewer than ``branching``
            distinct steps were found.
        stop_when_solved: end the search at the first correct trace.
    """

    simulations: int = 16
    max_depth: int = 5
    branching: int = 5
    c_puct: float = 1.5
    step_max_new_tokens: int = 48
    rollout_max_new_tokens: int = 192
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    check_timeout: float = 5.0
    expand_after_visits: int = 1
    expand_attempts: int = 2
    stop_when_solved: bool = False

    def __post_init__(self) -> None:
        positive_ints = {
            "simulations": self.simulations,
            "max_depth": self.max_depth,
            "branching": self.branching,
            "step_max_new_tokens": self.step_max_new_tokens,
            "rollout_max_new_tokens": self.rollout_max_new_tokens,
            "expand_attempts": self.expand_attempts,
        }
        for name, value in positive_ints.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"expected {name} to be an integer >= 1, got {value!r}")
        if isinstance(self.expand_after_visits, bool) or self.expand_after_visits < 0:
            raise ValueError(
                f"expected expand_after_visits to be an integer >= 0, got {self.expand_after_visits!r}"
            )
        if not (math.isfinite(self.c_puct) and self.c_puct >= 0):
            raise ValueError(f"expected c_puct to be a finite number >= 0, got {self.c_puct!r}")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"expected temperature > 0, got {self.temperature!r}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"expected 0 < top_p <= 1, got {self.top_p!r}")
        if not (math.isfinite(self.check_timeout) and self.check_timeout > 0):
            raise ValueError(f"expected check_timeout > 0 seconds, got {self.check_timeout!r}")


@dataclass
class TeacherResult:
    """Outcome of one problem's search.

    ``best_trace`` is the first correct trace found, or, when none was correct, the
    most-visited tree path followed by the last rollout from its leaf.
    ``stats`` keys: simulations, nodes, expansions, rollouts, terminal_hits, solved_at
    (simulation index of the first correct trace or None), generated_tokens,
    forward_tokens (0 for policies without counters), wall_s.
    """

    tree: Any
    solved: bool
    best_trace: list[str]
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Trace:
    leaf: int
    rollout_steps: list[str]
    reward: float
    ends_at_answer: bool


def split_steps(text: str, delimiter: str = "\n") -> list[str]:
    """Split completion text into non-empty stripped steps."""
    return [part.strip() for part in text.split(delimiter) if part.strip()]


class MCTSTeacher:
    """Run MCTS per problem with a step policy and score traces with the answer checker."""

    def __init__(self, policy: StepPolicy, config: MCTSConfig | None = None) -> None:
        self.policy = policy
        self.config = config if config is not None else MCTSConfig()
        self.delimiter: str = getattr(policy, "step_delimiter", "\n")
        self.last_results: list[TeacherResult] = []

    # ------------------------------------------------------------------ search

    def search(self, problem: Any) -> TeacherResult:
        """Search one problem and return its prefix tree, solved flag, best trace and stats."""
        from sae import PrefixTree

        problem = _as_problem(problem)
        config = self.config
        started = time.perf_counter()
        counters_before = dict(getattr(self.policy, "counters", {}))
        rng = np.random.default_rng([config.seed, zlib.crc32(problem.id.encode("utf-8"))])

        tree = SearchTree()
        traces: list[_Trace] = []
        stats: dict[str, Any] = {
            "simulations": 0,
            "expansions": 0,
            "rollouts": 0,
            "terminal_hits": 0,
            "solved_at": None,
        }
        for simulation in range(config.simulations):
            # Select a leaf; expand it if it has been visited before, then step into a child.
            path = select_path(tree, config.c_puct)
            leaf = path[-1]
            if self._should_expand(tree, leaf):
                self._expand(tree, leaf, problem, rng)
                stats["expansions"] += 1
                if tree.children_index[leaf]:
                    leaf = select_child(tree, leaf, config.c_puct)
                    path.append(leaf)

            # Simulate: a terminal node returns its reward, any other leaf gets a rollout.
            trace = self._simulate(tree, leaf, problem, rng)
            if tree.node_terminal[leaf]:
                stats["terminal_hits"] += 1
            else:
                stats["rollouts"] += 1
            traces.append(trace)

            backpropagate(tree, path, trace.reward)
            stats["simulations"] += 1
            if trace.reward > 0 and stats["solved_at"] is None:
                stats["solved_at"] = simulation
                if config.stop_when_solved:
                    break

        prefix_tree = PrefixTree(problem.to_dict())
        export_prefix_tree(tree, traces, prefix_tree)
        counters_after = dict(getattr(self.policy, "counters", {}))
        for key in ("generated_tokens", "forward_tokens"):
            stats[key] = int(counters_after.get(key, 0) - counters_before.get(key, 0))
        stats["nodes"] = len(prefix_tree)
        stats["wall_s"] = time.perf_counter() - started
        solved = stats["solved_at"] is not None
        return TeacherResult(
            tree=prefix_tree,
            solved=solved,
            best_trace=self._best_trace(tree, traces),
            stats=stats,
        )

    def _should_expand(self, tree: SearchTree, node: int) -> bool:
        if tree.node_terminal[node] or tree.node_expanded[node]:
            return False
        if tree.node_depth[node] >= self.config.max_depth:
            return False
        return node == ROOT_INDEX or tree.node_visits[node] >= self.config.expand_after_visits

    def _expand(self, tree: SearchTree, node: int, problem: Any, rng: np.random.Generator) -> None:
        """Sample candidate steps after ``node`` and add the distinct ones as children."""
        from envs import has_final_answer

        config = self.config
        steps_so_far = tree.steps_to(node)
        prompt = self.policy.build_prompt(problem.question, steps_so_far)
        texts: list[str] = []
        mean_logprobs: list[float] = []
        ends_at_eos: list[bool] = []
        for _attempt in range(config.expand_attempts):
            missing = config.branching - len(dedupe_steps(texts))
            if missing <= 0:
                break
            generations = self.policy.generate_steps(
                prompt,
                config.branching if not texts else missing,
                temperature=config.temperature,
                top_p=config.top_p,
                max_new_tokens=config.step_max_new_tokens,
                seed=int(rng.integers(2**31)),
            )
            for generation in generations:
                texts.append(generation.text.strip())
                mean_logprobs.append(_mean_logprob(generation))
                ends_at_eos.append(getattr(generation, "stop_reason", "") == "eos")
        tree.node_expanded[node] = True

        keep = dedupe_steps(texts)[: config.branching]
        if not keep:
            logger.debug("node %d of problem %s: no usable candidate step", node, problem.id)
            return
        priors = priors_from_logprobs([mean_logprobs[i] for i in keep])
        for index, prior in zip(keep, priors, strict=True):
            step = texts[index]
            terminal = ends_at_eos[index] or has_final_answer(step)
            reward = None
            if terminal:
                reward = self._score([*steps_so_far, step], problem)
            tree.add_node(node, step, float(prior), terminal=terminal, reward=reward)

    def _simulate(
        self, tree: SearchTree, leaf: int, problem: Any, rng: np.random.Generator
    ) -> _Trace:
        if tree.node_terminal[leaf]:
            reward = tree.node_reward[leaf]
            return _Trace(leaf, [], float(reward or 0.0), ends_at_answer=True)
        steps = tree.steps_to(leaf)
        # NOTE: every expansion and rollout encodes its full prompt again. Key/value caches
        # are shared only among the samples of one expansion, not across calls.
        prompt = self.policy.build_prompt(problem.question, steps)
        (completion,) = self.policy.generate_completions(
            [prompt],
            temperature=self.config.temperature,
            top_p=self.config.top_p,
            max_new_tokens=self.config.rollout_max_new_tokens,
            seed=int(rng.integers(2**31)),
        )
        rollout_steps = split_steps(completion.text, self.delimiter)
        reward = self._score([*steps, *rollout_steps], problem)
        return _Trace(leaf, rollout_steps, reward, ends_at_answer=bool(completion.finished))

    def _score(self, steps: Sequence[str], problem: Any) -> float:
        from envs import check_answer

        result = check_answer("\n".join(steps), problem.answer, timeout=self.config.check_timeout)
        return 1.0 if result.correct else 0.0

    def _best_trace(self, tree: SearchTree, traces: Sequence[_Trace]) -> list[str]:
        for trace in traces:
            if trace.reward > 0:
                return [*tree.steps_to(trace.leaf), *trace.rollout_steps]
        node = ROOT_INDEX
        while tree.children_index[node]:
            node = max(tree.children_index[node], key=lambda child: tree.node_visits[child])
        for trace in reversed(traces):
            if trace.leaf == node:
                return [*tree.steps_to(node), *trace.rollout_steps]
        return tree.steps_to(node)

    # ------------------------------------------------------------------ batches

    def build_trees(
        self, problems: Iterable[Any], path: str | Path, *, progress: bool = True
    ) -> list[Any]:
        """Search every problem and append its tree to the JSONL file at ``path``.

        Problems whose id is already in the file are skipped, so an interrupted run
        resumes. Returns the trees of all given problems in order, read back from the
        file for skipped ones. ``self.last_results`` stores the new :class:`TeacherResult`s.
        """
        from sae import append_prefix_tree, read_prefix_trees

        path = Path(path)
        problems = [_as_problem(problem) for problem in problems]
        existing: dict[str, Any] = {}
        if path.exists():
            for tree in read_prefix_trees(path):
                existing[str(tree.problem.get("id"))] = tree
        todo = [problem for problem in problems if problem.id not in existing]
        if existing:
            logger.info(
                "%s: %d of %d problems already done, searching %d",
                path,
                len(problems) - len(todo),
                len(problems),
                len(todo),
            )

        self.last_results = []
        bar = _progress_bar(len(todo), enabled=progress)
        solved = simulations = 0
        started = time.perf_counter()
        try:
            for problem in todo:
                result = self.search(problem)
                append_prefix_tree(path, result.tree)
                existing[problem.id] = result.tree
                self.last_results.append(result)
                solved += int(result.solved)
                simulations += result.stats["simulations"]
                if bar is not None:
                    elapsed = max(time.perf_counter() - started, 1e-9)
                    bar.update(1)
                    bar.set_postfix(
                        solved=f"{solved / len(self.last_results):.2f}",
                        sims_per_s=f"{simulations / elapsed:.2f}",
                    )
        finally:
            if bar is not None:
                bar.close()
        return [existing[problem.id] for problem in problems]


def export_prefix_tree(search_tree: SearchTree, traces: Sequence[_Trace], prefix_tree: Any) -> Any:
    """Copy expanded nodes (with priors) and all traces into an empty :class:`sae.PrefixTree`.

    Search nodes map to prefix-tree nodes in creation order, so parents precede children.
    Each trace then adds one visit and its reward (to ``value_sum``) to every prefix on its
    path, plus a success when the reward is positive. Rollout steps extend the path.
    """
    node_map = {ROOT_INDEX: 0}
    for node in range(1, search_tree.num_nodes):
        node_map[node] = prefix_tree.add_child(
            node_map[search_tree.node_parent[node]],
            search_tree.node_step[node],
            terminal=search_tree.node_terminal[node],
            reward=search_tree.node_reward[node],
            prior=search_tree.node_prior[node],
        )
    for node in prefix_tree.nodes:
        node.value_sum = 0.0

    searched = set(node_map.values())
    for trace in traces:
        path = [0]
        for node in _path_to(search_tree, trace.leaf)[1:]:
            path.append(node_map[node])
        # A rollout step can repeat an existing terminal step's text: the trace ends there.
        for step in trace.rollout_steps:
            current = prefix_tree.nodes[path[-1]]
            if current.terminal:
                break
            path.append(prefix_tree.add_child(current.id, step))
        last = prefix_tree.nodes[path[-1]]
        if trace.ends_at_answer and last.id not in searched and not last.children:
            last.terminal = True
            last.reward = trace.reward
        for node_id in path:
            node = prefix_tree.nodes[node_id]
            node.visits += 1
            node.successes += int(trace.reward > 0)
            node.value_sum = (node.value_sum or 0.0) + trace.reward
    return prefix_tree


def _path_to(tree: SearchTree, node: int) -> list[int]:
    path = [node]
    while node != ROOT_INDEX:
        node = tree.node_parent[node]
        path.append(node)
    return path[::-1]


def _mean_logprob(generation: Any) -> float:
    logprobs = list(getattr(generation, "logprobs", []) or [])
    if not logprobs:
        return 0.0
    return float(sum(logprobs) / len(logprobs))


def _as_problem(problem: Any) -> Any:
    from envs import Problem

    if isinstance(problem, Problem):
        return problem
    if isinstance(problem, dict):
        return Problem.from_dict(problem)
    raise TypeError(f"expected an envs.Problem or a problem dict, got {type(problem).__name__}")


def _progress_bar(total: int, *, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="teacher trees", unit="problem")
