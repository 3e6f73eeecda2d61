"""Pure MCTS statistics: the search tree arrays and the select / backpropagate math.

Names follow mctx: per-node arrays are ``node_*`` and indexed by node id; the statistics
of one node's children are ``children_*`` arrays in child order. Nothing here calls a
language model, so every rule is testable with hand-built trees.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

ROOT_INDEX = 0


@dataclass
class SearchTree:
    """Growable MCTS tree over reasoning steps; node 0 is the root (the bare question).

    ``node_visits[i]`` is N(i), the number of simulations whose path contains node i, and
    ``node_value_sum[i]`` is W(i), the sum of their values. A new node starts at N = W = 0.
    """

    node_parent: list[int] = field(default_factory=lambda: [-1])
    node_step: list[str] = field(default_factory=lambda: [""])
    node_depth: list[int] = field(default_factory=lambda: [0])
    node_prior: list[float] = field(default_factory=lambda: [1.0])
    node_visits: list[int] = field(default_factory=lambda: [0])
    node_value_sum: list[float] = field(default_factory=lambda: [0.0])
    node_terminal: list[bool] = field(default_factory=lambda: [False])
    node_reward: list[float | None] = field(default_factory=lambda: [None])
    node_expanded: list[bool] = field(default_factory=lambda: [False])
    children_index: list[list[int]] = field(default_factory=lambda: [[]])

    @property
    def num_nodes(self) -> int:
        return len(self.node_parent)

    def add_node(
        self,
        parent: int,
        step: str,
        prior: float,
        *,
        terminal: bool = False,
        reward: float | None = None,
    ) -> int:
        """Append a child of ``parent`` with no visits and return its id."""
        if self.node_terminal[parent]:
            raise ValueError(f"node {parent} is terminal and cannot get children")
        if not (math.isfinite(prior) and prior >= 0):
            raise ValueError(f"expected a finite prior >= 0, got {prior!r}")
        node = self.num_nodes
        self.node_parent.append(parent)
        self.node_step.append(step)
        self.node_depth.append(self.node_depth[parent] + 1)
        self.node_prior.append(float(prior))
        self.node_visits.append(0)
        self.node_value_sum.append(0.0)
        self.node_terminal.append(terminal)
        self.node_reward.append(reward)
        self.node_expanded.append(False)
        self.children_index.append([])
        self.children_index[parent].append(node)
        return node

    def steps_to(self, node: int) -> list[str]:
        """Return the steps on the path root..node (empty for the root)."""
        steps: list[str] = []
        while node != ROOT_INDEX:
            steps.append(self.node_step[node])
            node = self.node_parent[node]
        return steps[::-1]

    def q_value(self, node: int) -> float:
        """Return Q(node) = W(node) / N(node) over the node's own visits, 0.0 when unvisited."""
        visits = self.node_visits[node]
        return self.node_value_sum[node] / visits if visits > 0 else 0.0


def normalize_step(step: str) -> str:
    """Return the step with runs of whitespace collapsed to one space (the dedup key)."""
    return " ".join(step.split())


def dedupe_steps(steps: Sequence[str]) -> list[int]:
    """Return indices of the first occurrence of each distinct non-empty normalised step."""
    seen: set[str] = set()
    keep: list[int] = []
    for index, step in enumerate(steps):
        key = normalize_step(step)
        if key and key not in seen:
            seen.add(key)
            keep.append(index)
    return keep


def priors_from_logprobs(mean_logprobs: Sequence[float]) -> np.ndarray:
    """Return step priors proportional to ``exp(mean token logprob)`` (length-normalised).

    The result sums to 1; an empty input returns an empty array.
    """
    values = np.asarray(mean_logprobs, dtype=np.float64)
    if values.size == 0:
        return values
    if not np.all(np.isfinite(values)):
        raise ValueError(f"expected finite mean logprobs, got {values.tolist()}")
    weights = np.exp(values - values.max())
    return weights / weights.sum()


def puct_scores(
    children_visits: np.ndarray,
    children_value_sum: np.ndarray,
    children_prior: np.ndarray,
    parent_visits: int,
    c_puct: float,
) -> np.ndarray:
    """Return PUCT scores ``Q + c_puct * P * sqrt(max(N_parent, 1)) / (1 + N_child)``.

    Arrays have shape ``[num_children]``. Q of an unvisited child is 0.0, never NaN.
    ``max(N_parent, 1)`` keeps the exploration term proportional to the priors when the
    parent has no visits yet (with ``sqrt(0)`` all scores tie and argmax picks index 0).
    """
    visits = np.asarray(children_visits, dtype=np.float64)
    value_sum = np.asarray(children_value_sum, dtype=np.float64)
    prior = np.asarray(children_prior, dtype=np.float64)
    q = np.divide(value_sum, visits, out=np.zeros_like(value_sum), where=visits > 0)
    exploration = c_puct * prior * math.sqrt(max(parent_visits, 1)) / (1.0 + visits)
    return q + exploration


def select_child(tree: SearchTree, node: int, c_puct: float) -> int:
    """Return the child of ``node`` to descend into.

    Unvisited children come first, highest prior first (ties to the lower index); once all
    are visited, the child with the highest PUCT score wins.
    """
    children = tree.children_index[node]
    if not children:
        raise ValueError(f"node {node} has no children to select from")
    children_visits = np.array([tree.node_visits[c] for c in children], dtype=np.int64)
    children_prior = np.array([tree.node_prior[c] for c in children], dtype=np.float64)
    unvisited = np.flatnonzero(children_visits == 0)
    if unvisited.size:
        return children[int(unvisited[np.argmax(children_prior[unvisited])])]
    children_value_sum = np.array([tree.node_value_sum[c] for c in children], dtype=np.float64)
    scores = puct_scores(
        children_visits, children_value_sum, children_prior, tree.node_visits[node], c_puct
    )
    return children[int(np.argmax(scores))]


def select_path(tree: SearchTree, c_puct: float) -> list[int]:
    """Descend from the root and return the path root..leaf.

    Descent stops at a terminal node, an unexpanded node, or an expanded node without
    children (no usable candidate steps).
    """
    path = [ROOT_INDEX]
    node = ROOT_INDEX
    while not tree.node_terminal[node] and tree.node_expanded[node] and tree.children_index[node]:
        node = select_child(tree, node, c_puct)
        path.append(node)
    return path


def backpropagate(tree: SearchTree, path: Sequence[int], value: float) -> None:
    """Add one visit and ``value`` to every node on ``path`` (root and leaf included)."""
    if not math.isfinite(value):
        raise ValueError(f"expected a finite value, got {value!r}")
    for node in path:
        tree.node_visits[node] += 1
        tree.node_value_sum[node] += value
