"""Tests for sae.tree: building, queries, online counts and JSONL files."""

import json

import numpy as np
import pytest

from sae import PrefixTree, append_prefix_tree, read_prefix_trees, write_prefix_trees

TRACES = [
    (["a", "b", "c"], 1.0),
    (["a", "x"], 0.0),
    (["a", "b", "d"], 0.0),
    (["y"], 1.0),
    (["a", "b", "c"], 1.0),
]


def make_tree() -> PrefixTree:
    return PrefixTree.from_traces({"id": "p1", "question": "1+1?", "answer": "2"}, TRACES)


def path_tuples(tree: PrefixTree) -> dict[int, tuple[str, ...]]:
    return {node.id: tuple(tree.steps_to(node.id)) for node in tree}


def test_tree_root_contract():
    tree = PrefixTree({"id": "q"})
    assert len(tree) == 1
    assert tree.root.id == 0
    assert tree.root.parent is None
    assert tree.root.step == ""
    assert tree.root.depth == 0
    assert tree.steps_to(0) == []


def test_add_child_merges_equal_steps():
    tree = PrefixTree({})
    first = tree.add_child(0, "step one")
    again = tree.add_child(0, "step one", terminal=True, reward=1.0)
    other = tree.add_child(0, "step one ")
    assert first == again
    assert other != first
    assert tree.nodes[first].terminal
    assert tree.nodes[first].reward == 1.0
    assert tree.root.children == [first, other]


def test_add_child_rejects_child_of_terminal():
    tree = PrefixTree({})
    leaf = tree.add_child(0, "done", terminal=True, reward=1.0)
    with pytest.raises(ValueError, match="terminal node"):
        tree.add_child(leaf, "more")


def test_add_trace_counts_match_brute_force():
    tree = make_tree()
    paths = path_tuples(tree)
    assert len(set(paths.values())) == len(tree), "every prefix must appear once (merged)"
    for node_id, prefix in paths.items():
        through = [(steps, r) for steps, r in TRACES if tuple(steps[: len(prefix)]) == prefix]
        assert tree.nodes[node_id].visits == len(through)
        assert tree.nodes[node_id].successes == sum(r > 0 for _, r in through)
        assert tree.nodes[node_id].depth == len(prefix)


def test_add_trace_marks_leaf_terminal():
    tree = make_tree()
    leaf = tree.add_trace(["a", "b", "c"], 1.0)
    assert tree.nodes[leaf].terminal
    assert tree.nodes[leaf].reward == 1.0
    cut = tree.add_trace(["z", "w"], 0.0, terminal=False)
    assert not tree.nodes[cut].terminal
    assert tree.nodes[cut].reward is None
    assert tree.nodes[cut].visits == 1


@pytest.mark.parametrize(
    ("steps", "reward", "error"),
    [
        ([], 1.0, ValueError),
        ("abc", 1.0, TypeError),
        (["a"], float("nan"), ValueError),
    ],
)
def test_add_trace_rejects_bad_input(steps, reward, error):
    with pytest.raises(error):
        PrefixTree({}).add_trace(steps, reward)


def test_queries_match_path_prefix_brute_force():
    tree = make_tree()
    paths = path_tuples(tree)
    for a, pa in paths.items():
        for b, pb in paths.items():
            proper_prefix = len(pa) < len(pb) and pb[: len(pa)] == pa
            assert tree.is_ancestor(a, b) == proper_prefix, (a, b)
        assert sorted(tree.ancestors(a)) == sorted(
            b for b, pb in paths.items() if len(pb) < len(pa) and pa[: len(pb)] == pb
        )
        assert sorted(tree.descendants(a)) == sorted(
            b for b, pb in paths.items() if len(pb) > len(pa) and pb[: len(pa)] == pa
        )
        assert sorted(tree.siblings(a)) == sorted(
            b
            for b, pb in paths.items()
            if b != a and len(pa) > 0 and len(pb) == len(pa) and pb[:-1] == pa[:-1]
        )


def test_ancestors_order_nearest_first():
    tree = make_tree()
    leaf = tree.add_trace(["a", "b", "c"], 1.0)
    depths = [tree.nodes[i].depth for i in tree.ancestors(leaf)]
    assert depths == [2, 1, 0]


def test_node_ids_accept_numpy_integers():
    tree = make_tree()
    assert tree.steps_to(np.int64(1)) == ["a"]


