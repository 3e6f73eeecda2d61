"""Advantage estimators for GRPO groups of prefixes: one entry point, :class:`StagedAdvantageEstimator`.

Methods (``r`` are the rewards of one group, ``mean`` and ``std`` are over the group):

- ``grpo``: ``(r - mean) / (std + eps)`` with the sample std (``ddof=1``).
  ``scale="batch"`` divides by the std of all rewards in the batch instead and
  ``scale="none"`` does not divide (Dr. GRPO). There is no variance floor: a tiny
  but non-zero std is used as it is.
- ``flat``: ``r - mean``, the flat baseline over a mixed-prefix group.
- ``expectation``, ``optimistic``, ``pessimistic``: ``r - alpha * V(p)``, then
  centred over the group, without dividing by a std (see :mod:`sae.values` for
  ``V``).
- ``qp_soft``, ``qp_hard``: the projection of ``r - mean`` onto zero mean, the
  norm bound ``||a||^2 <= G`` (soft) or ``= G`` (hard), and the order pairs of
  :mod:`sae.constraints` with margin ``margin`` (see :mod:`sae.projection`).

Rules for small groups, for every method:

- a single-sample group gets advantage 0 (there is nothing to compare with);
- a group whose rewards are all equal gets exact zeros for ``grpo``, ``flat``
  and ``qp_*`` without order pairs. Heuristic methods can still give non-zero
  advantages there, because ``V(p)`` differs between prefixes. With order pairs,
  ``qp_soft`` returns the smallest order-respecting point and ``qp_hard`` that
  point scaled to norm ``sqrt(G)``.

Group membership is explicit: :meth:`StagedAdvantageEstimator.batch` takes a group
id per sample and never infers groups from positions.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from sae.constraints import OrderConstraints, build_order_constraints
from sae.projection import ActiveSetError, solve_sae_qp, solve_sae_qp_slsqp
from sae.tree import PrefixTree
from sae.values import VALUE_SOURCES, ValueSource, validate_prior, value_unchecked

logger = logging.getLogger(__name__)

Method = Literal["grpo", "flat", "expectation", "optimistic", "pessimistic", "qp_soft", "qp_hard"]
Scale = Literal["group", "batch", "none"]
Solver = Literal["exact", "scipy"]
METHODS: tuple[str, ...] = (
    "grpo",
    "flat",
    "expectation",
    "optimistic",
    "pessimistic",
    "qp_soft",
    "qp_hard",
)
HEURISTIC_METHODS: tuple[str, ...] = ("expectation", "optimistic", "pessimistic")
QP_METHODS: tuple[str, ...] = ("qp_soft", "qp_hard")
SCALES: tuple[str, ...] = ("group", "batch", "none")
SOLVERS: tuple[str, ...] = ("exact", "scipy")

TreeArg = PrefixTree | Sequence[PrefixTree] | None


@dataclass
class AdvantageResult:
    """Advantages of one group or batch and diagnostics about how they were computed.

    Attributes:
        advantages: ``[N]`` one advantage per sample, in input order.
        diagnostics: always has ``constraint_satisfaction`` (fraction of order pairs
            with ``a_i + margin <= a_j``, nan without pairs or without a tree),
            ``num_constraints`` (sample-level pairs), ``solver_status``,
            ``solver_ms``, ``fallback`` and ``dropped_pairs`` (``(i, j, kind)``
            pairs removed to break cycles), plus ``advantage_mean``,
            ``advantage_var``, ``num_groups`` and ``frac_zero_std_groups``.
    """

    advantages: np.ndarray
    diagnostics: dict[str, Any] = field(default_factory=dict)


@dataclass
class StagedAdvantageEstimator:
    """Compute prefix-aware (SAE) or plain GRPO advantages for groups of samples.

    Args:
        method: the estimator, see the module docstring.
        alpha: weight of ``V(p)`` in the heuristic methods.
        margin: order margin ``delta`` for ``qp_*`` and for the satisfaction metric.
        scale: std used by ``grpo`` (``group``, ``batch`` or ``none``); other
            methods never divide by a std.
        eps: added to the std in ``grpo``.
        value_source: counts behind ``V(p)`` and the sibling rule (``teacher``,
            ``student`` or ``both``).
        solver: ``exact`` (the fast exact projection) or ``scipy`` (SLSQP reference).
        prior: Beta prior ``(a, b)`` of ``V(p)``.
        success_threshold: a reward above it counts as a success in the order rules.
        track_constraints: build the order pairs for non-QP methods too, to report
            ``constraint_satisfaction``; turn off to save time when the metric is
            not needed.
    """

    method: Method = "expectation"
    alpha: float = 0.5
    margin: float = 0.01
    scale: Scale = "group"
    eps: float = 1e-4
    value_source: ValueSource = "teacher"
    solver: Solver = "exact"
    prior: tuple[float, float] = (1.0, 1.0)
    success_threshold: float = 0.0
    track_constraints: bool = True

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"expected method in {METHODS}, got {self.method!r}")
        if self.scale not in SCALES:
            raise ValueError(f"expected scale in {SCALES}, got {self.scale!r}")
        if self.solver not in SOLVERS:
            raise ValueError(f"expected solver in {SOLVERS}, got {self.solver!r}")
        if self.value_source not in VALUE_SOURCES:
            raise ValueError(f"expected value_source in {VALUE_SOURCES}, got {self.value_source!r}")
        if not (math.isfinite(self.alpha) and self.alpha >= 0.0):
            raise ValueError(f"expected a finite alpha >= 0, got {self.alpha}")
        if not (math.isfinite(self.margin) and self.margin >= 0.0):
            raise ValueError(f"expected a finite margin >= 0, got {self.margin}")
        if not (math.isfinite(self.eps) and self.eps >= 0.0):
            raise ValueError(f"expected a finite eps >= 0, got {self.eps}")
        if not math.isfinite(self.success_threshold):
            raise ValueError(f"expected a finite success_threshold, got {self.success_threshold}")
        self.prior = validate_prior(self.prior)

    @property
    def needs_tree(self) -> bool:
        """True for methods that read the prefix tree (heuristics and QP)."""
        return self.method in HEURISTIC_METHODS or self.method in QP_METHODS

    # --------------------------------------------------------------- one group

    def __call__(
        self,
        rewards: np.ndarray | Sequence[float],
        node_ids: Sequence[int] | None,
        tree: TreeArg,
        *,
        pairs: Sequence[tuple[int, int]] | None = None,
        mixed_problems: bool = False,
    ) -> AdvantageResult:
        """Compute the advantages of one group.

        Args:
            rewards: ``[G]`` rewards.
            node_ids: ``[G]`` prefix node id of each sample (may be None for ``grpo``
                and ``flat`` without a tree).
            tree: the group's tree, or a ``[G]`` sequence of per-sample trees when
                the group mixes problems (requires ``mixed_problems=True``).
            pairs: sample-level order pairs ``(i, j)`` that replace the tree rules.
        """
        values = _as_rewards(rewards)
        result = self._group(values, node_ids, tree, pairs, mixed_problems, batch_std=None)
        return _summarise([result], values.size, result.advantages)

    def batch(
        self,
        rewards: np.ndarray | Sequence[float],
        group_ids: Sequence[Hashable],
        node_ids: Sequence[int] | None,
        trees: Mapping[Hashable, PrefixTree] | Sequence[PrefixTree] | None,
        *,
        mixed_problems: bool = False,
    ) -> AdvantageResult:
        """Compute advantages for a batch of groups given by explicit ``group_ids``.

        Args:
            rewards: ``[N]`` rewards.
            group_ids: ``[N]`` group id of each sample; samples of one group may be in
                any order and interleaved with other groups.
            node_ids: ``[N]`` prefix node ids (None only for tree-free methods).
            trees: a mapping from group id to that group's tree, a ``[N]`` sequence
                of per-sample trees, or None for ``grpo`` / ``flat``.
        """
        values = _as_rewards(rewards)
        if len(group_ids) != values.size:
            raise ValueError(
                f"expected {values.size} group ids (one per reward), got {len(group_ids)}"
            )
        if node_ids is not None and len(node_ids) != values.size:
            raise ValueError(
                f"expected {values.size} node ids (one per reward), got {len(node_ids)}"
            )

        members: dict[Hashable, list[int]] = {}
        for index, group in enumerate(group_ids):
            members.setdefault(group, []).append(index)

        batch_std = None
        if self.method == "grpo" and self.scale == "batch":
            batch_std = float(np.std(values, ddof=1)) if values.size > 1 else 0.0

        advantages = np.zeros_like(values)
        results: list[_GroupResult] = []
        for group, indices in members.items():
            group_nodes = None if node_ids is None else [node_ids[i] for i in indices]
            group_tree = _group_tree(trees, group, indices)
            result = self._group(
                values[indices], group_nodes, group_tree, None, mixed_problems, batch_std=batch_std
            )
            advantages[indices] = result.advantages
            result.dropped = [(indices[i], indices[j], kind) for i, j, kind in result.dropped]
            results.append(result)
        return _summarise(results, values.size, advantages)

    # -------------------------------------------------------------- internals

    def _group(
        self,
        rewards: np.ndarray,
        node_ids: Sequence[int] | None,
        tree: TreeArg,
        pairs: Sequence[tuple[int, int]] | None,
        mixed_problems: bool,
        batch_std: float | None,
    ) -> _GroupResult:
        size = rewards.size
        trees = self._sample_trees(tree, size, mixed_problems)
        if trees is not None:
            if node_ids is None:
                raise ValueError(
                    "expected node_ids (one per sample) when a tree is given, got None"
                )
            if len(node_ids) != size:
                raise ValueError(f"expected {size} node ids (one per reward), got {len(node_ids)}")
            for sample_tree, node in zip(trees, node_ids, strict=True):
                sample_tree._check_id(node)
        elif self.needs_tree:
            raise ValueError(f"method {self.method!r} needs a prefix tree, got None")

        start = time.perf_counter()
        constraints = None
        if trees is not None and (self.track_constraints or self.method in QP_METHODS):
            constraints = build_order_constraints(
                rewards,
                node_ids,  # type: ignore[arg-type]
                trees,
                source=self.value_source,
                success_threshold=self.success_threshold,
                pairs=pairs,
            )
        status, fallback = "not_applicable", False
        if self.method in QP_METHODS:
            assert constraints is not None
            advantages, status, fallback = self._project(rewards, constraints)
        else:
            advantages = self._closed_form(rewards, node_ids, trees, batch_std)
        elapsed_ms = (time.perf_counter() - start) * 1e3

        return _GroupResult(
            advantages=advantages,
            constraints=constraints,
            margin=self.margin,
            status=status,
            fallback=fallback,
            solver_ms=elapsed_ms,
            zero_std=_all_equal(rewards),
            dropped=list(constraints.dropped) if constraints is not None else [],
        )

    def _sample_trees(
        self, tree: TreeArg, size: int, mixed_problems: bool
    ) -> list[PrefixTree] | None:
        if tree is None:
            return None
        if isinstance(tree, PrefixTree):
            return [tree] * size
        trees = list(tree)
        if len(trees) != size:
            raise ValueError(f"expected one tree per sample ({size}), got {len(trees)}")
        if not all(isinstance(t, PrefixTree) for t in trees):
            raise TypeError("expected a PrefixTree or a sequence of PrefixTree objects")
        if not mixed_problems and any(t is not trees[0] for t in trees):
            raise ValueError(
                "the group mixes samples from several trees (problems). "
                "pass mixed_problems=True if that is intended"
            )
        return trees

    def _closed_form(
        self,
        rewards: np.ndarray,
        node_ids: Sequence[int] | None,
        trees: list[PrefixTree] | None,
        batch_std: float | None,
    ) -> np.ndarray:
        # Plain Python arithmetic: for small groups it costs less than a chain of
        # numpy calls, whose fixed overhead dominates at G = 8.
        values = rewards.tolist()
        size = len(values)
        if size <= 1:
            return np.zeros(size)
        if self.method in HEURISTIC_METHODS:
            assert trees is not None and node_ids is not None
            a, b = self.prior
            shifted = [
                r - self.alpha * value_unchecked(t, n, self.method, self.value_source, a, b)
                for r, t, n in zip(values, trees, node_ids, strict=True)
            ]
            mean = sum(shifted) / size
            return np.array([x - mean for x in shifted])

        if min(values) == max(values):
            return np.zeros(size)
        mean = sum(values) / size
        centred = [r - mean for r in values]
        if self.method == "flat" or self.scale == "none":
            return np.array(centred)
        if batch_std is None:
            std = math.sqrt(sum(c * c for c in centred) / (size - 1))
        else:
            std = batch_std
        denominator = std + self.eps
        return np.array([c / denominator for c in centred])

    def _project(
        self, rewards: np.ndarray, constraints: OrderConstraints
    ) -> tuple[np.ndarray, str, bool]:
        if rewards.size <= 1:
            return np.zeros_like(rewards), "single_sample", False
        r0 = rewards - rewards.mean()
        if _all_equal(rewards):
            r0 = np.zeros_like(rewards)
        norm = "soft" if self.method == "qp_soft" else "hard"

        if self.solver == "scipy":
            solution = solve_sae_qp_slsqp(
                r0, constraints.sample_pairs(), delta=self.margin, norm=norm
            )
            return solution.advantages, solution.status, solution.fallback

        class_r0 = np.zeros(constraints.num_classes)
        class_r0[constraints.class_of] = r0
        try:
            solution = solve_sae_qp(
                class_r0,
                constraints.class_weight,
                constraints.lower,
                constraints.upper,
                delta=self.margin,
                norm=norm,
                radius2=float(rewards.size),
            )
        except ActiveSetError as error:
            logger.warning("exact SAE solver failed (%s), so this group falls back to SLSQP", error)
            solution = solve_sae_qp_slsqp(
                r0, constraints.sample_pairs(), delta=self.margin, norm=norm
            )
            return solution.advantages, f"slsqp_fallback: {solution.status}", True
        return solution.advantages[constraints.class_of], solution.status, solution.fallback


@dataclass
class _GroupResult:
    advantages: np.ndarray
    constraints: OrderConstraints | None
    margin: float
    status: str
    fallback: bool
    solver_ms: float
    zero_std: bool
    dropped: list[tuple[int, int, str]]


def _all_equal(values: np.ndarray) -> bool:
    listed = values.tolist()
    return bool(listed) and min(listed) == max(listed)


def _as_rewards(rewards: np.ndarray | Sequence[float]) -> np.ndarray:
    values = np.asarray(rewards, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"expected a 1-D array of rewards, got shape {values.shape}")
    if not all(map(math.isfinite, values.tolist())):
        raise ValueError(
            f"expected finite rewards, got {values[~np.isfinite(values)][:5].tolist()}"
        )
    return values


def _group_tree(
    trees: Mapping[Hashable, PrefixTree] | Sequence[PrefixTree] | None,
    group: Hashable,
    indices: list[int],
) -> TreeArg:
    if trees is None:
        return None
    if isinstance(trees, Mapping):
        if group not in trees:
            raise KeyError(f"no tree for group id {group!r}: expected a key for every group id")
        return trees[group]
    return [trees[i] for i in indices]


def _summarise(results: list[_GroupResult], size: int, advantages: np.ndarray) -> AdvantageResult:
    total_pairs = 0
    satisfied = 0.0
    for result in results:
        if result.constraints is None or result.constraints.num_pairs == 0:
            continue
        pairs = result.constraints.num_pairs
        total_pairs += pairs
        satisfied += pairs * result.constraints.satisfaction(result.advantages, result.margin)

    statuses: dict[str, int] = {}
    for result in results:
        statuses[result.status] = statuses.get(result.status, 0) + 1
    status = next(iter(statuses)) if len(statuses) == 1 else "mixed"

    mean, variance = float("nan"), float("nan")
    if size:
        listed = advantages.tolist()
        mean = sum(listed) / size
        variance = sum((x - mean) ** 2 for x in listed) / size
    diagnostics: dict[str, Any] = {
        "constraint_satisfaction": satisfied / total_pairs if total_pairs else float("nan"),
        "num_constraints": total_pairs,
        "solver_status": status,
        "solver_status_counts": statuses,
        "solver_ms": float(sum(r.solver_ms for r in results)),
        "fallback": any(r.fallback for r in results),
        "dropped_pairs": [pair for r in results for pair in r.dropped],
        "advantage_mean": mean,
        "advantage_var": variance,
        "num_groups": len(results),
        "frac_zero_std_groups": sum(r.zero_std for r in results) / len(results)
        if results
        else float("nan"),
    }
    return AdvantageResult(advantages=advantages, diagnostics=diagnostics)
