"""Atomic training checkpoints and exact resume.

A checkpoint is a directory ``checkpoint-<step>`` (step zero-padded to 6 digits) with:

- ``model/``: ``save_pretrained`` output in safetensors. For a peft model it is the
  LoRA adapter only, and the base weights come from the base model at resume time.
- ``trainer_state.pt``: optimizer and scheduler state dicts, the step, the RNG
  states of Python, numpy, torch (and CUDA when present) and the trainer's own
  numpy generator, plus a dict of extra plain values (loaded with ``weights_only=True``);
- ``tree_stats.json``: the online student counts of every prefix tree;
- ``meta.json``: the step and the config, for people and scripts.

The directory is first written under a temporary name in the same parent and then
renamed, so a crash while saving leaves either the old checkpoint or the new one,
never a half-written one.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
STATE_FILE = "trainer_state.pt"
TREE_STATS_FILE = "tree_stats.json"
META_FILE = "meta.json"
MODEL_DIR = "model"


@dataclass
class CheckpointData:
    """Training state from a checkpoint, besides the model, optimizer and scheduler."""

    step: int
    generator_state: dict[str, Any] | None
    tree_stats: dict[str, dict[str, list[int]]]
    extra: dict[str, Any] = field(default_factory=dict)


def checkpoint_name(step: int) -> str:
    return f"checkpoint-{step:06d}"


def capture_rng_states() -> dict[str, Any]:
    """Return the global RNG states of Python, numpy and torch (and CUDA when available)."""
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": _numpy_state_to_plain(np.random.get_state()),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _numpy_state_to_plain(state: tuple) -> list[Any]:
    # plain Python values let torch.load run with weights_only=True (no pickled numpy objects)
    name, key, position, has_gauss, cached_gaussian = state
    return [name, key.tolist(), int(position), int(has_gauss), float(cached_gaussian)]


def restore_rng_states(states: Mapping[str, Any]) -> None:
    """Restore the global RNG states captured by ``capture_rng_states``."""
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    name, key, position, has_gauss, cached_gaussian = states["numpy"]
    np.random.set_state(
        (name, np.asarray(key, dtype=np.uint32), position, has_gauss, cached_gaussian)
    )
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def tree_statistics(trees: Iterable[Any]) -> dict[str, dict[str, list[int]]]:
    """Collect the online student counts of prefix trees, keyed by problem id."""
    stats: dict[str, dict[str, list[int]]] = {}
    for tree in trees:
        problem_id = str(tree.problem.get("id", ""))
        stats[problem_id] = {
            "student_visits": [int(node.student_visits) for node in tree.nodes],
            "student_successes": [int(node.student_successes) for node in tree.nodes],
        }
    return stats


def apply_tree_statistics(
    trees: Iterable[Any], stats: Mapping[str, Mapping[str, list[int]]]
) -> None:
    """Write saved online student counts back into prefix trees (matched by problem id)."""
    for tree in trees:
        problem_id = str(tree.problem.get("id", ""))
        saved = stats.get(problem_id)
        if saved is None:
            continue
        visits, successes = saved["student_visits"], saved["student_successes"]
        if len(visits) != len(tree.nodes) or len(successes) != len(tree.nodes):
            raise ValueError(
                f"tree of problem {problem_id!r} has {len(tree.nodes)} nodes but the checkpoint "
                f"stores counts for {len(visits)}; resume with the same teacher tree file"
            )
        for node, node_visits, node_successes in zip(tree.nodes, visits, successes, strict=True):
            node.student_visits = node_visits
            node.student_successes = node_successes


def is_peft_model(model: torch.nn.Module) -> bool:
    return hasattr(model, "peft_config")


def save_checkpoint(
    output_dir: str | Path,
    step: int,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    generator: np.random.Generator | None = None,
    trees: Iterable[Any] = (),
    meta: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    keep_last: int | None = None,
) -> Path:
    """Write ``output_dir/checkpoint-<step>`` atomically and return its path.

    ``keep_last`` deletes older checkpoints beyond that count (None keeps all).
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    final = output_dir / checkpoint_name(step)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=output_dir))
    try:
        model.save_pretrained(staging / MODEL_DIR, safe_serialization=True)
        state = {
            "step": step,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "rng": capture_rng_states(),
            "generator": generator.bit_generator.state if generator is not None else None,
            "extra": dict(extra or {}),
        }
        torch.save(state, staging / STATE_FILE)
        _write_json(staging / TREE_STATS_FILE, tree_statistics(trees))
        _write_json(staging / META_FILE, {"step": step, **dict(meta or {})})
        _replace_directory(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("saved checkpoint %s", final)
    if keep_last is not None:
        _delete_old_checkpoints(output_dir, keep_last)
    return final


def load_checkpoint(
    path: str | Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    trees: Iterable[Any] = (),
    restore_rng: bool = True,
) -> CheckpointData:
    """Load a checkpoint written by ``save_checkpoint`` into the given objects in place.

    ``path`` is a checkpoint directory, or a directory that contains
    ``checkpoint-*`` directories (the highest step is taken).
    """
    path = resolve_checkpoint(path)
    _load_model_weights(model, path / MODEL_DIR)
    state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state["scheduler"] is not None:
        scheduler.load_state_dict(state["scheduler"])
    if restore_rng:
        restore_rng_states(state["rng"])
    tree_stats = json.loads((path / TREE_STATS_FILE).read_text(encoding="utf-8"))
    apply_tree_statistics(trees, tree_stats)
    logger.info("loaded checkpoint %s (step %d)", path, state["step"])
    return CheckpointData(
        step=int(state["step"]),
        generator_state=state["generator"],
        tree_stats=tree_stats,
        extra=state.get("extra", {}),
    )


def resolve_checkpoint(path: str | Path) -> Path:
    """Return ``path`` if it is a checkpoint, else its latest ``checkpoint-*`` child."""
    path = Path(path)
    if (path / STATE_FILE).is_file():
        return path
    latest = find_latest_checkpoint(path)
    if latest is None:
        raise FileNotFoundError(
            f"no checkpoint found at {path}: expected a checkpoint-<step> directory with "
            f"{STATE_FILE}, or a directory containing one"
        )
    return latest


def find_latest_checkpoint(output_dir: str | Path) -> Path | None:
    """Return the complete ``checkpoint-*`` directory with the highest step, or None."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return None
    found = [
        (int(match.group(1)), child)
        for child in output_dir.iterdir()
        if (match := CHECKPOINT_PATTERN.match(child.name)) and (child / STATE_FILE).is_file()
    ]
    return max(found)[1] if found else None


def _load_model_weights(model: torch.nn.Module, model_dir: Path) -> None:
    from safetensors.torch import load_file

    if is_peft_model(model):
        from peft import set_peft_model_state_dict

        adapter_file = model_dir / "adapter_model.safetensors"
        if not adapter_file.is_file():
            raise FileNotFoundError(f"missing LoRA adapter {adapter_file} in the checkpoint")
        result = set_peft_model_state_dict(model, load_file(adapter_file))
        unexpected = getattr(result, "unexpected_keys", [])
        if unexpected:
            raise ValueError(f"checkpoint adapter has unexpected keys {unexpected[:5]}")
        return

    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors weights in {model_dir}")
    state: dict[str, torch.Tensor] = {}
    for file in files:
        state.update(load_file(file))
    result = model.load_state_dict(state, strict=False)
    if result.unexpected_keys:
        raise ValueError(
            f"checkpoint weights do not fit the model: unexpected keys {result.unexpected_keys[:5]}"
        )
    missing = set(result.missing_keys) - _tied_parameter_names(model)
    if missing:
        raise ValueError(
            f"checkpoint weights do not fit the model: missing keys {sorted(missing)[:5]}"
        )


def _tied_parameter_names(model: torch.nn.Module) -> set[str]:
    """Names of parameters that share storage with an earlier one (save_pretrained drops them)."""
    seen: set[int] = set()
    tied: set[str] = set()
    for name, tensor in model.state_dict(keep_vars=True).items():
        pointer = tensor.data_ptr()
        if pointer in seen:
            tied.add(name)
        seen.add(pointer)
    return tied


def _replace_directory(staging: Path, final: Path) -> None:
    if final.exists():
        retired = final.with_name(f".{final.name}.old")
        shutil.rmtree(retired, ignore_errors=True)
        os.replace(final, retired)
        os.replace(staging, final)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(staging, final)


def _delete_old_checkpoints(output_dir: Path, keep_last: int) -> None:
    found = sorted(
        (int(match.group(1)), child)
        for child in output_dir.iterdir()
        if (match := CHECKPOINT_PATTERN.match(child.name))
    )
    for _, old in found[: max(len(found) - keep_last, 0)]:
        shutil.rmtree(old, ignore_errors=True)
        logger.info("deleted old checkpoint %s", old)


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, default=str), encoding="utf-8")
