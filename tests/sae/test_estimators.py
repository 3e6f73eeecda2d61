"""Tests for sae.estimators: hand-computed cases, properties and diagnostics."""

import numpy as np
import pytest

from sae import METHODS, PrefixTree, StagedAdvantageEstimator, sample_prefixes
from sae.projection import solve_sae_qp_slsqp

REQUIRED_KEYS = {
    "constraint_satisfaction",
    "num_constraints",
    "solver_status",
    "solver_ms",
    "fallback",
    "dropped_pairs",
}


def make_tree(seed: int = 0, traces: int = 16) -> PrefixTree:
    rng = np.random.default_rng(seed)
    tree = PrefixTree({"id": f"random-{seed}"})
    for index in range(traces):
        depth = int(rng.integers(1, 5))
        steps = [f"step {rng.integers(0, 3)}" for _ in range(depth)] + [f"answer {index}"]
        tree.add_trace(steps, float(rng.random() < 0.5))
    return tree


# ------------------------------------------------------------ hand computations


def test_grpo_centring_only_by_group_id():
    estimator = StagedAdvantageEstimator(method="grpo", scale="none")
    result = estimator.batch([1, 2, 3, 4, 10, 12, 5, 6, 7], [0, 0, 0, 0, 1, 1, 2, 2, 2], None, None)
    np.testing.assert_allclose(
        result.advantages, [-1.5, -0.5, 0.5, 1.5, -1, 1, -1, 0, 1], atol=1e-12
    )


def test_grpo_group_std_hand_case():
    estimator = StagedAdvantageEstimator(method="grpo", scale="group", eps=1e-4)
    result = estimator.batch([1, 0, 1, 1], [0, 0, 1, 1], None, None)
    np.testing.assert_allclose(result.advantages, [0.7070, -0.7070, 0, 0], atol=1e-4)


def test_grpo_batch_std_hand_case():
    estimator = StagedAdvantageEstimator(method="grpo", scale="batch", eps=1e-4)
    result = estimator.batch([1, 0, 1, 1], [0, 0, 1, 1], None, None)
    np.testing.assert_allclose(result.advantages, [0.9998, -0.9998, 0, 0], atol=1e-4)


def test_grpo_tiny_std_not_floored():
    estimator = StagedAdvantageEstimator(method="grpo", eps=1e-6)
    result = estimator([1.0, 1.00001], None, None)
    # 5e-6 / (1e-5 / sqrt(2) + 1e-6) = 0.61950; a variance floor would shrink it.
    np.testing.assert_allclose(result.advantages, [-0.6195, 0.6195], atol=2e-4)


def test_grpo_interleaved_groups_match_sorted():
    estimator = StagedAdvantageEstimator(method="grpo")
    rewards = np.array([1.0, 0.0, 0.0, 1.0, 1.0, 0.0])
    groups = ["a", "b", "a", "b", "a", "b"]
    interleaved = estimator.batch(rewards, groups, None, None).advantages
    order = np.argsort(groups, kind="stable")
    ordered = estimator.batch(rewards[order], [groups[i] for i in order], None, None).advantages
    np.testing.assert_allclose(interleaved[order], ordered)


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_grpo_single_sample_group_is_zero(scale):
    estimator = StagedAdvantageEstimator(method="grpo", scale=scale)
    result = estimator.batch([1.0, 0.0, 1.0], [0, 1, 1], None, None)
    assert result.advantages[0] == 0.0
    assert np.all(np.isfinite(result.advantages))


def test_grpo_zero_variance_group_is_zero():
    estimator = StagedAdvantageEstimator(method="grpo", eps=0.0)
    result = estimator([0.1, 0.1, 0.1], None, None)
    np.testing.assert_array_equal(result.advantages, np.zeros(3))
    assert result.diagnostics["frac_zero_std_groups"] == 1.0


def test_expectation_hand_case():
    # Root: 2 visits, 1 success. "a" (node 1): 1 visit, 1 success. "b" (node 3): 1 visit, 0.
    tree = PrefixTree.from_traces({"id": "p"}, [(["a", "ok"], 1.0), (["b", "bad"], 0.0)])
    node_a = tree.add_child(0, "a")
    node_b = tree.add_child(0, "b")
    estimator = StagedAdvantageEstimator(method="expectation", alpha=0.5, prior=(1.0, 1.0))
    result = estimator([1.0, 0.0, 1.0], [0, node_a, node_b], tree)
    values = np.array([(1 + 1) / (2 + 2), (1 + 1) / (1 + 2), (0 + 1) / (1 + 2)])
    shifted = np.array([1.0, 0.0, 1.0]) - 0.5 * values
    np.testing.assert_allclose(result.advantages, shifted - shifted.mean(), atol=1e-12)


