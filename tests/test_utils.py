"""The helpers every did-you-mean and every layered config share."""

from __future__ import annotations

from xlm_core.utils import deep_merge, suggest


def test_suggest_names_the_closest_choice_or_none():
    assert suggest("warmup", ["warmup_steps", "weight_decay", "lr"]) == "warmup_steps"
    assert suggest("star-eazy", ["star-easy", "star-hard", "text"]) == "star-easy"
    assert suggest("zzz", ["lr", "seed"]) is None
    assert suggest("x", []) is None


def test_deep_merge_merges_mappings_and_copies_the_rest():
    base = {"model": {"d_model": 64, "n_layers": 4}, "training": {"betas": [0.9, 0.98]}}
    change = {"model": {"n_layers": 2}, "training": {"betas": [0.8, 0.9]}, "task": {"name": "text"}}
    merged = deep_merge(base, change)
    assert merged == {
        "model": {"d_model": 64, "n_layers": 2},
        "training": {"betas": [0.8, 0.9]},
        "task": {"name": "text"},
    }
    # Neither argument changes, and the result shares no mutable value with the change.
    assert base == {"model": {"d_model": 64, "n_layers": 4}, "training": {"betas": [0.9, 0.98]}}
    merged["training"]["betas"].append(1.0)
    merged["task"]["name"] = "star-easy"
    assert change["training"]["betas"] == [0.8, 0.9] and change["task"] == {"name": "text"}


def test_a_mapping_replaces_a_plain_value_and_back():
    assert deep_merge({"a": 1}, {"a": {"b": 2}}) == {"a": {"b": 2}}
    assert deep_merge({"a": {"b": 2}}, {"a": None}) == {"a": None}
