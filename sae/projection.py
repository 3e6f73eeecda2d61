"""Projection of centred rewards onto the SAE feasible set: an exact solver and an SLSQP reference.

The problem for one group, with ``r0 = r - mean(r)`` and ``G`` samples::

    minimise   ||a - r0||^2
    subject to sum(a) = 0
               a_j - a_i >= delta            for every ordered pair (i, j)
               ||a||^2 <= G   (soft)   or   ||a||^2 = G   (hard)

Exact solver (:func:`solve_sae_qp`)
-----------------------------------
Samples are grouped into classes of interchangeable samples (weights ``w``), so
norms are weighted, ``||a||_w^2 = sum_c w_c a_c^2``.

1. Order part. ``P(y)``, the weighted projection of ``y`` onto
   ``{a : a_j - a_i >= delta}``, is computed by a primal active-set method for
   convex QPs, started from a feasible point that raises only the values below
   violated pairs. The solution is recomputed from the final active set by one
   equality-constrained solve, so it is exact up to rounding. Every constraint
   only involves differences, so ``P`` keeps the weighted mean: ``sum(a) = 0``
   holds without being imposed.
2. Norm part. The KKT conditions with a multiplier ``nu`` on the norm give
   ``a = P(s * r0)`` with ``s = 1 / (1 + nu)``, and ``||P(s r0)||`` does not
   decrease in ``s``. On a fixed active set ``P(s r0) = s u + v`` is affine in
   ``s``, so the path ``s -> P(s r0)`` is piecewise linear. The solver follows it
   from ``s = 1`` piece by piece: on each piece it solves the quadratic
   ``||s u + v||_w^2 = G`` and stops at its root unless a multiplier reaches zero
   or an inactive pair becomes tight first, which changes the active set. If the
   path cannot be followed, a bisection on ``s`` with the same per-piece
   quadratic is the fallback.

   - soft: ``s = 1`` if ``||P(r0)||^2 <= G`` (the ball is inactive), otherwise the
     root in ``(0, 1)``. Projecting and then rescaling would be wrong in general,
     because rescaling can break the margins and is not the nearest point.
   - hard: the root for ``s > 0``. When the soft solution lies on the sphere it is
     also the hard solution. When ``||P(r0)||^2 < G`` the solution is ``P(s r0)`` with
     ``s > 1``, which maximises ``<a, r0>`` over the order set on the sphere, that
     is, it is the nearest point on the sphere.

Defined solutions for the degenerate cases (``status``):

- ``"zero_signal"``: all rewards are equal and there are no pairs. Both variants
  return zeros (no point of the sphere is preferred, and zero carries no signal).
- ``"rescaled"`` (hard only): the sphere cannot be reached along ``P(s r0)``, as
  with equal rewards under sibling pairs. The solution is the soft solution scaled up
  to norm ``sqrt(G)``, which keeps the pairs (scaling by ``c >= 1`` multiplies
  each gap by ``c``). For equal rewards every feasible point is optimal and this
  is the documented choice. Otherwise it is feasible but not proven optimal, and
  ``fallback`` is True. When the soft solution is zero (margin 0 pooled all values)
  the direction is the smallest point with unit gaps instead.
  NOTE: this case needs pairs that contradict the reward order (custom pairs or
  non-binary rewards); the tree rules with 0/1 rewards never produce it.
- ``"norm_infeasible"``: even the smallest order-respecting point has
  ``||a||^2 > G`` (long chains of pairs with a large margin). The solution is
  ``P(r0)``, which keeps the mean and the pairs but breaks the norm bound, and
  ``fallback`` is True.

SLSQP reference (:func:`solve_sae_qp_slsqp`) solves the same problem per sample
with ``scipy.optimize.minimize(method="SLSQP")`` warm-started at ``r0``.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Literal

import numpy as np

from sae.constraints import longest_path_levels

logger = logging.getLogger(__name__)

NormKind = Literal["soft", "hard"]

_FEASIBILITY_TOL = 1e-12
_MULTIPLIER_TOL = 1e-12


@dataclass
class OrderProjection:
    """Result of the weighted projection onto the order constraints.

    Attributes:
        point: ``[C]`` the projection.
        active: indices of the pairs in the final working set.
        multipliers: ``[len(active)]`` their Lagrange multipliers (>= 0 at the optimum).
        iterations: active-set iterations used.
    """

    point: np.ndarray
    active: list[int]
    multipliers: np.ndarray
    iterations: int


@dataclass
class QPSolution:
    """Result of :func:`solve_sae_qp` or :func:`solve_sae_qp_slsqp`.

    Attributes:
        advantages: ``[C]`` (exact solver, per class) or ``[G]`` (SLSQP, per sample).
        status: ``"optimal"``, ``"zero_signal"``, ``"rescaled"``, ``"norm_infeasible"``,
            or for SLSQP ``"optimal"`` / ``"failed: <scipy message>"``.
        fallback: True when the solution is not the optimum of the stated problem.
        scale: the ``s`` with ``a = P(s * r0)`` (nan where not applicable).
        iterations: active-set iterations in total (SLSQP: its iteration count).
        solver_ms: wall time in milliseconds.
    """

    advantages: np.ndarray
    status: str
    fallback: bool
    scale: float
    iterations: int
    solver_ms: float


class ActiveSetError(RuntimeError):
    """The active-set method did not converge within its iteration limit."""


# ------------------------------------------------------------------ order part


def _equality_projection(
    target: np.ndarray,
    weights: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    active: list[int],
    delta: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Solve ``min ||a - s*target||_w^2`` s.t. ``a_up - a_low = delta`` on the active pairs.

    Returns ``(u, v, mu_u, mu_v)`` such that for every scale ``s`` the solution is
    ``s * u + v`` with multipliers ``s * mu_u + mu_v``.
    """
    if not active:
        empty = np.zeros(0)
        return target.copy(), np.zeros_like(target), empty, empty
    # D_A W^-1 D_A^T from the pair indices, without forming the dense rows of D_A.
    up = upper[active]
    low = lower[active]
    inverse = 1.0 / weights
    gram = (
        (up[:, None] == up[None, :]) * inverse[up][:, None]
        + (low[:, None] == low[None, :]) * inverse[low][:, None]
        - (up[:, None] == low[None, :]) * inverse[up][:, None]
        - (low[:, None] == up[None, :]) * inverse[low][:, None]
    )
    rhs = np.stack([-(target[up] - target[low]), np.full(len(active), delta)], axis=1)
    try:
        solved = np.linalg.solve(gram, rhs)
    except np.linalg.LinAlgError:
        solved = np.linalg.lstsq(gram, rhs, rcond=None)[0]
    mu_u, mu_v = solved[:, 0], solved[:, 1]
    size = len(target)
    u = target + (np.bincount(up, mu_u, size) - np.bincount(low, mu_u, size)) * inverse
    v = (np.bincount(up, mu_v, size) - np.bincount(low, mu_v, size)) * inverse
    return u, v, mu_u, mu_v