def test_optimistic_and_pessimistic_hand_case():
    tree = PrefixTree.from_traces(
        {"id": "p"}, [(["a", "ok"], 1.0), (["a", "bad"], 0.0), (["b", "ok"], 1.0)]
    )
    node_a = tree.add_child(0, "a")
    node_b = tree.add_child(0, "b")
    rewards = [0.0, 1.0]
    optimistic = StagedAdvantageEstimator(method="optimistic", alpha=1.0)(
        rewards, [node_a, node_b], tree
    )
    pessimistic = StagedAdvantageEstimator(method="pessimistic", alpha=1.0)(
        rewards, [node_a, node_b], tree
    )
    # optimistic V = [1, 1] -> shifted [-1, 0]; pessimistic V = [0, 1] -> shifted [0, 0].
    np.testing.assert_allclose(optimistic.advantages, [-0.5, 0.5])
    np.testing.assert_allclose(pessimistic.advantages, [0.0, 0.0])


# ------------------------------------------------------------------ properties


@pytest.mark.parametrize("method", METHODS)
def test_advantages_have_zero_mean(method):
    tree = make_tree(1)
    rng = np.random.default_rng(2)
    for _ in range(10):
        node_ids = sample_prefixes(tree, 8, rng=rng)
        rewards = rng.integers(0, 2, 8).astype(float)
        result = StagedAdvantageEstimator(method=method)(rewards, node_ids, tree)
        assert abs(result.advantages.mean()) < 1e-12
        assert result.diagnostics.keys() >= REQUIRED_KEYS


@pytest.mark.parametrize("method", ["qp_soft", "qp_hard"])
def test_qp_satisfies_all_constraints(method):
    tree = make_tree(3)
    rng = np.random.default_rng(4)
    checked = 0
    for _ in range(15):
        node_ids = sample_prefixes(tree, 8, rng=rng)
        rewards = rng.integers(0, 2, 8).astype(float)
        result = StagedAdvantageEstimator(method=method, margin=0.05)(rewards, node_ids, tree)
        if result.diagnostics["num_constraints"]:
            assert result.diagnostics["constraint_satisfaction"] == 1.0
            checked += 1
        assert not result.diagnostics["fallback"]
        norm2 = float(result.advantages @ result.advantages)
        if method == "qp_hard" and np.any(rewards != rewards[0]):
            assert norm2 == pytest.approx(8.0)
        else:
            assert norm2 <= 8.0 + 1e-9
    assert checked > 3


@pytest.mark.parametrize("method", METHODS)
def test_permutation_permutes_advantages(method):
    tree = make_tree(5)
    rng = np.random.default_rng(6)
    node_ids = np.array(sample_prefixes(tree, 8, rng=rng))
    rewards = rng.integers(0, 2, 8).astype(float)
    estimator = StagedAdvantageEstimator(method=method)
    base = estimator(rewards, node_ids.tolist(), tree).advantages
    permutation = rng.permutation(8)
    permuted = estimator(rewards[permutation], node_ids[permutation].tolist(), tree).advantages
    np.testing.assert_allclose(permuted, base[permutation], atol=1e-10)


def test_flat_at_root_equals_centred_grpo():
    tree = make_tree(7)
    rewards = np.array([1.0, 0.0, 0.0, 1.0, 1.0])
    flat = StagedAdvantageEstimator(method="flat")(rewards, [0] * 5, tree).advantages
    grpo = StagedAdvantageEstimator(method="grpo", scale="none")(rewards, None, None).advantages
    np.testing.assert_allclose(flat, grpo)


def test_qp_soft_at_root_equals_centred_rewards():
    # All samples share the root: no pairs, and ||r0||^2 <= G for 0/1 rewards.
    tree = make_tree(8)
    rewards = np.array([1.0, 0.0, 0.0, 1.0])
    result = StagedAdvantageEstimator(method="qp_soft")(rewards, [0] * 4, tree)
    np.testing.assert_allclose(result.advantages, rewards - rewards.mean())
    assert result.diagnostics["num_constraints"] == 0
    assert np.isnan(result.diagnostics["constraint_satisfaction"])


def test_qp_hard_at_root_equals_unit_variance():
    tree = make_tree(8)
    rewards = np.array([1.0, 0.0, 0.0, 1.0])
    result = StagedAdvantageEstimator(method="qp_hard")(rewards, [0] * 4, tree)
    np.testing.assert_allclose(result.advantages, [1.0, -1.0, -1.0, 1.0])


def test_qp_equal_rewards_hard_defined():
    tree = make_tree(9)
    result = StagedAdvantageEstimator(method="qp_hard")([0.0, 0.0, 0.0], [0, 0, 0], tree)
    np.testing.assert_array_equal(result.advantages, np.zeros(3))
    assert result.diagnostics["solver_status"] == "zero_signal"
    assert not result.diagnostics["fallback"]


