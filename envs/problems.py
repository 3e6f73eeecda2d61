"""Problem records and problem sources: JSONL files, Hugging Face datasets, reasoning-gym."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from envs.extraction import extract_marked_answer

__all__ = [
    "DEFAULT_GENERATORS",
    "DEFAULT_KINDS",
    "Problem",
    "default_problems",
    "load_hf_problems",
    "load_problems",
    "problems_from_records",
]

logger = logging.getLogger(__name__)

ProblemFormat = Literal["auto", "gsm8k", "math"]
_FORMATS = ("auto", "gsm8k", "math")

# Problem kinds behind default_problems: (kind, reasoning-gym generator, settings).
# "arithmetic": one operation (+, -, *) on two numbers of one or two digits, without
# parentheses or negation, which SmolLM2-135M-Instruct solves often enough greedily to
# give a learning signal; "word": GSM8K-style word problems with integer answers.
DEFAULT_GENERATORS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    (
        "arithmetic",
        "basic_arithmetic",
        {
            "min_terms": 2,
            "max_terms": 2,
            "min_digits": 1,
            "max_digits": 2,
            "operators": ("+", "-", "*"),
            "allow_parentheses": False,
            "allow_negation": False,
        },
    ),
    ("word", "gsm_symbolic", {}),
)
DEFAULT_KINDS: tuple[str, ...] = tuple(kind for kind, _, _ in DEFAULT_GENERATORS)


@dataclass(frozen=True)
class Problem:
    """One math problem: a question, its gold answer and where it came from.

    ``answer`` is the final answer only (``"18"``, ``"\\frac{1}{2}"``); a worked solution,
    when the source has one, goes into ``solution``.
    """

    id: str
    question: str
    answer: str
    solution: str | None = None
    source: str = ""

    def __post_init__(self) -> None:
        for name in ("id", "question", "answer", "source"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise TypeError(f"expected Problem.{name} to be str, got {type(value).__name__}")
        if self.solution is not None and not isinstance(self.solution, str):
            raise TypeError(
                f"expected Problem.solution to be str or None, got {type(self.solution).__name__}"
            )

    def to_dict(self) -> dict[str, Any]:
        """Return the problem as a JSON-ready dict with keys id, question, answer, solution, source."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Problem:
        """Build a problem from :meth:`to_dict` output; unknown keys are ignored."""
        missing = [key for key in ("id", "question", "answer") if key not in data]
        if missing:
            raise ValueError(
                f"expected keys id, question and answer in a problem dict, missing {missing}"
            )
        return cls(
            id=str(data["id"]),
            question=data["question"],
            answer=str(data["answer"]),
            solution=data.get("solution"),
            source=data.get("source", "") or "",
        )


def _record_format(record: Mapping[str, Any], fmt: ProblemFormat) -> Literal["gsm8k", "math"]:
    if fmt != "auto":
        return fmt
    if "problem" in record:
        return "math"
    if "question" in record:
        return "gsm8k"
    raise ValueError(
        f"expected a 'question' (GSM8K) or 'problem' (MATH) field, got keys {sorted(record)}"
    )


def _problem_from_record(
    record: Mapping[str, Any], fmt: ProblemFormat, index: int, source: str
) -> Problem:
    if not isinstance(record, Mapping):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    kind = _record_format(record, fmt)
    record_id = record.get("id", record.get("unique_id"))
    problem_id = str(record_id) if record_id is not None else f"{source}/{index}"
    if kind == "gsm8k":
        for key in ("question", "answer"):
            if not isinstance(record.get(key), str):
                raise ValueError(f"expected a string field {key!r} in a GSM8K record")
        solution = record["answer"]
        answer = extract_marked_answer(solution) if "####" in solution else solution.strip()
        if not answer:
            raise ValueError("expected a final answer after '####' in the GSM8K 'answer' field")
        return Problem(problem_id, record["question"], answer, solution, source)

    for key in ("problem", "answer"):
        if not isinstance(record.get(key), str):
            raise ValueError(f"expected a string field {key!r} in a MATH record")
    solution = record.get("solution")
    return Problem(
        problem_id,
        record["problem"],
        record["answer"].strip(),
        solution if isinstance(solution, str) else None,
        source,
    )


def problems_from_records(
    records: Iterable[Mapping[str, Any]],
    fmt: ProblemFormat = "auto",
    *,
    source: str = "records",
    limit: int | None = None,
) -> list[Problem]:
    """Convert GSM8K-style or MATH-style records (dicts) into problems.

    Raises ValueError naming the record index when a record is malformed.
    """
    if fmt not in _FORMATS:
        raise ValueError(f"expected fmt in {_FORMATS}, got {fmt!r}")
    problems: list[Problem] = []
    for index, record in enumerate(records):
        if limit is not None and len(problems) >= limit:
            break
        try:
            problems.append(_problem_from_record(record, fmt, index, source))
        except (ValueError, TypeError) as error:
            raise ValueError(f"{source}: record {index}: {error}") from error
    return problems


