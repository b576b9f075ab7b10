"""calm.py's report: the plot against K and the markdown tables, from the report's dict alone.

Kept apart from ``calm.py`` (which trains and measures) so that a saved
``benchmarks/results/calm*.json`` can be redrawn without training or timing anything again:

    python benchmarks/_calm_report.py benchmarks/results/calm.json [--plot PNG]
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from _plots import redraw, save_sweep


def arlm_speed(report: dict[str, Any], i: int) -> float:
    """The ARLM's tokens/s at the ``i``-th batch size: the median over its measurements beside
    every K."""
    return statistics.median(r["speed"][i]["tokens_per_s"]["arlm"] for r in report["chunk_sizes"])


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["chunk_sizes"]
    ks = [r["chunk_size"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    # BrierLM (on 0..100) / 100 beside Brier-1: where a small model's BrierLM is 0, Brier-1 still
    # tells the models apart
    for i, (key, scale, label) in enumerate(
        (("brier_lm", 100, "BrierLM / 100"), ("brier_1", 1, "Brier-1"))
    ):
        left.plot(
            ks, [(r[key] or 0.0) / scale for r in rows], "o-", color=f"C{i}", label=f"CALM {label}"
        )
        left.axhline(
            (report["arlm"][key] or 0.0) / scale, color=f"C{i}", ls="--", label=f"ARLM {label}"
        )
    left.set(
        xscale="log",
        xlabel="chunk size K",
        ylabel="score",
        title=f"Brier-1 and BrierLM ({report['minutes']:g} min of training each)",
    )
    # the ratios, not the two speeds: the host's speed drifts between K, and only the ARLM
    # measured beside a CALM (alternated pairs) is its yardstick
    for i, batch in enumerate((1, 16)):
        right.plot(ks, [r["tokens_per_s_over_arlm"][i] for r in rows], "o-", label=f"batch {batch}")
    right.axhline(1.0, color="grey", ls="--", label="ARLM (1×)")
    right.set(
        xscale="log",
        ylim=(0, None),
        xlabel="chunk size K",
        ylabel="CALM tokens/s ÷ ARLM's",
        title="decoding speed ÷ ARLM (median of pairs)",
    )
    save_sweep(fig, (left, right), ks, path)


def print_tables(report: dict[str, Any]) -> None:
    a, c = report["arlm"], report["compared"]
    alone = report["autoencoder_alone"]
    for name, rec in (
        (f"stage 1 above ({c['autoencoder_steps']} steps)", c["reconstruction"]),
        (f"trained alone ({alone['minutes']:g} min, {alone['steps']} steps)", alone),
    ):
        print(
            f"\nautoencoder K={c['chunk_size']}, {name}, held-out tokens: {rec['recon_acc_sampled']:.4%} "
            f"(posterior sample), {rec['recon_acc_mean']:.4%} (posterior mean), over {rec['tokens']} tokens"
        )
    print(
        "\n| model | steps | Brier-1 | Brier-2 | Brier-3 | Brier-4 | BrierLM | ÷ ARLM "
        "| tokens/s batch 1 | tokens/s batch 16 |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    print(
        f"| ARLM | {a['steps']} | {_briers(a)} | 1.00 | {arlm_speed(report, 0):.1f} | {arlm_speed(report, 1):.1f} |"
    )
    for r in report["chunk_sizes"]:
        steps = f"{r['autoencoder_steps']} + {r['generator_steps']}"
        speeds = " | ".join(f"{s['tokens_per_s']['calm']:.1f}" for s in r["speed"])
        print(
            f"| CALM K={r['chunk_size']} | {steps} | {_briers(r)} | {_fmt(r['brier_lm_over_arlm'], 2)} | {speeds} |"
        )
    print("\n| CALM / ARLM tokens/s (median of pairs) | batch 1 | batch 16 |\n|---|---:|---:|")
    for r in report["chunk_sizes"]:
        b1, b16 = r["tokens_per_s_over_arlm"]
        print(f"| K={r['chunk_size']} | {b1:.2f} | {b16:.2f} |")


def _briers(row: dict[str, Any]) -> str:
    return (
        " | ".join(_fmt(row[key], 4) for key in ("brier_1", "brier_2", "brier_3", "brier_4"))
        + f" | {_fmt(row['brier_lm'])}"
    )


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


if __name__ == "__main__":
    redraw(plot, print_tables)
