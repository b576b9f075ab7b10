"""Checkpoint directories: layout, atomic writes, loading without unpickling, one-line errors."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

import xlm_core
from xlm_core.checkpoint import (
    CONFIG_FILE,
    FINAL_DIR,
    FORMAT_VERSION,
    RUN_FILE,
    WEIGHTS_FILE,
    find_checkpoint,
    make_meta,
    read_meta,
    require_family,
    task_info,
    write_checkpoint,
)
from xlm_core.config import resolve_run_config
from xlm_core.data.tasks import build_task
from xlm_core.errors import XLMUserError
from xlm_core.plugins import get_registry
from xlm_core.rundir import check_out_dir

TINY = ["model.d_model=32", "model.n_layers=2", "model.n_heads=2", "eval.batch_size=4"]


@pytest.fixture(scope="module")
def parts():
    config = resolve_run_config("arlm", sets=TINY)
    family = get_registry().get("arlm")
    task = build_task(config.task)
    torch.manual_seed(0)
    model = family.component("model")(config.model, task.tokenizer.vocab)
    return config, family, task, model


@pytest.fixture
def checkpoint(tmp_path, parts):
    config, family, task, model = parts
    meta = make_meta(config, family, task_info(task))
    return write_checkpoint(
        tmp_path / "run" / FINAL_DIR, model=model, tokenizer=task.tokenizer, meta=meta
    )


def test_layout_and_record(checkpoint, parts):
    config = parts[0]
    assert sorted(p.name for p in checkpoint.iterdir()) == [
        CONFIG_FILE,
        WEIGHTS_FILE,
        "tokenizer.json",
    ]
    meta = json.loads((checkpoint / CONFIG_FILE).read_text())
    assert meta["format_version"] == FORMAT_VERSION
    assert meta["xlm_core_version"] == xlm_core.__version__
    assert meta["plugin"] == {
        "name": "arlm",
        "distribution": "xlm-arlm",
        "version": meta["plugin"]["version"],
        "api_version": get_registry().get("arlm").manifest.api_version,  # what arlm targets
    }
    assert meta["run_config"] == config.dump()
    assert meta["task_info"]["kind"] == "prompted"
    # No temporary siblings are left behind.
    assert [p.name for p in checkpoint.parent.iterdir()] == [FINAL_DIR]


def test_a_failed_rewrite_leaves_the_old_checkpoint_intact(checkpoint, parts):
    config, family, task, model = parts
    before = {p.name: p.read_bytes() for p in checkpoint.iterdir()}

    class BrokenTokenizer:
        def save(self, directory):
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_checkpoint(checkpoint, model=model, tokenizer=BrokenTokenizer(), meta={"x": 1})
    assert {p.name: p.read_bytes() for p in checkpoint.iterdir()} == before
    assert [p.name for p in checkpoint.parent.iterdir()] == [FINAL_DIR]


def test_round_trip_gives_the_same_model(checkpoint, parts):
    model = parts[3]
    pipeline = xlm_core.load(checkpoint.parent, device="cpu")  # a run directory means its final/
    assert pipeline.checkpoint == checkpoint
    ids = torch.randint(5, pipeline.vocab.size, (2, 7))
    model.eval()
    with torch.no_grad():
        assert torch.equal(pipeline.model(ids).logits, model(ids).logits)


def test_loading_never_unpickles(checkpoint, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("loading a checkpoint must not unpickle")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    pipeline = xlm_core.load(checkpoint)
    assert pipeline.nll_kind == "exact"


def _edit_meta(checkpoint, **changes):
    meta = json.loads((checkpoint / CONFIG_FILE).read_text())
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            meta[section][field] = value
        else:
            meta[section] = value
    (checkpoint / CONFIG_FILE).write_text(json.dumps(meta))


def test_missing_or_incompatible_plugin_says_what_to_install(checkpoint):
    _edit_meta(
        checkpoint,
        plugin={
            "name": "ghost",
            "distribution": "xlm-ghost",
            "version": "0.3.0",
            "api_version": "1.0",
        },
    )
    with pytest.raises(XLMUserError, match=r"needs plugin 'ghost'.*pip install xlm-ghost==0.3.0"):
        xlm_core.load(checkpoint)
    _edit_meta(
        checkpoint,
        plugin={"name": "arlm", "distribution": "xlm-arlm", "version": "9.0", "api_version": "2.1"},
    )
    with pytest.raises(XLMUserError, match=r"needs plugin API 2.x"):
        require_family(read_meta(checkpoint), checkpoint)


def test_corrupt_records_name_the_file(checkpoint):
    _edit_meta(checkpoint, format_version=FORMAT_VERSION + 1)
    with pytest.raises(XLMUserError, match="newer than this xlm-core"):
        xlm_core.load(checkpoint)
    (checkpoint / CONFIG_FILE).write_text('{"format_version": 1, "plug')
    with pytest.raises(XLMUserError, match=r"config.json is corrupt or truncated"):
        xlm_core.load(checkpoint)
    (checkpoint / CONFIG_FILE).write_text("{}")
    with pytest.raises(XLMUserError, match="not an xlm checkpoint record"):
        xlm_core.load(checkpoint)


def test_bad_weights_name_the_file(checkpoint):
    weights = checkpoint / WEIGHTS_FILE
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(XLMUserError, match=r"model.safetensors is corrupt or truncated"):
        xlm_core.load(checkpoint)
    weights.unlink()
    with pytest.raises(XLMUserError, match="has no model.safetensors"):
        xlm_core.load(checkpoint)


def test_run_config_is_validated_against_the_installed_family(checkpoint):
    meta = json.loads((checkpoint / CONFIG_FILE).read_text())
    meta["run_config"]["model"]["d_modle"] = 3
    (checkpoint / CONFIG_FILE).write_text(json.dumps(meta))
    with pytest.raises(
        XLMUserError,
        match=r"run_config: unknown key 'model.d_modle' \(did you mean 'model.d_model'",
    ):
        xlm_core.load(checkpoint)


def test_find_checkpoint(tmp_path, checkpoint):
    assert find_checkpoint(checkpoint.parent) == checkpoint
    with pytest.raises(XLMUserError, match="checkpoint not found"):
        find_checkpoint(tmp_path / "nowhere")
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / RUN_FILE).write_text("{}")
    with pytest.raises(XLMUserError, match="no final/ checkpoint yet"):
        find_checkpoint(unfinished)


def test_out_dir_rules(tmp_path, checkpoint):
    finished = checkpoint.parent
    with pytest.raises(XLMUserError, match="already holds a finished run; pass --overwrite"):
        check_out_dir(finished, overwrite=False)
    check_out_dir(finished, overwrite=True)  # allowed; nothing is deleted by the check itself
    assert (finished / FINAL_DIR / WEIGHTS_FILE).exists()
    check_out_dir(tmp_path / "new", overwrite=False)
    (tmp_path / "empty").mkdir()
    check_out_dir(tmp_path / "empty", overwrite=False)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(XLMUserError, match="not part of an xlm run"):
        check_out_dir(tmp_path / "busy", overwrite=False)
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / RUN_FILE).write_text("{}")
    with pytest.raises(XLMUserError, match="xlm train --resume"):
        check_out_dir(tmp_path / "half", overwrite=False)
