"""The cross-family table's arithmetic and drawing: per-seed results in, mean ± std tables and plots out.

Kept apart from ``families.py`` (which trains and measures) so the aggregation can be tested on
synthetic results in milliseconds, and so the table can be redrawn from a saved JSON.
"""

from __future__ import annotations

import csv
import math
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

#: Per-sampler star-easy figures, in table order.
STAR_FIGURES = ("seq_acc", "token_acc", "nfe", "samples_per_s")
#: Per-family text figures, in table order (``nll_kind`` is carried beside ``nll``).
TEXT_FIGURES = ("nll", "brier_1", "brier_lm", "gen_ppl", "entropy", "samples_per_s")
#: The data's own figures under the same judge: the yardstick for gen-PPL and entropy.
DATA_FIGURES = ("data_gen_ppl", "data_entropy")


def mean_std(values: Iterable[float | None]) -> dict[str, Any] | None:
    """Mean and sample standard deviation over the seeds that have a value; None when none has.

    ``std`` is None for a single value: one seed says nothing about the spread.
    """
    present = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not present:
        return None
    std = statistics.stdev(present) if len(present) > 1 else None
    return {"mean": statistics.fmean(present), "std": std, "n": len(present)}


def aggregate_star(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (family, sampler) over the seeds: ``runs`` hold ``family``, ``seed``,
    ``train_seconds`` and ``rows`` (one per sampler ``label``, the figures of ``STAR_FIGURES``)."""
    groups: dict[tuple[str, str], list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for run in runs:
        for row in run["rows"]:
            groups.setdefault((run["family"], row["label"]), []).append((run, row))
    table = []
    for (family, label), members in groups.items():
        entry: dict[str, Any] = {"family": family, "sampler": label}
        entry["seeds"] = sorted(run["seed"] for run, _ in members)
        entry["train_seconds"] = mean_std(run["train_seconds"] for run, _ in members)
        for key in STAR_FIGURES:
            entry[key] = mean_std(row.get(key) for _, row in members)
        table.append(entry)
    return table


def aggregate_text(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per family over the seeds; ``runs`` hold ``family``, ``seed``, ``train_seconds``
    and the figures of ``TEXT_FIGURES`` and ``DATA_FIGURES`` (None where a family has none)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault(run["family"], []).append(run)
    table = []
    for family, members in groups.items():
        kinds = sorted({run.get("nll_kind") or "none" for run in members})
        entry: dict[str, Any] = {"family": family, "seeds": sorted(r["seed"] for r in members)}
        entry["nll_kind"] = kinds[0] if len(kinds) == 1 else "/".join(kinds)
        entry["train_seconds"] = mean_std(r["train_seconds"] for r in members)
        for key in (*TEXT_FIGURES, *DATA_FIGURES):
            entry[key] = mean_std(r.get(key) for r in members)
        table.append(entry)
    return table


def cell(stat: dict[str, Any] | None, digits: int = 3) -> str:
    """``0.812 ± 0.031``; just the mean for one seed; ``–`` when no seed has the figure."""
    if stat is None:
        return "–"
    text = f"{stat['mean']:,.{digits}f}"
    return text if stat["std"] is None else f"{text} ± {stat['std']:,.{digits}f}"


def star_table(rows: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| family | sampler | seq acc | token acc | NFE | samples/s | train s |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        cells = [
            cell(r["seq_acc"]), cell(r["token_acc"]), cell(r["nfe"], 2),
            cell(r["samples_per_s"], 0), cell(r["train_seconds"], 0),
        ]  # fmt: skip
        lines.append(f"| {r['family']} | {r['sampler']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def text_table(rows: Sequence[dict[str, Any]]) -> str:
    """The per-family text figures, then a ``data`` row: the judge's perplexity and the entropy
    of the test blocks themselves (mean over the seeds' judges), which samples should approach."""
    lines = [
        "| family | NLL (kind) | Brier-1 | BrierLM | gen-PPL | entropy | samples/s | train s |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        nll = "–" if r["nll"] is None else cell(r["nll"])
        cells = [
            f"{nll} ({r['nll_kind']})", cell(r["brier_1"]), cell(r["brier_lm"], 2), cell(r["gen_ppl"], 1),
            cell(r["entropy"]), cell(r["samples_per_s"], 1), cell(r["train_seconds"], 0),
        ]  # fmt: skip
        lines.append(f"| {r['family']} | " + " | ".join(cells) + " |")
    judged = [r for r in rows if r["data_gen_ppl"] is not None]
    if judged:
        data = judged[0]  # every family is judged by the same ARLMs on the same test blocks
        lines.append(
            f"| data (test blocks) | | | | {cell(data['data_gen_ppl'], 1)} | "
            f"{cell(data['data_entropy'])} | | |"
        )
    return "\n".join(lines)


def read_val_curve(run_dir: Path, clock: Sequence[dict[str, float]]) -> list[dict[str, Any]]:
    """The validation rows of a run's ``logs/version_N/metrics.csv`` (the newest N), each with the
    wall time at which it was measured.

    Lightning's CSV has no time column, so ``clock`` (``step``, ``seconds``) is recorded by the
    benchmark at the end of each validation; the i-th validation row is paired with the i-th
    reading (Lightning may log a validation at ``step`` or ``step - 1``, so steps are not matched).
    """
    versions = sorted(
        (run_dir / "logs").glob("version_*/metrics.csv"),
        key=lambda p: int(p.parent.name.split("_")[1]),
    )
    if not versions:
        return []
    with versions[-1].open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("val/loss")]
    points = []
    for row, tick in zip(rows, clock, strict=False):
        values = {k: float(v) for k, v in row.items() if k.startswith("val/") and v}
        points.append({"step": tick["step"], "seconds": tick["seconds"], **values})
    return points


def plot_quality_nfe(star_rows: Sequence[dict[str, Any]], path: Path, title: str) -> None:
    """Sequence and token accuracy against forward passes: one colour per family, one marker
    per sampler, error bars one standard deviation over seeds."""
    plt = _pyplot()
    families = sorted({r["family"] for r in star_rows})
    samplers = sorted({r["sampler"] for r in star_rows})
    markers = dict(zip(samplers, "os^Dvp*hX<>", strict=False))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, label in zip(
        axes, ("seq_acc", "token_acc"), ("sequence accuracy", "token accuracy"), strict=True
    ):
        for i, family in enumerate(families):
            for r in (r for r in star_rows if r["family"] == family and r[key] and r["nfe"]):
                ax.errorbar(
                    r["nfe"]["mean"], r[key]["mean"],
                    xerr=r["nfe"]["std"] or 0, yerr=r[key]["std"] or 0,
                    fmt=markers.get(r["sampler"], "o"), color=f"C{i}", capsize=3,
                    label=f"{family} {r['sampler']}",
                )  # fmt: skip
        ax.set_xlabel("forward passes per sample (NFE)")
        ax.set_ylabel(label)
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def plot_val_curves(curves: dict[str, list[dict[str, Any]]], path: Path, title: str) -> None:
    """``curves[task]`` holds one entry per run (``family``, ``seed``, ``points``): star-easy's
    validation sequence and token accuracy (a short budget moves only the latter) and the text NLL
    (families with one) against wall time."""
    plt = _pyplot()
    panels = [
        ("star-easy", "val/seq_acc", "star-easy: validation sequence accuracy"),
        ("star-easy", "val/token_acc", "star-easy: validation token accuracy"),
        ("text", "val/nll", "text: validation NLL per token (exact or bound)"),
    ]
    panels = [p for p in panels if curves.get(p[0])]
    if not panels:
        return
    families = sorted({run["family"] for runs in curves.values() for run in runs})
    fig, axes = plt.subplots(1, len(panels), figsize=(4.8 * len(panels), 4.2), squeeze=False)
    for ax, (task, key, label) in zip(axes[0], panels, strict=True):
        labelled = set()
        for run in curves[task]:
            points = [p for p in run["points"] if key in p]
            if not points:
                continue  # nll_kind none: no likelihood to draw
            colour = f"C{families.index(run['family'])}"
            name = None if run["family"] in labelled else run["family"]
            labelled.add(run["family"])
            ax.plot([p["seconds"] for p in points], [p[key] for p in points], "-o",
                    color=colour, alpha=0.75, markersize=3, label=name)  # fmt: skip
        ax.set_xlabel("training wall time (s)")
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
        if labelled:
            ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on a benchmark machine
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
