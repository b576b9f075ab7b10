"""benchmarks/step_profile.py and text_corpus.py: a quick run profiles a step before and after, and
writes its JSON where it is told."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "step_profile.py"


def test_a_quick_run_profiles_both_steps_and_writes_json_where_told(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("unused here: only the text step reads it\n")
    out = tmp_path / "profile.json"
    command = [sys.executable, str(SCRIPT), "--quick", "--pairs", "1", "--scenarios", "tiny-arlm"]
    command += ["--compile", "", "--parts", "decode", "--corpus", str(corpus), "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    step = result["steps"]["tiny-arlm"]["32"]
    assert set(step["ms_per_step"]) == {"before", "after"} and len(step["ratios"]) == 1
    assert step["loss_relative_difference"] < 1e-5  # the same loss, computed differently
    assert {"before", "after"} <= set(step["profile"])
    assert step["profile"]["after"]["kinds_ms"]["matmul"] > 0
    assert result["decode"]["cache_copies"]["grouped"] <= result["decode"]["cache_copies"]["every_row"]
    assert "load_average_before" in result and "collation" not in result


@pytest.mark.skipif(
    not Path("/usr/share/common-licenses").is_dir(), reason="not a Debian-like system"
)
def test_the_corpus_is_debian_text_one_document_a_line(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from text_corpus import prepare_corpus
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    path = prepare_corpus(tmp_path / "corpus.txt", max_mb=0.05)
    lines = path.read_text().splitlines()
    assert lines and all(line.strip() for line in lines)
    assert prepare_corpus(path) == path  # kept once made
