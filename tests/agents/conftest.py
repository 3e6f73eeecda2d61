"""Shared fixtures for agent tests: a tiny random causal LM and an offline byte tokenizer.

Nothing here downloads from a hub. The tokenizer is byte-level with no merges (one token
per byte, plus ChatML special tokens) and uses the same id for EOS and padding, as
SmolLM2 does, so tests exercise the case where pad and EOS share an id.
"""

from __future__ import annotations

from pathlib import Path

import pytest

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def build_byte_tokenizer():
    """Build a byte-level tokenizer with ChatML special tokens; EOS and pad are ``<|im_end|>``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS)}
    for symbol in alphabet:
        vocab[symbol] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
    )
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS})
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_tiny_model(vocab_size: int, seed: int = 0):
    """Build a randomly initialised two-layer Llama model small enough for unit tests."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
    )
    model = LlamaForCausalLM(config)
    model.eval()
    return model


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """Byte-level tokenizer with a ChatML chat template (EOS id == pad id)."""
    return build_byte_tokenizer()


@pytest.fixture(scope="session")
def tiny_model(tiny_tokenizer):
    """Randomly initialised two-layer Llama causal LM matching ``tiny_tokenizer``."""
    return build_tiny_model(len(tiny_tokenizer))


@pytest.fixture()
def tiny_policy(tiny_model, tiny_tokenizer):
    """:class:`agents.LMPolicy` around the tiny model and tokenizer, on CPU."""
    from agents.policy import LMPolicy

    return LMPolicy(tiny_model, tiny_tokenizer, device="cpu")


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """Reference data beside the repository; skips the test when it is absent."""
    path = Path(__file__).resolve().parents[2].parent / "shared" / "data"
    if not path.is_dir():
        pytest.skip(f"reference data folder {path} not found")
    return path


class ScriptedLogitsModel:
    """Wrap a causal LM so that sampling emits a fixed token script, one token per position.

    The prompt length is taken from the first (prefill) call of each generation, so the
    wrapper suits single-prompt sampling such as ``LMPolicy.generate_steps``. After the
    script ends, the wrapped model's own logits are used.
    """

    def __init__(self, model, script: list[int], boost: float = 1e4) -> None:
        self.model = model
        self.script = list(script)
        self.boost = boost
        self.generation_config = model.generation_config
        self._prompt_end: int | None = None

    def forward(self, **kwargs):
        return self(**kwargs)

    def parameters(self):
        return self.model.parameters()

    def to(self, device):
        self.model.to(device)
        return self

    def __call__(self, **kwargs):
        output = self.model(**kwargs)
        if kwargs.get("past_key_values") is None and kwargs.get("cache") is None:
            self._prompt_end = int(kwargs["position_ids"][0, -1])
        position = int(kwargs["position_ids"][0, -1])
        index = position - self._prompt_end
        if index < len(self.script):
            output.logits[:, -1, self.script[index]] += self.boost
        return output


@pytest.fixture()
def scripted_logits_model():
    """The :class:`ScriptedLogitsModel` class, for tests that force a token sequence."""
    return ScriptedLogitsModel
