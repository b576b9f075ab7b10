"""benchmarks/bdlm_parallelism.py at a toy size: an ARLM teacher is converted to a B = 4 BDLM,
trained a few steps, and the report holds the per-position confidence, the threshold sweep and
the paired speed ratio; a second teacher's entry joins the first's in the same JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from xlm_core.checkpoint import FINAL_DIR, make_meta, task_info, write_checkpoint
from xlm_core.config import resolve_run_config
from xlm_core.data.tasks import build_task
from xlm_core.plugins import get_registry

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bdlm_parallelism.py"


def teacher(tmp_path: Path, plugin: str = "arlm") -> Path:
    """An untrained toy checkpoint of ``plugin`` on a generated text corpus (the script trains the BDLM)."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(
        "".join(f"the cat {i % 7} sat on the mat and the dog {i % 5} ran.\n" for i in range(300))
    )
    sets = [
        "task.name=text",
        f"task.path={corpus}",
        "task.vocab_size=300",
        "task.block_size=16",
        f"task.cache_dir={tmp_path / 'cache'}",
        "model.d_model=32",
        "model.n_layers=1",
        "model.n_heads=2",
        "training.batch_size=8",
    ]
    config = resolve_run_config(plugin, sets=sets)
    family, task = get_registry().get(plugin), build_task(config.task)
    torch.manual_seed(0)
    model = family.component("model")(config.model, task.tokenizer.vocab)
    final = tmp_path / plugin / FINAL_DIR
    write_checkpoint(
        final,
        model=model,
        tokenizer=task.tokenizer,
        meta=make_meta(config, family, task_info(task)),
    )
    return final


def run(tmp_path: Path, checkpoint: Path, label: str) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        str(SCRIPT),
        "--teacher",
        str(checkpoint),
        "--label",
        label,
        "--steps",
        "2",
    ]
    command += [
        "--work",
        str(tmp_path / "work"),
        "--out",
        str(tmp_path / "out.json"),
        "--blocks",
        "8",
    ]
    command += ["--judged", "4", "--rows", "2", "--pairs", "1", "--speed-rows", "2", "4"]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def test_a_toy_teacher_is_converted_and_measured(tmp_path):
    checkpoint = teacher(tmp_path)
    done = run(tmp_path, checkpoint, "toy")
    assert done.returncode == 0, done.stderr[-3000:]
    entry = json.loads((tmp_path / "out.json").read_text())["teachers"]["toy"]
    assert entry["steps"] == 2 and (tmp_path / "work" / "toy-b4-2" / FINAL_DIR).is_dir()
    confidence = entry["confidence"]
    assert confidence["blocks"] == 8 * 4  # 16 target tokens per example: four blocks of 4
    for key in ("mean_top_probability", "top1_accuracy", "share_above_0.9", "share_above_0.5"):
        assert len(confidence[key]) == 4 and all(0 <= x <= 1 for x in confidence[key])
    assert [(r["order"], r["threshold"]) for r in entry["thresholds"]][:2] == [
        ("confidence", 0.9),
        ("confidence", 0.7),
    ]
    assert len(entry["thresholds"]) == 10
    # a pass fills at least one position; a length budget of 16 bounds tokens per pass by B = 4
    assert all(1 <= r["tokens_per_pass"] <= 4 for r in entry["thresholds"])
    assert [s["batch"] for s in entry["speed"]] == [1, 16] and all(
        s["ratio"] > 0 for s in entry["speed"]
    )
    assert "| 4 |" in done.stdout and "| left_to_right | 0.1 |" in done.stdout

    # a second teacher's entry is added beside the first
    again = run(tmp_path, checkpoint, "again")
    assert again.returncode == 0, again.stderr[-3000:]
    assert set(json.loads((tmp_path / "out.json").read_text())["teachers"]) == {"toy", "again"}


def test_a_teacher_of_another_family_is_refused(tmp_path):
    done = run(tmp_path, teacher(tmp_path, "mdlm"), "mdlm")
    assert done.returncode != 0 and "is a mdlm checkpoint, not an ARLM" in done.stderr
    assert not (tmp_path / "out.json").exists() and not (tmp_path / "work").exists()
