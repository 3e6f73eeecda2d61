"""Tests of GRPOSAETrainer on a tiny random model: config, accumulation, resume, one step.

The random model writes byte noise, so ``envs.check_answer`` would give reward 0 to every
completion and every advantage would be 0. Most tests therefore pass ``parity_reward``
(1.0 for an odd completion length), which gives mixed rewards within a group.
"""

from __future__ import annotations

import copy
import math
import os
import signal
from dataclasses import replace

import numpy as np
import pytest
import torch

from agents.grad_stats import flatten_gradients, gradient_stats
from agents.policy import LMPolicy
from agents.trainer import (
    GRPOSAEConfig,
    GRPOSAETrainer,
    MicroBatch,
    UpdateSums,
    warmup_cosine_factor,
    zero_std_group_fraction,
)

QUICK = {
    "steps": 2,
    "batch_size": 2,
    "group_size": 4,
    "micro_batch_size": 2,
    "max_new_tokens": 12,
    "eval_max_new_tokens": 8,
    "warmup_steps": 1,
    "learning_rate": 1e-3,
    "eval_before": False,
}


def parity_reward(text: str, problem) -> float:
    return float(len(text) % 2)


class CentredEstimator:
    """Test double for the SAE estimator: group-mean-centred rewards, no tree."""

    def batch(self, rewards, group_ids, node_ids, trees):
        rewards = np.asarray(rewards, dtype=float)
        groups = np.asarray(group_ids)
        advantages = rewards.copy()
        for group in set(group_ids):
            advantages[groups == group] -= rewards[groups == group].mean()
        return _Result(advantages, {})


class NanEstimator:
    def batch(self, rewards, group_ids, node_ids, trees):
        return _Result(np.full(len(rewards), np.nan), {})


class _Result:
    def __init__(self, advantages, diagnostics):
        self.advantages = advantages
        self.diagnostics = diagnostics


