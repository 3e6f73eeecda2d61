"""Entry point of the sympy checker worker process (``python -m envs._worker``).

Protocol, one JSON object per line: the worker writes ``{"ready": true}`` after importing
sympy, then reads requests ``{"id": n, "left": tree, "right": tree, "inexact": bool}`` from
stdin and answers each with ``{"id": n, "correct": bool, "reason": str | null}``. It exits
when stdin closes. The parent kills it when an answer does not arrive in time.
"""

from __future__ import annotations

import json
import sys


def _answer(request: dict) -> dict:
    from envs.symbolic import compare_trees

    try:
        correct = compare_trees(request["left"], request["right"], bool(request["inexact"]))
    except (ArithmeticError, RecursionError, TypeError, ValueError, AttributeError) as error:
        # sympy raises these on undefined operations; the answer counts as not equal.
        return {
            "id": request["id"],
            "correct": False,
            "reason": f"comparison failed: {type(error).__name__}: {error}"[:300],
        }
    return {"id": request["id"], "correct": bool(correct), "reason": None}


def main() -> None:
    import envs.symbolic  # noqa: F401  (import sympy before reporting ready)

    sys.stdout.write(json.dumps({"ready": True}) + "\n")
    sys.stdout.flush()
    for line in sys.stdin:
        if not line.strip():
            continue
        reply = _answer(json.loads(line))
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
