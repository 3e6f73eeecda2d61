"""Tests for agents.policy with a tiny random model and an offline byte tokenizer."""

from __future__ import annotations

import pytest
import torch

from agents.policy import (
    SYSTEM_INSTRUCTION,
    Generation,
    LMPolicy,
    _sampling_probs,
    build_messages,
)


def _ids(policy: LMPolicy, text: str) -> list[int]:
    return policy.encode(text)


# ---------------------------------------------------------------- prompts


def test_build_messages_system_then_user():
    messages = build_messages("  What is 2+3? ")
    assert messages[0] == {"role": "system", "content": SYSTEM_INSTRUCTION}
    assert messages[1] == {"role": "user", "content": "What is 2+3?"}


def test_build_prompt_no_steps_ends_at_assistant(tiny_policy):
    prompt = tiny_policy.build_prompt("What is 2+3?")
    assert prompt.endswith("<|im_start|>assistant\n")
    assert "What is 2+3?" in prompt
    assert SYSTEM_INSTRUCTION in prompt


def test_build_prompt_steps_each_end_with_delimiter(tiny_policy):
    base = tiny_policy.build_prompt("Q")
    prompt = tiny_policy.build_prompt("Q", ["2+3=5\n", "The answer is 5."])
    assert prompt == base + "2+3=5\nThe answer is 5.\n"


def test_build_prompt_without_chat_template(tiny_model, tiny_tokenizer):
    plain = LMPolicy(tiny_model, tiny_tokenizer)
    template = tiny_tokenizer.chat_template
    try:
        tiny_tokenizer.chat_template = None
        prompt = plain.build_prompt("Q", ["s1"])
    finally:
        tiny_tokenizer.chat_template = template
    assert prompt.startswith("System: ")
    assert prompt.endswith("User: Q\nAssistant: s1\n")


# ---------------------------------------------------------------- sampling


def test_sampling_probs_top_p_hand_case():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2]]))
    probs = _sampling_probs(logits, temperature=1.0, top_p=0.6)
    assert torch.allclose(probs, torch.tensor([[0.625, 0.375, 0.0]]), atol=1e-6)


def test_sampling_probs_top_p_keeps_top_token():
    logits = torch.log(torch.tensor([[0.9, 0.05, 0.05]]))
    probs = _sampling_probs(logits, temperature=1.0, top_p=0.1)
    assert torch.allclose(probs, torch.tensor([[1.0, 0.0, 0.0]]))


def test_sampling_probs_temperature_sharpens():
    logits = torch.tensor([[1.0, 0.0]])
    cold = _sampling_probs(logits, temperature=0.5, top_p=1.0)
    expected = torch.softmax(logits / 0.5, dim=-1)
    assert torch.allclose(cold, expected)


def test_generate_steps_shapes_and_fields(tiny_policy):
    prompt = tiny_policy.build_prompt("What is 2+3?")
    generations = tiny_policy.generate_steps(prompt, 4, max_new_tokens=8, seed=1)
    assert len(generations) == 4
    for generation in generations:
        assert isinstance(generation, Generation)
        assert len(generation.token_ids) == len(generation.logprobs)
        assert 1 <= len(generation.token_ids) <= 8
        assert all(lp <= 0.0 for lp in generation.logprobs)
        assert "\n" not in generation.text
        assert generation.finished == (generation.stop_reason != "length")


def test_generate_steps_seed_reproducible(tiny_policy):
    prompt = tiny_policy.build_prompt("What is 2+3?")
    first = tiny_policy.generate_steps(prompt, 3, max_new_tokens=6, seed=7)
    second = tiny_policy.generate_steps(prompt, 3, max_new_tokens=6, seed=7)
    other = tiny_policy.generate_steps(prompt, 3, max_new_tokens=6, seed=8)
    assert [g.token_ids for g in first] == [g.token_ids for g in second]
    assert [g.token_ids for g in first] != [g.token_ids for g in other]


