"""benchmarks/_results.py: a benchmark reuses a finished run only when it was trained with the
settings the benchmark would train it with now (a changed preset trains it anew)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from xlm_core.checkpoint import CONFIG_FILE, FINAL_DIR, make_meta, task_info, write_checkpoint
from xlm_core.config import resolve_run_config
from xlm_core.data.tasks import build_task
from xlm_core.plugins import get_registry

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
try:
    from _results import finished_run
finally:
    sys.path.remove(str(ROOT / "benchmarks"))

TINY = ["model.d_model=32", "model.n_layers=2", "model.n_heads=2"]


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    config = resolve_run_config("arlm", sets=TINY)
    family, task = get_registry().get("arlm"), build_task(config.task)
    torch.manual_seed(0)
    model = family.component("model")(config.model, task.tokenizer.vocab)
    meta = make_meta(config, family, task_info(task))
    write_checkpoint(tmp_path / "run" / FINAL_DIR, model=model, tokenizer=task.tokenizer, meta=meta)
    return tmp_path / "run"


def test_a_run_of_the_same_settings_is_reused(run_dir: Path) -> None:
    assert finished_run(run_dir, resolve_run_config("arlm", sets=TINY))


def test_a_run_of_other_settings_or_none_at_all_is_not(run_dir: Path, tmp_path: Path) -> None:
    # what a preset whose learning rate changed since the run resolves to
    assert not finished_run(run_dir, resolve_run_config("arlm", sets=[*TINY, "training.lr=1e-4"]))
    assert not finished_run(tmp_path / "elsewhere", resolve_run_config("arlm", sets=TINY))


def test_a_setting_added_since_with_its_default_still_matches(run_dir: Path) -> None:
    record_file = run_dir / FINAL_DIR / CONFIG_FILE
    record = json.loads(record_file.read_text())
    del record["run_config"]["training"]["compile"]  # a run recorded before the setting existed
    record_file.write_text(json.dumps(record))
    assert finished_run(run_dir, resolve_run_config("arlm", sets=TINY))
