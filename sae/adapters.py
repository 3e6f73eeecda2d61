"""Adapters that plug :class:`~sae.estimators.StagedAdvantageEstimator` into other GRPO trainers.

Two layouts are covered:

- verl-style advantage functions: ``fn(token_level_rewards, response_mask, index,
  config=None, **kwargs) -> (advantages, returns)``, where ``index`` contains one group
  id per row. :func:`make_verl_advantage_fn` builds such a function and
  :func:`register_with_verl` registers it by name with verl's
  ``register_adv_est`` decorator (verl is imported only there).
- TRL-style batches: the completions of each prompt are consecutive blocks of
  ``num_generations`` rows. :func:`grouped_layout_advantages` computes SAE
  advantages for that layout, for use in a ``GRPOTrainer`` subclass (see
  ``docs/sae.md``).

NOTE: the verl signature and registry follow verl's ``core_algos`` module as
published on GitHub; this file is not tested against an installed verl or TRL.
The tests run the adapters on toy batches without them.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from sae.estimators import StagedAdvantageEstimator
from sae.torch import advantages_to_tokens
from sae.tree import PrefixTree

TreeLookup = Mapping[Hashable, PrefixTree] | Callable[[Hashable], PrefixTree]


def _tree_for(trees: TreeLookup, group: Hashable) -> PrefixTree:
    if callable(trees) and not isinstance(trees, Mapping):
        return trees(group)
    if group not in trees:
        raise KeyError(f"no prefix tree for group id {group!r}")
    return trees[group]


def make_verl_advantage_fn(
    estimator: StagedAdvantageEstimator,
    trees: TreeLookup | None = None,
    *,
    node_ids_key: str = "node_ids",
) -> Callable[..., tuple[Any, Any]]:
    """Build a verl-style advantage function that runs ``estimator``.

    The returned function takes ``token_level_rewards`` ``[B, T]``, whose sum over
    tokens is the reward of a row as in verl's outcome-reward estimators. It also
    takes ``response_mask`` ``[B, T]`` and ``index`` ``[B]`` (group id per row). For
    methods that need a tree it needs the prefix node id of each row as the keyword
    argument named by ``node_ids_key``. It returns ``(advantages, returns)``, both
    ``[B, T]`` and equal, like verl's GRPO estimator.

    Args:
        trees: group id -> tree, as a mapping or a callable; None for ``grpo`` and
            ``flat`` without constraint metrics.
    """
    if estimator.needs_tree and trees is None:
        raise ValueError(
            f"method {estimator.method!r} needs trees: pass a mapping or callable from group id to tree"
        )

    def sae_advantage(
        token_level_rewards: Any,
        response_mask: Any,
        index: Sequence[Hashable] | np.ndarray,
        config: Any = None,
        **kwargs: Any,
    ) -> tuple[Any, Any]:
        rewards = token_level_rewards.sum(dim=-1).detach().to("cpu").double().numpy()
        group_ids = [_hashable(g) for g in index]
        node_ids = kwargs.get(node_ids_key)
        if node_ids is not None:
            node_ids = [int(n) for n in np.asarray(node_ids).reshape(-1)]
        group_trees = None
        if trees is not None:
            group_trees = {g: _tree_for(trees, g) for g in dict.fromkeys(group_ids)}
        result = estimator.batch(rewards, group_ids, node_ids, group_trees)
        scores = advantages_to_tokens(result.advantages, response_mask)
        return scores, scores

    sae_advantage.__name__ = f"sae_{estimator.method}_advantage"
    return sae_advantage


def register_with_verl(
    name: str,
    estimator: StagedAdvantageEstimator,
    trees: TreeLookup | None = None,
    **kwargs: Any,
) -> Callable[..., tuple[Any, Any]]:
    """Register a SAE advantage function with verl under ``name`` and return it.

    Raises ``ImportError`` with the install hint when verl is not installed.
    """
    try:
        from verl.trainer.ppo.core_algos import register_adv_est
    except ImportError as error:
        raise ImportError("register_with_verl needs verl: pip install verl") from error
    function = make_verl_advantage_fn(estimator, trees, **kwargs)
    return register_adv_est(name)(function)


def grouped_layout_advantages(
    estimator: StagedAdvantageEstimator,
    rewards: Any,
    num_generations: int,
    *,
    node_ids: Sequence[int] | None = None,
    trees: Sequence[PrefixTree] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Compute SAE advantages for a batch laid out as in TRL's ``GRPOTrainer``.

    Row ``k`` belongs to group ``k // num_generations`` (consecutive blocks), so
    the group ids are made explicit here before calling the estimator.

    Args:
        rewards: ``[B]`` tensor or array, with ``B`` a multiple of ``num_generations``.
        node_ids: ``[B]`` prefix node id of each row.
        trees: ``[B / num_generations]`` tree of each group (prompt).

    Returns:
        ``(advantages, diagnostics)``; a tensor input gives a tensor back.
    """
    from sae.torch import compute_advantages

    size = len(rewards)
    if num_generations < 1 or size % num_generations != 0:
        raise ValueError(
            f"expected a batch size that is a multiple of num_generations={num_generations}, got {size}"
        )
    group_ids = [row // num_generations for row in range(size)]
    group_trees = None
    if trees is not None:
        if len(trees) != size // num_generations:
            raise ValueError(
                f"expected {size // num_generations} trees (one per group), got {len(trees)}"
            )
        group_trees = dict(enumerate(trees))
    return compute_advantages(estimator, rewards, group_ids, node_ids, group_trees)


def _hashable(value: Any) -> Hashable:
    if isinstance(value, np.generic):
        return value.item()
    return value
