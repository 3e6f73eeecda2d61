"""Tests for sae.projection: the exact SAE solver against brute force and SLSQP."""

import itertools

import numpy as np
import pytest

from sae.constraints import drop_cycles
from sae.projection import (
    project_order,
    solve_sae_qp,
    solve_sae_qp_slsqp,
)

# ----------------------------------------------------------------- references


def kkt_point(
    r0: np.ndarray,
    pairs: list[tuple[int, int]],
    active: tuple[int, ...],
    target_scale: float,
    delta: float,
):
    """Solve min ||a - s r0||^2 s.t. sum(a)=0 and the active pairs tight, by the full KKT system."""
    size = len(r0)
    rows = [np.ones(size)]
    rhs_rows = [0.0]
    for k in active:
        i, j = pairs[k]
        row = np.zeros(size)
        row[j], row[i] = 1.0, -1.0
        rows.append(row)
        rhs_rows.append(delta)
    constraint = np.array(rows)
    m = len(rows)
    kkt = np.block([[np.eye(size), constraint.T], [constraint, np.zeros((m, m))]])
    rhs = np.concatenate([target_scale * r0, np.array(rhs_rows)])
    solution = np.linalg.lstsq(kkt, rhs, rcond=None)[0]
    return solution[:size]


def brute_force(
    r0: np.ndarray, pairs: list[tuple[int, int]], delta: float, norm: str
) -> np.ndarray | None:
    """Enumerate every active set of pairs (and the ball) and keep the best feasible KKT candidate."""
    size = len(r0)
    radius2 = float(size)
    candidates = []
    for count in range(len(pairs) + 1):
        for active in itertools.combinations(range(len(pairs)), count):
            u = kkt_point(r0, pairs, active, 1.0, 0.0)
            v = kkt_point(r0, pairs, active, 0.0, delta)
            if norm == "soft":
                candidates.append(u + v)
            qa, qb, qc = u @ u, 2 * u @ v, v @ v - radius2
            if qa > 1e-14:
                disc = qb * qb - 4 * qa * qc
                if disc >= 0:
                    for sign in (1.0, -1.0):
                        s = (-qb + sign * np.sqrt(disc)) / (2 * qa)
                        candidates.append(s * u + v)
            elif abs(qc) < 1e-12:
                candidates.append(v)
    best, best_objective = None, np.inf
    for a in candidates:
        if not feasible(a, pairs, delta, norm, tol=1e-9):
            continue
        objective = float((a - r0) @ (a - r0))
        if objective < best_objective - 1e-12:
            best, best_objective = a, objective
    return best


def feasible(a, pairs, delta, norm, tol=1e-9) -> bool:
    size = len(a)
    if abs(a.sum()) > tol * size:
        return False
    if any(a[i] + delta > a[j] + tol for i, j in pairs):
        return False
    norm2 = float(a @ a)
    if norm == "soft":
        return norm2 <= size + tol * size
    return abs(norm2 - size) <= tol * size


def random_problem(rng, max_size=6, max_pairs=6, binary=None):
    size = int(rng.integers(2, max_size + 1))
    binary = bool(rng.integers(0, 2)) if binary is None else binary
    rewards = rng.integers(0, 2, size).astype(float) if binary else rng.normal(size=size)
    r0 = rewards - rewards.mean()
    order = rng.permutation(size)
    all_pairs = [(int(order[i]), int(order[j])) for i in range(size) for j in range(i + 1, size)]
    rng.shuffle(all_pairs)
    pairs = all_pairs[: int(rng.integers(0, min(max_pairs, len(all_pairs)) + 1))]
    delta = float(rng.choice([0.0, 0.01, 0.1, 0.3]))
    return r0, pairs, delta


def exact(r0, pairs, delta, norm):
    size = len(r0)
    lower = np.array([p[0] for p in pairs], dtype=np.int64)
    upper = np.array([p[1] for p in pairs], dtype=np.int64)
    return solve_sae_qp(r0, np.ones(size), lower, upper, delta=delta, norm=norm)


def min_order_norm2(size, pairs, delta):
    lower = np.array([p[0] for p in pairs], dtype=np.int64)
    upper = np.array([p[1] for p in pairs], dtype=np.int64)
    point = project_order(np.zeros(size), np.ones(size), lower, upper, delta).point
    return float(point @ point)


# ---------------------------------------------------------------------- tests


