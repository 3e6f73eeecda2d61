"""Rewrite an extracted answer into a canonical LaTeX-like string for parsing.

The rewrite drops presentation that does not change the value: math delimiters, ``\\left``
and ``\\right``, spacing commands, ``\\text{...}`` wrappers, currency signs and words,
trailing units, ``%`` and "percent", degree signs, and thousands separators. It also turns
mixed numbers (``2\\frac{1}{2}``, ``1 1/4``) into sums and matrices into tuples.
"""

from __future__ import annotations

import re

__all__ = ["MAX_ANSWER_CHARS", "normalize_answer"]

# Extracted answers longer than this are rejected instead of parsed.
MAX_ANSWER_CHARS = 1_000

_UNICODE_REPLACEMENTS = {
    "\u2212": "-",  # minus sign
    "\u2013": "-",
    "\u00d7": "*",
    "\u22c5": "*",
    "\u00b7": "*",
    "\u00f7": "/",
    "\u03c0": "\\pi ",
    "\u221e": "\\infty ",
    "\u221a": "\\sqrt",
    "\u2264": "\\le ",
    "\u2265": "\\ge ",
    "\u2260": "\\ne ",
    "\u00b1": "\\pm ",
    "\u222a": "\\cup ",
    "\u00b0": "",  # degree sign
    "\u00a0": " ",
}
_SPACING_COMMANDS = re.compile(r"\\[,;:! ]|\\q?quad\b|\\displaystyle\b|~")
_LEFT_RIGHT = re.compile(r"\\(?:left|right|big|Big|bigg|Bigg)(?![a-zA-Z])\s*(\.)?")
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|\\circ\b|\\degree\b|\bdegrees?\b")
_PERCENT = re.compile(r"\\%|%|\bpercent\b")
_CURRENCY = re.compile(r"\\\$|\$|\b(?:dollars?|usd|euros?|cents?)\b|[£€¥]", re.IGNORECASE)
_TEXT_WRAPPER = re.compile(
    r"\\(?:text|mbox|textbf|textit|mathrm|mathbf|operatorname)\s*\{([^{}]*)\}"
)
_THOUSANDS = re.compile(r"(?<![\d.,])\d{1,3}(?:,\d{3})+(?![\d,])")
_MIXED_LATEX = re.compile(r"(?<![\d.^_}])(\d+)\s*\\frac\s*\{\s*(\d+)\s*\}\s*\{\s*(\d+)\s*\}")
_MIXED_PLAIN = re.compile(r"^(-?)(\d+)\s+(\d+)\s*/\s*(\d+)$")
_TRAILING_UNITS = re.compile(r"(?<=[\d}).])\s+(?:[A-Za-z]{2,}\.?\s*)+(?:\^\s*\{?\d\}?)?$")
_ELEMENT_OF = re.compile(r"^[A-Za-z]\s*\\in\s+|^[A-Za-z]\s*\\in(?=[\[(\\])")
_MATRIX = re.compile(r"\\begin\{[pbvBV]?matrix\}(.*?)\\end\{[pbvBV]?matrix\}", re.DOTALL)
_DELIMITERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))


def _strip_math_delimiters(text: str) -> str:
    changed = True
    while changed:
        changed = False
        for opening, closing in _DELIMITERS:
            if (
                len(text) > len(opening) + len(closing)
                and text.startswith(opening)
                and text.endswith(closing)
            ):
                text = text[len(opening) : -len(closing)].strip()
                changed = True
    return text


def _matrix_to_tuple(match: re.Match[str]) -> str:
    rows = [row.strip() for row in match.group(1).split("\\\\") if row.strip()]
    cells = [[cell.strip() for cell in row.split("&")] for row in rows]
    if all(len(row) == 1 for row in cells):
        return "(" + ",".join(row[0] for row in cells) + ")"
    return "(" + ",".join("(" + ",".join(row) + ")" for row in cells) + ")"


def _strip_trailing_units(text: str) -> str:
    """Drop words after a number at the end ("10 cm" -> "10") and unit ``\\text{...}``."""
    text = re.sub(
        r"(?<=[\d}).])\s*\\(?:text|mbox)\s*\{\s*[A-Za-z][A-Za-z .]*\}(?:\^\s*\{?\d\}?)?$", "", text
    )
    return _TRAILING_UNITS.sub("", text)


def normalize_answer(answer: str) -> str:
    """Return the canonical form of an extracted answer (see the module docstring)."""
    text = answer.strip()
    for source, target in _UNICODE_REPLACEMENTS.items():
        text = text.replace(source, target)
    text = _strip_math_delimiters(text)
    text = _MATRIX.sub(_matrix_to_tuple, text)
    text = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    text = text.replace("{,}", ",")
    text = re.sub(r",\\!\s*", ",", text)
    text = _SPACING_COMMANDS.sub(" ", text)
    text = _LEFT_RIGHT.sub("", text)
    text = _DEGREES.sub("", text)
    text = _PERCENT.sub("", text)
    text = _strip_trailing_units(text.strip())
    text = _CURRENCY.sub("", text)
    # \text{...} and friends keep their content once units are gone: \text{(B)} -> (B).
    previous = None
    while previous != text:
        previous = text
        text = _TEXT_WRAPPER.sub(r"\1", text)
    text = _ELEMENT_OF.sub("", text.strip())
    text = _THOUSANDS.sub(lambda m: m.group(0).replace(",", ""), text)
    text = _MIXED_LATEX.sub(r"(\1+\2/\3)", text)
    text = _MIXED_PLAIN.sub(r"\1(\2+\3/\4)", text.strip())
    text = re.sub(r"\s+", " ", text).strip()
    text = text.rstrip(".,;:!? ").strip()
    text = _strip_math_delimiters(text)
    return text