def test_generate_steps_logprobs_match_scorer(tiny_policy):
    # Cached incremental decoding and one full forward pass must agree on every token.
    prompt = tiny_policy.build_prompt("What is 12*3?")
    generations = tiny_policy.generate_steps(prompt, 3, max_new_tokens=10, seed=3)
    batch = tiny_policy.tokenize_pairs([prompt] * 3, [g.token_ids for g in generations])
    scored = tiny_policy.token_logprobs(batch)
    for row, generation in enumerate(generations):
        mask = batch.completion_mask[row].bool()
        assert torch.allclose(scored[row][mask], torch.tensor(generation.logprobs), atol=1e-4), (
            f"row {row}"
        )


def test_generate_steps_prefix_reuse_counts_prompt_once(tiny_model, tiny_tokenizer):
    reuse = LMPolicy(tiny_model, tiny_tokenizer, reuse_prefix=True)
    no_reuse = LMPolicy(tiny_model, tiny_tokenizer, reuse_prefix=False)
    prompt = reuse.build_prompt("What is 2+3?")
    prompt_length = len(_ids(reuse, prompt))
    reuse_out = reuse.generate_steps(prompt, 4, max_new_tokens=1, seed=0)
    no_reuse_out = no_reuse.generate_steps(prompt, 4, max_new_tokens=1, seed=0)
    assert reuse.counters["forward_tokens"] == prompt_length
    assert no_reuse.counters["forward_tokens"] == 4 * prompt_length
    assert [g.token_ids for g in reuse_out] == [g.token_ids for g in no_reuse_out]


def test_generate_steps_stops_at_delimiter(tiny_model, tiny_tokenizer, scripted_logits_model):
    policy = LMPolicy(tiny_model, tiny_tokenizer)
    script = _ids(policy, "\n2+3=5\nmore")
    policy.model = scripted_logits_model(tiny_model, script)
    (generation,) = policy.generate_steps(policy.build_prompt("Q"), 1, max_new_tokens=20, seed=0)
    assert generation.text == "2+3=5"
    assert generation.stop_reason == "delimiter"
    assert generation.finished
    assert generation.token_ids == _ids(policy, "\n2+3=5\n")


def test_generate_steps_stops_at_eos(tiny_model, tiny_tokenizer, scripted_logits_model):
    policy = LMPolicy(tiny_model, tiny_tokenizer)
    eos = tiny_tokenizer.eos_token_id
    policy.model = scripted_logits_model(tiny_model, [*_ids(policy, "ab"), eos])
    (generation,) = policy.generate_steps(policy.build_prompt("Q"), 1, max_new_tokens=20, seed=0)
    assert generation.text == "ab"
    assert generation.stop_reason == "eos"
    assert generation.token_ids[-1] == eos


def test_generate_steps_length_limit_not_finished(
    tiny_model, tiny_tokenizer, scripted_logits_model
):
    policy = LMPolicy(tiny_model, tiny_tokenizer)
    policy.model = scripted_logits_model(tiny_model, _ids(policy, "abcdefgh"))
    (generation,) = policy.generate_steps(policy.build_prompt("Q"), 1, max_new_tokens=4, seed=0)
    assert generation.text == "abcd"
    assert generation.stop_reason == "length"
    assert not generation.finished


def test_generate_completions_stops_after_answer_line(
    tiny_model, tiny_tokenizer, scripted_logits_model
):
    policy = LMPolicy(tiny_model, tiny_tokenizer)
    policy.model = scripted_logits_model(tiny_model, _ids(policy, "2+3=5\nThe answer is 5.\nxyz"))
    (generation,) = policy.generate_completions([policy.build_prompt("Q")], max_new_tokens=60)
    assert generation.text == "2+3=5\nThe answer is 5.\n"
    assert generation.stop_reason == "answer"
    assert generation.finished


def test_generate_completions_greedy_padding_invariant(tiny_policy):
    # Left padding with correct positions must not change a prompt's greedy completion.
    prompts = [tiny_policy.build_prompt("Hi"), tiny_policy.build_prompt("What is 120 + 35?")]
    batched = tiny_policy.generate_completions(prompts, greedy=True, max_new_tokens=6)
    for prompt, generation in zip(prompts, batched, strict=True):
        (alone,) = tiny_policy.generate_completions([prompt], greedy=True, max_new_tokens=6)
        assert generation.token_ids == alone.token_ids


