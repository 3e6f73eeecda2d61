"""Sampling a training group: ``k`` prefixes of mixed depth from one problem's tree.

Distributions over the eligible nodes (see :func:`prefix_probabilities`):

- ``"uniform_nodes"``: every eligible node has the same probability, so deep
  levels, which hold more nodes, dominate;
- ``"uniform_depth"``: pick a depth uniformly among the depths that have eligible
  nodes, then a node uniformly within that depth;
- ``"curriculum"``: like ``uniform_depth`` but depth ``d`` gets the weight
  ``exp(-(d - target)^2 / (2 * curriculum_width^2))`` with
  ``target = (1 - curriculum_progress) * max_eligible_depth``. Progress 0 favours
  the deepest (easiest) prefixes and progress 1 the root (the hardest): a reverse
  curriculum that the trainer advances over training.

Eligible nodes: all nodes with ``min_depth <= depth <= max_depth``; terminal nodes
(which already hold a final answer, so a completion would be empty) only with
``include_terminal=True``.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np

from sae.tree import PrefixTree

logger = logging.getLogger(__name__)

Distribution = Literal["uniform_nodes", "uniform_depth", "curriculum"]
DISTRIBUTIONS: tuple[str, ...] = ("uniform_nodes", "uniform_depth", "curriculum")


def eligible_nodes(
    tree: PrefixTree,
    *,
    include_terminal: bool = False,
    min_depth: int = 0,
    max_depth: int | None = None,
) -> list[int]:
    """Return the ids of nodes that may start a completion, in id order."""
    if min_depth < 0:
        raise ValueError(f"expected min_depth >= 0, got {min_depth}")
    if max_depth is not None and max_depth < min_depth:
        raise ValueError(f"expected max_depth >= min_depth ({min_depth}) or None, got {max_depth}")
    return [
        node.id
        for node in tree.nodes
        if (include_terminal or not node.terminal)
        and node.depth >= min_depth
        and (max_depth is None or node.depth <= max_depth)
    ]


def prefix_probabilities(
    tree: PrefixTree,
    node_ids: list[int],
    distribution: Distribution = "uniform_depth",
    *,
    curriculum_progress: float = 0.0,
    curriculum_width: float = 1.0,
) -> np.ndarray:
    """Return the sampling probability of each node in ``node_ids`` (shape ``[len(node_ids)]``)."""
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"expected distribution in {DISTRIBUTIONS}, got {distribution!r}")
    if not 0.0 <= curriculum_progress <= 1.0:
        raise ValueError(f"expected curriculum_progress in [0, 1], got {curriculum_progress}")
    if not curriculum_width > 0.0:
        raise ValueError(f"expected curriculum_width > 0, got {curriculum_width}")
    if not node_ids:
        raise ValueError("expected at least one eligible node, got none")

    depths = np.array([tree.nodes[i].depth for i in node_ids])
    if distribution == "uniform_nodes":
        return np.full(len(node_ids), 1.0 / len(node_ids))

    levels, counts = np.unique(depths, return_counts=True)
    if distribution == "uniform_depth":
        level_weights = np.ones(len(levels))
    else:
        target = (1.0 - curriculum_progress) * levels.max()
        level_weights = np.exp(-((levels - target) ** 2) / (2.0 * curriculum_width**2))
    level_probs = level_weights / level_weights.sum()
    per_node = level_probs / counts
    return per_node[np.searchsorted(levels, depths)]


def sample_prefixes(
    tree: PrefixTree,
    k: int,
    *,
    rng: np.random.Generator | int | None,
    distribution: Distribution = "uniform_depth",
    include_terminal: bool = False,
    min_depth: int = 0,
    max_depth: int | None = None,
    replace: bool | None = None,
    curriculum_progress: float = 0.0,
    curriculum_width: float = 1.0,
) -> list[int]:
    """Sample ``k`` prefix node ids from ``tree`` for one training group.

    Args:
        rng: a numpy Generator, or a seed for a new one (``None`` draws fresh entropy).
        replace: sample with replacement. ``None`` (the default) samples without
            replacement when there are at least ``k`` eligible nodes and with
            replacement otherwise, so a small tree still fills a group.

    Returns:
        ``k`` node ids in the order drawn.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"expected k to be a positive integer, got {k!r}")
    generator = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    candidates = eligible_nodes(
        tree, include_terminal=include_terminal, min_depth=min_depth, max_depth=max_depth
    )
    if not candidates:
        raise ValueError(
            f"no eligible prefixes in the tree of problem {tree.problem.get('id')!r} "
            f"(nodes={len(tree)}, min_depth={min_depth}, max_depth={max_depth}, "
            f"include_terminal={include_terminal})"
        )
    probabilities = prefix_probabilities(
        tree,
        candidates,
        distribution,
        curriculum_progress=curriculum_progress,
        curriculum_width=curriculum_width,
    )
    with_replacement = (k > len(candidates)) if replace is None else replace
    if not with_replacement and k > len(candidates):
        raise ValueError(
            f"cannot draw k={k} prefixes without replacement from {len(candidates)} eligible "
            "nodes; pass replace=True or replace=None"
        )
    if not with_replacement:
        # numpy's weighted choice without replacement fails when fewer than k
        # nodes have non-zero probability (possible with a narrow curriculum).
        nonzero = int(np.count_nonzero(probabilities))
        if nonzero < k:
            with_replacement = True
            logger.debug(
                "only %d nodes have non-zero probability; sampling with replacement", nonzero
            )
    chosen = generator.choice(len(candidates), size=k, replace=with_replacement, p=probabilities)
    return [candidates[int(i)] for i in chosen]
