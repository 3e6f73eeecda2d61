"""Tests of atomic checkpoints: layout, replacement, retention, tree counts and weights."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from agents.checkpoint import (
    find_latest_checkpoint,
    load_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)


@pytest.fixture()
def model(tiny_model):
    return copy.deepcopy(tiny_model)


def _optimizer(model):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda update: 1.0 / (update + 1))
    return optimizer, scheduler


def _tree(problem_id: str):
    from sae import PrefixTree

    tree = PrefixTree({"id": problem_id, "question": "q", "answer": "1"})
    tree.add_trace(["step one", "The answer is 1"], 1.0)
    return tree


def test_checkpoint_layout(model, tmp_path):
    optimizer, scheduler = _optimizer(model)
    path = save_checkpoint(tmp_path, 7, model=model, optimizer=optimizer, scheduler=scheduler)
    assert path.name == "checkpoint-000007"
    for name in ("trainer_state.pt", "tree_stats.json", "meta.json", "model/model.safetensors"):
        assert (path / name).is_file(), name
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_checkpoint_round_trip_weights_and_state(model, tiny_model, tmp_path):
    optimizer, scheduler = _optimizer(model)
    model(torch.tensor([[5, 6, 7]])).logits.sum().backward()
    optimizer.step()
    scheduler.step()
    generator = np.random.default_rng(3)
    generator.random(5)
    tree = _tree("p1")
    tree.record_outcome(2, 1.0)
    save_checkpoint(
        tmp_path,
        1,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        generator=generator,
        trees=[tree],
        extra={"order": [2, 0]},
    )

    restored = copy.deepcopy(tiny_model)
    restored_optimizer, restored_scheduler = _optimizer(restored)
    fresh_tree = _tree("p1")
    data = load_checkpoint(
        tmp_path,
        model=restored,
        optimizer=restored_optimizer,
        scheduler=restored_scheduler,
        trees=[fresh_tree],
    )
    assert data.step == 1
    assert data.extra == {"order": [2, 0]}
    for (name, old), new in zip(
        model.state_dict().items(), restored.state_dict().values(), strict=True
    ):
        assert torch.equal(old, new), name
    assert restored_scheduler.last_epoch == 1
    assert restored_optimizer.state_dict()["state"][0]["step"] == 1
    resumed = np.random.default_rng(0)
    resumed.bit_generator.state = data.generator_state
    assert resumed.random() == generator.random()
    assert [n.student_visits for n in fresh_tree.nodes] == [n.student_visits for n in tree.nodes]


def test_checkpoint_same_step_replaced(model, tmp_path):
    optimizer, scheduler = _optimizer(model)
    save_checkpoint(
        tmp_path, 2, model=model, optimizer=optimizer, scheduler=scheduler, meta={"run": "a"}
    )
    path = save_checkpoint(
        tmp_path, 2, model=model, optimizer=optimizer, scheduler=scheduler, meta={"run": "b"}
    )
    assert '"run": "b"' in (path / "meta.json").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-000002"]


def test_checkpoint_keep_last_deletes_old(model, tmp_path):
    optimizer, scheduler = _optimizer(model)
    for step in (1, 2, 3):
        save_checkpoint(
            tmp_path, step, model=model, optimizer=optimizer, scheduler=scheduler, keep_last=2
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-000002", "checkpoint-000003"]
    assert find_latest_checkpoint(tmp_path).name == "checkpoint-000003"


def test_latest_ignores_incomplete_directory(model, tmp_path):
    optimizer, scheduler = _optimizer(model)
    save_checkpoint(tmp_path, 4, model=model, optimizer=optimizer, scheduler=scheduler)
    (tmp_path / "checkpoint-000009").mkdir()  # no trainer_state.pt: an interrupted copy
    assert resolve_checkpoint(tmp_path).name == "checkpoint-000004"


def test_tree_counts_mismatch_rejected(model, tiny_model, tmp_path):
    optimizer, scheduler = _optimizer(model)
    save_checkpoint(
        tmp_path, 1, model=model, optimizer=optimizer, scheduler=scheduler, trees=[_tree("p1")]
    )
    other = _tree("p1")
    other.add_trace(["another step"], 0.0)
    with pytest.raises(ValueError, match="same teacher tree file"):
        load_checkpoint(tmp_path, model=copy.deepcopy(tiny_model), trees=[other])


def test_lora_adapter_round_trip(model, tiny_model, tmp_path):
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False
    )
    trained = get_peft_model(model, lora)
    optimizer, scheduler = _optimizer(trained)
    path = save_checkpoint(tmp_path, 1, model=trained, optimizer=optimizer, scheduler=scheduler)
    assert (path / "model" / "adapter_model.safetensors").is_file()

    restored = get_peft_model(
        copy.deepcopy(tiny_model),
        LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"]),
    )
    load_checkpoint(tmp_path, model=restored)
    for name, value in trained.state_dict().items():
        if "lora_" in name:
            assert torch.equal(value, restored.state_dict()[name]), name
