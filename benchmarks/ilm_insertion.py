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

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

import xlm_core
from xlm_core.metrics import exact_match, token_matches

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "ilm_insertion.json"
RUN_DIR = ROOT / "runs" / "bench-ilm-star"


def settings_grid() -> list[tuple[str, dict[str, Any]]]:
    """(label, predictor overrides) for every setting the benchmark compares; the first is the reference."""
    grid = [("single (k=1)", {"parallel_k": 1})]
    for k in (2, 4):
        for tau in (0.1, 0.2, 0.3, 0.4):
            grid.append((f"parallel k={k} τ={tau}", {"parallel_k": k, "parallel_threshold": tau}))
    return [(label, {"temperature": 0.0, "sampling": "joint", **s}) for label, s in grid]


def train(run_dir: Path, quick: bool) -> Path:
    """The checkpoint of a finished star-recipe run in ``run_dir``, training it first when there is none."""
    final = run_dir / "final"
    if (final / "model.safetensors").is_file():
        print(f"using the finished run in {run_dir}", file=sys.stderr)
        return final
    xlm = shutil.which("xlm") or str(Path(sys.executable).with_name("xlm"))
    command = [xlm, "train", "--plugin", "ilm", "--out", str(run_dir)]
    if quick:
        command += ["--preset", "tiny", "--task", "star-easy", "--max-steps", "20"]
        command += ["--set", "eval.val_predict_limit=8"]
    else:
        command += ["--preset", "star"]
    print("$ " + " ".join(command), file=sys.stderr)
    subprocess.run(command, check=True)
    return final


def measure(
    pipeline: Any, examples: list[Any], overrides: dict[str, Any], seed: int
) -> dict[str, Any]:
    """Decode ``examples`` once under ``overrides``: accuracy, nfe, lengths and throughput."""
    device = pipeline.device
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    results = pipeline.generate(num_samples=len(examples), seed=seed, **overrides)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    n = len(results)
    targets = [list(e.target_ids) for e in examples]
    pairs = list(zip(results, targets, strict=True))
    return {
        "seq_acc": sum(exact_match(r.ids, t) for r, t in pairs) / n,
        "token_acc": sum(token_matches(r.ids, t) for r, t in pairs) / sum(map(len, targets)),
        "nfe": sum(r.nfe for r in results) / n,
        "mean_length": sum(len(r.ids) for r in results) / n,
        "short_rate": sum(len(r.ids) < len(t) for r, t in pairs) / n,
        "samples_per_s": n / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--checkpoint", type=Path, help="a trained ILM checkpoint (default: train the star recipe)"
    )
    parser.add_argument(
        "--run-dir", type=Path, default=RUN_DIR, help="where the star recipe is trained"
    )
    parser.add_argument("--limit", type=int, default=1000, help="test examples decoded per setting")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--quick", action="store_true", help="20 training steps, 32 examples, results to a temp dir"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    if args.quick:
        scratch = Path(tempfile.mkdtemp(prefix="xlm-ilm-bench-"))
        args.limit = min(args.limit, 32)
        args.out = scratch / "ilm_insertion.json"
        if args.checkpoint is None:
            args.run_dir = scratch / "run"
    checkpoint = args.checkpoint or train(args.run_dir, args.quick)

    pipeline = xlm_core.load(checkpoint, device=args.device)
    examples = list(pipeline.task.examples("test")[: args.limit])
    # warm-up: kernels, allocator
    pipeline.generate(num_samples=min(8, len(examples)), seed=args.seed)

    rows = []
    for label, overrides in settings_grid():
        row = {
            "label": label,
            "settings": overrides,
            **measure(pipeline, examples, overrides, args.seed),
        }
        rows.append(row)
        print(f"{label:>24}: seq_acc {row['seq_acc']:.3f}  nfe {row['nfe']:.2f}", file=sys.stderr)
    reference = rows[0]
    for row in rows:
        row["nfe_ratio"] = row["nfe"] / reference["nfe"]
        row["speedup"] = row["samples_per_s"] / reference["samples_per_s"]

    task = pipeline.run_config.task.name
    data_mean_length = sum(len(e.target_ids) for e in examples) / len(examples)
    report = {
        "benchmark": "ilm_insertion",
        "checkpoint": str(checkpoint),
        "task": task,
        "n_examples": len(examples),
        "data_mean_length": data_mean_length,
        "batch_size": pipeline.run_config.eval.batch_size,
        "device": str(pipeline.device),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "quick": args.quick,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")

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
