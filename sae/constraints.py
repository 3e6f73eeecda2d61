"""Order constraints ``a_i + delta <= a_j`` between the samples of one group.

Sample ``i`` is *failed* when ``rewards[i] <= success_threshold`` and *succeeded*
otherwise. Two rules produce ordered pairs ``(i, j)`` (``i`` must get the lower
advantage):

- ``parent_child``: ``i``'s prefix is a proper ancestor of ``j``'s prefix, ``i``
  failed and ``j`` succeeded;
- ``sibling``: ``i`` and ``j`` start at different children of the same node, both
  failed, ``i``'s subtree contains a success and ``j``'s does not (failing from a
  prefix that can succeed ranks below failing from a dead end). A subtree "contains a
  success" when the tree counts of the chosen source show one at or below the
  node, or a succeeded sample of the group starts at or below it.

Samples that share a prefix node and a reward are interchangeable: every rule and
every estimator treats them alike, and the strictly convex projection gives them
equal advantages. The constraints are therefore kept per *class* (node, reward),
with the class size as a weight, which keeps the QP small for large groups.

A set of pairs with a cycle (``i`` below ``j`` below ... below ``i``) has no
solution for ``delta > 0``. The two rules above never create one (parent/child
pairs go from failed to succeeded samples, sibling pairs from a node with a
success to one without), but pairs passed in by a caller may; see
:func:`drop_cycles`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from sae.tree import PrefixTree
from sae.values import ValueSource, node_counts


@dataclass
class OrderConstraints:
    """Order constraints of one group, kept per class of interchangeable samples.

    Attributes:
        class_of: ``[G]`` class index of each sample.
        class_weight: ``[C]`` number of samples in each class.
        lower, upper: ``[P]`` class indices of each pair (``a[lower] + delta <= a[upper]``).
        kinds: ``[P]`` rule that produced each pair (``parent_child``, ``sibling``, ``given``).
        dropped: pairs removed to break cycles, as ``(i, j, kind)`` sample indices.
    """

    class_of: np.ndarray
    class_weight: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    kinds: list[str] = field(default_factory=list)
    dropped: list[tuple[int, int, str]] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        """Number of classes ``C``."""
        return len(self.class_weight)

    @property
    def num_pairs(self) -> int:
        """Number of sample-level ordered pairs (class pairs weighted by class sizes)."""
        return int(np.sum(self.class_weight[self.lower] * self.class_weight[self.upper]))

    def sample_pairs(self) -> list[tuple[int, int]]:
        """Return every sample-level pair ``(i, j)`` with ``a_i + delta <= a_j``."""
        members: list[list[int]] = [[] for _ in range(self.num_classes)]
        for sample, cls in enumerate(self.class_of):
            members[int(cls)].append(sample)
        return [
            (i, j)
            for low, up in zip(self.lower, self.upper, strict=True)
            for i in members[int(low)]
            for j in members[int(up)]
        ]

    def satisfaction(self, advantages: np.ndarray, delta: float, tol: float = 1e-9) -> float:
        """Return the fraction of sample-level pairs with ``a_i + delta <= a_j + tol`` (nan if none)."""
        total = self.num_pairs
        if total == 0:
            return float("nan")
        class_values = np.empty(self.num_classes)
        class_values[self.class_of] = advantages
        ok = class_values[self.lower] + delta <= class_values[self.upper] + tol
        weight = self.class_weight[self.lower] * self.class_weight[self.upper]
        return float(np.sum(weight[ok]) / total)


def _class_index(keys: Sequence[tuple]) -> tuple[np.ndarray, np.ndarray, list[tuple]]:
    index: dict[tuple, int] = {}
    class_of = np.empty(len(keys), dtype=np.int64)
    for sample, key in enumerate(keys):
        class_of[sample] = index.setdefault(key, len(index))
    weights = np.bincount(class_of, minlength=len(index)).astype(np.float64)
    return class_of, weights, list(index)


def build_order_constraints(
    rewards: np.ndarray,
    node_ids: Sequence[int],
    trees: Sequence[PrefixTree],
    *,
    source: ValueSource = "teacher",
    success_threshold: float = 0.0,
    pairs: Sequence[tuple[int, int]] | None = None,
) -> OrderConstraints:
    """Build the order constraints of one group.

    Args:
        rewards: ``[G]`` rewards.
        node_ids: ``[G]`` prefix node id of each sample, in its own tree.
        trees: ``[G]`` tree of each sample; samples of different trees (problems)
            are never paired.
        pairs: replace the two rules with these sample-level pairs ``(i, j)``
            (meaning ``a_i + delta <= a_j``). Each sample is then its own class.
            Cycles among them are dropped with :func:`drop_cycles`.
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    group_size = len(rewards)
    if pairs is not None:
        class_of = np.arange(group_size)
        weights = np.ones(group_size)
        lower, upper, kinds = [], [], []
        for i, j in pairs:
            if not (0 <= i < group_size and 0 <= j < group_size) or i == j:
                raise ValueError(
                    f"expected a pair of two different sample indices < {group_size}, got {(i, j)}"
                )
            lower.append(int(i))
            upper.append(int(j))
            kinds.append("given")
        kept_edges, dropped_edges = drop_cycles(group_size, lower, upper)
        return OrderConstraints(
            class_of=class_of,
            class_weight=weights,
            lower=np.array([lower[k] for k in kept_edges], dtype=np.int64),
            upper=np.array([upper[k] for k in kept_edges], dtype=np.int64),
            kinds=[kinds[k] for k in kept_edges],
            dropped=[(lower[k], upper[k], kinds[k]) for k in dropped_edges],
        )

    tree_slot = {id(tree): slot for slot, tree in enumerate(dict.fromkeys(trees))}
    keys = [
        (tree_slot[id(trees[i])], int(node_ids[i]), float(rewards[i])) for i in range(group_size)
    ]
    class_of, weights, class_keys = _class_index(keys)
    slot_tree = {slot: tree for tree in trees for slot in [tree_slot[id(tree)]]}

    # Per class: tree slot, node, success flag and the node's inclusive ancestor set.
    succeeded = [reward > success_threshold for _, _, reward in class_keys]
    path_sets: dict[tuple[int, int], set[int]] = {}
    for slot, node, _ in class_keys:
        if (slot, node) not in path_sets:
            path_sets[(slot, node)] = {node, *slot_tree[slot].ancestors(node)}

    # A node's subtree contains a success if the tree counts say so or a succeeded
    # sample starts at or below it.
    success_below: set[tuple[int, int]] = set()
    for cls, (slot, node, _) in enumerate(class_keys):
        if succeeded[cls]:
            success_below.update((slot, ancestor) for ancestor in path_sets[(slot, node)])

    def contains_success(slot: int, node: int) -> bool:
        if (slot, node) in success_below:
            return True
        return node_counts(slot_tree[slot], node, source)[1] > 0

    lower, upper, kinds = [], [], []
    failed_classes = [c for c in range(len(class_keys)) if not succeeded[c]]
    success_classes = [c for c in range(len(class_keys)) if succeeded[c]]
    for low in failed_classes:
        slot_low, node_low, _ = class_keys[low]
        for up in success_classes:
            slot_up, node_up, _ = class_keys[up]
            if (
                slot_up == slot_low
                and node_up != node_low
                and node_low in path_sets[(slot_up, node_up)]
            ):
                lower.append(low)
                upper.append(up)
                kinds.append("parent_child")

    for low in failed_classes:
        slot_low, node_low, _ = class_keys[low]
        tree = slot_tree[slot_low]
        parent_low = tree.nodes[node_low].parent
        if parent_low is None or not contains_success(slot_low, node_low):
            continue
        for up in failed_classes:
            slot_up, node_up, _ = class_keys[up]
            if slot_up != slot_low or node_up == node_low:
                continue
            if tree.nodes[node_up].parent == parent_low and not contains_success(slot_up, node_up):
                lower.append(low)
                upper.append(up)
                kinds.append("sibling")

    members = [0] * len(class_keys)  # first sample of each class, for reports
    for sample, cls in reversed(list(enumerate(class_of.tolist()))):
        members[cls] = sample
    kept_edges, dropped_edges = drop_cycles(len(class_keys), lower, upper)
    return OrderConstraints(
        class_of=class_of,
        class_weight=weights,
        lower=np.array([lower[k] for k in kept_edges], dtype=np.int64),
        upper=np.array([upper[k] for k in kept_edges], dtype=np.int64),
        kinds=[kinds[k] for k in kept_edges],
        dropped=[(members[lower[k]], members[upper[k]], kinds[k]) for k in dropped_edges],
    )


