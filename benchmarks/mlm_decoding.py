"""MLM decoding on star-easy: sequence accuracy against forward passes, for every sampler.

Decodes the same test examples with one trained MLM under each setting, greedy:

- mask-predict with T in {1, 2, 4, 8, L} iterations (L = window length = target length + 1),
- confidence unmasking, one position per step (k = 1),
- threshold parallel decoding with tau in {0.5, 0.7, 0.9},

and reports sequence accuracy, token accuracy, mean forward passes per sample (nfe),
mean steps and samples/s, all measured in one run on one device. The model is
trained once with the star recipe (``xlm train --plugin mlm --preset star``) into
``--run-dir`` unless that directory already holds a finished run, or ``--checkpoint``
names one.

    python benchmarks/mlm_decoding.py [--checkpoint DIR] [--limit N] [--device cpu|cuda] [--quick]

Writes benchmarks/results/mlm_decoding.json and docs/images/mlm_accuracy_vs_nfe.png and
prints a markdown table. ``--quick`` trains a few steps of the tiny preset in a
temporary directory and writes its results there: a smoke run, not a measurement.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import _star

RESULTS = _star.ROOT / "benchmarks" / "results" / "mlm_decoding.json"
PLOT = _star.ROOT / "docs" / "images" / "mlm_accuracy_vs_nfe.png"
SAMPLER_LABELS = {
    "mask_predict": "mask-predict (T)",
    "confidence": "confidence k=1",
    "threshold": "threshold (τ)",
}


def settings_grid(window: int) -> list[tuple[str, dict[str, Any]]]:
    """(label, predictor overrides) for every setting the benchmark compares."""
    grid = [
        (f"mask-predict T={t}", {"sampler": "mask_predict", "steps": t})
        for t in sorted({1, 2, 4, 8, window})
    ]
    grid.append(("confidence k=1", {"sampler": "confidence", "k": 1}))
    grid += [
        (f"threshold τ={tau}", {"sampler": "threshold", "threshold": tau})
        for tau in (0.5, 0.7, 0.9)
    ]
    return [(label, {"temperature": 0.0, "confidence": "top_prob", **s}) for label, s in grid]


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for sampler, label in SAMPLER_LABELS.items():
        points = sorted(
            (r["nfe"], r["seq_acc"], r["label"]) for r in rows if r["sampler"] == sampler
        )
        if not points:
            continue
        xs, ys, names = zip(*points, strict=True)
        ax.plot(xs, ys, marker="o", label=label)
        for x, y, name in points:
            ax.annotate(
                name.split(" ")[-1], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8
            )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("forward passes per sample (nfe)")
    ax.set_ylabel("sequence accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = _star.star_arguments("mlm", __doc__.split("\n\n")[0], RESULTS)
    parser.add_argument("--plot", type=Path, default=PLOT)
    args = _star.parse_star_args(parser, "mlm")
    if args.scratch is not None:
        args.plot = args.scratch / args.plot.name
    checkpoint = args.checkpoint or _star.train_star("mlm", args.run_dir, args.quick)

    pipeline, examples = _star.load_test(checkpoint, args)
    window = pipeline.shape.target_length + 1
    rows = _star.measure_grid(pipeline, examples, settings_grid(window), args.seed)
    for row in rows:
        row["sampler"] = row["settings"]["sampler"]

    task = pipeline.run_config.task.name
    _star.write_report(
        "mlm_decoding", checkpoint, args, pipeline, len(examples), rows, window=window
    )
    plot(
        rows,
        args.plot,
        f"MLM on {task}: {len(examples)} test examples, greedy, {pipeline.device.type}",
    )

    print(
        f"\nMLM decoding on {task} ({len(examples)} test examples, window {window}, {pipeline.device.type})\n"
    )
    print("| setting | seq acc | token acc | nfe | steps | samples/s |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['label']} | {r['seq_acc']:.3f} | {r['token_acc']:.3f} | {r['nfe']:.2f} "
            f"| {r['steps']:.2f} | {r['samples_per_s']:.1f} |"
        )
    print(f"\nwrote {args.out} and {args.plot}")


if __name__ == "__main__":
    main()
