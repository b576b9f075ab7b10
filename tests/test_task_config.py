"""The task section: one record per kind of task (star, text, distilled, plugin), chosen by the task's name,
and the flat record that configs and checkpoints held before still reads."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from xlm_core.config import (
    DistilledTaskConfig,
    PluginTaskConfig,
    StarTaskConfig,
    TaskConfig,
    TextTaskConfig,
    dump_config,
    resolve_run_config,
    run_config_class,
    validate_run_config,
)
from xlm_core.errors import XLMUserError
from xlm_core.plugins import get_registry

#: The task section as every config.json and printed config held it before the split.
FLAT_STAR = json.loads(
    '{"name": "star-easy", "seed": 0, "path": null, "dataset": null, "dataset_config": null, '
    '"text_field": "text", "tokenizer": null, "vocab_size": 4096, "block_size": 128, "pack": true, '
    '"validation_fraction": 0.05, "cache_dir": null}'
)


def saved(task: dict) -> dict:
    """A checkpoint's run config with ``task`` as its task section."""
    data = resolve_run_config("arlm").dump()
    data["task"] = task
    return data


def arlm_class():
    return run_config_class(get_registry().get("arlm"))


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("star-hard", StarTaskConfig),
        ("text", TextTaskConfig),
        ("distilled", DistilledTaskConfig),
        ("sudoku", PluginTaskConfig),
        ("star-eazy", PluginTaskConfig),  # not a built-in: an unknown name is a plugin's to claim
    ],
)
def test_the_name_selects_the_record(name, cls):
    config = TaskConfig(name=name)
    assert type(config) is cls and isinstance(config, TaskConfig)
    assert resolve_run_config("arlm", task=name).task == config
    assert type(TaskConfig()) is StarTaskConfig


def test_a_star_task_prints_only_its_own_fields(cli):
    shown = cli("train", "--plugin", "arlm", "--task", "star-medium", "--print-config")
    assert shown.code == 0, shown.err
    assert "task:\n  name: star-medium\n  seed: 0\nmodel:" in shown.out


@pytest.mark.parametrize(
    "sets",
    [
        ["task.name=text", "task.path=corpus.txt"],
        ["task.path=corpus.txt", "task.name=text"],  # the name the run ends with decides
        ["task.name=star-easy", "task.path=corpus.txt", "task.name=text"],
    ],
)
def test_text_settings_follow_the_final_task_name(sets):
    config = resolve_run_config("arlm", sets=sets)
    assert config.task == TextTaskConfig(path="corpus.txt")


def test_task_shorthand_after_a_file_that_sets_text_fields(tmp_path):
    file = tmp_path / "run.yaml"
    file.write_text("task:\n  path: corpus.txt\n  block_size: 16\n")
    config = resolve_run_config("arlm", config_file=file, task="text")
    assert (config.task.name, config.task.path, config.task.block_size) == ("text", "corpus.txt", 16)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"sets": ["task.path=x.txt"]}, "--set task.path=x.txt: task.path is a setting of text and distilled tasks, not of star tasks"),
        ({"task": "text", "sets": ["task.seed=3"]}, "task.seed is a setting of star and plugin tasks, not of text tasks"),
        ({"sets": ["task.sed=3"]}, "unknown key 'task.sed' (did you mean 'task.seed'?)"),
        (
            {"task": "text", "sets": ["task.vocab_size=10"]},
            "--set task.vocab_size=10: invalid value for task.vocab_size: Input should be greater than or equal to 64",
        ),
        ({"task": "text", "sets": ["task.pack=maybe"]}, "invalid value for task.pack"),
    ],
)
def test_task_mistakes_are_one_line_errors(kwargs, expected):
    with pytest.raises(XLMUserError) as info:
        resolve_run_config("arlm", **kwargs)
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_a_saved_flat_record_still_loads():
    config = validate_run_config(arlm_class(), saved(FLAT_STAR), "config.json")
    assert config.task == StarTaskConfig()
    text = {**FLAT_STAR, "name": "text", "path": "corpus.txt", "block_size": 16}
    config = validate_run_config(arlm_class(), saved(text), "config.json")
    assert config.task == TextTaskConfig(path="corpus.txt", block_size=16)
    plugin = {**FLAT_STAR, "name": "sudoku", "seed": 4}
    assert validate_run_config(arlm_class(), saved(plugin), "old").task == PluginTaskConfig(name="sudoku", seed=4)
    assert TaskConfig(**FLAT_STAR) == StarTaskConfig()


def test_a_flat_record_with_another_kinds_setting_is_refused_naming_the_key():
    with pytest.raises(XLMUserError) as info:
        validate_run_config(arlm_class(), saved({**FLAT_STAR, "block_size": 64}), "config.json")
    assert str(info.value) == "config.json: task.block_size is a setting of text tasks, not of star tasks"
    with pytest.raises(ValidationError, match="path is a setting of text and distilled tasks, not of star tasks"):
        TaskConfig(**{**FLAT_STAR, "path": "corpus.txt"})


def test_a_printed_flat_config_reads_back(tmp_path):
    """A config printed before the split (``--print-config > run.yaml``) is valid ``--config`` input."""
    printed = resolve_run_config("arlm").dump()
    printed["task"] = {**FLAT_STAR, "name": "star-hard", "seed": 2}
    file = tmp_path / "old.json"
    file.write_text(json.dumps(printed))
    config = resolve_run_config("arlm", config_file=file)
    assert config.task == StarTaskConfig(name="star-hard", seed=2)
    assert "vocab_size" not in dump_config(config)


def test_a_preset_with_a_bad_task_setting_fails_the_plugin_at_load(registry, make_fake_plugin):
    record = registry.register(
        make_fake_plugin("badtask", presets={"tiny": {"task": {"name": "star-easy", "path": "x.txt"}}}),
        name="badtask",
    )
    assert record.status == "failed"
    assert record.error.endswith(
        "presets: preset 'tiny' section 'task': task.path is a setting of text and distilled tasks, not of star tasks"
    )
