"""Tests for the torch edge (sae.torch) and the trainer adapters (sae.adapters)."""

import importlib.util

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the torch edge needs torch")

from sae import PrefixTree, StagedAdvantageEstimator  # noqa: E402
from sae.adapters import (  # noqa: E402
    grouped_layout_advantages,
    make_verl_advantage_fn,
    register_with_verl,
)
from sae.torch import advantages_to_tokens, compute_advantages  # noqa: E402


def make_tree(name: str) -> PrefixTree:
    return PrefixTree.from_traces(
        {"id": name}, [(["a", "ok"], 1.0), (["a", "bad"], 0.0), (["b", "bad"], 0.0)]
    )


def test_advantages_to_tokens_masks_prompt_and_padding():
    mask = torch.tensor([[0, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool)
    tokens = advantages_to_tokens(np.array([0.5, -2.0]), mask)
    expected = torch.tensor([[0.0, 0.5, 0.5, 0.0], [-2.0, -2.0, -2.0, -2.0]])
    assert tokens.dtype == torch.float32
    torch.testing.assert_close(tokens, expected)


def test_advantages_to_tokens_keeps_float_mask_dtype():
    mask = torch.ones(2, 3, dtype=torch.float64)
    tokens = advantages_to_tokens(torch.tensor([1.0, 2.0]), mask)
    assert tokens.dtype == torch.float64


def test_advantages_to_tokens_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="one per mask row"):
        advantages_to_tokens([1.0, 2.0, 3.0], torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        advantages_to_tokens([1.0], torch.ones(3))


def test_compute_advantages_tensor_in_tensor_out():
    estimator = StagedAdvantageEstimator(method="grpo", scale="group", eps=1e-4)
    rewards = torch.tensor([1.0, 0.0, 1.0, 1.0], dtype=torch.float32)
    advantages, diagnostics = compute_advantages(
        estimator, rewards, torch.tensor([0, 0, 1, 1]), None, None
    )
    assert torch.is_tensor(advantages)
    assert advantages.dtype == torch.float32
    torch.testing.assert_close(
        advantages, torch.tensor([0.7070, -0.7070, 0.0, 0.0]), atol=1e-4, rtol=0
    )
    assert diagnostics["num_groups"] == 2


def test_compute_advantages_numpy_matches_tensor():
    tree = make_tree("p")
    estimator = StagedAdvantageEstimator(method="qp_soft")
    rewards = [1.0, 0.0, 0.0]
    node_ids = [1, 0, 4]
    numpy_result, _ = compute_advantages(estimator, rewards, [0, 0, 0], node_ids, {0: tree})
    tensor_result, _ = compute_advantages(
        estimator,
        torch.tensor(rewards, dtype=torch.float64),
        [0, 0, 0],
        torch.tensor(node_ids),
        {0: tree},
    )
    assert isinstance(numpy_result, np.ndarray)
    np.testing.assert_allclose(tensor_result.numpy(), numpy_result)


def test_verl_style_function_on_toy_batch():
    trees = {"u1": make_tree("p1"), "u2": make_tree("p2")}
    estimator = StagedAdvantageEstimator(method="expectation")
    advantage_fn = make_verl_advantage_fn(estimator, trees)
    token_rewards = torch.zeros(4, 5)
    token_rewards[0, 2] = 1.0  # outcome reward on the last completion token
    token_rewards[3, 4] = 1.0
    response_mask = torch.tensor(
        [[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [1, 1, 1, 1, 1]], dtype=torch.float32
    )
    index = np.array(["u1", "u1", "u2", "u2"], dtype=object)
    node_ids = np.array([1, 0, 0, 1])
    advantages, returns = advantage_fn(token_rewards, response_mask, index, node_ids=node_ids)

    expected = estimator.batch(
        [1.0, 0.0, 0.0, 1.0], list(index), node_ids.tolist(), trees
    ).advantages
    assert advantages.shape == (4, 5)
    torch.testing.assert_close(advantages, returns)
    torch.testing.assert_close(advantages[:, 0], torch.tensor(expected, dtype=torch.float32))
    assert torch.all(advantages[response_mask == 0] == 0)


def test_verl_style_function_needs_trees_for_sae():
    with pytest.raises(ValueError, match="needs trees"):
        make_verl_advantage_fn(StagedAdvantageEstimator(method="qp_soft"))


def test_grouped_layout_matches_explicit_groups():
    trees = [make_tree("p1"), make_tree("p2")]
    estimator = StagedAdvantageEstimator(method="qp_hard")
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0])
    node_ids = [1, 0, 4, 0, 1, 0]
    advantages, _ = grouped_layout_advantages(estimator, rewards, 3, node_ids=node_ids, trees=trees)
    explicit = estimator.batch(
        rewards.numpy(), [0, 0, 0, 1, 1, 1], node_ids, dict(enumerate(trees))
    )
    np.testing.assert_allclose(advantages.numpy(), explicit.advantages, atol=1e-6)
    with pytest.raises(ValueError, match="multiple of num_generations"):
        grouped_layout_advantages(estimator, rewards, 4, node_ids=node_ids, trees=trees)


@pytest.mark.skipif(importlib.util.find_spec("verl") is not None, reason="verl is installed")
def test_register_with_verl_reports_missing_verl():
    with pytest.raises(ImportError, match="pip install verl"):
        register_with_verl("sae_expectation", StagedAdvantageEstimator(method="grpo"))


@pytest.mark.skipif(importlib.util.find_spec("verl") is None, reason="verl is not installed")
def test_register_with_verl_adds_estimator():
    from verl.trainer.ppo.core_algos import get_adv_estimator_fn

    function = register_with_verl("sae_grpo_test", StagedAdvantageEstimator(method="grpo"))
    assert get_adv_estimator_fn("sae_grpo_test") is function