def _feasible_start(
    target: np.ndarray, lower: np.ndarray, upper: np.ndarray, delta: float
) -> np.ndarray:
    """Return a point that satisfies every pair and moves as few values of ``target`` as possible.

    Values are visited in topological order and each is raised to
    ``max(target_j, max over pairs (i, j) of x_i + delta)``, so only values below a
    violated pair move.
    """
    point = target.copy()
    gaps = target[upper] - target[lower]
    if np.all(gaps >= delta):
        return point
    levels = longest_path_levels(len(target), lower, upper)
    order = np.argsort(levels[upper], kind="stable")
    for low, up in zip(lower[order].tolist(), upper[order].tolist(), strict=True):
        # Pairs sorted by the level of their upper end: every pair into ``low``
        # comes earlier, so point[low] is final when it is read here.
        point[up] = max(point[up], point[low] + delta)
    return point


def project_order(
    target: np.ndarray,
    weights: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    delta: float,
    *,
    max_iterations: int | None = None,
) -> OrderProjection:
    """Project ``target`` onto ``{a : a[upper] - a[lower] >= delta}`` in the ``w``-weighted norm.

    The pairs must be acyclic. Raises :class:`ActiveSetError` when the iteration
    limit (default ``50 * (pairs + classes) + 100``) is reached.
    """
    target = np.asarray(target, dtype=np.float64)
    num_pairs = len(lower)
    if num_pairs == 0:
        return OrderProjection(target.copy(), [], np.zeros(0), 0)
    if bool(np.all(target[upper] - target[lower] >= delta)):
        return OrderProjection(target.copy(), [], np.zeros(0), 0)  # already feasible
    limit = max_iterations if max_iterations is not None else 50 * (num_pairs + len(target)) + 100
    scale = 1.0 + float(np.max(np.abs(target))) + delta

    point = _feasible_start(target, lower, upper, delta)
    working: list[int] = []
    for iteration in range(1, limit + 1):
        u, v, mu_u, mu_v = _equality_projection(target, weights, lower, upper, working, delta)
        candidate = u + v
        multipliers = mu_u + mu_v
        step = candidate - point

        # Blocking pairs: outside the working set and decreasing along the step.
        in_working = np.zeros(num_pairs, dtype=bool)
        in_working[working] = True
        slope = step[upper] - step[lower]
        slack = point[upper] - point[lower] - delta
        blocking = (~in_working) & (slope < -_FEASIBILITY_TOL * scale)
        alpha, blocker = 1.0, -1
        if np.any(blocking):
            ratios = np.full(num_pairs, np.inf)
            ratios[blocking] = np.maximum(slack[blocking], 0.0) / -slope[blocking]
            blocker = int(np.argmin(ratios))
            alpha = float(ratios[blocker])
        if alpha < 1.0:
            point = point + alpha * step
            working.append(blocker)
            continue

        point = candidate
        if len(working) == 0 or float(np.min(multipliers)) >= -_MULTIPLIER_TOL * scale:
            return OrderProjection(point, list(working), multipliers, iteration)
        working.pop(int(np.argmin(multipliers)))
    raise ActiveSetError(f"active-set method did not converge in {limit} iterations")


