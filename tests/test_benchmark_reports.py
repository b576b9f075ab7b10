"""The ``_*_report.py`` scripts redraw a committed benchmark report: its plot and tables from the
JSON alone, nothing trained or timed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"


@pytest.mark.parametrize(
    ("script", "report", "row"),
    [
        ("_bdlm_conversion_report.py", "bdlm_conversion.json", "| BDLM B=4, converted |"),
        ("_calm_report.py", "calm.json", "| CALM K=4 |"),
    ],
)
def test_a_saved_report_is_redrawn(tmp_path, script, report, row):
    plot = tmp_path / "plot.png"
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), str(BENCHMARKS / "results" / report), "--plot", str(plot)],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert plot.stat().st_size > 0 and row in done.stdout
