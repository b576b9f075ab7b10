"""bdlm_conversion.py's report: the plot against B and the markdown tables, from the report's
dict alone, so that a saved ``benchmarks/results/bdlm_conversion.json`` can be redrawn without
training or timing anything again:

    python benchmarks/_bdlm_conversion_report.py benchmarks/results/bdlm_conversion.json [--plot PNG]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from _plots import redraw, save_sweep


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["block_sizes"]
    blocks = [r["block_size"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(blocks, [r["bound_over_nll"] for r in rows], "o-", label="BDLM, converted")
    left.axhline(1.0, color="grey", ls="--", label="ARLM teacher (exact NLL)")
    left.set(xscale="log", xlabel="block size B", ylabel="NELBO / teacher NLL", title="likelihood")
    for i, batch in enumerate((1, 16)):
        right.plot(blocks, [r["speed"][i]["tokens_per_s"] for r in rows], "o-", label=f"BDLM, batch {batch}")
        right.axhline(report["teacher"]["speed"][i]["tokens_per_s"], ls="--", color=f"C{i}", label=f"ARLM, batch {batch}")
    right.set(xscale="log", yscale="log", xlabel="block size B", ylabel="tokens/s", title="decoding (KV cache, threshold 0.9)")
    save_sweep(fig, (left, right), blocks, path)


def print_tables(report: dict[str, Any]) -> None:
    t, c, s = report["teacher"], report["converted"], report["scratch"]
    print("\n| model | steps | per-token NLL | kind | ÷ teacher NLL |\n|---|---:|---:|---|---:|")
    print(f"| ARLM teacher | {report['steps']} | {t['nll']:.4f} | exact | 1.000 |")
    print(f"| BDLM B=4, converted | {report['steps'] // 5} | {c['nll']:.4f} | bound | {c['bound_over_nll']:.3f} |")
    print(f"| BDLM B=4, from scratch | {report['steps'] // 5} | {s['nll']:.4f} | bound | {s['bound_over_nll']:.3f} |")
    p = report["position_masking"]
    print(f"| BDLM B=4, converted, position masking | {report['steps'] // 5} | {p['nll']:.4f} | bound | {p['bound_over_nll']:.3f} |")
    print("\n| decoding | batch | tokens/s | mean length | nfe/token |\n|---|---:|---:|---:|---:|")
    for label, rows in (
        ("ARLM, KV cache", t["speed"]),
        ("BDLM B=4, cache + threshold", c["speed"]),
        ("BDLM B=4, position masking, cache + threshold", p["speed"]),
    ):
        for r in rows:
            print(f"| {label} | {r['batch']} | {r['tokens_per_s']:.1f} | {r['mean_length']:.1f} | {r['nfe_per_token']:.2f} |")
    tq = t["quality"]
    print("\n| samples (unconditional blocks) | gen-PPL (teacher) | entropy | mean length |\n|---|---:|---:|---:|")
    print(f"| test data | {tq['data_gen_ppl']:.1f} | {tq['data_entropy']:.2f} | |")
    for label, q in (("ARLM teacher", tq), ("BDLM B=4, converted", c["quality"]), ("BDLM B=4, position masking", p["quality"])):
        print(f"| {label} | {q['gen_ppl']:.1f} | {q['entropy']:.2f} | {q['mean_length']:.1f} |")
    print(
        "\n| BDLM B=4, converted, threshold | tokens/s ÷ ARLM, batch 1 | batch 16 | nfe/token | gen-PPL ÷ ARLM's | entropy ÷ ARLM's |"
        "\n|---:|---:|---:|---:|---:|---:|"
    )
    for r in report["thresholds"]:
        b1, b16 = r["tokens_per_s_over_teacher"]
        print(
            f"| {r['threshold']} | {b1:.2f} | {b16:.2f} | {r['speed'][1]['nfe_per_token']:.2f} | "
            f"{r['gen_ppl_over_teacher']:.2f} | {r['entropy_over_teacher']:.2f} |"
        )
    print(
        "\n| BDLM B=4, threshold 0.9 in reading order | tokens/s ÷ ARLM, batch 1 | batch 16 | nfe/token | gen-PPL ÷ ARLM's | entropy ÷ ARLM's |"
        "\n|---|---:|---:|---:|---:|---:|"
    )
    for r in report["reading_order"]:
        b1, b16 = r["tokens_per_s_over_teacher"]
        print(
            f"| {r['model']} | {b1:.2f} | {b16:.2f} | {r['speed'][1]['nfe_per_token']:.2f} | "
            f"{r['gen_ppl_over_teacher']:.2f} | {r['entropy_over_teacher']:.2f} |"
        )
    print("\n| B | bound ÷ NLL | tokens/s batch 1 | tokens/s batch 16 |\n|---:|---:|---:|---:|")
    for r in report["block_sizes"]:
        print(f"| {r['block_size']} | {r['bound_over_nll']:.3f} | {r['speed'][0]['tokens_per_s']:.1f} | {r['speed'][1]['tokens_per_s']:.1f} |")


if __name__ == "__main__":
    redraw(plot, print_tables)
