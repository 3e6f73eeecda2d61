"""Tests of the gradient variance statistics against numpy references."""

import math

import numpy as np
import pytest
import torch

from agents.grad_stats import (
    GradientVarianceAccumulator,
    assign_flat_gradients,
    flatten_gradients,
    gradient_stats,
)


def test_gradient_stats_hand_values():
    # mean (2, 0); deviations (-1, 1), (1, -1): squared norms 2 + 2, divided by M - 1 = 1
    stats = gradient_stats(np.array([[1.0, 1.0], [3.0, -1.0]]))
    assert stats.variance == pytest.approx(4.0)
    assert stats.mean_norm == pytest.approx(2.0)
    assert stats.snr == pytest.approx(4.0 / 4.0)
    assert stats.num_micro_batches == 2


def test_gradient_stats_matches_numpy_cov_trace():
    rng = np.random.default_rng(0)
    grads = rng.normal(size=(7, 30)) + rng.normal(size=30)
    stats = gradient_stats(grads)
    assert stats.variance == pytest.approx(np.trace(np.cov(grads, rowvar=False)))
    assert stats.snr == pytest.approx(np.sum(grads.mean(axis=0) ** 2) / stats.variance)


def test_gradient_stats_single_vector_is_nan():
    stats = gradient_stats(np.ones((1, 3)))
    assert math.isnan(stats.variance)
    assert math.isnan(stats.snr)


def test_gradient_stats_identical_vectors_zero_variance():
    stats = gradient_stats(np.ones((4, 3)))
    assert stats.variance == 0.0
    assert math.isnan(stats.snr)


def test_gradient_stats_rejects_bad_shape():
    with pytest.raises(ValueError, match=r"\[M, P\]"):
        gradient_stats(np.ones(3))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_accumulator_matches_batch_stats(dtype):
    rng = np.random.default_rng(1)
    grads = rng.normal(loc=3.0, size=(9, 50))
    accumulator = GradientVarianceAccumulator(dtype=dtype)
    for row in grads:
        accumulator.update(torch.from_numpy(row))
    streamed = accumulator.stats()
    reference = gradient_stats(grads)
    rel = 1e-10 if dtype == torch.float64 else 1e-5
    assert streamed.variance == pytest.approx(reference.variance, rel=rel)
    assert streamed.snr == pytest.approx(reference.snr, rel=rel)
    assert accumulator.mean.double().numpy() == pytest.approx(grads.mean(axis=0), rel=rel)
    assert streamed.num_micro_batches == 9


def test_accumulator_rejects_size_change():
    accumulator = GradientVarianceAccumulator()
    accumulator.update(torch.zeros(3))
    with pytest.raises(ValueError, match="3 entries"):
        accumulator.update(torch.zeros(4))


def test_accumulator_empty_raises():
    with pytest.raises(ValueError, match="no gradient"):
        GradientVarianceAccumulator().stats()


def test_flatten_and_assign_round_trip():
    layer = torch.nn.Linear(3, 2)
    params = list(layer.parameters())
    layer(torch.ones(1, 3)).sum().backward()
    flat = flatten_gradients(params)
    assert flat.numel() == 8
    assign_flat_gradients(params, flat * 2)
    assert torch.equal(layer.bias.grad, torch.full((2,), 2.0))
    assert torch.equal(layer.weight.grad, torch.full((2, 3), 2.0))


def test_flatten_missing_grad_is_zero():
    layer = torch.nn.Linear(2, 1)
    assert torch.equal(flatten_gradients(list(layer.parameters())), torch.zeros(3))