def _active_set_is_optimal(
    point: np.ndarray,
    multipliers: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    delta: float,
    multiplier_scale: float,
) -> bool:
    """Check KKT on a piece: multipliers >= 0 and every pair feasible, to relative 1e-10."""
    if len(multipliers) and float(np.min(multipliers)) < -1e-10 * multiplier_scale:
        return False
    if len(lower) == 0:
        return True
    point_scale = 1.0 + float(np.max(np.abs(point))) + delta
    return bool(np.all(point[upper] - point[lower] >= delta - 1e-10 * point_scale))


def _is_feasible(point: np.ndarray, lower: np.ndarray, upper: np.ndarray, delta: float) -> bool:
    if len(lower) == 0:
        return True
    point_scale = 1.0 + float(np.max(np.abs(point))) + delta
    return bool(np.all(point[upper] - point[lower] >= delta - 1e-10 * point_scale))


def _roots_on_piece(
    u: np.ndarray, v: np.ndarray, weights: np.ndarray, radius2: float, r0_size: float
) -> list[float]:
    """Return the roots of ``||s u + v||_w^2 = radius2``, or none when ``u`` is zero (a flat piece)."""
    qa = _weighted_norm2(u, weights)
    if math.sqrt(qa) <= 1e-12 * max(r0_size, 1.0):
        return []
    qb = 2.0 * float(np.dot(weights, u * v))
    qc = _weighted_norm2(v, weights) - radius2
    return _quadratic_roots(qa, qb, qc)


def _multiplier_scale(root: float, mu_u: np.ndarray, mu_v: np.ndarray) -> float:
    if len(mu_u) == 0:
        return 1.0
    return 1.0 + abs(root) * float(np.max(np.abs(mu_u))) + float(np.max(np.abs(mu_v)))


# ------------------------------------------------------------------- norm part


def _weighted_norm2(x: np.ndarray, weights: np.ndarray) -> float:
    return float(np.dot(weights, x * x))


