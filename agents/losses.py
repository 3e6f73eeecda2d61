"""Per-token policy-gradient losses for GRPO-style training.

Every function here is pure: tensors in, tensors out, no model and no state.
Shapes use ``B`` for sequences and ``T`` for token positions. ``mask`` is 1.0 on
completion tokens and 0.0 on prompt, prefix and padding tokens, so prefix tokens
are context only and never carry loss.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import Tensor

LossAggregation = Literal["token_mean", "sequence_mean", "constant_length"]
LOSS_AGGREGATIONS: tuple[str, ...] = get_args(LossAggregation)


def clipped_surrogate(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    *,
    epsilon: float = 0.2,
    epsilon_high: float | None = None,
) -> tuple[Tensor, Tensor]:
    """Compute the per-token clipped surrogate loss of PPO/GRPO.

    The ratio ``rho = exp(logprobs - old_logprobs)`` is clipped to
    ``[1 - epsilon, 1 + epsilon_high]`` (``epsilon_high`` defaults to ``epsilon``),
    and the loss is ``-min(rho * A, clip(rho) * A)``.

    Args:
        logprobs: ``[B, T]`` logprobs of the current policy (carry the gradient).
        old_logprobs: ``[B, T]`` logprobs of the policy that sampled the tokens.
        advantages: ``[B]`` per-sequence or ``[B, T]`` per-token advantages.
        epsilon: lower clip range, and the upper one unless ``epsilon_high`` is set.
        epsilon_high: upper clip range (DAPO's "clip higher"), or None.

    Returns:
        ``(loss, is_clipped)``, both ``[B, T]``. ``is_clipped`` is a bool tensor
        that is True exactly where the clipped term is strictly smaller than the
        unclipped one, so the minimum takes the clipped term and that token has
        zero gradient. Apply the completion mask before averaging either.
    """
    if logprobs.shape != old_logprobs.shape:
        raise ValueError(
            f"expected logprobs and old_logprobs of one shape, got {tuple(logprobs.shape)} "
            f"and {tuple(old_logprobs.shape)}"
        )
    upper = epsilon if epsilon_high is None else epsilon_high
    if epsilon <= 0 or upper <= 0:
        raise ValueError(
            f"expected positive clip ranges, got epsilon={epsilon}, epsilon_high={upper}"
        )

    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(1)
    advantages = advantages.to(logprobs.dtype)

    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - epsilon, 1.0 + upper) * advantages
    loss = -torch.minimum(unclipped, clipped)
    is_clipped = clipped < unclipped
    return loss, is_clipped


def k3_kl(logprobs: Tensor, ref_logprobs: Tensor) -> Tensor:
    """Compute the per-token k3 estimate of KL(policy || reference).

    ``k3 = exp(ref - logp) - (ref - logp) - 1`` (Schulman, "Approximating KL
    divergence", 2020). It is zero when both logprobs are equal and never
    negative, because ``exp(x) >= 1 + x`` for every real ``x``.
    """
    delta = ref_logprobs - logprobs
    return torch.exp(delta) - delta - 1.0


def aggregate_loss(
    values: Tensor,
    mask: Tensor,
    mode: LossAggregation,
    *,
    max_completion_length: int | None = None,
    total_tokens: float | None = None,
    total_sequences: float | None = None,
) -> Tensor:
    """Reduce per-token values ``[B, T]`` over the completion ``mask`` to a scalar.

    Modes:
        ``token_mean``: sum of all masked values divided by the number of
        completion tokens in the batch (long completions weigh more).
        ``sequence_mean``: mean over sequences of each sequence's token mean
        (the original GRPO form). Sequences without completion tokens add 0.
        ``constant_length``: sum of masked values divided by
        ``num_sequences * max_completion_length`` (Dr. GRPO), which removes the
        length bias of the other two.

    For gradient accumulation, pass the whole batch's ``total_tokens`` and
    ``total_sequences``: each micro-batch then returns its share of the
    whole-batch loss, and the shares sum exactly to the one-batch value.

    Example: per-token values ``[2, 2, 2, 2, 2]`` and ``[10]`` give 3.3333 with
    ``token_mean`` (20 / 6) and 6.0 with ``sequence_mean`` ((2 + 10) / 2).
    """
    if values.shape != mask.shape:
        raise ValueError(
            f"expected values and mask of one shape, got {tuple(values.shape)} and {tuple(mask.shape)}"
        )
    if values.dim() != 2:
        raise ValueError(f"expected [B, T] tensors, got {values.dim()} dimensions")
    mask = mask.to(values.dtype)
    masked = values * mask
    num_sequences = float(values.shape[0]) if total_sequences is None else float(total_sequences)

    if mode == "token_mean":
        num_tokens = mask.sum() if total_tokens is None else torch.tensor(float(total_tokens))
        return masked.sum() / torch.clamp(num_tokens, min=1.0)
    if mode == "sequence_mean":
        per_sequence = masked.sum(dim=1) / torch.clamp(mask.sum(dim=1), min=1.0)
        return per_sequence.sum() / max(num_sequences, 1.0)
    if mode == "constant_length":
        if max_completion_length is None or max_completion_length <= 0:
            raise ValueError(
                "constant_length aggregation needs a positive max_completion_length, "
                f"got {max_completion_length}"
            )
        return masked.sum() / (max(num_sequences, 1.0) * max_completion_length)
    raise ValueError(f"expected loss aggregation in {LOSS_AGGREGATIONS}, got {mode!r}")


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Return the mean of ``values`` over positions where ``mask`` is nonzero (0 if none)."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / torch.clamp(mask.sum(), min=1.0)