def test_generate_completions_empty_list(tiny_policy):
    assert tiny_policy.generate_completions([]) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 0}, "n >= 1"),
        ({"temperature": 0.0}, "temperature > 0"),
        ({"top_p": 1.5}, "top_p"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
    ],
)
def test_generate_steps_invalid_args(tiny_policy, kwargs, message):
    arguments = {"n": 2, **kwargs}
    n = arguments.pop("n")
    with pytest.raises(ValueError, match=message):
        tiny_policy.generate_steps("prompt", n, **arguments)


def test_generate_completions_rejects_single_str(tiny_policy):
    with pytest.raises(TypeError, match="sequence of prompts"):
        tiny_policy.generate_completions("one prompt")


# ---------------------------------------------------------------- scoring


def test_tokenize_pairs_masks_from_lengths(tiny_policy, tiny_tokenizer):
    eos = tiny_tokenizer.eos_token_id
    assert eos == tiny_tokenizer.pad_token_id
    prompts = ["ab", "abcd"]
    completions = [[5, eos], [6, 7, eos]]  # completions that end with the pad id
    batch = tiny_policy.tokenize_pairs(prompts, completions)
    assert batch.input_ids.shape == (2, 7)
    assert batch.attention_mask.tolist() == [[1, 1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1]]
    assert batch.completion_mask.tolist() == [[0, 0, 1, 1, 0, 0, 0], [0, 0, 0, 0, 1, 1, 1]]
    assert batch.input_ids[0, :4].tolist() == [*_ids(tiny_policy, "ab"), 5, eos]


def test_tokenize_pairs_string_completion(tiny_policy):
    batch = tiny_policy.tokenize_pairs(["Q:"], [" 42"])
    assert batch.input_ids[0].tolist() == _ids(tiny_policy, "Q:") + _ids(tiny_policy, " 42")
    assert batch.completion_mask[0].tolist() == [0, 0, 1, 1, 1]


def test_tokenize_pairs_max_length_cuts_prompt_left(tiny_policy):
    batch = tiny_policy.tokenize_pairs(["abcdef"], ["xy"], max_length=4)
    assert batch.input_ids[0].tolist() == _ids(tiny_policy, "efxy")
    assert batch.completion_mask[0].tolist() == [0, 0, 1, 1]


def test_tokenize_pairs_length_mismatch(tiny_policy):
    with pytest.raises(ValueError, match="as many completions as prompts"):
        tiny_policy.tokenize_pairs(["a", "b"], ["c"])


def test_token_logprobs_matches_manual_forward(tiny_policy, tiny_model):
    batch = tiny_policy.tokenize_pairs(["Hello", "A longer prompt"], [" world", "!"])
    scored = tiny_policy.token_logprobs(batch)
    assert scored.shape == batch.input_ids.shape
    assert torch.all(scored[batch.completion_mask == 0] == 0)
    for row in range(2):
        length = int(batch.attention_mask[row].sum())
        ids = batch.input_ids[row, :length][None]
        with torch.no_grad():
            logits = tiny_model(input_ids=ids).logits[0].float()
        expected = torch.log_softmax(logits[:-1], -1).gather(-1, ids[0, 1:, None]).squeeze(-1)
        mask = batch.completion_mask[row, 1:length].bool()
        assert torch.allclose(scored[row, 1:length][mask], expected[mask], atol=1e-5)


def test_token_logprobs_entropy_and_grad(tiny_policy):
    batch = tiny_policy.tokenize_pairs(["Hi"], [" there"])
    logprobs, entropy = tiny_policy.token_logprobs(batch, requires_grad=True, return_entropy=True)
    assert logprobs.requires_grad
    assert entropy.shape == logprobs.shape
    mask = batch.completion_mask.bool()
    assert torch.all(entropy[mask] > 0)
    assert torch.all(entropy[~mask] == 0)
    logprobs.sum().backward()
    grads = [p.grad for p in tiny_policy.model.parameters() if p.grad is not None]
    assert grads
    tiny_policy.model.zero_grad(set_to_none=True)


def test_token_logprobs_no_grad_by_default(tiny_policy):
    batch = tiny_policy.tokenize_pairs(["Hi"], [" there"])
    assert not tiny_policy.token_logprobs(batch).requires_grad
