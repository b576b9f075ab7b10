"""Star-graph tasks: determinism, split sizes and disjointness, and the structure of every graph."""

from __future__ import annotations

from collections import Counter

import pytest

from xlm_core.config import TaskConfig
from xlm_core.data.star import SPLIT_SIZES, STAR_SPECS, StarSpec, StarTask
from xlm_core.data.tasks import build_task
from xlm_core.errors import XLMUserError

SAMPLE = 400  # graphs checked structurally per task


@pytest.fixture(scope="module")
def tasks():
    return {name: build_task(TaskConfig(name=name, seed=0)) for name in STAR_SPECS}


def labels(task, ids):
    return [int(task.tokenizer.decode([i])) for i in ids]


def parse(task, example):
    """(edges, source, goal, path edges) as integer labels."""
    prompt = labels(task, example.prompt_ids)
    edges = list(zip(prompt[0:-2:2], prompt[1:-2:2], strict=True))
    target = labels(task, example.target_ids)
    return edges, prompt[-2], prompt[-1], list(zip(target[0::2], target[1::2], strict=True))


@pytest.mark.parametrize("name", list(STAR_SPECS))
def test_every_graph_is_a_star_with_a_valid_path(tasks, name):
    task, spec = tasks[name], STAR_SPECS[name]
    assert task.kind == "prompted" and task.name == name
    examples = task.examples("test")[:SAMPLE]
    path_lengths, centred = Counter(), 0
    for ex in examples:
        edges, source, goal, path = parse(task, ex)
        assert len(ex.prompt_ids) <= task.shape.prompt_length
        assert len(ex.target_ids) <= task.shape.target_length
        nodes = {n for e in edges for n in e}
        assert all(0 <= n < spec.num_labels for n in nodes)
        assert len(set(edges)) == len(edges) and len(nodes) == len(edges) + 1  # a tree
        out_deg = Counter(u for u, _ in edges)
        in_deg = Counter(v for _, v in edges)
        (centre,) = [n for n in nodes if out_deg[n] == spec.degree]
        assert all(out_deg[n] <= 1 and in_deg[n] <= 1 for n in nodes if n != centre)
        assert in_deg[centre] <= spec.degree
        assert spec.degree * (spec.min_arm - 1) <= len(edges) <= spec.degree * (spec.max_arm - 1)
        # The target is the path source -> goal written as its edges, through the centre.
        assert path[0][0] == source and path[-1][1] == goal
        assert all(a[1] == b[0] for a, b in zip(path, path[1:], strict=False))
        assert set(path) <= set(edges)
        assert spec.min_arm - 1 <= len(path) <= spec.max_arm - 1
        assert out_deg[goal] == 0 and (in_deg[source] == 0 or source == centre)
        visited = [source] + [v for _, v in path]
        assert centre in visited
        assert len(visited) - 1 - visited.index(centre) >= (
            spec.max_arm - 1 if spec.centred else spec.min_plan
        )
        centred += source == centre
        path_lengths[len(path)] += 1
    if spec.centred:
        assert centred == len(examples)
        assert set(path_lengths) == {spec.max_arm - 1}  # every easy target has the same length
    else:
        assert 0 < centred < len(examples)  # asymmetric: the source is usually off the centre
        assert set(path_lengths) == set(range(spec.min_arm - 1, spec.max_arm))


EXPECTED = {  # degree, nodes per arm, min plan, labels, centred, (prompt, target) budget
    "star-easy": (3, (5, 5), 4, 20, True, (26, 8)),
    "star-medium": (3, (3, 6), 2, 20, False, (32, 10)),
    "star-hard": (5, (6, 12), 5, 56, False, (112, 22)),
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_spec_parameters(name):
    s = STAR_SPECS[name]
    budget = (s.shape.prompt_length, s.shape.target_length)
    assert (
        s.degree,
        (s.min_arm, s.max_arm),
        s.min_plan,
        s.num_labels,
        s.centred,
        budget,
    ) == EXPECTED[name]


def test_tokens_are_node_labels_after_the_special_tokens(tasks):
    task = tasks["star-hard"]
    assert task.tokenizer.vocab.size == 5 + 56
    used = {i for ex in task.examples("validation") for i in ex.prompt_ids + ex.target_ids}
    assert min(used) >= 5 and not used & set(task.tokenizer.vocab.special_ids)


def test_split_sizes_and_disjoint_splits(tasks):
    task = tasks["star-easy"]
    sizes = {split: len(task.examples(split)) for split in SPLIT_SIZES}
    assert sizes == {"train": 50_000, "validation": 100, "test": 5_000}
    train = set(task.examples("train"))
    assert not train & set(task.examples("test"))
    assert not train & set(task.examples("validation"))
    assert len(train) == 50_000  # no repeats within a split either
    assert task.examples("train")[-1] == task.examples("train")[49_999]


def test_same_seed_same_data_other_seed_differs(tasks):
    again = StarTask(STAR_SPECS["star-medium"], seed=0)
    assert again.examples("validation") == tasks["star-medium"].examples("validation")
    other = StarTask(STAR_SPECS["star-medium"], seed=1)
    assert not set(other.examples("validation")) & set(again.examples("validation"))


def test_edges_are_shuffled(tasks):
    task = tasks["star-easy"]
    first_edge_on_path = sum(
        ex.prompt_ids[:2] == ex.target_ids[:2] for ex in task.examples("validation")
    )
    assert first_edge_on_path < 40  # 1 in 12 by chance; unshuffled it would be every example


def test_saved_tokenizer_is_reused(tmp_path, tasks):
    tasks["star-medium"].tokenizer.save(tmp_path)
    task = build_task(TaskConfig(name="star-medium"), tokenizer_path=tmp_path)
    assert task.examples("validation") == tasks["star-medium"].examples("validation")
    tasks["star-easy"].tokenizer.save(tmp_path / "easy")  # labels 0..19 only: cannot name 56 nodes
    with pytest.raises(XLMUserError, match="node labels of star-hard"):
        build_task(TaskConfig(name="star-hard"), tokenizer_path=tmp_path / "easy")


def test_unknown_split(tasks):
    with pytest.raises(XLMUserError, match="unknown split 'dev'"):
        tasks["star-easy"].examples("dev")


def test_specs_that_cannot_be_drawn_are_rejected():
    with pytest.raises(ValueError, match="labels"):
        StarSpec("x", 3, 5, 5, 4, 12, centred=True)
    with pytest.raises(ValueError, match="min_plan"):
        StarSpec("x", 3, 3, 6, 3, 20)


def test_the_worked_example_in_the_docs():
    task = build_task(TaskConfig(name="star-medium", seed=0))
    example = task.examples("train")[0]
    prompt = "12 9 12 1 1 5 4 3 9 11 16 17 14 19 17 12 5 0 3 12 8 12 12 10 10 14 16 0"
    assert task.tokenizer.decode(example.prompt_ids) == prompt
    assert task.tokenizer.decode(example.target_ids) == "16 17 17 12 12 1 1 5 5 0"
    assert example.target_ids == (21, 22, 22, 17, 17, 6, 6, 10, 10, 5)