def drop_cycles(
    num_vertices: int, lower: Sequence[int], upper: Sequence[int]
) -> tuple[list[int], list[int]]:
    """Split edge indices into those kept and those dropped so that the kept graph is acyclic.

    Edges are taken in the given order. An edge is dropped when the edges kept so
    far already lead from its upper end back to its lower end, because adding it
    would close a cycle. An acyclic input is detected in linear time and kept
    whole. Duplicate edges are kept, since they do not form a cycle.

    Returns:
        ``(kept, dropped)`` lists of edge indices, each in input order.
    """
    edges = list(zip(lower, upper, strict=True))
    if _is_acyclic(num_vertices, edges):
        return list(range(len(edges))), []

    successors: list[list[int]] = [[] for _ in range(num_vertices)]
    kept: list[int] = []
    dropped: list[int] = []
    for index, (low, up) in enumerate(edges):
        if low == up or _reaches(successors, up, low):
            dropped.append(index)
            continue
        successors[low].append(up)
        kept.append(index)
    return kept, dropped


def _is_acyclic(num_vertices: int, edges: list[tuple[int, int]]) -> bool:
    indegree = [0] * num_vertices
    successors: list[list[int]] = [[] for _ in range(num_vertices)]
    for low, up in edges:
        successors[low].append(up)
        indegree[up] += 1
    ready = [v for v in range(num_vertices) if indegree[v] == 0]
    seen = 0
    while ready:
        vertex = ready.pop()
        seen += 1
        for nxt in successors[vertex]:
            indegree[nxt] -= 1
            if indegree[nxt] == 0:
                ready.append(nxt)
    return seen == num_vertices


