"""Exact answer checking: extraction, normalisation, parsing, then comparison.

Stages, each bounded in input size:

1. extract the prediction from the response and the gold answer from the gold string
   (:mod:`envs.extraction`);
2. normalise both (:mod:`envs.normalize`); equal strings match at once;
3. parse both into syntax trees with a token whitelist (:mod:`envs.parsing`) and reject
   oversized numbers (:mod:`envs.numeric`);
4. compare rational numbers exactly in this process, with a relative tolerance when a
   decimal literal is involved;
5. compare everything else with sympy in a worker process that is killed after
   ``timeout`` seconds (:mod:`envs.symbolic`, :mod:`envs.worker_pool`).

Answers that do not parse are compared as text, case-insensitively and without spaces.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from fractions import Fraction

from envs.extraction import MAX_TEXT_CHARS, extract_answer, extract_gold
from envs.normalize import MAX_ANSWER_CHARS, normalize_answer
from envs.numeric import DECIMAL_RTOL, LimitError, check_limits, evaluate_rational
from envs.parsing import Node, ParseError, has_decimal, parse_answer
from envs.worker_pool import get_pool

__all__ = ["CheckResult", "check_answer", "compare_answers"]

logger = logging.getLogger(__name__)

_CACHE_SIZE = 4096
_cache: OrderedDict[tuple[str, str], tuple[bool, str | None]] = OrderedDict()
_cache_lock = threading.Lock()


@dataclass(frozen=True)
class CheckResult:
    """Outcome of :func:`check_answer`.

    ``prediction`` and ``gold`` are the extracted answers before normalisation (None when
    none was found). ``reason`` says why the check could not be done or why a comparison
    fell back, for example ``"no answer found in response"`` or ``"timed out after 5 s"``;
    it is None for an ordinary right or wrong answer.
    """

    correct: bool
    prediction: str | None
    gold: str | None
    reason: str | None = None


def _as_text(answer: str) -> str:
    return "".join(answer.split()).lower()


def _cache_get(key: tuple[str, str]) -> tuple[bool, str | None] | None:
    with _cache_lock:
        value = _cache.get(key)
        if value is not None:
            _cache.move_to_end(key)
        return value


def _cache_put(key: tuple[str, str], value: tuple[bool, str | None]) -> None:
    with _cache_lock:
        _cache[key] = value
        _cache.move_to_end(key)
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)


def _rationals_equal(left: Fraction, right: Fraction, inexact: bool) -> bool:
    if left == right:
        return True
    if not inexact:
        return False
    return abs(left - right) <= DECIMAL_RTOL * max(abs(left), abs(right))


def _parse(answer: str) -> Node:
    tree = parse_answer(answer)
    check_limits(tree)
    return tree


def compare_answers(prediction: str, gold: str, *, timeout: float = 5.0) -> tuple[bool, str | None]:
    """Compare two normalised answers and return ``(correct, reason)``.

    The comparison is symmetric in its two arguments. It never raises: parse failures,
    size limits and timeouts give ``(False, reason)`` unless the answers match as text.
    """
    if prediction == gold:
        return True, None
    key = (prediction, gold)
    cached = _cache_get(key)
    if cached is not None:
        return cached

    try:
        prediction_tree = _parse(prediction)
        gold_tree = _parse(gold)
    except LimitError as error:
        return False, f"rejected: {error}"
    except ParseError as error:
        if _as_text(prediction) == _as_text(gold):
            return True, None
        result = (False, f"could not parse: {error}")
        _cache_put(key, result)
        return result

    inexact = has_decimal(prediction_tree) or has_decimal(gold_tree)
    try:
        prediction_value = evaluate_rational(prediction_tree)
        gold_value = evaluate_rational(gold_tree)
    except LimitError as error:
        return False, f"rejected: {error}"
    if prediction_value is not None and gold_value is not None:
        result = (_rationals_equal(prediction_value, gold_value, inexact), None)
        _cache_put(key, result)
        return result

    outcome = get_pool().compare(prediction_tree, gold_tree, inexact, timeout)
    if outcome.reason is not None and outcome.reason.startswith(("timed out", "checker worker")):
        return outcome.correct, outcome.reason  # not cached: a later retry may finish
    result = (outcome.correct, outcome.reason)
    _cache_put(key, result)
    return result


def check_answer(response: str, gold: str, *, timeout: float = 5.0) -> CheckResult:
    """Check whether ``response`` gives the same final answer as ``gold``.

    ``response`` may be a whole transcript or a bare answer; ``gold`` may be a bare or LaTeX
    answer, ``$...$``, ``\\boxed{...}`` or a GSM8K solution ending in ``#### N``. The
    extraction differs between the two (a gold without a marker is used whole, a response
    falls back to its last number), while the comparison itself is symmetric.

    ``timeout`` bounds the sympy stage in seconds. The function never raises and never
    hangs: bad input, parse failures and timeouts give ``correct=False`` with a reason.
    """
    if not isinstance(response, str) or not isinstance(gold, str):
        return CheckResult(
            False,
            None,
            None,
            f"expected str response and gold, got {type(response).__name__} and {type(gold).__name__}",
        )
    if len(response) > MAX_TEXT_CHARS or len(gold) > MAX_TEXT_CHARS:
        return CheckResult(False, None, None, f"input longer than {MAX_TEXT_CHARS} characters")
    if not timeout > 0:
        return CheckResult(False, None, None, f"expected timeout > 0 seconds, got {timeout!r}")

    try:
        return _check(response, gold, timeout)
    except (RecursionError, MemoryError) as error:
        return CheckResult(False, None, None, f"rejected: {type(error).__name__}")
    except Exception as error:
        # A bug in this module must not stop a training run: log it with the input.
        logger.exception("answer check failed on response %.200r and gold %.200r", response, gold)
        return CheckResult(
            False, None, None, f"internal checker error: {type(error).__name__}: {error}"
        )


def _check(response: str, gold: str, timeout: float) -> CheckResult:
    gold_answer = extract_gold(gold)
    if gold_answer is None:
        return CheckResult(False, None, None, "no answer found in gold")
    prediction = extract_answer(response)
    if prediction is None:
        return CheckResult(False, None, gold_answer, "no answer found in response")
    if len(prediction) > MAX_ANSWER_CHARS or len(gold_answer) > MAX_ANSWER_CHARS:
        return CheckResult(
            False,
            prediction[:MAX_ANSWER_CHARS],
            gold_answer[:MAX_ANSWER_CHARS],
            f"answer longer than {MAX_ANSWER_CHARS} characters",
        )

    normalized_prediction = normalize_answer(prediction)
    normalized_gold = normalize_answer(gold_answer)
    if not normalized_prediction:
        return CheckResult(
            False, prediction, gold_answer, "prediction is empty after normalisation"
        )
    if not normalized_gold:
        return CheckResult(False, prediction, gold_answer, "gold is empty after normalisation")
    correct, reason = compare_answers(normalized_prediction, normalized_gold, timeout=timeout)
    if correct:
        reason = None
    return CheckResult(correct, prediction, gold_answer, reason)
