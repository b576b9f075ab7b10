"""benchmarks/calm_speed.py at a toy size: fresh ARLM and CALM decode the whole budget, alternated,
and the JSON holds every pair's ratio and the median."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "calm_speed.py"
TOY = ["model.d_model=32", "model.n_layers=1", "model.n_heads=2"]  # both families know these keys


def test_a_toy_run_compares_fresh_models_over_alternated_pairs(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(
        "".join(f"the cat {i % 7} sat on the mat and the dog {i % 5} ran.\n" for i in range(400))
    )
    out = tmp_path / "speed.json"
    command = [
        sys.executable,
        str(SCRIPT),
        "--presets",
        "tiny",
        "--chunk-sizes",
        "2",
        "--pairs",
        "2",
    ]
    command += [
        "--corpus",
        str(corpus),
        "--out",
        str(out),
        "--set",
        f"task.cache_dir={tmp_path / 'cache'}",
    ]
    for item in TOY:
        command += ["--set", item]
    # CALM only: the ARLM's config has no such key and would refuse it
    command += ["--calm-set", "model.ae_d_model=24"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["settings"]["calm"] == ["model.ae_d_model=24"]
    (size,) = report["sizes"]
    (row,) = size["chunk_sizes"]
    assert size["preset"] == "tiny" and row["chunk_size"] == 2
    assert all(count > 0 for count in row["parameters"].values())
    assert [s["batch"] for s in row["speed"]] == [1, 16]
    for s in row["speed"]:
        assert len(s["ratios"]) == 2 and s["calm_over_arlm"] == statistics.median(s["ratios"])
        assert s["tokens_per_s"]["arlm"] > 0 and s["tokens_per_s"]["calm"] > 0
    assert "| tiny | 2 |" in done.stdout
