"""ILM on star-easy: single vs parallel insertion, accuracy against forward passes and throughput.

Decodes the same test examples with one trained ILM under each setting, greedy:

- one insertion per step (``parallel_k = 1``), the reference;
- parallel insertion into up to k in {2, 4} gaps per step, each extra insertion
  admitted when its joint probability p(gap, token) reaches tau in {0.1, 0.2, 0.3, 0.4};

and reports sequence accuracy, token accuracy, mean forward passes per sample (nfe),
mean generated length against the references' mean length (ILM can under-generate),
and samples/s, with nfe and samples/s also as ratios to single insertion, all
measured in one run on one device. The model is trained once with the star recipe
(``xlm train --plugin ilm --preset star``) into ``--run-dir`` unless that directory
already holds a finished run, or ``--checkpoint`` names one.

    python benchmarks/ilm_insertion.py [--checkpoint DIR] [--limit N] [--device cpu|cuda] [--quick]

Writes benchmarks/results/ilm_insertion.json and prints a markdown table.
``--quick`` trains a few steps of the tiny preset in a temporary directory and
writes its results there: a smoke run, not a measurement.
"""

from __future__ import annotations

from typing import Any

import _star

RESULTS = _star.ROOT / "benchmarks" / "results" / "ilm_insertion.json"


def settings_grid() -> list[tuple[str, dict[str, Any]]]:
    """(label, predictor overrides) for every setting the benchmark compares; the first is the reference."""
    grid = [("single (k=1)", {"parallel_k": 1})]
    for k in (2, 4):
        for tau in (0.1, 0.2, 0.3, 0.4):
            grid.append((f"parallel k={k} τ={tau}", {"parallel_k": k, "parallel_threshold": tau}))
    return [(label, {"temperature": 0.0, "sampler": "joint", **s}) for label, s in grid]


def main() -> None:
    parser = _star.star_arguments("ilm", __doc__.split("\n\n")[0], RESULTS)
    args = _star.parse_star_args(parser, "ilm")
    checkpoint = args.checkpoint or _star.train_star("ilm", args.run_dir, args.quick)

    pipeline, examples = _star.load_test(checkpoint, args)
    rows = _star.measure_grid(pipeline, examples, settings_grid(), args.seed)
    reference = rows[0]
    for row in rows:
        row["nfe_ratio"] = row["nfe"] / reference["nfe"]
        row["speedup"] = row["samples_per_s"] / reference["samples_per_s"]

    task = pipeline.run_config.task.name
    data_mean_length = sum(len(e.target_ids) for e in examples) / len(examples)
    _star.write_report(
        "ilm_insertion",
        checkpoint,
        args,
        pipeline,
        len(examples),
        rows,
        data_mean_length=data_mean_length,
    )

    print(
        f"\nILM insertion on {task} ({len(examples)} test examples, greedy, {pipeline.device.type}; "
        f"reference mean length {data_mean_length:.2f})\n"
    )
    print(
        "| setting | seq acc | token acc | nfe | nfe / single | mean length | samples/s | speed-up |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['label']} | {r['seq_acc']:.3f} | {r['token_acc']:.3f} | {r['nfe']:.2f} | {r['nfe_ratio']:.2f} "
            f"| {r['mean_length']:.2f} | {r['samples_per_s']:.1f} | {r['speedup']:.2f}x |"
        )
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
