"""GRPO trainer with Staged Advantage Estimation (SAE) over teacher prefix trees.

One training step:

1. take ``batch_size`` problems (a fresh seeded permutation each epoch);
2. per problem, sample a group of ``group_size`` prefixes of mixed depth from its
   teacher tree (only the root for ``advantage="grpo"``, which is standard GRPO);
3. the student completes each prefix on-policy, and ``envs.check_answer`` gives
   the reward (1.0 correct, else 0.0);
4. ``sae.StagedAdvantageEstimator`` turns rewards into advantages per group;
5. the clipped surrogate loss over completion tokens is accumulated over
   micro-batches, which also give the gradient variance estimate, and AdamW
   updates the policy (``num_iterations`` times with the same samples).

The loss and statistics are pure functions in ``agents.losses`` and
``agents.grad_stats``. This module contains the loop and its bookkeeping.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import torch
from torch import Tensor

from agents.checkpoint import (
    capture_rng_states,
    load_checkpoint,
    restore_rng_states,
    save_checkpoint,
)
from agents.grad_stats import (
    GradientStats,
    GradientVarianceAccumulator,
    assign_flat_gradients,
    flatten_gradients,
)
from agents.losses import (
    LOSS_AGGREGATIONS,
    LossAggregation,
    aggregate_loss,
    clipped_surrogate,
    k3_kl,
)

logger = logging.getLogger(__name__)

AdvantageMethod = Literal[
    "grpo", "flat", "expectation", "optimistic", "pessimistic", "qp_soft", "qp_hard"
]
ADVANTAGE_METHODS: tuple[str, ...] = get_args(AdvantageMethod)
PrefixDistribution = Literal["uniform_nodes", "uniform_depth", "curriculum"]
ValueSource = Literal["teacher", "student", "both"]
LRSchedule = Literal["cosine", "constant"]


@dataclass
class GRPOSAEConfig:
    """Settings of ``GRPOSAETrainer``; validated once in ``__post_init__``.

    Defaults follow common GRPO practice where the Tree-OPO paper is silent:
    clip ``epsilon`` 0.2, no KL (``beta`` 0), token-mean loss aggregation, one
    update per batch (``num_iterations`` 1), and SAE weight ``alpha`` 0.5 with
    margin 0.01.
    """

    # steps and batch shape
    steps: int = 20
    batch_size: int = 2
    group_size: int = 4
    completions_per_prefix: int = 1
    micro_batch_size: int = 2
    # prefixes and generation
    prefix_distribution: PrefixDistribution = "uniform_depth"
    include_terminal: bool = False
    max_new_tokens: int = 128
    temperature: float = 1.0
    top_p: float = 1.0
    # advantages
    advantage: AdvantageMethod = "expectation"
    alpha: float = 0.5
    margin: float = 0.01
    value_source: ValueSource = "teacher"
    # loss
    epsilon: float = 0.2
    epsilon_high: float | None = None
    beta: float = 0.0
    num_iterations: int = 1
    loss_aggregation: LossAggregation = "token_mean"
    # optimizer
    learning_rate: float = 1e-5
    weight_decay: float = 0.0
    adam_betas: tuple[float, float] = (0.9, 0.99)
    lr_schedule: LRSchedule = "cosine"
    warmup_steps: int = 2
    max_grad_norm: float | None = 1.0
    # LoRA through peft
    use_lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 64
    lora_dropout: float = 0.1
    lora_target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    # bookkeeping
    seed: int = 0
    log_every: int = 1
    text_every: int = 5
    num_text_samples: int = 4
    eval_every: int = 0
    eval_before: bool = True
    eval_max_new_tokens: int = 256
    eval_batch_size: int = 8
    save_every: int = 0
    keep_checkpoints: int | None = 2
    grad_variance: bool = True

    def __post_init__(self) -> None:
        self.adam_betas = tuple(self.adam_betas)  # type: ignore[assignment]
        self.lora_target_modules = tuple(self.lora_target_modules)
        self._check_positive_ints()
        self._check_choices()
        self._check_ranges()

    def _check_positive_ints(self) -> None:
        for name in (
            "steps",
            "batch_size",
            "group_size",
            "completions_per_prefix",
            "micro_batch_size",
            "max_new_tokens",
            "num_iterations",
            "log_every",
            "text_every",
            "eval_max_new_tokens",
            "eval_batch_size",
            "lora_r",
            "lora_alpha",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"expected {name} to be a positive integer, got {value!r}")
        for name in ("warmup_steps", "eval_every", "save_every", "num_text_samples"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(
                    f"expected {name} to be a non-negative integer (0 turns it off), got {value!r}"
                )
        if self.keep_checkpoints is not None and self.keep_checkpoints < 1:
            raise ValueError(
                f"expected keep_checkpoints >= 1, or None to keep all, got {self.keep_checkpoints}"
            )

    def _check_choices(self) -> None:
        choices: dict[str, tuple[str, ...]] = {
            "advantage": ADVANTAGE_METHODS,
            "prefix_distribution": get_args(PrefixDistribution),
            "value_source": get_args(ValueSource),
            "loss_aggregation": LOSS_AGGREGATIONS,
            "lr_schedule": get_args(LRSchedule),
        }
        for name, allowed in choices.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"expected {name} to be one of {allowed}, got {value!r}")

    def _check_ranges(self) -> None:
        if not 0.0 < self.epsilon < 1.0:
            raise ValueError(f"expected epsilon in (0, 1), got {self.epsilon}")
        if self.epsilon_high is not None and self.epsilon_high < self.epsilon:
            raise ValueError(
                f"expected epsilon_high >= epsilon ({self.epsilon}), got {self.epsilon_high}; "
                "use None for a symmetric clip range"
            )

        if self.beta < 0.0:
            raise ValueError(
                f"expected beta (KL coefficient) >= 0, got {self.beta}; 0 turns KL off"
            )
        if self.learning_rate <= 0.0:
            raise ValueError(f"expected a positive learning_rate, got {self.learning_rate}")
        if self.weight_decay < 0.0:
            raise ValueError(f"expected weight_decay >= 0, got {self.weight_decay}")
        if len(self.adam_betas) != 2 or not all(0.0 <= b < 1.0 for b in self.adam_betas):
            raise ValueError(f"expected two adam_betas in [0, 1), got {self.adam_betas}")
        if self.max_grad_norm is not None and self.max_grad_norm <= 0.0:
            raise ValueError(
                f"expected a positive max_grad_norm, or None for no clipping, got {self.max_grad_norm}"
            )

        if self.temperature <= 0.0:
            raise ValueError(f"expected temperature > 0, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"expected top_p in (0, 1], got {self.top_p}")
        if not (math.isfinite(self.alpha) and self.alpha >= 0.0):
            raise ValueError(f"expected a finite alpha >= 0, got {self.alpha}")
        if self.margin < 0.0:
            raise ValueError(f"expected margin >= 0, got {self.margin}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"expected lora_dropout in [0, 1), got {self.lora_dropout}")

    @property
    def samples_per_step(self) -> int:
        return self.batch_size * self.group_size * self.completions_per_prefix

    @property
    def num_micro_batches(self) -> int:
        return math.ceil(self.samples_per_step / self.micro_batch_size)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def warmup_cosine_factor(update: int, warmup: int, total: int) -> float:
    """Return the learning-rate factor after ``update`` optimizer updates.

    Linear warmup from ``1 / (warmup + 1)`` to 1 over ``warmup`` updates, then a
    cosine decay from 1 to 0 at ``total`` updates.
    """
    if update < warmup:
        return (update + 1) / (warmup + 1)
    if total <= warmup:
        return 1.0
    progress = min((update - warmup) / (total - warmup), 1.0)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def zero_std_group_fraction(rewards: np.ndarray, group_ids: Sequence[int]) -> float:
    """Return the fraction of groups whose rewards are all equal (they give no GRPO signal)."""
    groups: dict[int, list[float]] = {}
    for reward, group in zip(rewards.tolist(), group_ids, strict=True):
        groups.setdefault(group, []).append(reward)
    if not groups:
        return math.nan
    flat = sum(1 for values in groups.values() if max(values) == min(values))
    return flat / len(groups)


def correctness_reward(completion: str, problem: Any) -> float:
    """Return 1.0 when ``envs.check_answer`` accepts the completion for ``problem.answer``, else 0.0."""
    from envs import check_answer

    return 1.0 if check_answer(completion, problem.answer).correct else 0.0


@dataclass
class Rollout:
    """One step's samples, one entry per sample (a prefix and its completion)."""

    problems: list[Any]
    group_ids: list[int]
    node_ids: list[int]
    prefixes: list[list[str]]
    prompts: list[str]
    completions: list[Any]
    rewards: np.ndarray
    generation_seconds: float = 0.0