@pytest.mark.parametrize(
    ("node_id", "error"), [(-1, IndexError), (99, IndexError), ("1", TypeError), (True, TypeError)]
)
def test_queries_reject_bad_ids(node_id, error):
    with pytest.raises(error):
        make_tree().steps_to(node_id)


def test_record_outcome_updates_path_only():
    tree = make_tree()
    leaf = tree.add_trace(["a", "x"], 0.0)
    teacher = [(n.visits, n.successes) for n in tree]
    tree.record_outcome(leaf, 1.0)
    tree.record_outcome(leaf, 0.0)
    on_path = {leaf, *tree.ancestors(leaf)}
    for node in tree:
        expected = (2, 1) if node.id in on_path else (0, 0)
        assert (node.student_visits, node.student_successes) == expected
    assert [(n.visits, n.successes) for n in tree] == teacher


def test_subtree_stats_counts_terminals():
    tree = make_tree()
    node_a = next(n.id for n in tree if tree.steps_to(n.id) == ["a"])
    stats = tree.subtree_stats(node_a)
    assert stats["size"] == 5
    assert stats["terminals"] == 3
    assert stats["terminal_successes"] == 1
    assert stats["max_depth"] == 3
    assert stats["visits"] == 4
    assert stats["successes"] == 2


def test_dict_round_trip_keeps_everything():
    tree = make_tree()
    tree.nodes[1].prior = 0.25
    tree.nodes[1].value_sum = 1.5
    tree.record_outcome(2, 1.0)
    data = json.loads(json.dumps(tree.to_dict()))
    again = PrefixTree.from_dict(data)
    assert again.to_dict() == tree.to_dict()
    assert again.nodes[1].children == tree.nodes[1].children
    assert again.add_child(0, "a") == 1, "merge index must be rebuilt"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(format="prefix-tree/0"), "format"),
        (lambda d: d["nodes"][1].update(id=7), "expected id 1"),
        (lambda d: d["nodes"][2].update(depth=5), "expected depth"),
        (lambda d: d["nodes"][2].update(parent=9), "parent id"),
        (lambda d: d["nodes"][1].update(successes=99), "exceed visits"),
        (lambda d: d["nodes"][1].update(visits=-1), "non-negative"),
        (lambda d: d["nodes"][1].pop("step"), "missing keys"),
        (lambda d: d["nodes"][0].update(parent=0), "root"),
        (lambda d: d.update(nodes=[]), "non-empty"),
    ],
)
def test_from_dict_rejects_invalid(mutate, message):
    data = make_tree().to_dict()
    mutate(data)
    with pytest.raises(ValueError, match=message):
        PrefixTree.from_dict(data)


def test_write_read_round_trip(tmp_path):
    path = tmp_path / "sub" / "trees.jsonl"
    trees = [make_tree(), PrefixTree.from_traces({"id": "p2"}, [(["q"], 0.0)])]
    write_prefix_trees(path, trees)
    loaded = read_prefix_trees(path)
    assert [t.to_dict() for t in loaded] == [t.to_dict() for t in trees]
    assert len(read_prefix_trees(path, limit=1)) == 1
    assert [p.name for p in path.parent.iterdir()] == ["trees.jsonl"], "no temp files left"


def test_append_creates_and_extends(tmp_path):
    path = tmp_path / "trees.jsonl"
    append_prefix_tree(path, make_tree())
    append_prefix_tree(path, PrefixTree({"id": "p2"}))
    loaded = read_prefix_trees(path)
    assert [t.problem.get("id") for t in loaded] == ["p1", "p2"]


def test_append_repairs_partial_last_line(tmp_path, caplog):
    path = tmp_path / "trees.jsonl"
    append_prefix_tree(path, make_tree())
    with open(path, "a", encoding="utf-8") as stream:
        stream.write('{"format": "prefix-tree/1", "prob')
    append_prefix_tree(path, PrefixTree({"id": "p3"}))
    assert "partial last line" in caplog.text
    assert [t.problem.get("id") for t in read_prefix_trees(path)] == ["p1", "p3"]


def test_read_reports_line_numbers(tmp_path):
    path = tmp_path / "trees.jsonl"
    good = json.dumps(make_tree().to_dict())
    path.write_text(good + "\n\n" + "{not json\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"trees.jsonl:3: invalid JSON"):
        read_prefix_trees(path)
    path.write_text(good + "\n" + json.dumps({"format": "other"}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"trees.jsonl:2: invalid prefix tree"):
        read_prefix_trees(path)