@pytest.mark.parametrize("norm", ["soft", "hard"])
def test_exact_matches_brute_force(norm):
    rng = np.random.default_rng(11 if norm == "soft" else 12)
    checked = 0
    for _ in range(150):
        r0, pairs, delta = random_problem(rng)
        if not np.any(r0) or min_order_norm2(len(r0), pairs, delta) > len(r0) - 1e-3:
            continue  # degenerate cases have their own tests
        solution = exact(r0, pairs, delta, norm)
        reference = brute_force(r0, pairs, delta, norm)
        if solution.status == "rescaled":
            continue  # sphere not reachable along P(s r0): tested separately
        assert solution.status == "optimal"
        assert reference is not None
        assert np.max(np.abs(solution.advantages - reference)) < 1e-8, (r0, pairs, delta)
        checked += 1
    assert checked > 60


@pytest.mark.parametrize("norm", ["soft", "hard"])
def test_exact_matches_slsqp(norm):
    rng = np.random.default_rng(21 if norm == "soft" else 22)
    compared = 0
    for _ in range(120):
        r0, pairs, delta = random_problem(rng, max_size=8, max_pairs=10)
        if not np.any(r0) or min_order_norm2(len(r0), pairs, delta) > len(r0) - 1e-3:
            continue
        solution = exact(r0, pairs, delta, norm)
        reference = solve_sae_qp_slsqp(r0, pairs, delta=delta, norm=norm)
        if solution.status != "optimal" or reference.status != "optimal":
            continue
        assert np.max(np.abs(solution.advantages - reference.advantages)) < 1e-8, (r0, pairs, delta)
        compared += 1
    assert compared > 40


@pytest.mark.parametrize("norm", ["soft", "hard"])
def test_exact_satisfies_kkt(norm):
    rng = np.random.default_rng(31)
    for _ in range(80):
        r0, pairs, delta = random_problem(rng, max_size=8, max_pairs=12)
        if not np.any(r0) or min_order_norm2(len(r0), pairs, delta) > len(r0) - 1e-3:
            continue
        solution = exact(r0, pairs, delta, norm)
        if solution.status != "optimal":
            continue
        a = solution.advantages
        assert feasible(a, pairs, delta, norm, tol=1e-10)
        # Stationarity: (1 + nu) a - r0 = D_A^T lam + c 1, with lam >= 0 and nu >= 0 (soft).
        nu = 1.0 / solution.scale - 1.0
        active = [k for k, (i, j) in enumerate(pairs) if abs(a[j] - a[i] - delta) < 1e-9]
        columns = [np.ones(len(a))]
        for k in active:
            i, j = pairs[k]
            column = np.zeros(len(a))
            column[j], column[i] = 1.0, -1.0
            columns.append(column)
        basis = np.array(columns).T
        residual_target = (1.0 + nu) * a - r0
        coefficients = np.linalg.lstsq(basis, residual_target, rcond=None)[0]
        assert np.max(np.abs(basis @ coefficients - residual_target)) < 1e-9
        if norm == "soft":
            assert nu >= -1e-12


def test_soft_projection_non_expansive():
    rng = np.random.default_rng(41)
    for _ in range(60):
        r0, pairs, delta = random_problem(rng, max_size=7, max_pairs=8)
        if min_order_norm2(len(r0), pairs, delta) > len(r0) - 1e-3:
            continue
        projected = exact(r0, pairs, delta, "soft").advantages
        for _ in range(5):
            other = rng.normal(size=len(r0)) * 2.0
            other -= other.mean()
            feasible_point = exact(other, pairs, delta, "soft").advantages
            assert (
                np.linalg.norm(projected - feasible_point)
                <= np.linalg.norm(r0 - feasible_point) + 1e-10
            )


def test_soft_inside_ball_returns_order_projection():
    r0 = np.array([-0.5, 0.5, 0.0])
    solution = exact(r0, [], 0.01, "soft")
    assert solution.status == "optimal"
    np.testing.assert_allclose(solution.advantages, r0)


def test_soft_norm_differs_from_project_then_rescale():
    # Rescaling the order projection onto the ball breaks the margin here, so the
    # exact answer must differ from it.
    r0 = np.array([-2.0, 0.0, 0.0, 2.0])
    pairs = [(1, 2)]
    delta = 0.3
    solution = exact(r0, pairs, delta, "soft")
    reference = brute_force(r0, pairs, delta, "soft")
    np.testing.assert_allclose(solution.advantages, reference, atol=1e-10)
    naive = project_order(r0, np.ones(4), np.array([1]), np.array([2]), delta).point
    naive = naive * np.sqrt(4.0 / (naive @ naive))
    assert naive[2] - naive[1] < delta - 1e-6
    assert solution.advantages[2] - solution.advantages[1] >= delta - 1e-12


def test_hard_scales_up_small_groups():
    r0 = np.array([-0.1, 0.1])
    solution = exact(r0, [], 0.01, "hard")
    np.testing.assert_allclose(solution.advantages, [-1.0, 1.0])
    assert solution.scale == pytest.approx(10.0)


