"""Prefix trees: all prefixes of one problem's traces merged into one tree.

A node is a prefix (the question plus the steps on the path from the root); its
children extend it by one step. Node 0 is the root (the bare question, depth 0).

Counts on a node cover every trace that passes through it:

- ``visits``: teacher traces (or MCTS rollouts) through the node;
- ``successes``: those of them that ended with ``reward > 0``;
- ``student_visits`` / ``student_successes``: the same for student completions
  recorded online with :meth:`PrefixTree.record_outcome`.

So ``successes > 0`` means "a success was seen at or below this node" and
``visits - successes > 0`` means "a failure was seen at or below this node".

File format ``prefix-tree/1``: one JSON object per line,
``{"format": "prefix-tree/1", "problem": {...}, "nodes": [...]}``, where each node
has ``id``, ``parent`` (null for the root), ``step``, ``depth``, ``visits``,
``successes``, ``terminal`` and ``reward``, and optionally ``prior``,
``value_sum``, ``student_visits`` and ``student_successes``.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

FORMAT = "prefix-tree/1"

_REQUIRED_NODE_KEYS = ("id", "parent", "step", "depth", "visits", "successes", "terminal")


@dataclass
class PrefixNode:
    """One prefix: the step added at this node, its place in the tree and its counts."""

    id: int
    parent: int | None
    step: str
    depth: int
    children: list[int] = field(default_factory=list)
    visits: int = 0
    successes: int = 0
    terminal: bool = False
    reward: float | None = None
    prior: float | None = None
    value_sum: float | None = None
    student_visits: int = 0
    student_successes: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Return the node as a ``prefix-tree/1`` node object (children are implied by parents)."""
        data: dict[str, Any] = {
            "id": self.id,
            "parent": self.parent,
            "step": self.step,
            "depth": self.depth,
            "visits": self.visits,
            "successes": self.successes,
            "terminal": self.terminal,
            "reward": self.reward,
        }
        if self.prior is not None:
            data["prior"] = self.prior
        if self.value_sum is not None:
            data["value_sum"] = self.value_sum
        if self.student_visits or self.student_successes:
            data["student_visits"] = self.student_visits
            data["student_successes"] = self.student_successes
        return data


