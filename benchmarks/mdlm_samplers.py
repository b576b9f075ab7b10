"""MDLM samplers on star-easy: sequence accuracy, forward passes and throughput of each decoding setting.

Decodes the same test examples with one trained MDLM under each setting:

- ancestral sampling with T = L steps (L = target length), one forward pass per step,
- the same sampler reusing p(x0) for rows whose window did not change (reuse_logits),
- confidence decoding, the most confident position per step (k = 1),
- threshold decoding with tau in {0.5, 0.7, 0.9} (every position above tau, at least one),

and reports sequence accuracy, token accuracy, mean forward passes per sample (nfe),
mean steps and samples/s, measured in one run on one device, plus each setting's
nfe and samples/s relative to uncached ancestral sampling. Goal: the best fast
setting matches the ancestral accuracy (within one binomial standard error) with
>= 3x fewer forward passes and >= 2x the samples/s.

The model is trained once with the star recipe (``xlm train --plugin mdlm --preset
star``) into ``--run-dir`` unless that directory already holds a finished run, or
``--checkpoint`` names one.

    python benchmarks/mdlm_samplers.py [--checkpoint DIR] [--limit N] [--device cpu|cuda] [--quick]

Writes benchmarks/results/mdlm_samplers.json and prints a markdown table.
``--quick`` trains a few steps of the tiny preset in a temporary directory and
writes its results there: a smoke run, not a measurement.
"""

from __future__ import annotations

import math
from typing import Any

import _star

RESULTS = _star.ROOT / "benchmarks" / "results" / "mdlm_samplers.json"
BASELINE = "ancestral T=L"
GOAL_NFE_RATIO, GOAL_SPEEDUP = 3.0, 2.0


def settings_grid() -> list[tuple[str, dict[str, Any]]]:
    """(label, predictor overrides) for every setting the benchmark compares."""
    grid: list[tuple[str, dict[str, Any]]] = [
        (BASELINE, {"sampler": "ancestral", "steps": None, "reuse_logits": False}),
        ("ancestral T=L + cache", {"sampler": "ancestral", "steps": None, "reuse_logits": True}),
        ("confidence k=1", {"sampler": "confidence", "k": 1}),
    ]
    grid += [
        (f"threshold τ={tau}", {"sampler": "threshold", "threshold": tau})
        for tau in (0.5, 0.7, 0.9)
    ]
    return [(label, {"block_size": None, "confidence": "top_prob", **s}) for label, s in grid]


def verdict(rows: list[dict[str, Any]], n: int) -> dict[str, Any]:
    """Ratios to the uncached ancestral sampler, and the best fast setting that matches its accuracy."""
    base = next(r for r in rows if r["label"] == BASELINE)
    tolerance = math.sqrt(max(base["seq_acc"] * (1 - base["seq_acc"]), 1e-12) / n)
    for r in rows:
        r["nfe_reduction"] = base["nfe"] / r["nfe"]
        r["speedup"] = r["samples_per_s"] / base["samples_per_s"]
        r["matches_accuracy"] = r["seq_acc"] >= base["seq_acc"] - tolerance
    fast = [r for r in rows if r["label"] != BASELINE and r["matches_accuracy"]]
    best = max(fast, key=lambda r: r["samples_per_s"], default=None)
    return {
        "baseline": BASELINE,
        "accuracy_tolerance": tolerance,
        "best_fast_setting": best["label"] if best else None,
        "goal": f">= {GOAL_NFE_RATIO:g}x fewer nfe and >= {GOAL_SPEEDUP:g}x samples/s at ancestral accuracy",
        "meets_goal": bool(
            best and best["nfe_reduction"] >= GOAL_NFE_RATIO and best["speedup"] >= GOAL_SPEEDUP
        ),
    }


def main() -> None:
    parser = _star.star_arguments("mdlm", __doc__.split("\n\n")[0], RESULTS)
    parser.add_argument(
        "--batch-size", type=int, help="decoding batch size (default: the run's eval.batch_size)"
    )
    parser.add_argument(
        "--temperature",
        type=float,
        help="sampling temperature of every setting (default: the run's, 0 in the star recipe)",
    )
    args = _star.parse_star_args(parser, "mdlm")
    checkpoint = args.checkpoint or _star.train_star("mdlm", args.run_dir, args.quick)

    pipeline, examples = _star.load_test(checkpoint, args)
    if args.batch_size:
        pipeline.run_config.eval.batch_size = args.batch_size
    common = {} if args.temperature is None else {"temperature": args.temperature}
    grid = [(label, {**overrides, **common}) for label, overrides in settings_grid()]
    rows = _star.measure_grid(pipeline, examples, grid, args.seed)
    summary = verdict(rows, len(examples))

    task = pipeline.run_config.task.name
    report = _star.write_report(
        "mdlm_samplers",
        checkpoint,
        args,
        pipeline,
        len(examples),
        rows,
        target_length=pipeline.shape.target_length,
        temperature=pipeline.settings(**common).temperature,
        **summary,
    )

    print(
        f"\nMDLM samplers on {task} ({len(examples)} test examples, L = {pipeline.shape.target_length}, "
        f"temperature {report['temperature']:g}, {pipeline.device.type})\n"
    )
    print("| setting | seq acc | token acc | nfe | steps | samples/s | nfe ÷ | speed × |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['label']} | {r['seq_acc']:.3f} | {r['token_acc']:.3f} | {r['nfe']:.2f} | {r['steps']:.2f} "
            f"| {r['samples_per_s']:.1f} | {r['nfe_reduction']:.2f} | {r['speedup']:.2f} |"
        )
    best = summary["best_fast_setting"] or "none"
    print(f"\nbest fast setting at ancestral accuracy: {best}; goal met: {summary['meets_goal']}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
