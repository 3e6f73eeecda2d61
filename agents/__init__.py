"""Language-model policy, MCTS teacher and GRPO-SAE trainer.

Names are imported lazily so that ``import agents`` stays cheap (no torch or
transformers import) until a policy, teacher or trainer is used.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    # policy
    "LMPolicy": "agents.policy",
    "Generation": "agents.policy",
    "TokenBatch": "agents.policy",
    "SYSTEM_INSTRUCTION": "agents.policy",
    "build_messages": "agents.policy",
    # MCTS teacher
    "MCTSTeacher": "agents.mcts",
    "MCTSConfig": "agents.mcts",
    "TeacherResult": "agents.mcts",
    # trainer
    "GRPOSAEConfig": "agents.trainer",
    "GRPOSAETrainer": "agents.trainer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'agents' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
