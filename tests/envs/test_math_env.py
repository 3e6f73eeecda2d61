"""Tests for the MathReasoning-v0 Gymnasium environment."""

from __future__ import annotations

import warnings
from pathlib import Path

import gymnasium
import pytest
from gymnasium.utils.env_checker import check_env

import envs  # noqa: F401  (registers MathReasoning-v0)
from envs import EnvState, MathReasoningEnv, Problem

PROBLEMS = [
    Problem("add", "What is 2 + 3?", "5", source="hand"),
    Problem("half", "What is half of one?", r"\frac{1}{2}", source="hand"),
]


def _env(**kwargs) -> MathReasoningEnv:
    return MathReasoningEnv(problems=PROBLEMS, **kwargs)


def test_make_default_problems_episode() -> None:
    env = gymnasium.make("MathReasoning-v0")
    observation, info = env.reset(seed=0)
    assert observation.startswith(env.unwrapped.problem.question)
    answer = env.unwrapped.problem.answer
    observation, reward, terminated, truncated, info = env.step(f"So the answer is {answer}.")
    assert (reward, terminated, truncated, info["correct"]) == (1.0, True, False, True)
    env.close()


def test_make_shared_gsm8k_episode(shared_data: Path) -> None:
    env = gymnasium.make("MathReasoning-v0", problems=shared_data / "gsm8k" / "test.jsonl")
    _, info = env.reset(seed=0)
    _, reward, terminated, _, info = env.step("Let me think.\n")
    assert (reward, terminated) == (0.0, False)
    _, reward, terminated, _, info = env.step(f"#### {env.unwrapped.problem.answer}")
    assert (reward, terminated, info["correct"]) == (1.0, True, True)


def test_check_env_passes_without_warnings() -> None:
    env = gymnasium.make("MathReasoning-v0", problems=PROBLEMS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)


def test_reset_seed_is_deterministic() -> None:
    env = MathReasoningEnv(problems=[Problem(str(i), f"q{i}", str(i)) for i in range(50)])

    def episode_ids() -> list[str]:
        ids = [env.reset(seed=0)[1]["problem_id"]]
        ids += [env.reset()[1]["problem_id"] for _ in range(5)]
        return ids

    assert episode_ids() == episode_ids()


def test_observation_format_and_info() -> None:
    env = _env()
    observation, info = env.reset(options={"problem_index": 0})
    assert observation == "What is 2 + 3?\n"
    assert info == {
        "problem_id": "add",
        "depth": 0,
        "steps": (),
        "answer": None,
        "correct": None,
        "reason": None,
    }
    observation, reward, terminated, truncated, info = env.step("2 + 3 = 5\n")
    assert observation == "What is 2 + 3?\n2 + 3 = 5"
    assert (reward, terminated, truncated) == (0.0, False, False)
    observation, *_ = env.step("Check: 5 - 3 = 2")
    assert observation == "What is 2 + 3?\n2 + 3 = 5\nCheck: 5 - 3 = 2"
    assert env.observation_space.contains(observation)


def test_wrong_final_answer_gives_zero() -> None:
    env = _env()
    env.reset(options={"problem_index": 0})
    _, reward, terminated, truncated, info = env.step(r"\boxed{6}")
    assert (reward, terminated, truncated) == (0.0, True, False)
    assert (info["answer"], info["correct"]) == ("6", False)


def test_reset_with_problem_and_prefix() -> None:
    env = _env()
    problem = {"id": "x", "question": "What is 4 * 2?", "answer": "8"}
    observation, info = env.reset(options={"problem": problem, "prefix_steps": ["4 * 2 = 8"]})
    assert observation == "What is 4 * 2?\n4 * 2 = 8"
    assert (info["problem_id"], info["depth"]) == ("x", 1)
    _, reward, terminated, _, info = env.step("The answer is 8.")
    assert (reward, terminated, info["depth"]) == (1.0, True, 2)


def test_reset_rejects_bad_options() -> None:
    env = _env()
    with pytest.raises(ValueError, match="reset options"):
        env.reset(options={"problme": 1})
    with pytest.raises(ValueError, match="problem_index"):
        env.reset(options={"problem_index": 7})
    with pytest.raises(TypeError, match="prefix_steps"):
        env.reset(options={"prefix_steps": "one step"})


