"""Prefix trees and Staged Advantage Estimation (SAE) for GRPO on groups of prefixes.

Pure numpy/scipy; torch is only needed for :mod:`sae.torch`, and third-party
trainers only for :mod:`sae.adapters`.

Prefix trees (:mod:`sae.tree`)
    ``PrefixTree``, ``PrefixNode``: one problem's traces merged on shared steps,
    with teacher and student success counts. ``read_prefix_trees``,
    ``write_prefix_trees``, ``append_prefix_tree``: JSONL files (``prefix-tree/1``).

Group sampling (:mod:`sae.sampling`)
    ``sample_prefixes(tree, k, rng=..., distribution=...)``: ``k`` prefixes of mixed depth.

Values (:mod:`sae.values`)
    ``prefix_value``, ``prefix_values``: ``V(p)`` by expectation, optimistic or pessimistic rule.

Advantages (:mod:`sae.estimators`, :mod:`sae.constraints`, :mod:`sae.projection`)
    ``StagedAdvantageEstimator(method=...)(rewards, node_ids, tree)`` returns an
    ``AdvantageResult``; ``.batch(rewards, group_ids, node_ids, trees)`` handles
    many groups. ``solve_sae_qp`` (exact) and ``solve_sae_qp_slsqp`` (reference)
    solve the projection directly.

Example::

    import numpy as np
    from sae import PrefixTree, StagedAdvantageEstimator, sample_prefixes

    tree = PrefixTree.from_traces({"id": "p1"}, [(["2+2=4", "The answer is 4"], 1.0),
                                                 (["2+2=5", "The answer is 5"], 0.0)])
    node_ids = sample_prefixes(tree, 4, rng=0)
    rewards = np.array([1.0, 0.0, 1.0, 1.0])        # the student's completions
    result = StagedAdvantageEstimator(method="qp_soft")(rewards, node_ids, tree)
    result.advantages, result.diagnostics["constraint_satisfaction"]
"""

from sae.constraints import OrderConstraints, build_order_constraints, drop_cycles
from sae.estimators import METHODS, AdvantageResult, StagedAdvantageEstimator
from sae.projection import QPSolution, project_order, solve_sae_qp, solve_sae_qp_slsqp
from sae.sampling import eligible_nodes, prefix_probabilities, sample_prefixes
from sae.tree import (
    PrefixNode,
    PrefixTree,
    append_prefix_tree,
    read_prefix_trees,
    write_prefix_trees,
)
from sae.values import node_counts, prefix_value, prefix_values

__all__ = [
    "METHODS",
    "AdvantageResult",
    "OrderConstraints",
    "PrefixNode",
    "PrefixTree",
    "QPSolution",
    "StagedAdvantageEstimator",
    "append_prefix_tree",
    "build_order_constraints",
    "drop_cycles",
    "eligible_nodes",
    "node_counts",
    "prefix_probabilities",
    "prefix_value",
    "prefix_values",
    "project_order",
    "read_prefix_trees",
    "sample_prefixes",
    "solve_sae_qp",
    "solve_sae_qp_slsqp",
    "write_prefix_trees",
]