@pytest.mark.parametrize("method", ["qp_soft", "qp_hard"])
def test_exact_solver_equals_scipy_on_trees(method):
    tree = make_tree(10)
    rng = np.random.default_rng(11)
    compared = 0
    for _ in range(10):
        node_ids = sample_prefixes(tree, 8, rng=rng)
        rewards = rng.integers(0, 2, 8).astype(float)
        if np.all(rewards == rewards[0]):
            continue
        exact = StagedAdvantageEstimator(method=method, solver="exact")(rewards, node_ids, tree)
        scipy = StagedAdvantageEstimator(method=method, solver="scipy")(rewards, node_ids, tree)
        if scipy.diagnostics["fallback"]:
            continue
        np.testing.assert_allclose(exact.advantages, scipy.advantages, atol=1e-8)
        compared += 1
    assert compared >= 5


def test_custom_cyclic_pairs_dropped_and_reported():
    estimator = StagedAdvantageEstimator(method="qp_soft", margin=0.1)
    tree = PrefixTree({"id": "p"})
    result = estimator([0.0, 1.0, 0.5], [0, 0, 0], tree, pairs=[(0, 1), (1, 2), (2, 0)])
    assert result.diagnostics["dropped_pairs"] == [(2, 0, "given")]
    a = result.advantages
    assert a[1] >= a[0] + 0.1 - 1e-12
    assert a[2] >= a[1] + 0.1 - 1e-12


def test_slsqp_reference_matches_custom_pairs():
    r0 = np.array([-0.5, 0.5, 0.0])
    estimator = StagedAdvantageEstimator(method="qp_soft", margin=0.1)
    result = estimator([0.0, 1.0, 0.5], [0, 0, 0], PrefixTree({}), pairs=[(1, 2)])
    reference = solve_sae_qp_slsqp(r0, [(1, 2)], delta=0.1)
    np.testing.assert_allclose(result.advantages, reference.advantages, atol=1e-8)


def test_batch_mixed_problems_needs_opt_in():
    first, second = make_tree(12), make_tree(13)
    estimator = StagedAdvantageEstimator(method="expectation")
    rewards = [1.0, 0.0, 1.0, 0.0]
    with pytest.raises(ValueError, match="mixed_problems=True"):
        estimator.batch(rewards, [0, 0, 0, 0], [0, 0, 0, 0], [first, first, second, second])
    result = estimator.batch(
        rewards, [0, 0, 0, 0], [0, 0, 0, 0], [first, first, second, second], mixed_problems=True
    )
    assert result.advantages.shape == (4,)


def test_batch_diagnostics_aggregate_groups():
    trees = {"x": make_tree(14), "y": make_tree(15)}
    rng = np.random.default_rng(16)
    node_ids = sample_prefixes(trees["x"], 4, rng=rng) + sample_prefixes(trees["y"], 4, rng=rng)
    rewards = np.array([1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0])
    result = StagedAdvantageEstimator(method="qp_soft").batch(
        rewards, ["x"] * 4 + ["y"] * 4, node_ids, trees
    )
    assert result.diagnostics["num_groups"] == 2
    single = [
        StagedAdvantageEstimator(method="qp_soft")(rewards[s], node_ids[s], trees[g])
        for s, g in ((slice(0, 4), "x"), (slice(4, 8), "y"))
    ]
    assert result.diagnostics["num_constraints"] == sum(
        r.diagnostics["num_constraints"] for r in single
    )
    np.testing.assert_allclose(result.advantages, np.concatenate([r.advantages for r in single]))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "ppo"}, "method"),
        ({"scale": "token"}, "scale"),
        ({"solver": "cvxpy"}, "solver"),
        ({"alpha": -1.0}, "alpha"),
        ({"margin": float("nan")}, "margin"),
        ({"eps": -1e-3}, "eps"),
        ({"value_source": "oracle"}, "value_source"),
        ({"prior": (-1.0, 1.0)}, "prior"),
    ],
)
def test_estimator_config_rejects_invalid(kwargs, message):
    with pytest.raises(ValueError, match=message):
        StagedAdvantageEstimator(**kwargs)


def test_estimator_rejects_bad_inputs():
    tree = make_tree(17)
    estimator = StagedAdvantageEstimator(method="expectation")
    with pytest.raises(ValueError, match="needs a prefix tree"):
        estimator([1.0, 0.0], [0, 0], None)
    with pytest.raises(ValueError, match="finite"):
        estimator([1.0, float("nan")], [0, 0], tree)
    with pytest.raises(ValueError, match="node ids"):
        estimator([1.0, 0.0], [0], tree)
    with pytest.raises(IndexError):
        estimator([1.0, 0.0], [0, 10_000], tree)
    with pytest.raises(KeyError):
        estimator.batch([1.0, 0.0], ["a", "b"], [0, 0], {"a": tree})


def test_package_docstring_example_runs():
    import sae

    example = sae.__doc__.split("Example::")[1]
    code = "\n".join(line[4:] for line in example.splitlines())
    namespace: dict = {}
    exec(code, namespace)  # the docstring is part of this repository, not external input
    assert namespace["result"].advantages.shape == (4,)
