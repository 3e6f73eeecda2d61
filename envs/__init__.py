"""Math reasoning environment, exact answer checking and problem sources.

Importing this package registers the Gymnasium id ``MathReasoning-v0``.
"""

from __future__ import annotations

import gymnasium

from envs.checker import CheckResult, check_answer, compare_answers
from envs.extraction import extract_answer, extract_gold, has_final_answer
from envs.math_env import TEXT_CHARSET, EnvState, MathReasoningEnv
from envs.normalize import normalize_answer
from envs.problems import (
    DEFAULT_KINDS,
    Problem,
    default_problems,
    load_hf_problems,
    load_problems,
    problems_from_records,
)
from envs.worker_pool import shutdown_workers

__all__ = [
    "DEFAULT_KINDS",
    "TEXT_CHARSET",
    "CheckResult",
    "EnvState",
    "MathReasoningEnv",
    "Problem",
    "check_answer",
    "compare_answers",
    "default_problems",
    "extract_answer",
    "extract_gold",
    "has_final_answer",
    "load_hf_problems",
    "load_problems",
    "normalize_answer",
    "problems_from_records",
    "shutdown_workers",
]

ENV_ID = "MathReasoning-v0"

if ENV_ID not in gymnasium.registry:
    gymnasium.register(id=ENV_ID, entry_point="envs.math_env:MathReasoningEnv")
