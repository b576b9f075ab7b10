"""benchmarks/calm.py as a toy smoke run: it trains ARLM and CALM for a few seconds each on a
generated corpus, scores BrierLM, times both in alternated pairs and writes the report, which
``_calm_report.py`` redraws."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "calm.py"


def test_a_toy_run_reports_brier_and_paired_speed_for_each_k(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(
        "".join(f"the cat {i % 7} sat on the mat and the dog {i % 5} ran.\n" for i in range(400))
    )
    command = [
        sys.executable,
        str(SCRIPT),
        "--quick",
        "--corpus",
        str(corpus),
        "--work",
        str(tmp_path / "work"),
    ]
    command += ["--minutes", "0.1", "--ae-minutes", "0.05", "--chunk-sizes", "2,4", "--pairs", "2", "--blocks", "8"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "work" / "calm.json").read_text())
    assert [r["chunk_size"] for r in report["chunk_sizes"]] == [2, 4]
    assert report["compared"]["chunk_size"] == 4 and "reconstruction" in report["compared"]
    for row in report["chunk_sizes"]:
        assert row["autoencoder_steps"] > 0 and row["generator_steps"] > 0
        assert row["brier_prefixes"] > 0 and "brier_1_stderr" in row
        for s, ratio in zip(row["speed"], row["tokens_per_s_over_arlm"], strict=True):
            assert len(s["ratios"]) == 2 and ratio == statistics.median(s["ratios"])
    assert (tmp_path / "work" / "calm_chunk_sweep.png").is_file()
    assert "| CALM K=4 |" in done.stdout
    # the tables and the plot again from the saved JSON alone
    redrawn = tmp_path / "redrawn.png"
    again = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "_calm_report.py"), str(tmp_path / "work" / "calm.json"), "--plot", str(redrawn)],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    assert redrawn.is_file() and "| CALM K=4 |" in again.stdout


def test_chunk_sizes_must_include_the_compared_k(tmp_path):
    command = [
        sys.executable,
        str(SCRIPT),
        "--quick",
        "--work",
        str(tmp_path),
        "--chunk-sizes",
        "2",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "--chunk-sizes" in done.stderr
