"""The torch edge of ``sae``: tensors in, tensors out, and per-token broadcasting.

torch is imported inside the functions, so ``import sae`` works without it.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from sae.estimators import StagedAdvantageEstimator
from sae.tree import PrefixTree

if TYPE_CHECKING:
    import torch


def advantages_to_tokens(advantages: Any, completion_mask: torch.Tensor) -> torch.Tensor:
    """Broadcast one advantage per sample over that sample's completion tokens.

    Args:
        advantages: ``[B]`` tensor, numpy array or sequence of floats.
        completion_mask: ``[B, T]`` mask (bool, int or float) that is non-zero on
            completion tokens and zero on prompt and padding tokens.

    Returns:
        ``[B, T]`` tensor on the mask's device: ``advantages[b]`` where the mask is
        set and 0 elsewhere, in the mask's dtype if it is floating point, else float32.
    """
    import torch

    if completion_mask.dim() != 2:
        raise ValueError(
            f"expected a [B, T] completion mask, got shape {tuple(completion_mask.shape)}"
        )
    dtype = completion_mask.dtype if completion_mask.is_floating_point() else torch.float32
    values = torch.as_tensor(
        np.asarray(advantages) if not torch.is_tensor(advantages) else advantages
    )
    values = values.to(device=completion_mask.device, dtype=dtype)
    if values.dim() != 1 or values.shape[0] != completion_mask.shape[0]:
        raise ValueError(
            f"expected {completion_mask.shape[0]} advantages (one per mask row), got shape {tuple(values.shape)}"
        )
    mask = (completion_mask != 0).to(dtype)
    return values[:, None] * mask


def compute_advantages(
    estimator: StagedAdvantageEstimator,
    rewards: Any,
    group_ids: Sequence[Hashable],
    node_ids: Sequence[int] | Any | None,
    trees: Mapping[Hashable, PrefixTree] | Sequence[PrefixTree] | None,
    **kwargs: Any,
) -> tuple[Any, dict[str, Any]]:
    """Run :meth:`StagedAdvantageEstimator.batch` on torch or numpy inputs.

    A torch ``rewards`` tensor gives a tensor of the same dtype and device back; a
    numpy array or sequence gives a numpy array. ``group_ids`` and ``node_ids`` may
    be tensors too. The computation itself runs in float64 numpy, without gradients.

    Returns:
        ``(advantages, diagnostics)``.
    """
    rewards_np, like = _to_numpy(rewards)
    group_np = _to_numpy(group_ids)[0].tolist() if _is_tensor(group_ids) else list(group_ids)
    node_np = None
    if node_ids is not None:
        node_np = (
            _to_numpy(node_ids)[0].astype(np.int64).tolist()
            if _is_tensor(node_ids)
            else [int(n) for n in node_ids]
        )
    result = estimator.batch(rewards_np, group_np, node_np, trees, **kwargs)
    if like is None:
        return result.advantages, result.diagnostics
    import torch

    return torch.as_tensor(
        result.advantages, dtype=like.dtype, device=like.device
    ), result.diagnostics


def _is_tensor(value: Any) -> bool:
    module = type(value).__module__
    return module.startswith("torch") and hasattr(value, "detach")


def _to_numpy(value: Any) -> tuple[np.ndarray, Any]:
    if _is_tensor(value):
        return value.detach().to("cpu").double().numpy(), value
    return np.asarray(value, dtype=np.float64), None