class PrefixTree:
    """All prefixes of one problem, merged on shared steps.

    Args:
        problem: the problem as a plain dict (for example ``Problem.to_dict()``);
            stored as given and written to files unchanged.
    """

    def __init__(self, problem: dict[str, Any] | None = None) -> None:
        if problem is not None and not isinstance(problem, dict):
            raise TypeError(f"expected problem to be a dict or None, got {type(problem).__name__}")
        self.problem: dict[str, Any] = {} if problem is None else problem
        self.nodes: list[PrefixNode] = [PrefixNode(id=0, parent=None, step="", depth=0)]
        # (parent id, step text) -> child id, so that equal steps merge.
        self._child_by_step: dict[tuple[int, str], int] = {}

    # ------------------------------------------------------------------ basics

    @property
    def root(self) -> PrefixNode:
        """The root node (id 0, the bare question)."""
        return self.nodes[0]

    def __len__(self) -> int:
        return len(self.nodes)

    def __iter__(self) -> Iterator[PrefixNode]:
        return iter(self.nodes)

    def __repr__(self) -> str:
        problem_id = self.problem.get("id", "?")
        return (
            f"PrefixTree(problem_id={problem_id!r}, nodes={len(self)}, max_depth={self.max_depth})"
        )

    @property
    def max_depth(self) -> int:
        """The largest node depth (0 for a tree with only the root)."""
        return max(node.depth for node in self.nodes)

    def node(self, node_id: int) -> PrefixNode:
        """Return the node with this id, raising ``IndexError`` with the valid range if absent."""
        self._check_id(node_id)
        return self.nodes[node_id]

    def _check_id(self, node_id: int) -> None:
        if type(node_id) is int and 0 <= node_id < len(self.nodes):
            return  # fast path for the common case
        if isinstance(node_id, bool) or not isinstance(node_id, numbers.Integral):
            raise TypeError(f"expected an integer node id, got {node_id!r}")
        if not 0 <= node_id < len(self.nodes):
            raise IndexError(f"node id {node_id} out of range: the tree has ids 0..{len(self) - 1}")

    # ---------------------------------------------------------------- building

    def add_child(
        self,
        parent_id: int,
        step: str,
        *,
        terminal: bool = False,
        reward: float | None = None,
        prior: float | None = None,
    ) -> int:
        """Add a child that extends ``parent_id`` by ``step`` and return its id.

        If the parent already has a child with exactly this step text, that child's
        id is returned instead (merging). On a merge, ``terminal=True`` marks the
        existing child terminal, and a given ``reward`` or ``prior`` overwrites the
        stored one. Counts are not changed: use :meth:`add_trace` for that.
        """
        self._check_id(parent_id)
        if not isinstance(step, str):
            raise TypeError(f"expected step to be a str, got {type(step).__name__}")
        if reward is not None and not math.isfinite(reward):
            raise ValueError(f"expected a finite reward, got {reward!r}")
        parent = self.nodes[parent_id]
        if parent.terminal:
            raise ValueError(
                f"cannot add a child to terminal node {parent_id}: a terminal prefix ends its trace"
            )

        key = (parent_id, step)
        existing = self._child_by_step.get(key)
        if existing is not None:
            child = self.nodes[existing]
            if terminal:
                child.terminal = True
            if reward is not None:
                child.reward = float(reward)
            if prior is not None:
                child.prior = float(prior)
            return existing

        child_id = len(self.nodes)
        child = PrefixNode(
            id=child_id,
            parent=parent_id,
            step=step,
            depth=parent.depth + 1,
            terminal=terminal,
            reward=None if reward is None else float(reward),
            prior=None if prior is None else float(prior),
        )
        self.nodes.append(child)
        parent.children.append(child_id)
        self._child_by_step[key] = child_id
        return child_id

    def add_trace(self, steps: Sequence[str], reward: float, *, terminal: bool = True) -> int:
        """Insert a trace, merging shared prefixes, and return the id of its last node.

        Every node on the path root..leaf (both included) gets ``visits += 1`` and,
        when ``reward > 0``, ``successes += 1``. With ``terminal=True`` the leaf is
        marked terminal and stores ``reward``; pass ``terminal=False`` for a trace
        that was cut off before a final answer (its counts still record the outcome).
        """
        if isinstance(steps, str):
            raise TypeError("expected steps to be a sequence of step strings, got a single str")
        if not math.isfinite(reward):
            raise ValueError(f"expected a finite reward, got {reward!r}")
        if terminal and len(steps) == 0:
            raise ValueError("expected at least one step in a terminal trace, got an empty trace")

        node_id = 0
        for index, step in enumerate(steps):
            is_last = index == len(steps) - 1
            node_id = self.add_child(
                node_id,
                step,
                terminal=terminal and is_last,
                reward=float(reward) if terminal and is_last else None,
            )

        success = reward > 0
        for path_id in [node_id, *self.ancestors(node_id)]:
            path_node = self.nodes[path_id]
            path_node.visits += 1
            path_node.successes += int(success)
        return node_id

    @classmethod
    def from_traces(
        cls,
        problem: dict[str, Any] | None,
        traces: Iterable[tuple[Sequence[str], float]],
    ) -> PrefixTree:
        """Build a tree from ``(steps, reward)`` pairs; every trace counts as terminal."""
        tree = cls(problem)
        for steps, reward in traces:
            tree.add_trace(steps, reward)
        return tree

    def record_outcome(self, node_id: int, reward: float) -> None:
        """Record a student completion that started at ``node_id`` and earned ``reward``.

        Adds 1 to ``student_visits`` (and to ``student_successes`` when ``reward > 0``)
        on the node and all its ancestors. Teacher counts are not touched.
        """
        self._check_id(node_id)
        if not math.isfinite(reward):
            raise ValueError(f"expected a finite reward, got {reward!r}")
        success = int(reward > 0)
        current: int | None = node_id
        while current is not None:
            path_node = self.nodes[current]
            path_node.student_visits += 1
            path_node.student_successes += success
            current = path_node.parent

    # ----------------------------------------------------------------- queries

    def steps_to(self, node_id: int) -> list[str]:
        """Return the steps on the path from the root to ``node_id`` (``[]`` for the root)."""
        self._check_id(node_id)
        steps: list[str] = []
        current = self.nodes[node_id]
        while current.parent is not None:
            steps.append(current.step)
            current = self.nodes[current.parent]
        steps.reverse()
        return steps

    def ancestors(self, node_id: int) -> list[int]:
        """Return the proper ancestors of ``node_id``, nearest first (parent, ..., root)."""
        self._check_id(node_id)
        result: list[int] = []
        parent = self.nodes[node_id].parent
        while parent is not None:
            result.append(parent)
            parent = self.nodes[parent].parent
        return result

    def descendants(self, node_id: int) -> list[int]:
        """Return the proper descendants of ``node_id`` in depth-first pre-order."""
        self._check_id(node_id)
        result: list[int] = []
        stack = list(reversed(self.nodes[node_id].children))
        while stack:
            current = stack.pop()
            result.append(current)
            stack.extend(reversed(self.nodes[current].children))
        return result

    def siblings(self, node_id: int) -> list[int]:
        """Return the other children of ``node_id``'s parent (``[]`` for the root)."""
        self._check_id(node_id)
        parent = self.nodes[node_id].parent
        if parent is None:
            return []
        return [child for child in self.nodes[parent].children if child != node_id]

    def is_ancestor(self, ancestor_id: int, node_id: int) -> bool:
        """Return True when ``ancestor_id`` is a proper ancestor of ``node_id`` (a node is not its own)."""
        self._check_id(ancestor_id)
        self._check_id(node_id)
        target_depth = self.nodes[ancestor_id].depth
        current = self.nodes[node_id]
        while current.parent is not None and current.depth > target_depth + 1:
            current = self.nodes[current.parent]
        return current.parent == ancestor_id and current.depth == target_depth + 1

    def leaves(self) -> list[int]:
        """Return the ids of nodes without children."""
        return [node.id for node in self.nodes if not node.children]

    def nodes_at_depth(self, depth: int) -> list[int]:
        """Return the ids of nodes at ``depth``."""
        return [node.id for node in self.nodes if node.depth == depth]

    def subtree_stats(self, node_id: int) -> dict[str, int]:
        """Return counts for the subtree rooted at ``node_id`` (the node included).

        Keys: ``size`` (nodes), ``terminals``, ``terminal_successes`` (terminal nodes
        with ``reward > 0``), ``max_depth`` (absolute), and the node's cumulative
        ``visits``, ``successes``, ``student_visits`` and ``student_successes``.
        """
        node = self.node(node_id)
        members = [node_id, *self.descendants(node_id)]
        terminals = [m for m in members if self.nodes[m].terminal]
        return {
            "size": len(members),
            "terminals": len(terminals),
            "terminal_successes": sum(1 for m in terminals if (self.nodes[m].reward or 0.0) > 0.0),
            "max_depth": max(self.nodes[m].depth for m in members),
            "visits": node.visits,
            "successes": node.successes,
            "student_visits": node.student_visits,
            "student_successes": node.student_successes,
        }

    # ----------------------------------------------------------- serialisation

    def to_dict(self) -> dict[str, Any]:
        """Return the ``prefix-tree/1`` JSON object of this tree."""
        return {
            "format": FORMAT,
            "problem": self.problem,
            "nodes": [node.to_dict() for node in self.nodes],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PrefixTree:
        """Build a tree from a ``prefix-tree/1`` object, validating ids, parents and depths.

        Raises:
            ValueError: on a wrong format tag, missing keys, ids not equal to list
                positions, a parent that does not precede its child, a depth that is not
                the parent's depth plus one, negative counts or ``successes > visits``.
        """
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        if data.get("format") != FORMAT:
            raise ValueError(f"expected format {FORMAT!r}, got {data.get('format')!r}")
        problem = data.get("problem", {})
        if not isinstance(problem, dict):
            raise ValueError(f"expected 'problem' to be an object, got {type(problem).__name__}")
        raw_nodes = data.get("nodes")
        if not isinstance(raw_nodes, list) or not raw_nodes:
            raise ValueError("expected 'nodes' to be a non-empty list with the root first")

        tree = cls(problem)
        tree.nodes = []
        for position, raw in enumerate(raw_nodes):
            tree.nodes.append(_node_from_dict(raw, position, tree.nodes))
        for node in tree.nodes[1:]:
            assert node.parent is not None
            tree.nodes[node.parent].children.append(node.id)
            key = (node.parent, node.step)
            if key in tree._child_by_step:
                raise ValueError(
                    f"node {node.id}: parent {node.parent} already has a child with step "
                    f"{node.step!r} (node {tree._child_by_step[key]}); equal steps must be merged"
                )
            tree._child_by_step[key] = node.id
        return tree


def _node_from_dict(raw: Any, position: int, previous: list[PrefixNode]) -> PrefixNode:
    if not isinstance(raw, dict):
        raise ValueError(f"node {position}: expected an object, got {type(raw).__name__}")
    missing = [key for key in _REQUIRED_NODE_KEYS if key not in raw]
    if missing:
        raise ValueError(f"node {position}: missing keys {missing}")
    if raw["id"] != position:
        raise ValueError(
            f"node {position}: expected id {position} (ids are list positions), got {raw['id']!r}"
        )
    parent = raw["parent"]
    if position == 0:
        if parent is not None or raw["depth"] != 0:
            raise ValueError(
                f"node 0: expected the root (parent null, depth 0), got parent {parent!r}"
            )
    else:
        if not isinstance(parent, int) or not 0 <= parent < position:
            raise ValueError(
                f"node {position}: expected a parent id in 0..{position - 1}, got {parent!r}"
            )
        if previous[parent].terminal:
            raise ValueError(
                f"node {position}: parent {parent} is terminal and cannot have children"
            )
        if raw["depth"] != previous[parent].depth + 1:
            raise ValueError(
                f"node {position}: expected depth {previous[parent].depth + 1}, got {raw['depth']!r}"
            )
    if not isinstance(raw["step"], str):
        raise ValueError(f"node {position}: expected 'step' to be a string, got {raw['step']!r}")

    counts = {}
    for key in ("visits", "successes", "student_visits", "student_successes"):
        value = raw.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(
                f"node {position}: expected '{key}' to be a non-negative integer, got {value!r}"
            )
        counts[key] = value
    if counts["successes"] > counts["visits"]:
        raise ValueError(
            f"node {position}: successes ({counts['successes']}) exceed visits ({counts['visits']})"
        )
    if counts["student_successes"] > counts["student_visits"]:
        raise ValueError(
            f"node {position}: student_successes ({counts['student_successes']}) exceed "
            f"student_visits ({counts['student_visits']})"
        )
    if not isinstance(raw["terminal"], bool):
        raise ValueError(
            f"node {position}: expected 'terminal' to be true or false, got {raw['terminal']!r}"
        )

    optional: dict[str, float | None] = {}
    for key in ("reward", "prior", "value_sum"):
        value = raw.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ValueError(
                f"node {position}: expected '{key}' to be a number or null, got {value!r}"
            )
        optional[key] = None if value is None else float(value)

    return PrefixNode(
        id=position,
        parent=parent,
        step=raw["step"],
        depth=raw["depth"],
        terminal=raw["terminal"],
        **counts,
        **optional,
    )


# --------------------------------------------------------------------- JSONL io


def _tree_line(tree: PrefixTree) -> str:
    return json.dumps(tree.to_dict(), ensure_ascii=False, allow_nan=False) + "\n"


def write_prefix_trees(path: str | Path, trees: Iterable[PrefixTree]) -> None:
    """Write trees to a JSONL file, one per line, replacing the file atomically.

    The lines go to a temporary file in the same directory, which is flushed, synced
    and renamed over ``path``, so readers see either the old or the new file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            for tree in trees:
                stream.write(_tree_line(tree))
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def append_prefix_tree(path: str | Path, tree: PrefixTree) -> None:
    """Append one tree as a line to a JSONL file, creating the file if needed.

    The line is written with a single append-mode write and synced, so appends from
    one process never interleave. If the file does not end in a newline (an earlier
    write was cut off by a crash), the partial last line is removed first and a
    warning is logged, so that a resumed run continues from a valid file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = _tree_line(tree).encode("utf-8")
    with open(path, "a+b") as stream:
        stream.seek(0, os.SEEK_END)
        size = stream.tell()
        if size > 0:
            stream.seek(size - 1)
            if stream.read(1) != b"\n":
                _truncate_partial_last_line(stream, size, path)
        stream.seek(0, os.SEEK_END)
        stream.write(line)
        stream.flush()
        os.fsync(stream.fileno())


def _truncate_partial_last_line(stream: Any, size: int, path: Path) -> None:
    stream.seek(0)
    content = stream.read(size)
    kept_bytes = content.rfind(b"\n") + 1
    logger.warning(
        "%s: removing a partial last line of %d bytes (an earlier write was cut off)",
        path,
        size - kept_bytes,
    )
    stream.truncate(kept_bytes)


def read_prefix_trees(path: str | Path, *, limit: int | None = None) -> list[PrefixTree]:
    """Read trees from a JSONL file written by :func:`write_prefix_trees` or :func:`append_prefix_tree`.

    Blank lines are skipped. Raises ``ValueError`` naming the file and 1-based line
    number for a line that is not valid JSON or not a valid ``prefix-tree/1`` object.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"expected limit >= 0 or None, got {limit}")
    path = Path(path)
    trees: list[PrefixTree] = []
    with open(path, encoding="utf-8") as stream:
        for line_number, line in enumerate(stream, start=1):
            if limit is not None and len(trees) >= limit:
                break
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{line_number}: invalid JSON: {error.msg}") from error
            try:
                trees.append(PrefixTree.from_dict(data))
            except ValueError as error:
                raise ValueError(f"{path}:{line_number}: invalid prefix tree: {error}") from error
    return trees