@pytest.fixture(autouse=True)
def single_thread():
    """Run torch on one thread: the tiny model's matrices are too small to gain from more,
    and on a busy CPU the thread synchronisation makes each step several times slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture()
def problems():
    from envs import Problem

    return [
        Problem(id=f"add-{i}", question=f"What is {i} + 1?", answer=str(i + 1)) for i in range(6)
    ]


@pytest.fixture()
def fresh_policy(tiny_model, tiny_tokenizer):
    """A policy around a private copy of the tiny model, so that training does not leak."""
    return LMPolicy(copy.deepcopy(tiny_model), tiny_tokenizer, device="cpu")


def _trainer(policy, problems, **overrides) -> GRPOSAETrainer:
    options = {"estimator": CentredEstimator(), "reward_fn": parity_reward}
    for key in ("estimator", "reward_fn", "trees", "eval_problems", "log_dir", "output_dir"):
        if key in overrides:
            options[key] = overrides.pop(key)
    config = GRPOSAEConfig(**{**QUICK, "advantage": "grpo", **overrides})
    return GRPOSAETrainer(policy, config, problems, **options)


def _rollout_micro_batches(trainer):
    rollout = trainer._rollout(trainer._next_problems())
    advantages, _ = trainer._advantages(rollout)
    return trainer._prepare_micro_batches(rollout, advantages), rollout, advantages


# config


@pytest.mark.parametrize(
    ("field_name", "value", "message"),
    [
        ("steps", 0, "steps to be a positive integer"),
        ("group_size", -1, "group_size to be a positive integer"),
        ("micro_batch_size", 1.5, "micro_batch_size to be a positive integer"),
        ("advantage", "ppo", "advantage to be one of"),
        ("loss_aggregation", "mean", "loss_aggregation to be one of"),
        ("prefix_distribution", "random", "prefix_distribution to be one of"),
        ("epsilon", 0.0, "epsilon in"),
        ("epsilon_high", 0.1, "epsilon_high >= epsilon"),
        ("beta", -0.1, "beta"),
        ("learning_rate", 0.0, "learning_rate"),
        ("max_grad_norm", 0.0, "max_grad_norm"),
        ("top_p", 1.5, "top_p"),
        ("save_every", -1, "save_every to be a non-negative integer"),
        ("keep_checkpoints", 0, "keep_checkpoints"),
    ],
)
def test_config_rejects_invalid_value(field_name, value, message):
    with pytest.raises(ValueError, match=message) as error:
        GRPOSAEConfig(**{field_name: value})
    assert repr(value) in str(error.value) or str(value) in str(error.value)


def test_config_defaults_valid():
    config = GRPOSAEConfig()
    assert config.advantage == "expectation"
    assert config.samples_per_step == 8
    assert config.num_micro_batches == 4


def test_trainer_rejects_eval_overlap(fresh_policy, problems):
    with pytest.raises(ValueError, match="also training problems"):
        _trainer(fresh_policy, problems, eval_problems=problems[:1])


def test_warmup_cosine_factor_hand_values():
    assert warmup_cosine_factor(0, 2, 10) == pytest.approx(1 / 3)
    assert warmup_cosine_factor(1, 2, 10) == pytest.approx(2 / 3)
    assert warmup_cosine_factor(2, 2, 10) == pytest.approx(1.0)
    assert warmup_cosine_factor(6, 2, 10) == pytest.approx(0.5)
    assert warmup_cosine_factor(10, 2, 10) == pytest.approx(0.0)
    assert warmup_cosine_factor(0, 0, 1) == pytest.approx(1.0)


def test_zero_std_group_fraction_counts_flat_groups():
    rewards = np.array([1.0, 1.0, 0.0, 1.0, 0.0, 0.0])
    assert zero_std_group_fraction(rewards, [0, 0, 1, 1, 2, 2]) == pytest.approx(2 / 3)


# loss and gradients


@pytest.mark.parametrize("mode", ["token_mean", "sequence_mean", "constant_length"])
def test_accumulation_matches_single_batch(fresh_policy, problems, mode):
    trainer = _trainer(fresh_policy, problems, loss_aggregation=mode, grad_variance=False)
    micro_batches, rollout, advantages = _rollout_micro_batches(trainer)

    whole = trainer.policy.tokenize_pairs(
        rollout.prompts, [gen.token_ids for gen in rollout.completions]
    )
    one = [MicroBatch(batch=whole, advantages=torch.tensor(advantages).float())]
    trainer.accumulate_gradients(one)
    reference = flatten_gradients(trainer.parameters).clone()

    trainer.accumulate_gradients(micro_batches)
    plain = flatten_gradients(trainer.parameters).clone()
    trainer.config = replace(trainer.config, grad_variance=True)
    _, stats = trainer.accumulate_gradients(micro_batches)
    streamed = flatten_gradients(trainer.parameters).clone()

    assert len(micro_batches) == 4
    assert reference.abs().sum() > 0
    assert torch.allclose(plain, reference, rtol=1e-4, atol=1e-7)
    assert torch.allclose(streamed, reference, rtol=1e-4, atol=1e-7)
    assert stats.num_micro_batches == 4


def test_grad_variance_matches_stored_gradients(fresh_policy, problems):
    trainer = _trainer(fresh_policy, problems)
    micro_batches, _, _ = _rollout_micro_batches(trainer)
    _, stats = trainer.accumulate_gradients(micro_batches)

    # reference: each micro-batch alone, its gradient scaled by M, all kept in memory
    trainer.config = replace(trainer.config, grad_variance=False)
    rows = []
    for micro in micro_batches:
        trainer.accumulate_gradients([micro])
        share = flatten_gradients(trainer.parameters).clone()
        tokens = float(micro.batch.completion_mask.sum())
        total = float(sum(float(m.batch.completion_mask.sum()) for m in micro_batches))
        rows.append(share * tokens / total * len(micro_batches))
    reference = gradient_stats(torch.stack(rows))
    assert stats.variance == pytest.approx(reference.variance, rel=1e-3)
    assert stats.snr == pytest.approx(reference.snr, rel=1e-3)


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("token_mean", -(3 * 1.0 + 1 * -2.0 + 5 * 0.5) / 9),
        ("sequence_mean", -(1.0 - 2.0 + 0.5) / 3),
        ("constant_length", -(3 * 1.0 + 1 * -2.0 + 5 * 0.5) / (3 * 12)),
    ],
)
def test_loss_counts_only_completion_tokens(fresh_policy, problems, mode, expected):
    # At ratio 1 the per-token loss is -A, so the loss depends only on each sample's
    # number of completion tokens. Prompts of different lengths and padding must not count.
    trainer = _trainer(fresh_policy, problems, loss_aggregation=mode)
    prompts = ["a", "a much longer prompt than the others", "cc"]
    completions = [[40, 41, 42], [43], [44, 45, 46, 47, 48]]
    advantages = torch.tensor([1.0, -2.0, 0.5])
    micro_batches = [
        MicroBatch(trainer.policy.tokenize_pairs(prompts[:2], completions[:2]), advantages[:2]),
        MicroBatch(trainer.policy.tokenize_pairs(prompts[2:], completions[2:]), advantages[2:]),
    ]
    sums = UpdateSums()
    trainer.accumulate_gradients(micro_batches, sums)
    assert sums.tokens == 9
    assert sums.loss == pytest.approx(expected, abs=1e-6)


def test_nan_advantages_skip_update(fresh_policy, problems, caplog):
    trainer = _trainer(fresh_policy, problems, estimator=NanEstimator())
    before = [p.detach().clone() for p in trainer.parameters]
    with caplog.at_level("WARNING", logger="agents.trainer"):
        metrics = trainer.train_step()
    assert metrics["train/skipped_updates"] == 1.0
    assert "skipped the update at step 1" in caplog.text
    for old, new in zip(before, trainer.parameters, strict=True):
        assert torch.equal(old, new.detach())


class ZeroEstimator:
    def batch(self, rewards, group_ids, node_ids, trees):
        return _Result(np.zeros(len(rewards)), {})


def test_zero_advantages_skip_backward(fresh_policy, problems):
    trainer = _trainer(fresh_policy, problems, estimator=ZeroEstimator())
    metrics = trainer.train_step()
    assert metrics["grad/variance"] == 0.0
    assert metrics["grad/norm"] == 0.0
    assert metrics["train/skipped_updates"] == 0.0
    assert "policy/entropy" not in metrics
    assert all(p.grad is None for p in trainer.parameters)


def test_kl_off_loads_no_reference(fresh_policy, problems):
    trainer = _trainer(fresh_policy, problems, beta=0.0)
    assert trainer.reference_model is None
    assert "policy/kl" not in trainer.train_step()


def test_kl_on_uses_frozen_reference(fresh_policy, problems):
    trainer = _trainer(fresh_policy, problems, beta=0.1, steps=3)
    assert trainer.reference_model is not None
    first = trainer.train_step()
    second = trainer.train_step()
    # before any update the policy equals the reference, so k3 is exactly 0
    assert first["policy/kl"] == pytest.approx(0.0, abs=1e-9)
    assert second["policy/kl"] > 0.0
    assert all(not p.requires_grad for p in trainer.reference_model.parameters())


def test_num_iterations_reuses_batch(fresh_policy, problems):
    trainer = _trainer(fresh_policy, problems, num_iterations=3, steps=2)
    metrics = trainer.train_step()
    assert trainer.scheduler.last_epoch == 3
    assert metrics["train/skipped_updates"] == 0.0


def test_lora_trains_adapter_only(fresh_policy, problems):
    trainer = _trainer(fresh_policy, problems, use_lora=True, lora_r=2, lora_alpha=4, beta=0.1)
    names = [n for n, p in trainer.policy.model.named_parameters() if p.requires_grad]
    assert names
    assert all("lora_" in name for name in names)
    assert trainer.reference_model is None
    metrics = trainer.train_step()
    assert metrics["policy/kl"] == pytest.approx(0.0, abs=1e-9)


# end to end, checkpoints and interrupts


def test_one_step_with_sae_writes_tensorboard(fresh_policy, problems, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from sae import PrefixTree

    trees = [
        PrefixTree.from_traces(
            problem.to_dict(),
            [(["Add the numbers.", f"The answer is {problem.answer}"], 1.0), (["Guess 0."], 0.0)],
        )
        for problem in problems
    ]
    config_overrides = {"advantage": "expectation", "steps": 1, "text_every": 1}
    trainer = GRPOSAETrainer(
        fresh_policy,
        GRPOSAEConfig(**{**QUICK, **config_overrides}),
        problems[2:],
        trees,
        eval_problems=problems[:2],
        log_dir=tmp_path / "tb",
        reward_fn=parity_reward,
    )
    before = [p.detach().clone() for p in trainer.parameters]
    summary = trainer.train(progress=False)
    trainer.close()

    assert summary["steps"] == 1
    assert 0.0 <= summary["eval_after"]["eval/accuracy"] <= 1.0
    assert any(
        not torch.equal(old, new.detach())
        for old, new in zip(before, trainer.parameters, strict=True)
    )
    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"tensors": 0})
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    for name in (
        "train/reward_mean",
        "train/accuracy",
        "train/frac_zero_std_groups",
        "completions/mean_length",
        "policy/clip_ratio",
        "policy/entropy",
        "sae/advantage_mean",
        "sae/advantage_var",
        "grad/norm",
        "grad/variance",
        "grad/snr",
        "eval/accuracy",
    ):
        assert name in scalars, name
    assert "sae/advantages" in events.Tags()["histograms"]
    assert any("samples" in tag for tag in events.Tags()["tensors"])


def test_resume_reproduces_next_step(fresh_policy, problems, tmp_path, tiny_model, tiny_tokenizer):
    initial = copy.deepcopy(fresh_policy.model.state_dict())
    uninterrupted = _trainer(
        fresh_policy, problems, steps=3, output_dir=tmp_path / "a", save_every=1
    )
    uninterrupted.train_step()
    uninterrupted.save_checkpoint()
    expected = uninterrupted.train_step()

    model = copy.deepcopy(tiny_model)
    model.load_state_dict(initial)
    resumed = _trainer(LMPolicy(model, tiny_tokenizer, device="cpu"), problems, steps=3)
    assert resumed.resume(tmp_path / "a") == 1
    torch.manual_seed(12345)  # the checkpoint must restore the global RNG state, too
    actual = resumed.train_step()

    for name in ("train/loss", "train/reward_mean", "grad/norm", "grad/variance"):
        assert actual[name] == expected[name], name
    for (name, old), new in zip(
        uninterrupted.policy.model.state_dict().items(),
        resumed.policy.model.state_dict().values(),
        strict=True,
    ):
        assert torch.equal(old, new), name


def test_resume_rejects_missing_checkpoint(fresh_policy, problems, tmp_path):
    trainer = _trainer(fresh_policy, problems)
    with pytest.raises(FileNotFoundError, match="no checkpoint found"):
        trainer.resume(tmp_path)


def test_interrupt_saves_checkpoint(fresh_policy, problems, tmp_path):
    calls = []

    def interrupting_reward(text, problem):
        calls.append(text)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGINT)
        return parity_reward(text, problem)

    trainer = _trainer(
        fresh_policy, problems, steps=5, output_dir=tmp_path, reward_fn=interrupting_reward
    )
    summary = trainer.train(progress=False)
    assert summary["interrupted"] is True
    assert summary["steps"] == 1
    assert (tmp_path / "checkpoint-000001" / "trainer_state.pt").is_file()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_evaluate_keeps_rng_state(fresh_policy, problems):
    trainer = _trainer(fresh_policy, problems[3:], eval_problems=problems[:3])
    state = torch.get_rng_state()
    metrics = trainer.evaluate()
    assert torch.equal(state, torch.get_rng_state())
    assert metrics["eval/num_problems"] == 3.0
    assert math.isfinite(metrics["eval/mean_length"])