@dataclass
class MicroBatch:
    """Tokenized samples of one micro-batch and their fixed per-step tensors."""

    batch: Any
    advantages: Tensor
    old_logprobs: Tensor | None = None
    ref_logprobs: Tensor | None = None


@dataclass
class UpdateSums:
    """Sums over micro-batches, turned into step metrics by ``UpdateSums.metrics``."""

    loss: float = 0.0
    tokens: float = 0.0
    clipped: float = 0.0
    entropy: float = 0.0
    kl: float = 0.0
    applied: int = 0
    skipped: int = 0
    learning_rate: float = math.nan
    grad_norms: list[float] = field(default_factory=list)
    grad_stats: GradientStats | None = None


class GRPOSAETrainer:
    """Train an ``LMPolicy`` with GRPO over SAE advantages from teacher prefix trees.

    Args:
        policy: an ``agents.LMPolicy`` (or an object with the same methods).
        config: the training settings.
        train_problems: ``envs.Problem`` objects to train on.
        trees: teacher prefix trees, as a mapping from problem id or a sequence
            (matched by ``tree.problem["id"]``). A problem without a tree uses a
            root-only tree. Ignored for ``advantage="grpo"``.
        eval_problems: held-out problems for greedy pass@1, or None.
        log_dir: TensorBoard log directory, or None for no TensorBoard output.
        output_dir: directory for checkpoints and the final model, or None.
        estimator: an object with the ``batch`` method of
            ``sae.StagedAdvantageEstimator``; None builds one from the config.
        reward_fn: ``reward_fn(completion_text, problem) -> float``; None uses
            ``correctness_reward`` (1.0 when ``envs.check_answer`` accepts it).
    """

    def __init__(
        self,
        policy: Any,
        config: GRPOSAEConfig,
        train_problems: Sequence[Any],
        trees: Mapping[str, Any] | Sequence[Any] | None = None,
        *,
        eval_problems: Sequence[Any] | None = None,
        log_dir: str | Path | None = None,
        output_dir: str | Path | None = None,
        estimator: Any = None,
        reward_fn: Callable[[str, Any], float] | None = None,
    ) -> None:
        if not train_problems:
            raise ValueError("expected at least one training problem, got none")
        self.policy = policy
        self.config = config
        self.train_problems = list(train_problems)
        self.eval_problems = list(eval_problems or [])
        _check_held_out(self.train_problems, self.eval_problems)
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.step = 0
        self.generator = np.random.default_rng(config.seed)
        self._order: list[int] = []
        self._stop_requested = False
        self.last_rollout: Rollout | None = None
        self.last_advantages: np.ndarray | None = None

        self.trees = self._index_trees(trees)
        self.estimator = estimator if estimator is not None else self._build_estimator()
        self.reward_fn = reward_fn if reward_fn is not None else correctness_reward
        if config.use_lora:
            self._apply_lora()
        self.parameters = [p for p in self.policy.model.parameters() if p.requires_grad]
        if not self.parameters:
            raise ValueError("the policy model has no trainable parameters")
        self.reference_model = self._build_reference_model()
        self.optimizer = torch.optim.AdamW(
            self.parameters,
            lr=config.learning_rate,
            betas=config.adam_betas,
            weight_decay=config.weight_decay,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.writer = self._build_writer(log_dir)

    # setup

    def _index_trees(self, trees: Mapping[str, Any] | Sequence[Any] | None) -> dict[str, Any]:
        from sae import PrefixTree

        if trees is None:
            indexed: dict[str, Any] = {}
        elif isinstance(trees, Mapping):
            indexed = {str(key): tree for key, tree in trees.items()}
        else:
            indexed = {str(tree.problem.get("id")): tree for tree in trees}
        missing = [p for p in self.train_problems if str(p.id) not in indexed]
        if missing and self.config.advantage != "grpo":
            logger.warning(
                "%d of %d training problems have no teacher tree; they train from the root "
                "prompt only (first missing id: %s)",
                len(missing),
                len(self.train_problems),
                missing[0].id,
            )
        for problem in missing:
            indexed[str(problem.id)] = PrefixTree(problem.to_dict())
        return indexed

    def _build_estimator(self) -> Any:
        from sae import StagedAdvantageEstimator

        return StagedAdvantageEstimator(
            method=self.config.advantage,
            alpha=self.config.alpha,
            margin=self.config.margin,
            value_source=self.config.value_source,
        )

    def _apply_lora(self) -> None:
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            r=self.config.lora_r,
            lora_alpha=self.config.lora_alpha,
            lora_dropout=self.config.lora_dropout,
            target_modules=list(self.config.lora_target_modules),
            task_type="CAUSAL_LM",
        )
        self.policy.model = get_peft_model(self.policy.model, lora)
        logger.info("LoRA applied: %s", lora)

    def _build_reference_model(self) -> torch.nn.Module | None:
        # No reference model exists without a KL term. With LoRA the reference is
        # the base model with adapters disabled, so no copy is needed either.
        if self.config.beta == 0.0 or self.config.use_lora:
            return None
        import copy

        reference = copy.deepcopy(self.policy.model)
        reference.eval()
        reference.requires_grad_(False)
        return reference

    def _lr_factor(self, update: int) -> float:
        if self.config.lr_schedule == "constant":
            return 1.0
        total = self.config.steps * self.config.num_iterations
        warmup = self.config.warmup_steps * self.config.num_iterations
        return warmup_cosine_factor(update, warmup, total)

    def _build_writer(self, log_dir: str | Path | None, purge_step: int | None = None) -> Any:
        if log_dir is None:
            return None
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)
        if purge_step is None:
            writer.add_text("config", _markdown_table(self.config.to_dict()), 0)
        return writer

    # one training step

    def train_step(self) -> dict[str, float]:
        """Run one step (rollout, advantages, update) and return its metrics."""
        started = time.perf_counter()
        rollout = self._rollout(self._next_problems())
        advantages, diagnostics = self._advantages(rollout)
        self._record_outcomes(rollout)
        micro_batches = self._prepare_micro_batches(rollout, advantages)
        sums = self._update(micro_batches)
        self.step += 1
        self.last_rollout, self.last_advantages = rollout, advantages

        metrics = self._step_metrics(rollout, advantages, diagnostics, sums)
        metrics["time/step_seconds"] = time.perf_counter() - started
        self._log_step(metrics, rollout, advantages)
        return metrics

    def _next_problems(self) -> list[Any]:
        problems = []
        for _ in range(self.config.batch_size):
            if not self._order:
                self._order = self.generator.permutation(len(self.train_problems)).tolist()
            problems.append(self.train_problems[self._order.pop(0)])
        return problems

    def _sample_nodes(self, problem: Any) -> list[int]:
        if self.config.advantage == "grpo":
            return [0] * self.config.group_size
        from sae import sample_prefixes

        tree = self.trees[str(problem.id)]
        return list(
            sample_prefixes(
                tree,
                self.config.group_size,
                rng=self.generator,
                distribution=self.config.prefix_distribution,
                include_terminal=self.config.include_terminal,
            )
        )

    def _rollout(self, problems: Sequence[Any]) -> Rollout:
        rollout = Rollout([], [], [], [], [], [], np.zeros(0))
        for group, problem in enumerate(problems):
            tree = self.trees[str(problem.id)]
            for node_id in self._sample_nodes(problem):
                steps = tree.steps_to(node_id)
                for _ in range(self.config.completions_per_prefix):
                    rollout.problems.append(problem)
                    rollout.group_ids.append(group)
                    rollout.node_ids.append(node_id)
                    rollout.prefixes.append(steps)
                    rollout.prompts.append(self.policy.build_prompt(problem.question, steps))

        started = time.perf_counter()
        rollout.completions = self.policy.generate_completions(
            rollout.prompts,
            temperature=self.config.temperature,
            top_p=self.config.top_p,
            max_new_tokens=self.config.max_new_tokens,
            seed=int(self.generator.integers(2**31 - 1)),
        )
        rollout.generation_seconds = time.perf_counter() - started
        rollout.rewards = np.array(
            [
                float(self.reward_fn(gen.text, problem))
                for gen, problem in zip(rollout.completions, rollout.problems, strict=True)
            ]
        )
        return rollout

    def _advantages(self, rollout: Rollout) -> tuple[np.ndarray, dict[str, Any]]:
        group_trees = {
            group: self.trees[str(problem.id)]
            for group, problem in zip(rollout.group_ids, rollout.problems, strict=True)
        }
        result = self.estimator.batch(
            rollout.rewards, rollout.group_ids, rollout.node_ids, group_trees
        )
        return np.asarray(result.advantages, dtype=np.float64), dict(result.diagnostics)

    def _record_outcomes(self, rollout: Rollout) -> None:
        # Recorded after the advantages, so that no sample's own reward enters its baseline.
        for problem, node_id, reward in zip(
            rollout.problems, rollout.node_ids, rollout.rewards.tolist(), strict=True
        ):
            self.trees[str(problem.id)].record_outcome(node_id, reward)

    def _prepare_micro_batches(self, rollout: Rollout, advantages: np.ndarray) -> list[MicroBatch]:
        size = self.config.micro_batch_size
        micro_batches = []
        for start in range(0, len(rollout.prompts), size):
            rows = slice(start, start + size)
            batch = self.policy.tokenize_pairs(
                rollout.prompts[rows], [gen.token_ids for gen in rollout.completions[rows]]
            ).to(self.policy.device)
            micro = MicroBatch(
                batch=batch,
                advantages=torch.as_tensor(
                    advantages[rows], dtype=torch.float32, device=self.policy.device
                ),
            )
            if self.config.num_iterations > 1:
                micro.old_logprobs = self._fixed_logprobs(batch)
            if self.config.beta > 0.0:
                micro.ref_logprobs = self._reference_logprobs(batch)
            micro_batches.append(micro)
        return micro_batches

    def _fixed_logprobs(self, batch: Any, model: Any = None) -> Tensor:
        # clone() turns the inference-mode tensor into a normal one usable in autograd
        logprobs = self.policy.token_logprobs(
            batch, model=model, temperature=self.config.temperature
        )
        return logprobs.detach().clone()

    def _reference_logprobs(self, batch: Any) -> Tensor:
        if self.reference_model is not None:
            return self._fixed_logprobs(batch, model=self.reference_model)
        with self.policy.model.disable_adapter():
            return self._fixed_logprobs(batch)

    # update

    def _update(self, micro_batches: list[MicroBatch]) -> UpdateSums:
        sums = UpdateSums(learning_rate=float(self.scheduler.get_last_lr()[0]))
        self.policy.model.eval()  # dropout off, so the first ratio is exactly 1
        zero_gradient = self.config.beta == 0.0 and all(
            not bool(micro.advantages.any()) for micro in micro_batches
        )
        for iteration in range(self.config.num_iterations):
            if zero_gradient:
                # Every advantage is 0 and there is no KL term, so the loss gradient is
                # exactly 0; the backward passes are skipped, the optimizer still steps.
                finite, stats = True, self._zero_gradients(len(micro_batches))
            else:
                finite, stats = self.accumulate_gradients(
                    micro_batches, sums, record=iteration == 0
                )
            if iteration == 0:
                sums.grad_stats = stats
            self._apply_update(finite, sums)
        return sums

    def accumulate_gradients(
        self,
        micro_batches: list[MicroBatch],
        sums: UpdateSums | None = None,
        *,
        record: bool = True,
    ) -> tuple[bool, GradientStats | None]:
        """Fill ``.grad`` of the trainable parameters with the whole batch's loss gradient.

        Each micro-batch contributes its share of the batch loss, so the result equals
        one backward pass over the whole batch. With ``config.grad_variance``, the
        gradient of every micro-batch also goes to a streaming accumulator. Its
        per-micro-batch estimate is ``M`` times the micro-batch's share, so the
        mean of the estimates is the batch gradient.

        Returns:
            ``(finite, stats)``: whether every micro-batch loss was finite, and the
            gradient statistics (None when ``config.grad_variance`` is off).
        """
        sums = sums if sums is not None else UpdateSums()
        total_tokens = float(sum(float(m.batch.completion_mask.sum()) for m in micro_batches))
        total_sequences = float(sum(m.batch.input_ids.shape[0] for m in micro_batches))
        accumulator = GradientVarianceAccumulator() if self.config.grad_variance else None
        self.optimizer.zero_grad(set_to_none=True)
        finite = True
        for micro in micro_batches:
            if accumulator is not None:
                self.optimizer.zero_grad(set_to_none=True)
            loss = self._micro_batch_loss(micro, total_tokens, total_sequences, sums, record=record)
            finite = finite and bool(torch.isfinite(loss))
            loss.backward()
            if accumulator is not None:
                flat = flatten_gradients(self.parameters)
                accumulator.update(flat.mul_(len(micro_batches)))
        if accumulator is None:
            return finite, None
        assign_flat_gradients(self.parameters, accumulator.mean)
        return finite, accumulator.stats()

    def _zero_gradients(self, num_micro_batches: int) -> GradientStats | None:
        for param in self.parameters:
            param.grad = torch.zeros_like(param)
        if not self.config.grad_variance:
            return None
        variance = 0.0 if num_micro_batches > 1 else math.nan
        return GradientStats(variance, math.nan, 0.0, num_micro_batches)

    def _micro_batch_loss(
        self,
        micro: MicroBatch,
        total_tokens: float,
        total_sequences: float,
        sums: UpdateSums,
        *,
        record: bool,
    ) -> Tensor:
        config = self.config
        mask = micro.batch.completion_mask
        logprobs, entropy = self.policy.token_logprobs(
            micro.batch, requires_grad=True, return_entropy=True, temperature=config.temperature
        )
        old = micro.old_logprobs if micro.old_logprobs is not None else logprobs.detach()
        per_token, is_clipped = clipped_surrogate(
            logprobs,
            old,
            micro.advantages,
            epsilon=config.epsilon,
            epsilon_high=config.epsilon_high,
        )
        kl = None
        if micro.ref_logprobs is not None:
            kl = k3_kl(logprobs, micro.ref_logprobs)
            per_token = per_token + config.beta * kl
        loss = aggregate_loss(
            per_token,
            mask,
            config.loss_aggregation,
            max_completion_length=config.max_new_tokens,
            total_tokens=total_tokens,
            total_sequences=total_sequences,
        )
        if record:
            maskf = mask.to(logprobs.dtype)
            sums.loss += float(loss.detach())
            sums.tokens += float(maskf.sum())
            sums.clipped += float((is_clipped.to(maskf.dtype) * maskf).sum())
            sums.entropy += float((entropy.detach() * maskf).sum())
            if kl is not None:
                sums.kl += float((kl.detach() * maskf).sum())
        return loss

    def _apply_update(self, finite_loss: bool, sums: UpdateSums) -> None:
        max_norm = self.config.max_grad_norm if self.config.max_grad_norm is not None else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.parameters, max_norm))
        if finite_loss and math.isfinite(grad_norm):
            self.optimizer.step()
            sums.applied += 1
            sums.grad_norms.append(grad_norm)
        else:
            logger.warning(
                "skipped the update at step %d: non-finite %s (gradient norm %s)",
                self.step + 1,
                "loss" if not finite_loss else "gradient",
                grad_norm,
            )
            sums.skipped += 1
        self.optimizer.zero_grad(set_to_none=True)
        with warnings.catch_warnings():
            # The schedule follows the update count, skipped updates included, and torch
            # warns when the scheduler steps before the first optimizer.step().
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step()`")
            self.scheduler.step()

    # metrics and logging

    def _step_metrics(
        self,
        rollout: Rollout,
        advantages: np.ndarray,
        diagnostics: Mapping[str, Any],
        sums: UpdateSums,
    ) -> dict[str, float]:
        lengths = np.array([len(gen.token_ids) for gen in rollout.completions], dtype=float)
        tokens = max(sums.tokens, 1.0)
        metrics = {
            "train/reward_mean": float(rollout.rewards.mean()),
            "train/accuracy": float((rollout.rewards > 0).mean()),
            "train/frac_zero_std_groups": zero_std_group_fraction(
                rollout.rewards, rollout.group_ids
            ),
            "train/prefix_depth_mean": float(np.mean([len(p) for p in rollout.prefixes])),
            "train/loss": sums.loss,
            "train/learning_rate": sums.learning_rate,
            "train/skipped_updates": float(sums.skipped),
            "completions/mean_length": float(lengths.mean()),
            "completions/max_length": float(lengths.max()),
            "completions/finished_rate": float(
                np.mean([bool(gen.finished) for gen in rollout.completions])
            ),
            "sae/advantage_mean": float(advantages.mean()),
            "sae/advantage_var": float(advantages.var()),
            "time/generation_seconds": rollout.generation_seconds,
        }
        if sums.tokens > 0:
            # absent when the backward passes were skipped for all-zero advantages
            metrics["policy/clip_ratio"] = sums.clipped / tokens
            metrics["policy/entropy"] = sums.entropy / tokens
        if self.config.beta > 0.0:
            metrics["policy/kl"] = sums.kl / tokens
        for key in ("constraint_satisfaction", "solver_ms", "num_constraints", "dropped_pairs"):
            if key in diagnostics and _is_number(diagnostics[key]):
                metrics[f"sae/{key}"] = float(diagnostics[key])
        if "fallback" in diagnostics:
            metrics["sae/fallback"] = float(bool(diagnostics["fallback"]))
        if sums.grad_norms:
            metrics["grad/norm"] = float(np.mean(sums.grad_norms))
        if sums.grad_stats is not None:
            stats = sums.grad_stats
            metrics["grad/variance"] = stats.variance
            metrics["grad/snr"] = stats.snr
            metrics["grad/mean_norm"] = stats.mean_norm
            metrics["grad/num_micro_batches"] = float(stats.num_micro_batches)
        return metrics

    def _log_step(
        self, metrics: Mapping[str, float], rollout: Rollout, advantages: np.ndarray
    ) -> None:
        if self.writer is None:
            return
        if self.step % self.config.log_every == 0:
            for name, value in metrics.items():
                if math.isfinite(value):
                    self.writer.add_scalar(name, value, self.step)
            self.writer.add_histogram("sae/advantages", advantages, self.step)
            self.writer.add_histogram("train/rewards", rollout.rewards, self.step)
        if self.config.num_text_samples and self.step % self.config.text_every == 0:
            self.writer.add_text("samples", self._samples_markdown(rollout, advantages), self.step)

    def _samples_markdown(self, rollout: Rollout, advantages: np.ndarray) -> str:
        rows = [
            "| problem | depth | prefix | completion | reward | advantage |",
            "|---|---|---|---|---|---|",
        ]
        for i in range(min(self.config.num_text_samples, len(rollout.prompts))):
            cells = [
                rollout.problems[i].question[:200],
                str(len(rollout.prefixes[i])),
                " / ".join(rollout.prefixes[i])[:300],
                rollout.completions[i].text[:400],
                f"{rollout.rewards[i]:.1f}",
                f"{advantages[i]:+.3f}",
            ]
            rows.append("| " + " | ".join(_markdown_cell(cell) for cell in cells) + " |")
        return "\n".join(rows)

    # evaluation

    def evaluate(self, problems: Sequence[Any] | None = None) -> dict[str, float]:
        """Return greedy pass@1 on ``problems`` (default: the held-out problems).

        The global RNG states are restored afterwards, so evaluating does not
        change the training run that follows.
        """
        problems = list(self.eval_problems if problems is None else problems)
        if not problems:
            raise ValueError("no evaluation problems: pass eval_problems to the trainer")
        rng_states = capture_rng_states()
        correct: list[bool] = []
        lengths: list[int] = []
        size = self.config.eval_batch_size
        try:
            for start in range(0, len(problems), size):
                chunk = problems[start : start + size]
                generations = self.policy.generate_completions(
                    [self.policy.build_prompt(problem.question) for problem in chunk],
                    max_new_tokens=self.config.eval_max_new_tokens,
                    greedy=True,
                )
                for gen, problem in zip(generations, chunk, strict=True):
                    correct.append(correctness_reward(gen.text, problem) > 0.0)
                    lengths.append(len(gen.token_ids))
        finally:
            restore_rng_states(rng_states)
        return {
            "eval/accuracy": float(np.mean(correct)),
            "eval/num_problems": float(len(problems)),
            "eval/mean_length": float(np.mean(lengths)),
        }

    def _evaluate_and_log(self) -> dict[str, float]:
        metrics = self.evaluate()
        logger.info("step %d: eval accuracy %.3f", self.step, metrics["eval/accuracy"])
        if self.writer is not None:
            for name, value in metrics.items():
                self.writer.add_scalar(name, value, self.step)
            self.writer.flush()
        return metrics

    # training loop

    def train(self, *, progress: bool = True) -> dict[str, Any]:
        """Train until ``config.steps``, evaluating and checkpointing as configured.

        The first Ctrl-C finishes the current step, saves a checkpoint (when an
        output directory is set) and returns with ``interrupted`` True. A second
        Ctrl-C aborts at once without saving.

        Returns:
            ``{"eval_before", "eval_after", "last_metrics", "interrupted", "steps"}``.
        """
        from tqdm.auto import tqdm

        summary: dict[str, Any] = {"eval_before": None, "eval_after": None, "last_metrics": {}}
        if self.eval_problems and self.config.eval_before and self.step == 0:
            summary["eval_before"] = self._evaluate_and_log()

        bar = tqdm(total=self.config.steps, initial=self.step, disable=not progress, unit="step")
        with _GracefulInterrupt(self):
            while self.step < self.config.steps and not self._stop_requested:
                metrics = self.train_step()
                summary["last_metrics"] = metrics
                bar.update(1)
                bar.set_postfix(
                    reward=f"{metrics['train/reward_mean']:.2f}",
                    acc=f"{metrics['train/accuracy']:.2f}",
                )
                self._after_step()
        bar.close()

        summary["interrupted"] = self._stop_requested
        if self._stop_requested:
            self.save_checkpoint()
        elif self.eval_problems:
            summary["eval_after"] = self._evaluate_and_log()
        summary["steps"] = self.step
        if self.writer is not None:
            self.writer.flush()
        return summary

    def _after_step(self) -> None:
        config = self.config
        finished = self.step >= config.steps
        if config.save_every and self.step % config.save_every == 0 and not finished:
            self.save_checkpoint()
        evaluate_now = config.eval_every and self.step % config.eval_every == 0
        if evaluate_now and not finished and self.eval_problems:
            self._evaluate_and_log()

    def request_stop(self) -> None:
        """Ask ``train`` to stop after the current step and save a checkpoint."""
        self._stop_requested = True

    # checkpoints

    def save_checkpoint(self) -> Path | None:
        """Write ``output_dir/checkpoint-<step>`` atomically (nothing without an output_dir)."""
        if self.output_dir is None:
            logger.warning("no output_dir set, so no checkpoint is written at step %d", self.step)
            return None
        return save_checkpoint(
            self.output_dir,
            self.step,
            model=self.policy.model,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            generator=self.generator,
            trees=self.trees.values(),
            meta={"config": self.config.to_dict()},
            extra={"order": list(self._order)},
            keep_last=self.config.keep_checkpoints,
        )

    def resume(self, path: str | Path) -> int:
        """Restore model, optimizer, scheduler, RNG states, step and tree counts; return the step."""
        data = load_checkpoint(
            path,
            model=self.policy.model,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            trees=self.trees.values(),
        )
        if data.generator_state is not None:
            self.generator.bit_generator.state = data.generator_state
        self._order = [int(i) for i in data.extra.get("order", [])]
        self.step = data.step
        if self.writer is not None:
            # purge_step drops events that a crashed run logged after this checkpoint
            log_dir = self.writer.log_dir
            self.writer.close()
            self.writer = self._build_writer(log_dir, purge_step=self.step + 1)
        return self.step

    def save_model(self, path: str | Path) -> Path:
        """Save the policy model (safetensors) and its tokenizer to ``path``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.policy.model.save_pretrained(path, safe_serialization=True)
        tokenizer = getattr(self.policy, "tokenizer", None)
        if tokenizer is not None:
            tokenizer.save_pretrained(path)
        return path

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class _GracefulInterrupt:
    """Turn the first SIGINT into ``trainer.request_stop()``; restore the handler on exit."""

    def __init__(self, trainer: GRPOSAETrainer) -> None:
        self.trainer = trainer
        self.previous: Any = None
        self.active = threading.current_thread() is threading.main_thread()

    def __enter__(self) -> _GracefulInterrupt:
        if self.active:
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.active:
            signal.signal(signal.SIGINT, self.previous)

    def _handle(self, signum: int, frame: object) -> None:
        logger.warning(
            "interrupt received: finishing step %d, then saving a checkpoint "
            "(press Ctrl-C again to abort without saving)",
            self.trainer.step + 1,
        )
        self.trainer.request_stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _check_held_out(train_problems: Sequence[Any], eval_problems: Sequence[Any]) -> None:
    train_ids = {str(problem.id) for problem in train_problems}
    overlap = sorted(str(problem.id) for problem in eval_problems if str(problem.id) in train_ids)
    if overlap:
        raise ValueError(
            f"expected held-out eval problems, got {len(overlap)} that are also training "
            f"problems (first ids: {overlap[:3]}); remove them from one of the two lists"
        )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _markdown_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _markdown_table(values: Mapping[str, Any]) -> str:
    rows = ["| setting | value |", "|---|---|"]
    rows += [f"| {key} | {_markdown_cell(str(value))} |" for key, value in values.items()]
    return "\n".join(rows)