def _scale_for_norm(
    r0: np.ndarray,
    weights: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    delta: float,
    radius2: float,
    low_s: float,
    high_s: float,
    counter: list[int],
    first_active: list[int] | None = None,
) -> tuple[float, np.ndarray]:
    """Find ``s`` in ``[low_s, high_s]`` with ``||P(s r0)||_w^2 = radius2`` (a bracketed root).

    ``first_active`` is an active set to try before bisecting, usually the one of
    ``P(r0)``; the solution is often on the same piece.
    """
    r0_size = math.sqrt(_weighted_norm2(r0, weights))
    guess = 0.5 * (low_s + high_s)
    for attempt in range(200):
        if attempt == 0 and first_active is not None:
            active = first_active
        else:
            projection = project_order(guess * r0, weights, lower, upper, delta)
            counter[0] += projection.iterations
            active = projection.active
        u, v, mu_u, mu_v = _equality_projection(r0, weights, lower, upper, active, delta)

        # On this active set ||s u + v||_w^2 = radius2 is a quadratic in s.
        for root in _roots_on_piece(u, v, weights, radius2, r0_size):
            if low_s - 1e-12 <= root <= high_s + 1e-12:
                point = root * u + v
                multipliers = root * mu_u + mu_v
                tolerance_scale = _multiplier_scale(root, mu_u, mu_v)
                if _active_set_is_optimal(point, multipliers, lower, upper, delta, tolerance_scale):
                    return root, point

        if attempt == 0 and first_active is not None:
            continue  # the guessed piece was wrong: start bisecting
        # The active set at `guess` is not optimal at the root: shrink the bracket.
        if _weighted_norm2(projection.point, weights) < radius2:
            low_s = guess
        else:
            high_s = guess
        guess = 0.5 * (low_s + high_s)
    raise ActiveSetError("norm search did not converge in 200 bracketing steps")


def _follow_scale_path(
    r0: np.ndarray,
    weights: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    delta: float,
    radius2: float,
    active: list[int],
    direction: float,
    counter: list[int],
    max_steps: int = 1000,
) -> tuple[float, np.ndarray] | None:
    """Follow ``P(s r0)`` from ``s = 1`` in ``direction`` (+1 or -1) until ``||P(s r0)||_w^2 = radius2``.

    ``active`` must be the optimal active set of ``P(r0)``. On each piece the path
    is ``s u + v`` with multipliers ``s mu_u + mu_v``. The next event is the root of
    the norm equation, a multiplier reaching zero (its pair leaves the active set)
    or an inactive pair becoming tight (it joins), whichever comes first. Returns
    None when the path has no root or does not finish within ``max_steps``, so
    that the caller can fall back to bisection.
    """
    active = list(active)
    current = 1.0
    r0_size = math.sqrt(_weighted_norm2(r0, weights))
    for _ in range(max_steps):
        counter[0] += 1
        u, v, mu_u, mu_v = _equality_projection(r0, weights, lower, upper, active, delta)
        roots = [
            root
            for root in _roots_on_piece(u, v, weights, radius2, r0_size)
            if (root - current) * direction >= -1e-12 and root >= 0.0
        ]
        stop = min(roots, key=lambda root: abs(root - current)) if roots else None
        end_of_range = 0.0 if direction < 0 else math.inf
        limit = end_of_range if stop is None else stop
        step_limit = abs(limit - current)

        # Distance along the path to each event, measured as |t - current|.
        leave_distance = np.full(len(active), np.inf)
        falling = mu_u * direction < -1e-14
        leave_distance[falling] = (current * mu_u[falling] + mu_v[falling]) / -(
            mu_u[falling] * direction
        )
        in_active = np.zeros(len(lower), dtype=bool)
        in_active[active] = True
        gap_rate = (u[upper] - u[lower]) * direction
        gap_now = current * (u[upper] - u[lower]) + (v[upper] - v[lower]) - delta
        join_distance = np.full(len(lower), np.inf)
        closing = (~in_active) & (gap_rate < -1e-14)
        join_distance[closing] = np.maximum(gap_now[closing], 0.0) / -gap_rate[closing]

        leave = int(np.argmin(leave_distance)) if len(active) else -1
        join = int(np.argmin(join_distance)) if len(lower) else -1
        next_leave = leave_distance[leave] if leave >= 0 else math.inf
        next_join = join_distance[join] if join >= 0 else math.inf
        if min(next_leave, next_join) >= step_limit:
            if stop is None:
                return None
            return stop, stop * u + v
        if next_leave <= next_join:
            current += direction * next_leave
            active.pop(leave)
        else:
            current += direction * next_join
            active.append(join)
    return None


