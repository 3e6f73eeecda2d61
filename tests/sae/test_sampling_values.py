"""Tests for sae.sampling, sae.values and sae.constraints."""

import numpy as np
import pytest

from sae import (
    PrefixTree,
    build_order_constraints,
    eligible_nodes,
    prefix_probabilities,
    prefix_value,
    prefix_values,
    sample_prefixes,
)


def make_tree() -> PrefixTree:
    # Depths: root 0; a, b at 1; a/c, a/d at 2; terminal answers at 2 or 3.
    return PrefixTree.from_traces(
        {"id": "p"},
        [
            (["a", "c", "ok"], 1.0),
            (["a", "c", "bad"], 0.0),
            (["a", "d", "bad"], 0.0),
            (["b", "ok"], 1.0),
        ],
    )


def node_by_path(tree: PrefixTree, *steps: str) -> int:
    return next(n.id for n in tree if tree.steps_to(n.id) == list(steps))


# -------------------------------------------------------------------- sampling


def test_eligible_nodes_skip_terminals():
    tree = make_tree()
    nodes = eligible_nodes(tree)
    assert all(not tree.nodes[i].terminal for i in nodes)
    assert len(eligible_nodes(tree, include_terminal=True)) == len(tree)
    assert {tree.nodes[i].depth for i in eligible_nodes(tree, min_depth=1, max_depth=1)} == {1}


def test_uniform_depth_probabilities():
    tree = make_tree()
    nodes = eligible_nodes(tree)
    probs = prefix_probabilities(tree, nodes, "uniform_depth")
    depths = np.array([tree.nodes[i].depth for i in nodes])
    assert probs.sum() == pytest.approx(1.0)
    for depth in np.unique(depths):
        assert probs[depths == depth].sum() == pytest.approx(1.0 / len(np.unique(depths)))


def test_uniform_nodes_probabilities():
    tree = make_tree()
    nodes = eligible_nodes(tree)
    np.testing.assert_allclose(prefix_probabilities(tree, nodes, "uniform_nodes"), 1.0 / len(nodes))


def test_curriculum_moves_from_deep_to_root():
    tree = make_tree()
    nodes = eligible_nodes(tree)
    depths = np.array([tree.nodes[i].depth for i in nodes])
    early = prefix_probabilities(tree, nodes, "curriculum", curriculum_progress=0.0)
    late = prefix_probabilities(tree, nodes, "curriculum", curriculum_progress=1.0)
    assert early[depths == depths.max()].sum() > early[depths == 0].sum()
    assert late[depths == 0].sum() > late[depths == depths.max()].sum()


def test_sample_prefixes_seeded_and_distinct():
    tree = make_tree()
    first = sample_prefixes(tree, 4, rng=3)
    assert first == sample_prefixes(tree, 4, rng=3)
    assert len(set(first)) == 4
    assert all(not tree.nodes[i].terminal for i in first)


def test_sample_prefixes_fills_group_from_small_tree():
    tree = make_tree()
    ids = sample_prefixes(tree, 20, rng=np.random.default_rng(0))
    assert len(ids) == 20
    with pytest.raises(ValueError, match="without replacement"):
        sample_prefixes(tree, 20, rng=0, replace=False)


def test_sample_prefixes_empirical_depth_frequencies():
    tree = make_tree()
    ids = sample_prefixes(tree, 20_000, rng=1, replace=True)
    depths = np.array([tree.nodes[i].depth for i in ids])
    for depth in (0, 1, 2):
        assert abs(np.mean(depths == depth) - 1 / 3) < 0.02


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"k": 0}, ValueError),
        ({"k": 2, "distribution": "zipf"}, ValueError),
        ({"k": 2, "min_depth": 9}, ValueError),
        ({"k": 2, "curriculum_progress": 1.5}, ValueError),
        ({"k": 2, "min_depth": 2, "max_depth": 1}, ValueError),
    ],
)
def test_sample_prefixes_rejects_invalid(kwargs, error):
    with pytest.raises(error):
        sample_prefixes(make_tree(), rng=0, **kwargs)


# ---------------------------------------------------------------------- values


def test_expectation_uses_beta_posterior_mean():
    tree = make_tree()
    node_a = node_by_path(tree, "a")  # 3 visits, 1 success
    assert prefix_value(tree, node_a) == pytest.approx((1 + 1) / (3 + 2))
    assert prefix_value(tree, node_a, prior=(0.0, 0.0)) == pytest.approx(1 / 3)


def test_expectation_empty_node_uses_prior_or_ancestor():
    tree = make_tree()
    node_a = node_by_path(tree, "a")
    empty = tree.add_child(node_a, "unvisited")
    assert prefix_value(tree, empty) == pytest.approx(0.5)
    assert prefix_value(tree, empty, prior=(2.0, 6.0)) == pytest.approx(0.25)
    assert prefix_value(tree, empty, prior=(0.0, 0.0)) == pytest.approx(1 / 3)


def test_optimistic_and_pessimistic_rules():
    tree = make_tree()
    node_c = node_by_path(tree, "a", "c")  # one success, one failure
    node_d = node_by_path(tree, "a", "d")  # failure only
    node_b = node_by_path(tree, "b")  # success only
    assert [prefix_value(tree, n, "optimistic") for n in (node_c, node_d, node_b)] == [
        1.0,
        0.0,
        1.0,
    ]
    assert [prefix_value(tree, n, "pessimistic") for n in (node_c, node_d, node_b)] == [
        0.0,
        0.0,
        1.0,
    ]
    empty = tree.add_child(node_b, "unvisited")
    assert prefix_value(tree, empty, "optimistic") == 0.5
    assert prefix_value(tree, empty, "pessimistic") == 0.5


