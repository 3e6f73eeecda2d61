"""Value estimates ``V(p)``: the probability of success from prefix ``p``.

Counts come from the tree: ``source="teacher"`` uses ``visits``/``successes``,
``"student"`` uses ``student_visits``/``student_successes`` and ``"both"`` adds
them. A node's counts cover every trace through it, so they describe its subtree.

Rules, with ``n`` visits, ``s`` successes and the Beta prior ``(a, b)``:

- ``expectation``: the posterior mean ``(s + a) / (n + a + b)``. With the default
  prior ``(1, 1)`` a node without data gets 0.5, not 0. With ``a = b = 0`` the raw
  rate ``s / n`` is used and a node without data takes the value of its nearest
  ancestor with data (0.5 if no ancestor has data).
- ``optimistic``: 1 if a success was seen at or below ``p`` (``s > 0``), else 0.
- ``pessimistic``: 1 if no failure was seen at or below ``p`` (``n > 0`` and
  ``s == n``), else 0.
- For ``optimistic`` and ``pessimistic`` a node without data (``n == 0``) gets the
  prior mean ``a / (a + b)`` (0.5 when ``a = b = 0``), because no data is no
  evidence either way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np

from sae.tree import PrefixTree

ValueMethod = Literal["expectation", "optimistic", "pessimistic"]
ValueSource = Literal["teacher", "student", "both"]
VALUE_METHODS: tuple[str, ...] = ("expectation", "optimistic", "pessimistic")
VALUE_SOURCES: tuple[str, ...] = ("teacher", "student", "both")


def validate_prior(prior: tuple[float, float]) -> tuple[float, float]:
    """Return ``prior`` as two floats, raising ``ValueError`` unless both are finite and >= 0."""
    if len(prior) != 2:
        raise ValueError(f"expected prior to be a pair (a, b), got {prior!r}")
    a, b = float(prior[0]), float(prior[1])
    if not (math.isfinite(a) and math.isfinite(b) and a >= 0.0 and b >= 0.0):
        raise ValueError(f"expected a Beta prior (a, b) with finite a, b >= 0, got {prior!r}")
    return a, b


def node_counts(tree: PrefixTree, node_id: int, source: ValueSource = "teacher") -> tuple[int, int]:
    """Return ``(visits, successes)`` of a node for the given count source."""
    node = tree.nodes[node_id]
    if source == "teacher":
        return node.visits, node.successes
    if source == "student":
        return node.student_visits, node.student_successes
    if source == "both":
        return node.visits + node.student_visits, node.successes + node.student_successes
    raise ValueError(f"expected source in {VALUE_SOURCES}, got {source!r}")


def prefix_value(
    tree: PrefixTree,
    node_id: int,
    method: ValueMethod = "expectation",
    *,
    source: ValueSource = "teacher",
    prior: tuple[float, float] = (1.0, 1.0),
) -> float:
    """Return ``V(p)`` for one node under the rules in the module docstring."""
    a, b = validate_prior(prior)
    tree.node(node_id)  # raises on an invalid id
    return value_unchecked(tree, node_id, method, source, a, b)


def value_unchecked(
    tree: PrefixTree, node_id: int, method: str, source: str, a: float, b: float
) -> float:
    """Compute ``V(p)`` like :func:`prefix_value` without validating the arguments (hot path)."""
    visits, successes = node_counts(tree, node_id, source)  # type: ignore[arg-type]
    prior_mean = a / (a + b) if a + b > 0.0 else 0.5

    if method == "expectation":
        if a + b > 0.0:
            return (successes + a) / (visits + a + b)
        if visits > 0:
            return successes / visits
        for ancestor in tree.ancestors(node_id):
            ancestor_visits, ancestor_successes = node_counts(tree, ancestor, source)
            if ancestor_visits > 0:
                return ancestor_successes / ancestor_visits
        return 0.5
    if method == "optimistic":
        if visits == 0:
            return prior_mean
        return 1.0 if successes > 0 else 0.0
    if method == "pessimistic":
        if visits == 0:
            return prior_mean
        return 1.0 if successes == visits else 0.0
    raise ValueError(f"expected method in {VALUE_METHODS}, got {method!r}")


def prefix_values(
    tree: PrefixTree,
    node_ids: Sequence[int],
    method: ValueMethod = "expectation",
    *,
    source: ValueSource = "teacher",
    prior: tuple[float, float] = (1.0, 1.0),
) -> np.ndarray:
    """Return ``V(p)`` for each node id (shape ``[len(node_ids)]``)."""
    return np.array(
        [prefix_value(tree, i, method, source=source, prior=prior) for i in node_ids],
        dtype=np.float64,
    )