def _quadratic_roots(qa: float, qb: float, qc: float) -> list[float]:
    if abs(qa) < 1e-300:
        return [] if abs(qb) < 1e-300 else [-qc / qb]
    disc = qb * qb - 4.0 * qa * qc
    if disc < 0.0:
        return []
    # Numerically stable form that avoids cancellation.
    sq = math.sqrt(disc)
    q = -0.5 * (qb + math.copysign(sq, qb))
    roots = [q / qa]
    if q != 0.0:
        roots.append(qc / q)
    return sorted(roots, reverse=True)


def solve_sae_qp(
    r0: np.ndarray,
    weights: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    *,
    delta: float,
    norm: NormKind = "soft",
    radius2: float | None = None,
) -> QPSolution:
    """Solve the SAE projection exactly (see the module docstring for the method and cases).

    Args:
        r0: ``[C]`` centred reward of each class (weighted mean zero).
        weights: ``[C]`` class sizes (all ones for per-sample classes).
        lower, upper: ``[P]`` acyclic class pairs, ``a[lower] + delta <= a[upper]``.
        radius2: the norm bound ``||a||_w^2``; default ``sum(weights)`` (the group size).
    """
    start = time.perf_counter()
    r0 = np.asarray(r0, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    lower = np.asarray(lower, dtype=np.int64)
    upper = np.asarray(upper, dtype=np.int64)
    if norm not in ("soft", "hard"):
        raise ValueError(f"expected norm 'soft' or 'hard', got {norm!r}")
    if radius2 is None:
        radius2 = float(np.sum(weights))
    counter = [0]

    def finish(advantages: np.ndarray, status: str, fallback: bool, scale: float) -> QPSolution:
        elapsed = (time.perf_counter() - start) * 1e3
        return QPSolution(advantages, status, fallback, scale, counter[0], elapsed)

    unconstrained = project_order(r0, weights, lower, upper, delta)
    counter[0] += unconstrained.iterations
    norm2 = _weighted_norm2(unconstrained.point, weights)
    has_signal = bool(np.any(r0))
    if norm2 <= 1e-24 * radius2:
        norm2 = 0.0  # rounding residue of values pooled to zero
    if norm2 == 0.0 and (norm == "soft" or not has_signal):
        status = "optimal" if has_signal else "zero_signal"
        return finish(np.zeros_like(r0), status, False, float("nan") if not has_signal else 1.0)
    tolerance = 1e-12 * radius2

    if norm == "soft" and norm2 <= radius2 + tolerance:
        return finish(unconstrained.point, "optimal", False, 1.0)
    if norm == "hard" and abs(norm2 - radius2) <= tolerance:
        return finish(unconstrained.point, "optimal", False, 1.0)

    if norm2 > radius2:
        # Follow the path P(s r0) down from s = 1. It reaches the sphere unless even
        # the smallest order-respecting point P(0) lies outside the ball.
        followed = _follow_scale_path(
            r0, weights, lower, upper, delta, radius2, unconstrained.active, -1.0, counter
        )
        if followed is not None and _is_feasible(followed[1], lower, upper, delta):
            return finish(followed[1], "optimal", False, followed[0])
        smallest = project_order(np.zeros_like(r0), weights, lower, upper, delta)
        counter[0] += smallest.iterations
        if _weighted_norm2(smallest.point, weights) > radius2 + tolerance:
            logger.debug("norm bound %.3g is below the smallest order-respecting norm", radius2)
            return finish(unconstrained.point, "norm_infeasible", True, 1.0)
        scale, point = _scale_for_norm(
            r0, weights, lower, upper, delta, radius2, 0.0, 1.0, counter, unconstrained.active
        )
        return finish(point, "optimal", False, scale)

    # Hard norm with ||P(r0)||^2 < G: grow s until the sphere is reached. Stop
    # early when P(s r0) is constant for all larger s, which is the case when u is
    # zero on the current active set and no multiplier decreases with s.
    followed = _follow_scale_path(
        r0, weights, lower, upper, delta, radius2, unconstrained.active, 1.0, counter
    )
    if followed is not None and _is_feasible(followed[1], lower, upper, delta):
        return finish(followed[1], "optimal", False, followed[0])
    high = 2.0
    r0_size = math.sqrt(_weighted_norm2(r0, weights))
    for _ in range(60):
        projection = project_order(high * r0, weights, lower, upper, delta)
        counter[0] += projection.iterations
        if _weighted_norm2(projection.point, weights) >= radius2:
            scale, point = _scale_for_norm(
                r0, weights, lower, upper, delta, radius2, high / 2.0, high, counter
            )
            return finish(point, "optimal", False, scale)
        u, _, mu_u, _ = _equality_projection(r0, weights, lower, upper, projection.active, delta)
        flat = math.sqrt(_weighted_norm2(u, weights)) <= 1e-12 * max(r0_size, 1.0)
        if flat and (len(mu_u) == 0 or float(np.min(mu_u)) >= -1e-12 * max(r0_size, 1.0)):
            break
        high *= 2.0
    direction = unconstrained.point
    if norm2 == 0.0:
        # Margin 0 pooled everything to one value: take the direction of the
        # smallest point with unit gaps, which is strictly order-respecting.
        direction = project_order(np.zeros_like(r0), weights, lower, upper, 1.0).point
        counter[0] += 1
    direction_norm2 = _weighted_norm2(direction, weights)
    if direction_norm2 <= 1e-24 * radius2:
        return finish(np.zeros_like(r0), "zero_signal", True, float("nan"))
    rescaled = direction * math.sqrt(radius2 / direction_norm2)
    if len(lower) and float(np.min(rescaled[upper] - rescaled[lower])) < delta - 1e-12 * (
        1.0 + delta
    ):
        return finish(unconstrained.point, "norm_infeasible", True, float("nan"))
    return finish(rescaled, "rescaled", has_signal, float("nan"))


# ---------------------------------------------------------------- SLSQP reference


def solve_sae_qp_slsqp(
    r0: np.ndarray,
    pairs: list[tuple[int, int]] | np.ndarray,
    *,
    delta: float,
    norm: NormKind = "soft",
    radius2: float | None = None,
    ftol: float = 1e-12,
    max_iterations: int = 500,
) -> QPSolution:
    """Solve the SAE projection per sample with scipy's SLSQP, warm-started at ``r0``.

    This is the reference the exact solver is tested against. It does not handle
    the degenerate cases: with equal rewards and the hard norm, the gradient of the
    norm constraint is zero at the start and SLSQP may fail. Then ``status`` starts
    with ``"failed"``, ``fallback`` is True and ``advantages`` contains SLSQP's
    last iterate.
    """
    from scipy.optimize import minimize

    start = time.perf_counter()
    r0 = np.asarray(r0, dtype=np.float64)
    group_size = len(r0)
    if radius2 is None:
        radius2 = float(group_size)
    pair_array = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    low, up = pair_array[:, 0], pair_array[:, 1]
    pair_jac = np.zeros((len(pair_array), group_size))
    pair_jac[np.arange(len(pair_array)), up] = 1.0
    pair_jac[np.arange(len(pair_array)), low] = -1.0

    constraints = [
        {
            "type": "eq",
            "fun": lambda a: np.array([a.sum()]),
            "jac": lambda a: np.ones((1, group_size)),
        },
        {
            "type": "ineq" if norm == "soft" else "eq",
            "fun": lambda a: np.array([radius2 - a @ a]),
            "jac": lambda a: -2.0 * a[None, :],
        },
    ]
    if len(pair_array):
        constraints.append(
            {"type": "ineq", "fun": lambda a: a[up] - a[low] - delta, "jac": lambda a: pair_jac}
        )
    result = minimize(
        lambda a: 0.5 * float((a - r0) @ (a - r0)),
        r0.copy(),
        jac=lambda a: a - r0,
        method="SLSQP",
        constraints=constraints,
        options={"ftol": ftol, "maxiter": max_iterations},
    )
    elapsed = (time.perf_counter() - start) * 1e3
    if not result.success:
        return QPSolution(
            result.x, f"failed: {result.message}", True, float("nan"), int(result.nit), elapsed
        )
    return QPSolution(result.x, "optimal", False, float("nan"), int(result.nit), elapsed)
