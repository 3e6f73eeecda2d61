"""Gradient variance across micro-batches.

Notation: a training step splits its batch into ``M`` micro-batches. Micro-batch
``k`` gives a gradient estimate ``g_k`` (a vector over all trainable parameters,
scaled so that the batch gradient is the plain mean ``g = (1/M) sum_k g_k``).

- ``variance`` is the trace of the sample covariance of the ``g_k`` around their
  mean: ``sum_k ||g_k - g||^2 / (M - 1)``. It is the total variance, summed over
  parameters, of one micro-batch's gradient estimate. The variance of the batch
  gradient ``g`` itself is about ``variance / M``.
- ``snr`` is ``||g||^2 / variance``: how large the mean gradient is compared
  with the spread of one micro-batch's estimate.

Both need ``M >= 2`` and are NaN otherwise. ``snr`` is NaN when ``variance`` is 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class GradientStats:
    """Summary of ``M`` per-micro-batch gradient vectors."""

    variance: float
    snr: float
    mean_norm: float
    num_micro_batches: int


def gradient_stats(gradients: np.ndarray | Tensor) -> GradientStats:
    """Compute the gradient statistics of an ``[M, P]`` array of flattened gradients.

    This keeps all ``M`` vectors in memory; the trainer uses
    ``GradientVarianceAccumulator``, which gives the same numbers in one pass.
    """
    grads = torch.as_tensor(gradients, dtype=torch.float64)
    if grads.dim() != 2:
        raise ValueError(f"expected an [M, P] array of gradients, got shape {tuple(grads.shape)}")
    count = grads.shape[0]
    if count == 0:
        raise ValueError("expected at least one gradient vector, got M = 0")
    mean = grads.mean(dim=0)
    mean_sq_norm = float(mean.pow(2).sum())
    if count < 2:
        return GradientStats(math.nan, math.nan, math.sqrt(mean_sq_norm), count)
    variance = float((grads - mean).pow(2).sum() / (count - 1))
    return GradientStats(variance, _snr(mean_sq_norm, variance), math.sqrt(mean_sq_norm), count)


def _snr(mean_sq_norm: float, variance: float) -> float:
    if variance <= 0.0 or not math.isfinite(variance):
        return math.nan
    return mean_sq_norm / variance


class GradientVarianceAccumulator:
    """Streaming (Welford) version of ``gradient_stats`` over flattened gradients.

    It stores one mean vector of ``P`` entries and one scalar sum of squared
    deviations, never the ``M`` gradients. The update for a new vector ``x`` is
    ``d = x - mean; mean += d / n; m2 += dot(d, x - mean)``, the per-coordinate
    Welford update summed over coordinates, which is all the covariance trace needs.

    Args:
        dtype: dtype of the stored mean vector. float32 halves the memory of
            float64. Dot products run in this dtype over chunks of 4M entries,
            and the chunk sums are added in float64.
    """

    def __init__(self, dtype: torch.dtype = torch.float32) -> None:
        self.dtype = dtype
        self.count = 0
        self.mean: Tensor | None = None
        self._m2 = 0.0

    def update(self, gradient: Tensor) -> None:
        """Add one flattened gradient vector ``[P]``."""
        flat = gradient.detach().reshape(-1).to(self.dtype)
        if self.mean is None:
            self.mean = flat.clone()
            self.count = 1
            return
        if flat.numel() != self.mean.numel():
            raise ValueError(
                f"expected gradient vectors of {self.mean.numel()} entries, got {flat.numel()}"
            )
        self.count += 1
        delta = flat - self.mean
        self.mean.add_(delta, alpha=1.0 / self.count)
        # x - new_mean = delta * (1 - 1/n), so the Welford term dot(delta, x - new_mean)
        # is (1 - 1/n) * ||delta||^2 and needs no second vector.
        self._m2 += (1.0 - 1.0 / self.count) * _squared_norm(delta)

    def stats(self) -> GradientStats:
        """Return the statistics of the vectors added so far."""
        if self.mean is None:
            raise ValueError("no gradient was added; call update() at least once")
        mean_sq_norm = _squared_norm(self.mean)
        if self.count < 2:
            return GradientStats(math.nan, math.nan, math.sqrt(mean_sq_norm), self.count)
        variance = max(self._m2, 0.0) / (self.count - 1)
        return GradientStats(
            variance, _snr(mean_sq_norm, variance), math.sqrt(mean_sq_norm), self.count
        )


def _squared_norm(vector: Tensor, chunk_size: int = 1 << 22) -> float:
    """Return ``||vector||^2``, summing per-chunk float32 dot products in float64."""
    total = 0.0
    for chunk in vector.split(chunk_size):
        total += float(torch.dot(chunk, chunk))
    return total


def flatten_gradients(parameters: list[torch.nn.Parameter]) -> Tensor:
    """Concatenate the ``.grad`` of ``parameters`` into one vector (zeros where a grad is None)."""
    pieces = []
    for param in parameters:
        if param.grad is None:
            pieces.append(torch.zeros(param.numel(), dtype=param.dtype, device=param.device))
        else:
            pieces.append(param.grad.detach().reshape(-1))
    return torch.cat(pieces)


def assign_flat_gradients(parameters: list[torch.nn.Parameter], flat: Tensor) -> None:
    """Write a flattened gradient vector back into the ``.grad`` of ``parameters``."""
    expected = sum(param.numel() for param in parameters)
    if flat.numel() != expected:
        raise ValueError(f"expected a gradient vector of {expected} entries, got {flat.numel()}")
    offset = 0
    for param in parameters:
        size = param.numel()
        piece = flat[offset : offset + size].view_as(param).to(param.dtype)
        if param.grad is None:
            param.grad = piece.clone()
        else:
            param.grad.copy_(piece)
        offset += size