def _reaches(successors: list[list[int]], start: int, target: int) -> bool:
    stack = [start]
    visited = {start}
    while stack:
        vertex = stack.pop()
        if vertex == target:
            return True
        for nxt in successors[vertex]:
            if nxt not in visited:
                visited.add(nxt)
                stack.append(nxt)
    return False


def longest_path_levels(num_vertices: int, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Return, for an acyclic graph, the number of edges on the longest path ending at each vertex."""
    indegree = np.zeros(num_vertices, dtype=np.int64)
    successors: list[list[int]] = [[] for _ in range(num_vertices)]
    for low, up in zip(lower, upper, strict=True):
        successors[int(low)].append(int(up))
        indegree[int(up)] += 1
    levels = np.zeros(num_vertices)
    ready = [v for v in range(num_vertices) if indegree[v] == 0]
    seen = 0
    while ready:
        vertex = ready.pop()
        seen += 1
        for nxt in successors[vertex]:
            levels[nxt] = max(levels[nxt], levels[vertex] + 1)
            indegree[nxt] -= 1
            if indegree[nxt] == 0:
                ready.append(nxt)
    if seen != num_vertices:
        raise ValueError(
            "expected an acyclic set of pairs, got a cycle. Remove it with drop_cycles first"
        )
    return levels
