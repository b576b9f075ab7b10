"""benchmarks/star_probe.py: per-position accuracy of a window denoiser on hidden star-easy positions."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from xlm_core.testing import TINY_BACKBONE

ROOT = Path(__file__).resolve().parents[1]
PROBE = ROOT / "benchmarks" / "star_probe.py"
# the conformance kit's tiny backbone, one step, and the smallest evaluation
TINY = [f"model.{key}={value}" for key, value in TINY_BACKBONE.items()]
TINY += ["training.batch_size=8", "eval.val_predict_limit=2", "eval.limit=2"]


def train(plugin: str, out: Path, task: str = "star-easy") -> Path:
    from xlm_core.cli.main import run

    args = ["train", "--plugin", plugin, "--task", task, "--max-steps", "1", "--out", str(out)]
    args += [a for item in TINY for a in ("--set", item)]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        with contextlib.suppress(SystemExit):
            run(args)
    return out / "final"


def probe(checkpoint: Path, out: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(PROBE), "--checkpoint", str(checkpoint), "--limit", "16"]
    return subprocess.run(command + ["--out", str(out)], capture_output=True, text=True)


@pytest.mark.parametrize("plugin", ["mdlm", "mlm"])
def test_probe_scores_each_hidden_position(plugin, tmp_path):
    checkpoint = train(plugin, tmp_path / "run")
    results = tmp_path / "probe.json"
    done = probe(checkpoint, results)
    assert done.returncode == 0, done.stderr

    runs = json.loads(results.read_text())["runs"]
    assert [r["checkpoint"] for r in runs] == [str(checkpoint)]
    accuracy = runs[0]["accuracy"]
    assert [len(accuracy[f"one hidden: {c}"]) for c in range(8)] == [1] * 8
    assert len(accuracy["pair hidden: 3,4 (n2)"]) == 2
    assert len(accuracy["all hidden"]) == 9
    assert all(0.0 <= a <= 1.0 for values in accuracy.values() for a in values)

    # probing the same checkpoint again replaces its entry instead of adding one
    assert probe(checkpoint, results).returncode == 0
    assert len(json.loads(results.read_text())["runs"]) == 1


def test_probe_refuses_other_families_in_one_line(tmp_path):
    checkpoint = train("ilm", tmp_path / "run")
    done = probe(checkpoint, tmp_path / "probe.json")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: {checkpoint}: the probe reads mdlm and mlm windows, not ilm"
    ]
    assert not (tmp_path / "probe.json").exists()