def test_truncation_at_max_steps() -> None:
    env = _env(max_steps=2)
    env.reset(options={"problem_index": 0})
    assert env.step("a")[3] is False
    _, reward, terminated, truncated, _ = env.step("b")
    assert (reward, terminated, truncated) == (0.0, False, True)


def test_truncation_at_max_text_length() -> None:
    env = _env(max_text_length=40)
    observation, _ = env.reset(options={"problem_index": 0})
    observation, _, terminated, truncated, _ = env.step("x" * 100)
    assert len(observation) == 40
    assert (terminated, truncated) == (False, True)
    assert env.observation_space.contains(observation)


def test_long_final_step_is_checked_before_cut() -> None:
    env = _env(max_text_length=40)
    env.reset(options={"problem_index": 0})
    observation, reward, terminated, truncated, _ = env.step("y" * 60 + r" \boxed{5}")
    assert (reward, terminated, truncated) == (1.0, True, False)
    assert len(observation) == 40


def test_reset_rejects_question_longer_than_limit() -> None:
    env = MathReasoningEnv(problems=[Problem("long", "q" * 100, "1")], max_text_length=50)
    with pytest.raises(ValueError, match="max_text_length"):
        env.reset()


def test_step_after_termination_raises() -> None:
    env = _env()
    env.reset(options={"problem_index": 0})
    env.step(r"\boxed{5}")
    with pytest.raises(RuntimeError, match="reset"):
        env.step("more")


def test_step_before_reset_raises() -> None:
    with pytest.raises(RuntimeError, match="reset"):
        _env().step("x")


def test_step_non_string_action_raises() -> None:
    env = _env()
    env.reset()
    with pytest.raises(TypeError, match="got int"):
        env.step(3)  # type: ignore[arg-type]


def test_characters_outside_charset_replaced() -> None:
    env = _env()
    env.reset(options={"problem_index": 0})
    observation, *_ = env.step("emoji \U0001f600 and nul \x00")
    assert "\ufffd" in observation
    assert env.observation_space.contains(observation)


def test_get_state_set_state_restores_without_recheck(monkeypatch: pytest.MonkeyPatch) -> None:
    env = _env()
    env.reset(options={"problem_index": 1})
    env.step("one half is 1/2")
    snapshot = env.get_state()
    assert isinstance(snapshot, EnvState)
    _, reward, terminated, _, _ = env.step(r"\boxed{\frac{1}{2}}")
    finished = env.get_state()
    assert (reward, terminated) == (1.0, True)

    env.set_state(snapshot)
    assert env.state.steps == ("one half is 1/2",)
    _, reward, _, _, _ = env.step(r"\boxed{3}")
    assert reward == 0.0

    def fail(*args, **kwargs):
        raise AssertionError("check_answer must not run on set_state")

    monkeypatch.setattr("envs.math_env.check_answer", fail)
    env.set_state(finished)
    assert (env.state.correct, env.state.terminated) == (True, True)
    with pytest.raises(RuntimeError):
        env.step("x")


def test_set_state_rejects_other_types() -> None:
    with pytest.raises(TypeError, match="EnvState"):
        _env().set_state({"steps": ()})  # type: ignore[arg-type]


def test_render_ansi_and_human(capsys: pytest.CaptureFixture[str]) -> None:
    env = _env(render_mode="ansi")
    env.reset(options={"problem_index": 0})
    env.step(r"\boxed{5}")
    transcript = env.render()
    assert "What is 2 + 3?" in transcript
    assert "correct" in transcript
    human = _env(render_mode="human")
    human.reset(options={"problem_index": 0})
    assert "What is 2 + 3?" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_steps": 0}, "max_steps"),
        ({"max_text_length": 3}, "max_text_length"),
        ({"check_timeout": 0}, "check_timeout"),
        ({"render_mode": "rgb_array"}, "render_mode"),
    ],
)
def test_constructor_validates_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _env(**kwargs)


def test_constructor_rejects_empty_problem_list() -> None:
    with pytest.raises(ValueError, match="at least one problem"):
        MathReasoningEnv(problems=[])
