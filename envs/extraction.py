"""Find the final answer in a model transcript or a gold solution.

Extraction order, first match wins:

1. the last closed ``\\boxed{...}`` (or ``\\fbox{...}``), braces counted; when the last box
   is unclosed, no box is used and the rules below run on the raw text;
2. the last ``<answer>...</answer>`` element;
3. the first ``#### X`` marker (GSM8K style); text after that line is ignored, because
   models often continue with an invented "Question:" of their own;
4. the last answer phrase: "The answer is X", "Final answer: X", ``**Answer:** X`` or a
   line starting with "Answer:";
5. for :func:`extract_answer` only: the whole text when it looks like a bare answer,
   otherwise the last number in the text.
"""

from __future__ import annotations

import re

from envs.parsing import FUNCTION_NAMES

__all__ = [
    "MAX_TEXT_CHARS",
    "extract_answer",
    "extract_gold",
    "extract_marked_answer",
    "find_last_boxed",
    "has_final_answer",
]

# Transcripts longer than this are rejected before any regular expression runs on them.
MAX_TEXT_CHARS = 200_000

_BOX_START = re.compile(r"\\(?:boxed|fbox)\s*\{")
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_HASH_MARKER = re.compile(r"####[ \t]*([^\n]*)")
_ANSWER_PHRASE = re.compile(
    r"(?:\bthe\s+(?:final\s+)?answer\s+is\s*:?"
    r"|\bfinal\s+answer\s*(?:is\b|:)"
    r"|\*\*\s*(?:final\s+)?answer\s*:?\s*\*\*\s*:?"
    r"|^[ \t]*answer\s*:)",
    re.IGNORECASE | re.MULTILINE,
)
# A number as models write it: optional sign, thousands groups or plain digits, decimals,
# and an optional "/denominator". The sign only counts at a word start, so "3-1" gives "1".
_NUMBER = re.compile(r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?|(?<![\w.])-?\.\d+")
# Words that may appear inside a bare math answer: the parser's function names, the
# words for pi and infinity, and the connectives of answers such as "x = 1 or x = 2".
_MATH_WORDS = FUNCTION_NAMES | frozenset(["pi", "inf", "infty", "infinity", "and", "or"])
_WORD = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{2,}")
_TEXT_COMMAND = re.compile(r"\\(?:text|mbox|textbf|mathrm|begin|end)\s*\{[^{}]*\}")


def find_last_boxed(text: str) -> str | None:
    """Return the content of the last closed ``\\boxed{...}``, or None.

    Nested braces are counted. When the last box is unclosed this returns None instead of
    an earlier box or a truncated content, so the caller falls back to the raw text.
    """
    starts = [m.end() for m in _BOX_START.finditer(text)]
    if not starts:
        return None
    start = starts[-1]
    depth = 1
    for index in range(start, len(text)):
        char = text[index]
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                content = text[start:index].strip()
                return content or None
    return None


def _cut_phrase_answer(tail: str) -> str | None:
    """Cut the answer after an answer phrase at the end of its math: "72, in total" -> "72"."""
    line = tail.split("\n", 1)[0].strip().strip("*").strip()
    if not line:
        return None
    if line.startswith("$") and not line.startswith("$$"):
        closing = line.find("$", 1)
        # A "$" with a closing partner is a math delimiter; a lone one is a currency sign.
        if closing > 1 and not re.match(r"\$\s*\d[\d,.]*\s*$", line[: closing + 1]):
            return line[1:closing].strip() or None
    # A sentence ends at ". ", "; ", "! " or "? "; a decimal point is followed by a digit.
    line = re.split(r"[.;!?](?=\s|$)", line, maxsplit=1)[0]
    for word in _WORD.finditer(line):
        if word.group(0).lower() in _MATH_WORDS:
            continue
        before = line[: word.start()]
        if before.strip() and (before.endswith(" ") or before.endswith(",")):
            line = before
            break
    answer = line.strip().rstrip(",;:").strip()
    return answer or None


def extract_marked_answer(text: str) -> str | None:
    """Return the answer after an explicit final-answer marker (rules 1-4), or None."""
    if len(text) > MAX_TEXT_CHARS:
        return None
    boxed = find_last_boxed(text)
    if boxed is not None:
        return boxed

    tags = _ANSWER_TAG.findall(text)
    if tags:
        inner = tags[-1].strip()
        nested = extract_marked_answer(inner) if ("\\boxed" in inner or "####" in inner) else None
        return nested or inner or None

    hash_match = _HASH_MARKER.search(text)
    if hash_match is not None:
        answer = hash_match.group(1).strip()
        if answer:
            return answer

    phrases = list(_ANSWER_PHRASE.finditer(text))
    for phrase in reversed(phrases):
        answer = _cut_phrase_answer(text[phrase.end() :])
        if answer is not None:
            return answer
    return None


def has_final_answer(text: str) -> bool:
    """Return whether ``text`` gives a final answer through an explicit marker.

    Markers are ``\\boxed{..}``, ``#### N``, "The answer is ...", ``**Answer:**`` and
    ``<answer>...</answer>``, each with a non-empty answer. A bare last number does not
    count, so a reasoning step such as "3 + 4 = 7" does not end an episode.
    """
    return extract_marked_answer(text) is not None


def _looks_like_bare_answer(text: str) -> bool:
    """Return whether ``text`` is a short answer on its own, not prose."""
    if len(text) > 300 or "\n" in text.strip():
        return False
    without_text = _TEXT_COMMAND.sub(" ", text)
    for word in _WORD.finditer(without_text):
        if len(word.group(0)) >= 3 and word.group(0).lower() not in _MATH_WORDS:
            return False
    return True


def extract_answer(text: str) -> str | None:
    """Return the final answer of a transcript, or None when there is none.

    After the marker rules this accepts the whole text when it looks like a bare answer
    (one short line without English words), then the last number in the text, then a
    short single line as it is (a text answer such as "Evelyn").
    """
    if not isinstance(text, str) or len(text) > MAX_TEXT_CHARS:
        return None
    marked = extract_marked_answer(text)
    if marked is not None:
        return marked

    stripped = text.strip()
    if not stripped:
        return None
    if _looks_like_bare_answer(stripped):
        return stripped
    numbers = _NUMBER.findall(stripped)
    if numbers:
        return numbers[-1]
    if len(stripped) <= 100 and "\n" not in stripped:
        return stripped
    return None


def extract_gold(gold: str) -> str | None:
    """Return the answer part of a gold string.

    A gold may be a bare answer, ``$...$``, ``\\boxed{...}`` or a solution ending in
    ``#### N``. Without a marker the whole gold is the answer: unlike a response, a gold
    never falls back to its last number, so ``\\left(3, \\frac{\\pi}{2}\\right)`` stays whole.
    """
    if not isinstance(gold, str) or len(gold) > MAX_TEXT_CHARS:
        return None
    marked = extract_marked_answer(gold)
    if marked is not None:
        return marked
    stripped = gold.strip()
    return stripped or None