def test_equal_rewards_without_pairs_give_zeros():
    for norm in ("soft", "hard"):
        solution = exact(np.zeros(4), [], 0.01, norm)
        assert solution.status == "zero_signal"
        assert not solution.fallback
        np.testing.assert_array_equal(solution.advantages, np.zeros(4))


def test_equal_rewards_hard_rescales_pairs():
    pairs = [(0, 1), (2, 3)]
    soft = exact(np.zeros(4), pairs, 0.1, "soft")
    hard = exact(np.zeros(4), pairs, 0.1, "hard")
    np.testing.assert_allclose(soft.advantages, [-0.05, 0.05, -0.05, 0.05], atol=1e-12)
    assert hard.status == "rescaled"
    assert not hard.fallback
    np.testing.assert_allclose(hard.advantages, [-1.0, 1.0, -1.0, 1.0], atol=1e-12)


def test_norm_infeasible_keeps_order_projection():
    pairs = [(0, 1), (1, 2), (2, 3)]
    solution = exact(np.array([0.3, 0.1, -0.1, -0.3]), pairs, 2.0, "soft")
    assert solution.status == "norm_infeasible"
    assert solution.fallback
    gaps = np.diff(solution.advantages)
    assert np.all(gaps >= 2.0 - 1e-12)


def test_reversed_order_hard_unreachable_is_flagged():
    # r0 decreases along the chain that must increase: P(s r0) stays bounded.
    r0 = np.array([0.48320966, -1.56580066, 1.082591])
    solution = exact(r0, [(2, 0), (2, 1), (0, 1)], 0.3, "hard")
    assert solution.status == "rescaled"
    assert solution.fallback
    assert solution.advantages @ solution.advantages == pytest.approx(3.0)
    assert feasible(solution.advantages, [(2, 0), (2, 1), (0, 1)], 0.3, "hard")


def test_weighted_classes_match_expanded_samples():
    rng = np.random.default_rng(51)
    for _ in range(30):
        classes = int(rng.integers(2, 5))
        weights = rng.integers(1, 4, classes).astype(float)
        values = rng.normal(size=classes)
        values -= np.dot(weights, values) / weights.sum()
        order = rng.permutation(classes)
        class_pairs = [
            (int(order[i]), int(order[i + 1])) for i in range(classes - 1) if rng.random() < 0.7
        ]
        members = np.repeat(np.arange(classes), weights.astype(int))
        sample_pairs = [
            (i, j)
            for low, up in class_pairs
            for i in np.flatnonzero(members == low)
            for j in np.flatnonzero(members == up)
        ]
        for norm in ("soft", "hard"):
            lower = np.array([p[0] for p in class_pairs], dtype=np.int64)
            upper = np.array([p[1] for p in class_pairs], dtype=np.int64)
            per_class = solve_sae_qp(values, weights, lower, upper, delta=0.05, norm=norm)
            per_sample = exact(values[members], sample_pairs, 0.05, norm)
            if per_class.status != "optimal":
                continue
            np.testing.assert_allclose(
                per_class.advantages[members], per_sample.advantages, atol=1e-10
            )


def test_drop_cycles_reports_closing_edge():
    kept, dropped = drop_cycles(3, [0, 1, 2], [1, 2, 0])
    assert kept == [0, 1]
    assert dropped == [2]


def test_drop_cycles_keeps_acyclic_input():
    kept, dropped = drop_cycles(4, [0, 0, 1, 2], [1, 2, 3, 3])
    assert kept == [0, 1, 2, 3]
    assert dropped == []


def test_bisection_fallback_matches_path_following():
    # The norm search normally follows the piecewise-linear path P(s r0); the
    # bisection it falls back to must give the same answer.
    from sae.projection import _scale_for_norm

    rng = np.random.default_rng(61)
    compared = 0
    for _ in range(60):
        r0, pairs, delta = random_problem(rng, max_size=8, max_pairs=10, binary=False)
        r0 = r0 * 3.0
        if min_order_norm2(len(r0), pairs, delta) > len(r0) - 1e-3:
            continue
        solution = exact(r0, pairs, delta, "soft")
        if solution.status != "optimal" or solution.scale >= 1.0:
            continue
        lower = np.array([p[0] for p in pairs], dtype=np.int64)
        upper = np.array([p[1] for p in pairs], dtype=np.int64)
        weights = np.ones(len(r0))
        scale, point = _scale_for_norm(
            r0, weights, lower, upper, delta, float(len(r0)), 0.0, 1.0, [0]
        )
        assert scale == pytest.approx(solution.scale, abs=1e-9)
        np.testing.assert_allclose(point, solution.advantages, atol=1e-9)
        compared += 1
    assert compared > 20