def load_problems(
    path: str | Path, fmt: ProblemFormat = "auto", limit: int | None = None
) -> list[Problem]:
    """Load problems from a JSONL file (one JSON object per line, blank lines skipped).

    ``fmt="gsm8k"`` reads ``question``/``answer`` with the answer after ``####``;
    ``fmt="math"`` reads ``problem``/``answer``/``solution``; ``"auto"`` decides per line.
    Problem ids are ``id`` or ``unique_id`` when present, else ``"<folder>/<stem>/<index>"``.
    Raises FileNotFoundError for a missing file and ValueError with the path and line
    number for a malformed line.
    """
    if fmt not in _FORMATS:
        raise ValueError(f"expected fmt in {_FORMATS}, got {fmt!r}")
    if limit is not None and limit < 0:
        raise ValueError(f"expected limit >= 0 or None, got {limit}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"problem file not found: {path}")
    source = f"{path.parent.name}/{path.stem}" if path.parent.name else path.stem
    problems: list[Problem] = []
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if limit is not None and len(problems) >= limit:
                break
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                problems.append(_problem_from_record(record, fmt, len(problems), source))
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{line_number}: invalid JSON: {error.msg}") from error
            except (ValueError, TypeError) as error:
                raise ValueError(f"{path}:{line_number}: {error}") from error
    logger.info("loaded %d problems from %s", len(problems), path)
    return problems


def load_hf_problems(
    name_or_path: str,
    split: str = "test",
    fmt: ProblemFormat = "auto",
    *,
    config: str | None = None,
    limit: int | None = None,
    **load_kwargs: Any,
) -> list[Problem]:
    """Load problems with Hugging Face ``datasets.load_dataset`` from a local copy or cache.

    Extra keyword arguments go to ``load_dataset``. This does not force offline mode, but
    nothing else in this package downloads. Requires the optional ``datasets`` package.
    """
    try:
        import datasets
    except ImportError as error:
        raise ImportError(
            "load_hf_problems needs the 'datasets' package: pip install datasets"
        ) from error
    dataset = datasets.load_dataset(name_or_path, config, split=split, **load_kwargs)
    return problems_from_records(dataset, fmt, source=f"{name_or_path}/{split}", limit=limit)


def default_problems(
    n: int = 100, seed: int = 0, kinds: Sequence[str] = DEFAULT_KINDS
) -> list[Problem]:
    """Generate ``n`` problems offline with reasoning-gym, deterministic for a given seed.

    The list alternates between the requested ``kinds`` of :data:`DEFAULT_GENERATORS`
    (``"arithmetic"`` first, then ``"word"``). Ids are
    ``"reasoning_gym/<kind>/<seed>/<index>"``. Results are cached per ``(n, seed, kinds)``,
    so repeated ``gymnasium.make`` calls do not regenerate them.
    """
    if n < 0:
        raise ValueError(f"expected n >= 0, got {n}")
    if isinstance(kinds, str):
        kinds = (kinds,)
    unknown = [kind for kind in kinds if kind not in DEFAULT_KINDS]
    if unknown or not kinds:
        raise ValueError(f"expected kinds from {DEFAULT_KINDS}, got {tuple(kinds)!r}")
    return list(_generate_default_problems(n, seed, tuple(kinds)))


@functools.lru_cache(maxsize=8)
def _generate_default_problems(n: int, seed: int, kinds: tuple[str, ...]) -> tuple[Problem, ...]:
    try:
        import reasoning_gym
    except ImportError as error:
        raise ImportError(
            "default_problems needs the 'reasoning-gym' package: pip install reasoning-gym"
        ) from error

    generators = [entry for entry in DEFAULT_GENERATORS if entry[0] in kinds]
    counts = [n // len(generators)] * len(generators)
    for index in range(n % len(generators)):
        counts[index] += 1
    generated: list[list[Problem]] = []
    for (kind, name, settings), count in zip(generators, counts, strict=True):
        problems = []
        if count:
            dataset = reasoning_gym.create_dataset(name, size=count, seed=seed, **settings)
            for index, entry in enumerate(dataset):
                problems.append(
                    Problem(
                        id=f"reasoning_gym/{kind}/{seed}/{index}",
                        question=str(entry["question"]),
                        answer=str(entry["answer"]),
                        solution=None,
                        source=f"reasoning_gym/{name}",
                    )
                )
        generated.append(problems)

    mixed: list[Problem] = []
    for index in range(max(counts, default=0)):
        for problems in generated:
            if index < len(problems):
                mixed.append(problems[index])
    return tuple(mixed)
