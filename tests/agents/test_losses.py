"""Tests of the per-token GRPO losses against hand computations."""

import math

import pytest
import torch

from agents.losses import aggregate_loss, clipped_surrogate, k3_kl, masked_mean


def _ragged(rows: list[list[float]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad rows with a large junk value so that a missing mask shows up in results."""
    width = max(len(row) for row in rows)
    values = torch.full((len(rows), width), 1000.0)
    mask = torch.zeros(len(rows), width)
    for i, row in enumerate(rows):
        values[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1.0
    return values, mask


def test_aggregate_token_mean_hand_value():
    values, mask = _ragged([[2, 2, 2, 2, 2], [10]])
    assert aggregate_loss(values, mask, "token_mean").item() == pytest.approx(20 / 6)
    assert aggregate_loss(values, mask, "token_mean").item() == pytest.approx(3.3333, abs=1e-4)


def test_aggregate_sequence_mean_hand_value():
    values, mask = _ragged([[2, 2, 2, 2, 2], [10]])
    assert aggregate_loss(values, mask, "sequence_mean").item() == pytest.approx(6.0)


def test_aggregate_constant_length_hand_value():
    values, mask = _ragged([[2, 2, 2, 2, 2], [10]])
    result = aggregate_loss(values, mask, "constant_length", max_completion_length=10)
    assert result.item() == pytest.approx(20 / (2 * 10))


def test_aggregate_constant_length_requires_length():
    values, mask = _ragged([[1.0]])
    with pytest.raises(ValueError, match="max_completion_length"):
        aggregate_loss(values, mask, "constant_length")


def test_aggregate_unknown_mode_rejected():
    values, mask = _ragged([[1.0]])
    with pytest.raises(ValueError, match="loss aggregation"):
        aggregate_loss(values, mask, "mean")  # type: ignore[arg-type]


def test_aggregate_shape_mismatch_rejected():
    with pytest.raises(ValueError, match="one shape"):
        aggregate_loss(torch.zeros(2, 3), torch.zeros(2, 4), "token_mean")


def test_aggregate_empty_sequence_counts_zero():
    values, mask = _ragged([[4.0, 4.0], [7.0]])
    mask[1] = 0.0
    assert aggregate_loss(values, mask, "sequence_mean").item() == pytest.approx(2.0)
    assert aggregate_loss(values, mask, "token_mean").item() == pytest.approx(4.0)


@pytest.mark.parametrize("mode", ["token_mean", "sequence_mean", "constant_length"])
def test_aggregate_micro_batch_shares_sum(mode):
    values, mask = _ragged([[2, 2, 2, 2, 2], [10], [1, 3], [5, 5, 5]])
    whole = aggregate_loss(values, mask, mode, max_completion_length=8)
    totals = {"total_tokens": float(mask.sum()), "total_sequences": 4.0}
    shares = [
        aggregate_loss(values[rows], mask[rows], mode, max_completion_length=8, **totals)
        for rows in (slice(0, 1), slice(1, 3), slice(3, 4))
    ]
    assert sum(share.item() for share in shares) == pytest.approx(whole.item())


def test_clipped_surrogate_ratio_one_is_minus_advantage():
    logprobs = torch.tensor([[-1.0, -2.0]])
    loss, is_clipped = clipped_surrogate(logprobs, logprobs.clone(), torch.tensor([0.5]))
    assert torch.allclose(loss, torch.tensor([[-0.5, -0.5]]))
    assert not is_clipped.any()


def test_clipped_surrogate_hand_values():
    # ratios exp(0.5) = 1.6487 and exp(-0.5) = 0.6065; epsilon 0.2 clips to [0.8, 1.2]
    old = torch.zeros(1, 4)
    logprobs = torch.tensor([[0.5, 0.5, -0.5, -0.5]])
    advantages = torch.tensor([[1.0, -1.0, 1.0, -1.0]])
    loss, is_clipped = clipped_surrogate(logprobs, old, advantages, epsilon=0.2)
    high, low = math.exp(0.5), math.exp(-0.5)
    expected = torch.tensor([[-1.2, high, -low, 0.8]])
    assert torch.allclose(loss, expected, atol=1e-6)
    # clipped term taken: A > 0 with ratio above 1.2, and A < 0 with ratio below 0.8
    assert is_clipped.tolist() == [[True, False, False, True]]


def test_clipped_surrogate_epsilon_high_widens_upper():
    old = torch.zeros(1, 1)
    logprobs = torch.tensor([[math.log(1.25)]])
    advantages = torch.tensor([1.0])
    loss_sym, clipped_sym = clipped_surrogate(logprobs, old, advantages, epsilon=0.2)
    loss_high, clipped_high = clipped_surrogate(
        logprobs, old, advantages, epsilon=0.2, epsilon_high=0.28
    )
    assert loss_sym.item() == pytest.approx(-1.2)
    assert clipped_sym.item() is True
    assert loss_high.item() == pytest.approx(-1.25)
    assert clipped_high.item() is False


def test_clip_flag_matches_taken_term_randomly():
    generator = torch.Generator().manual_seed(0)
    logprobs = torch.randn(64, 16, generator=generator) * 0.3
    old = torch.randn(64, 16, generator=generator) * 0.3
    advantages = torch.randn(64, 16, generator=generator)
    loss, is_clipped = clipped_surrogate(logprobs, old, advantages, epsilon=0.1, epsilon_high=0.3)
    ratio = torch.exp(logprobs - old)
    unclipped_loss = -(ratio * advantages)
    # a token counts as clipped exactly when the loss differs from the unclipped term
    differs = ~torch.isclose(loss, unclipped_loss, rtol=0, atol=1e-7)
    assert torch.equal(is_clipped, differs)


def test_clipped_surrogate_zero_gradient_when_clipped():
    old = torch.zeros(1, 2)
    logprobs = torch.tensor([[1.0, 0.05]], requires_grad=True)
    loss, is_clipped = clipped_surrogate(logprobs, old, torch.tensor([1.0]))
    loss.sum().backward()
    assert is_clipped.tolist() == [[True, False]]
    assert logprobs.grad[0, 0].item() == 0.0
    assert logprobs.grad[0, 1].item() == pytest.approx(-math.exp(0.05))


def test_clipped_surrogate_rejects_bad_epsilon():
    with pytest.raises(ValueError, match="positive clip ranges"):
        clipped_surrogate(torch.zeros(1, 1), torch.zeros(1, 1), torch.ones(1), epsilon=0.0)


def test_k3_zero_when_equal():
    logprobs = torch.tensor([[-0.1, -3.0, -7.5]])
    assert torch.equal(k3_kl(logprobs, logprobs.clone()), torch.zeros(1, 3))


def test_k3_hand_value():
    logprobs = torch.tensor([[-1.0]])
    ref = torch.tensor([[-2.0]])
    # exp(-1) - (-1) - 1 = exp(-1)
    assert k3_kl(logprobs, ref).item() == pytest.approx(math.exp(-1.0))


def test_k3_never_negative():
    generator = torch.Generator().manual_seed(1)
    logprobs = torch.randn(1000, generator=generator) * 5
    ref = torch.randn(1000, generator=generator) * 5
    assert (k3_kl(logprobs, ref) >= 0).all()


def test_masked_mean_ignores_padding():
    values, mask = _ragged([[1.0, 3.0], [5.0]])
    assert masked_mean(values, mask).item() == pytest.approx(3.0)