def test_value_sources_combine_counts():
    tree = make_tree()
    node_d = node_by_path(tree, "a", "d")
    tree.record_outcome(node_d, 1.0)
    tree.record_outcome(node_d, 1.0)
    teacher = prefix_value(tree, node_d, source="teacher", prior=(0.0, 0.0))
    student = prefix_value(tree, node_d, source="student", prior=(0.0, 0.0))
    both = prefix_value(tree, node_d, source="both", prior=(0.0, 0.0))
    assert (teacher, student, both) == (0.0, 1.0, pytest.approx(2 / 3))


def test_prefix_values_vector_and_errors():
    tree = make_tree()
    values = prefix_values(tree, [0, 1], "expectation")
    assert values.shape == (2,)
    with pytest.raises(ValueError, match="method"):
        prefix_value(tree, 0, "median")
    with pytest.raises(ValueError, match="source"):
        prefix_value(tree, 0, source="oracle")
    with pytest.raises(ValueError, match="prior"):
        prefix_value(tree, 0, prior=(1.0, float("inf")))
    with pytest.raises(IndexError):
        prefix_value(tree, 999)


# ----------------------------------------------------------------- constraints


def pair_set(constraints) -> set[tuple[int, int]]:
    return set(constraints.sample_pairs())


def test_parent_child_pairs_brute_force():
    tree = make_tree()
    rng = np.random.default_rng(0)
    nodes = eligible_nodes(tree)
    for _ in range(30):
        node_ids = [int(rng.choice(nodes)) for _ in range(6)]
        rewards = rng.integers(0, 2, 6).astype(float)
        constraints = build_order_constraints(rewards, node_ids, [tree] * 6)
        expected = {
            (i, j)
            for i in range(6)
            for j in range(6)
            if rewards[i] == 0 and rewards[j] == 1 and tree.is_ancestor(node_ids[i], node_ids[j])
        }
        got = {(i, j) for (i, j) in pair_set(constraints) if rewards[i] == 0 and rewards[j] == 1}
        assert got == expected


def test_sibling_pairs_use_subtree_successes():
    tree = make_tree()
    node_c = node_by_path(tree, "a", "c")  # success below
    node_d = node_by_path(tree, "a", "d")  # no success below
    constraints = build_order_constraints(np.array([0.0, 0.0]), [node_c, node_d], [tree, tree])
    # Failing from a prefix that can succeed ranks below failing from a dead end.
    assert pair_set(constraints) == {(0, 1)}
    assert constraints.kinds == ["sibling"]


def test_sibling_pairs_use_group_successes():
    tree = make_tree()
    node_d = node_by_path(tree, "a", "d")
    below_d = tree.add_child(node_d, "new step")
    node_c = node_by_path(tree, "a", "c")
    # Sample 2 succeeds below d, so d now "holds a success" as well: no sibling pair.
    constraints = build_order_constraints(
        np.array([0.0, 0.0, 1.0]), [node_c, node_d, below_d], [tree] * 3
    )
    assert (0, 1) not in pair_set(constraints)
    assert (1, 0) not in pair_set(constraints)
    assert (1, 2) in pair_set(constraints)


def test_student_source_changes_sibling_evidence():
    tree = make_tree()
    node_c = node_by_path(tree, "a", "c")
    node_d = node_by_path(tree, "a", "d")
    tree.record_outcome(node_d, 1.0)
    teacher = build_order_constraints(np.zeros(2), [node_c, node_d], [tree] * 2, source="teacher")
    student = build_order_constraints(np.zeros(2), [node_c, node_d], [tree] * 2, source="student")
    assert pair_set(teacher) == {(0, 1)}
    assert pair_set(student) == {(1, 0)}


def test_constraints_never_pair_different_trees():
    first, second = make_tree(), make_tree()
    node_a = node_by_path(first, "a")
    node_c = node_by_path(second, "a", "c")
    constraints = build_order_constraints(np.array([0.0, 1.0]), [node_a, node_c], [first, second])
    assert constraints.num_pairs == 0


def test_constraints_group_interchangeable_samples():
    tree = make_tree()
    node_a = node_by_path(tree, "a")
    node_c = node_by_path(tree, "a", "c")
    rewards = np.array([0.0, 0.0, 1.0, 1.0, 1.0])
    constraints = build_order_constraints(
        rewards, [node_a, node_a, node_c, node_c, node_c], [tree] * 5
    )
    assert constraints.num_classes == 2
    assert constraints.num_pairs == 6
    assert len(constraints.sample_pairs()) == 6


def test_satisfaction_counts_sample_pairs():
    tree = make_tree()
    node_a = node_by_path(tree, "a")
    node_c = node_by_path(tree, "a", "c")
    constraints = build_order_constraints(np.array([0.0, 1.0]), [node_a, node_c], [tree] * 2)
    assert constraints.satisfaction(np.array([0.0, 0.5]), 0.01) == 1.0
    assert constraints.satisfaction(np.array([0.0, 0.005]), 0.01) == 0.0
