"""benchmarks/_families_report.py on synthetic per-seed results: mean ± std over seeds, the two
markdown tables, validation curves read from a metrics.csv, and the plots. Nothing is trained."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
try:
    import _families_report as report
finally:
    sys.path.remove(str(ROOT / "benchmarks"))


def star_run(family: str, seed: int, acc: float, nfe: float) -> dict:
    rows = [
        {
            "label": "greedy",
            "seq_acc": acc,
            "token_acc": acc + 0.1,
            "nfe": nfe,
            "samples_per_s": 100.0,
        },
        {
            "label": "fast",
            "seq_acc": acc / 2,
            "token_acc": acc,
            "nfe": nfe / 4,
            "samples_per_s": 400.0,
        },
    ]
    return {"family": family, "seed": seed, "train_seconds": 10.0 + seed, "rows": rows}


def text_run(family: str, seed: int, nll: float | None, kind: str) -> dict:
    return {
        "family": family, "seed": seed, "train_seconds": 20.0, "nll": nll, "nll_kind": kind,
        "brier_1": 0.1 * (seed + 1), "brier_lm": 0.0, "gen_ppl": 100.0 + seed, "entropy": 3.0,
        "samples_per_s": 5.0, "data_gen_ppl": 80.0, "data_entropy": 3.5,
    }  # fmt: skip


def test_mean_std_over_seeds_skips_missing_values():
    assert report.mean_std([1.0, 2.0, 3.0]) == {"mean": 2.0, "std": 1.0, "n": 3}
    assert report.mean_std([None, 4.0, float("nan")]) == {"mean": 4.0, "std": None, "n": 1}
    assert report.mean_std([None, None]) is None


def test_star_rows_group_family_and_sampler_across_seeds():
    runs = [star_run("mdlm", s, acc, 8.0) for s, acc in enumerate((0.2, 0.4, 0.9))]
    runs.append(star_run("arlm", 0, 1.0, 8.0))
    rows = {(r["family"], r["sampler"]): r for r in report.aggregate_star(runs)}
    assert set(rows) == {(f, s) for f in ("mdlm", "arlm") for s in ("greedy", "fast")}
    greedy = rows["mdlm", "greedy"]
    assert greedy["seeds"] == [0, 1, 2]
    assert greedy["seq_acc"]["mean"] == pytest.approx(0.5)
    assert greedy["seq_acc"]["std"] == pytest.approx(statistics.stdev([0.2, 0.4, 0.9]))
    assert rows["mdlm", "fast"]["nfe"] == {"mean": 2.0, "std": 0.0, "n": 3}
    assert rows["arlm", "greedy"]["seq_acc"]["std"] is None  # one seed: no spread to report

    table = report.star_table(report.aggregate_star(runs)).splitlines()
    assert table[0].startswith("| family | sampler | seq acc | token acc | NFE | samples/s |")
    assert (
        "| mdlm | greedy | 0.500 ± 0.361 | 0.600 ± 0.361 | 8.00 ± 0.00 | 100 ± 0 | 11 ± 1 |"
        in table
    )
    assert "| arlm | greedy | 1.000 | 1.100 | 8.00 | 100 | 10 |" in table


def test_text_rows_keep_the_nll_kind_and_end_with_the_data():
    runs = [text_run("arlm", s, 5.0 + s, "exact") for s in range(3)]
    runs += [text_run("mlm", s, None, "none") for s in range(3)]
    rows = {r["family"]: r for r in report.aggregate_text(runs)}
    assert rows["arlm"]["nll"]["mean"] == pytest.approx(6.0)
    assert rows["mlm"]["nll"] is None and rows["mlm"]["nll_kind"] == "none"

    table = report.text_table(report.aggregate_text(runs)).splitlines()
    assert "| arlm | 6.000 ± 1.000 (exact) | 0.200 ± 0.100 | 0.00 ± 0.00 |" in table[2]
    assert table[3].startswith("| mlm | – (none) |")
    assert table[-1] == "| data (test blocks) | | | | 80.0 ± 0.0 | 3.500 ± 0.000 | | |"


def test_val_curve_pairs_validation_rows_with_the_clock(tmp_path):
    logs = tmp_path / "logs"
    for version, loss in (
        (0, 9.0),
        (1, 3.0),
    ):  # a resumed run logs to a new version: the newest wins
        folder = logs / f"version_{version}"
        folder.mkdir(parents=True)
        (folder / "metrics.csv").write_text(
            "epoch,step,train/loss,val/loss,val/nll\n"
            f"0,9,{loss + 1},,\n"
            f"0,9,,{loss},{loss}\n"
            f"0,19,,{loss - 1},\n"
        )
    clock = [{"step": 10, "seconds": 1.5}, {"step": 20, "seconds": 3.0}]
    points = report.read_val_curve(tmp_path, clock)
    assert points == [
        {"step": 10, "seconds": 1.5, "val/loss": 3.0, "val/nll": 3.0},
        {"step": 20, "seconds": 3.0, "val/loss": 2.0},
    ]
    assert report.read_val_curve(tmp_path / "missing", clock) == []


def test_plots_are_written(tmp_path):
    pytest.importorskip("matplotlib")
    star = report.aggregate_star([star_run("mdlm", s, 0.5, 8.0) for s in range(2)])
    report.plot_quality_nfe(star, tmp_path / "q.png", "t")
    points = [{"step": 1, "seconds": 1.0, "val/seq_acc": 0.1, "val/nll": 3.0}]
    curves = {
        "star-easy": [{"family": "mdlm", "seed": 0, "points": points}],
        "text": [{"family": "mlm", "seed": 0, "points": [{"step": 1, "seconds": 1.0}]}],
    }
    report.plot_val_curves(curves, tmp_path / "v.png", "t")
    assert (tmp_path / "q.png").stat().st_size > 0 and (tmp_path / "v.png").stat().st_size > 0
