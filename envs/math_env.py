"""The step-level Gymnasium environment ``MathReasoning-v0``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
from gymnasium import spaces

from envs.checker import check_answer
from envs.extraction import has_final_answer
from envs.problems import Problem, default_problems, load_problems

__all__ = ["TEXT_CHARSET", "EnvState", "MathReasoningEnv"]

# Every printable character of the Basic Multilingual Plane, plus newline and tab. Real
# questions and model steps (LaTeX, unicode math, currency signs, accents) fit; any other
# character in a step or question is replaced by U+FFFD so that observations stay in the
# observation space.
TEXT_CHARSET = "\n\t" + "".join(
    character
    for character in map(chr, range(0x20, 0x10000))
    if character.isprintable() and not 0xD800 <= ord(character) <= 0xDFFF
)
_CHARSET_SET = frozenset(TEXT_CHARSET)
_REPLACEMENT = "\ufffd"
_OPTION_KEYS = frozenset({"problem", "prefix_steps", "problem_index"})


def _sanitize(text: str) -> str:
    if all(character in _CHARSET_SET for character in text):
        return text
    return "".join(character if character in _CHARSET_SET else _REPLACEMENT for character in text)


@dataclass(frozen=True)
class EnvState:
    """Snapshot of an episode for :meth:`MathReasoningEnv.set_state`.

    It stores the outcome of the last answer check, so restoring a finished episode does
    not check the answer again.
    """

    problem: Problem
    problem_index: int | None
    steps: tuple[str, ...]
    terminated: bool = False
    truncated: bool = False
    answer: str | None = None
    correct: bool | None = None
    reason: str | None = None


class MathReasoningEnv(gym.Env[str, str]):
    """Solve one math problem step by step; the reward is 1.0 for a correct final answer.

    ## Description
    An episode is one problem. The agent writes one reasoning step per action. When a step
    contains a final answer (``\\boxed{...}``, ``#### N``, "The answer is ...",
    ``**Answer:** ...`` or ``<answer>...</answer>``), the answer is checked exactly against
    the gold answer with :func:`envs.check_answer` and the episode ends.

    ## Action Space
    ``Text(max_length=max_text_length, charset=TEXT_CHARSET)``: one reasoning step. Trailing
    newlines are removed before the step is stored; characters outside the charset are
    replaced by U+FFFD.

    ## Observation Space
    ``Text(max_length=max_text_length, charset=TEXT_CHARSET)``: the question, a newline,
    then the steps so far joined by newlines, that is
    ``question + "\\n" + "\\n".join(steps)``. Right after a reset without prefix steps it is
    ``question + "\\n"``.

    ## Starting State
    A problem drawn uniformly with ``self.np_random``, or the one given through ``options``,
    with the given prefix steps (none by default).

    ## Rewards
    1.0 when a step gives a correct final answer, 0.0 for a wrong one and for every
    non-final step.

    ## Episode End
    Terminated when a step contains a final answer. Truncated after ``max_steps`` steps,
    or when the observation would exceed ``max_text_length`` characters; the step that
    overflows is cut to fit (its answer, if it has one, is still checked on the full step).

    ## Info
    ``problem_id`` (str), ``depth`` (number of steps, prefix steps included), ``steps``
    (tuple of str), ``answer`` (the extracted answer or None), ``correct`` (bool, or None
    until a final answer is checked) and ``reason`` (why a check failed, or None).

    ## Arguments
    * ``problems``: a sequence of :class:`Problem` or problem dicts, a JSONL path for
      :func:`envs.load_problems`, or None for ``default_problems(100, seed=0)``.
    * ``max_steps``: steps per episode before truncation (default 8).
    * ``max_text_length``: maximum observation length in characters (default 4096).
    * ``check_timeout``: seconds allowed for one answer check (default 5.0).
    * ``render_mode``: None, ``"ansi"`` (render returns the transcript) or ``"human"``
      (render prints it).

    ``reset(options=...)`` accepts ``"problem"`` (a Problem or dict), ``"problem_index"``
    (an index into ``problems``) and ``"prefix_steps"`` (a list of steps to start from).

    ## Version History
    * v0: initial version.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi", "human"], "render_fps": 4}

    def __init__(
        self,
        problems: Sequence[Problem | Mapping[str, Any]] | str | Path | None = None,
        max_steps: int = 8,
        max_text_length: int = 4096,
        check_timeout: float = 5.0,
        render_mode: str | None = None,
    ) -> None:
        if not isinstance(max_steps, int) or max_steps < 1:
            raise ValueError(f"expected max_steps to be an int >= 1, got {max_steps!r}")
        if not isinstance(max_text_length, int) or max_text_length < 16:
            raise ValueError(
                f"expected max_text_length to be an int >= 16, got {max_text_length!r}"
            )
        if not check_timeout > 0:
            raise ValueError(f"expected check_timeout > 0 seconds, got {check_timeout!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"expected render_mode in {self.metadata['render_modes']} or None, got {render_mode!r}"
            )

        if problems is None:
            loaded = default_problems(100, seed=0)
        elif isinstance(problems, str | Path):
            loaded = load_problems(problems)
        else:
            loaded = [self._as_problem(problem) for problem in problems]
        if not loaded:
            raise ValueError("expected at least one problem, got an empty problem list")
        self.problems: list[Problem] = loaded
        self.max_steps = max_steps
        self.max_text_length = max_text_length
        self.check_timeout = float(check_timeout)
        self.render_mode = render_mode

        self.observation_space = spaces.Text(max_length=max_text_length, charset=TEXT_CHARSET)
        self.action_space = spaces.Text(max_length=max_text_length, charset=TEXT_CHARSET)
        self._state: EnvState | None = None

    # -- helpers ---------------------------------------------------------------------------

    @staticmethod
    def _as_problem(problem: Problem | Mapping[str, Any]) -> Problem:
        if isinstance(problem, Problem):
            return problem
        if isinstance(problem, Mapping):
            return Problem.from_dict(problem)
        raise TypeError(f"expected a Problem or a problem dict, got {type(problem).__name__}")

    @staticmethod
    def _observation_of(question: str, steps: Sequence[str]) -> str:
        return question + "\n" + "\n".join(steps)

    def _info(self) -> dict[str, Any]:
        state = self.state
        return {
            "problem_id": state.problem.id,
            "depth": len(state.steps),
            "steps": state.steps,
            "answer": state.answer,
            "correct": state.correct,
            "reason": state.reason,
        }

    @property
    def state(self) -> EnvState:
        """The current episode state; raises RuntimeError before the first reset."""
        if self._state is None:
            raise RuntimeError("the environment has no episode yet; call reset() first")
        return self._state

    @property
    def problem(self) -> Problem:
        """The problem of the current episode."""
        return self.state.problem

    # -- Gymnasium API ---------------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = set(options) - _OPTION_KEYS
        if unknown:
            raise ValueError(
                f"expected reset options among {sorted(_OPTION_KEYS)}, got {sorted(unknown)}"
            )

        problem_index: int | None
        if options.get("problem") is not None:
            problem = self._as_problem(options["problem"])
            problem_index = None
        else:
            if options.get("problem_index") is not None:
                problem_index = options["problem_index"]
                if not isinstance(problem_index, int) or not 0 <= problem_index < len(
                    self.problems
                ):
                    raise ValueError(
                        f"expected problem_index in [0, {len(self.problems)}), got {problem_index!r}"
                    )
            else:
                problem_index = int(self.np_random.integers(len(self.problems)))
            problem = self.problems[problem_index]
        problem = Problem(
            problem.id,
            _sanitize(problem.question),
            problem.answer,
            problem.solution,
            problem.source,
        )

        prefix_steps = options.get("prefix_steps") or []
        if isinstance(prefix_steps, str) or not all(isinstance(step, str) for step in prefix_steps):
            raise TypeError("expected prefix_steps to be a list of str")
        steps = tuple(_sanitize(step.rstrip("\n")) for step in prefix_steps)
        observation = self._observation_of(problem.question, steps)
        if len(observation) > self.max_text_length:
            raise ValueError(
                f"problem {problem.id!r} with its prefix steps is {len(observation)} characters, "
                f"expected at most max_text_length={self.max_text_length}; raise max_text_length"
            )

        self._state = EnvState(problem=problem, problem_index=problem_index, steps=steps)
        if self.render_mode == "human":
            self.render()
        return observation, self._info()

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if not isinstance(action, str):
            raise TypeError(f"expected action of type str, got {type(action).__name__}")
        state = self.state
        if state.terminated or state.truncated:
            raise RuntimeError("step() called after the episode ended; call reset() first")

        step_text = _sanitize(action.rstrip("\n"))
        answer: str | None = None
        correct: bool | None = None
        reason: str | None = None
        terminated = False
        reward = 0.0
        if has_final_answer(step_text):
            result = check_answer(step_text, state.problem.answer, timeout=self.check_timeout)
            answer, correct, reason = result.prediction, result.correct, result.reason
            terminated = True
            reward = 1.0 if result.correct else 0.0

        # Cut the step so that the observation fits max_text_length.
        base_length = len(self._observation_of(state.problem.question, state.steps))
        separator = 1 if state.steps else 0
        room = self.max_text_length - base_length - separator
        text_overflow = len(step_text) > room
        if text_overflow:
            step_text = step_text[: max(room, 0)]
        steps = (*state.steps, step_text)
        truncated = not terminated and (text_overflow or len(steps) >= self.max_steps)

        self._state = EnvState(
            problem=state.problem,
            problem_index=state.problem_index,
            steps=steps,
            terminated=terminated,
            truncated=truncated,
            answer=answer,
            correct=correct,
            reason=reason,
        )
        observation = self._observation_of(state.problem.question, steps)
        if self.render_mode == "human":
            self.render()
        return observation, reward, terminated, truncated, self._info()

    def render(self) -> str | None:
        """Return the transcript ("ansi") or print it ("human"); None without a render mode."""
        if self.render_mode is None or self._state is None:
            return None
        state = self._state
        lines = [f"Problem {state.problem.id}: {state.problem.question}"]
        lines.extend(f"  step {index}: {step}" for index, step in enumerate(state.steps, start=1))
        if state.correct is not None:
            lines.append(f"  answer {state.answer!r}: {'correct' if state.correct else 'wrong'}")
        transcript = "\n".join(lines)
        if self.render_mode == "human":
            print(transcript)
            return None
        return transcript

    # -- search support --------------------------------------------------------------------

    def get_state(self) -> EnvState:
        """Return an immutable snapshot of the episode (cheap: no copying of the problem list)."""
        return self.state

    def set_state(self, state: EnvState) -> None:
        """Restore a snapshot from :meth:`get_state`; no answer is checked again."""
        if not isinstance(state, EnvState):
            raise TypeError(f"expected an EnvState, got {type(state).__name__}")
        self._state = state
