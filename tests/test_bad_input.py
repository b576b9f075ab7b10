"""Bad input: each mistake is one clear line on stderr, exit code 2, no traceback, nothing modified."""

from __future__ import annotations

import json

import pytest

from xlm_core.checkpoint import (
    CONFIG_FILE,
    FINAL_DIR,
    RUN_FILE,
    WEIGHTS_FILE,
    make_meta,
    task_info,
    write_checkpoint,
)
from xlm_core.config import resolve_run_config
from xlm_core.data.tasks import build_task
from xlm_core.plugins import get_registry

TINY = ["model.d_model=32", "model.n_layers=2", "model.n_heads=2"]
TINY_SETS = [arg for item in TINY for arg in ("--set", item)]


@pytest.fixture
def finished_run(tmp_path):
    """A run directory as training leaves it (written directly: no training needed)."""
    config = resolve_run_config("arlm", sets=TINY)
    family = get_registry().get("arlm")
    task = build_task(config.task)
    model = family.component("model")(config.model, task.tokenizer.vocab)
    meta = make_meta(config, family, task_info(task))
    run = tmp_path / "run"
    write_checkpoint(run / FINAL_DIR, model=model, tokenizer=task.tokenizer, meta=meta)
    (run / RUN_FILE).write_text(json.dumps(meta))
    return run


def snapshot(root):
    return {
        p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(root.rglob("*")) if p.is_file()
    }


def assert_one_line_error(result, *fragments):
    assert result.code == 2, (result.code, result.out, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--plugin", "nope"], ["unknown plugin 'nope'", "pip install xlm-nope"]),
        (
            ["--plugin", "arlm", "--task", "star-eassy"],
            ["unknown task 'star-eassy'", "did you mean 'star-easy'"],
        ),
        (
            ["--plugin", "arlm", "--set", "training.lrr=0.1"],
            ["unknown key 'training.lrr'", "did you mean 'training.lr'"],
        ),
        (
            ["--plugin", "arlm", "--set", "training.max_steps=many"],
            ["invalid value for training.max_steps", "'many'"],
        ),
        (["--plugin", "arlm", "--preset", "huge"], ["unknown preset 'huge'"]),
        (["--plugin", "arlm", "--precision", "fp8"], ["invalid value for training.precision"]),
        (
            ["--plugin", "arlm", "--strategy", "warp-drive", *TINY_SETS],
            ["cannot set up training hardware"],
        ),
    ],
)
def test_train_rejects_bad_flags_before_any_work(tmp_path, cli, args, fragments):
    out = tmp_path / "out"
    result = cli("train", *args, "--out", str(out))
    assert_one_line_error(result, *fragments)
    assert not out.exists()


def test_missing_and_malformed_config_files(tmp_path, cli):
    missing = cli("train", "--plugin", "arlm", "--config", str(tmp_path / "none.yaml"))
    assert_one_line_error(missing, "config file not found", "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("training:\n  lr: [0.1\n  batch_size: 3\n")
    malformed = cli("train", "--plugin", "arlm", "--config", str(bad))
    assert_one_line_error(malformed, "bad.yaml: malformed YAML at line")


def test_out_pointing_at_a_finished_run_is_refused(finished_run, cli):
    before = snapshot(finished_run)
    result = cli(
        "train",
        "--plugin",
        "arlm",
        "--out",
        str(finished_run),
        *[a for s in TINY for a in ("--set", s)],
    )
    assert_one_line_error(result, "already holds a finished run", "--overwrite")
    assert snapshot(finished_run) == before


def test_overwrite_checks_everything_before_touching_the_run(finished_run, cli):
    before = snapshot(finished_run)
    result = cli(
        "train",
        "--plugin",
        "arlm",
        "--out",
        str(finished_run),
        "--overwrite",
        "--set",
        "model.n_heads=0",
    )
    assert_one_line_error(result, "invalid value for model.n_heads")
    assert snapshot(finished_run) == before


@pytest.mark.parametrize("command", ["generate", "eval"])
def test_checkpoint_without_weights(finished_run, cli, command):
    (finished_run / FINAL_DIR / WEIGHTS_FILE).unlink()
    before = snapshot(finished_run)
    assert_one_line_error(
        cli(command, "--checkpoint", str(finished_run)), "has no model.safetensors"
    )
    assert snapshot(finished_run) == before


@pytest.mark.parametrize("command", ["generate", "eval"])
def test_truncated_weights(finished_run, cli, command):
    weights = finished_run / FINAL_DIR / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:200])
    before = snapshot(finished_run)
    result = cli(command, "--checkpoint", str(finished_run / FINAL_DIR))
    assert_one_line_error(result, str(weights), "corrupt or truncated")
    assert snapshot(finished_run) == before


def test_checkpoint_naming_an_uninstalled_plugin(finished_run, cli):
    path = finished_run / FINAL_DIR / CONFIG_FILE
    meta = json.loads(path.read_text())
    meta["plugin"] = {
        "name": "ghost",
        "distribution": "xlm-ghost",
        "version": "1.2.0",
        "api_version": "1.0",
    }
    path.write_text(json.dumps(meta))
    result = cli("generate", "--checkpoint", str(finished_run))
    assert_one_line_error(result, "needs plugin 'ghost'", "pip install xlm-ghost==1.2.0")


def test_generate_rejects_a_misspelt_setting(finished_run, cli):
    result = cli("generate", "--checkpoint", str(finished_run), "--set", "predictor.temprature=0")
    assert_one_line_error(result, "did you mean 'predictor.temperature'")
    result = cli("generate", "--checkpoint", str(finished_run), "--set", "predictor.top_p=7")
    assert_one_line_error(result, "invalid value for predictor.top_p")


def test_missing_checkpoint_and_resume_targets(tmp_path, cli):
    assert_one_line_error(
        cli("eval", "--checkpoint", str(tmp_path / "nothing")), "checkpoint not found"
    )
    (tmp_path / "empty").mkdir()
    assert_one_line_error(cli("train", "--resume", str(tmp_path / "empty")), "not a run directory")
    assert_one_line_error(cli("train"), "--plugin is required")


@pytest.mark.parametrize(
    "flag, value", [("--preset", "small"), ("--task", "star-medium")], ids=["preset", "task"]
)
def test_resume_refuses_a_new_preset_or_task(flag, value, finished_run, cli):
    before = snapshot(finished_run)
    result = cli("train", "--resume", str(finished_run), flag, value)
    assert_one_line_error(result, "--resume continues a run with its saved config", flag)
    assert snapshot(finished_run) == before


def test_resume_without_lightning_state(finished_run, cli):
    before = snapshot(finished_run)
    result = cli("train", "--resume", str(finished_run), "--set", "training.accelerator=cpu")
    assert_one_line_error(result, "has no lightning/last.ckpt")
    assert snapshot(finished_run) == before
