"""What the decoding benchmarks share: a star-recipe checkpoint, timed and scored decoding passes over a
grid of settings, and the JSON report around them."""

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
from _results import finished_run, sets

import xlm_core
from xlm_core.config import resolve_run_config
from xlm_core.metrics import exact_match, token_matches

ROOT = Path(__file__).resolve().parents[1]


def star_arguments(plugin: str, description: str, results: Path) -> argparse.ArgumentParser:
    """The options every decoding benchmark takes; a script adds its own before parsing."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--checkpoint",
        type=Path,
        help=f"a trained {plugin.upper()} checkpoint (default: train the star recipe)",
    )
    parser.add_argument(
        "--run-dir",
        type=Path,
        default=ROOT / "runs" / f"bench-{plugin}-star",
        help="where the star recipe is trained",
    )
    parser.add_argument("--limit", type=int, default=1000, help="test examples decoded per setting")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--quick", action="store_true", help="20 training steps, 32 examples, results to a temp dir"
    )
    parser.add_argument("--out", type=Path, default=results)
    return parser


def parse_star_args(parser: argparse.ArgumentParser, plugin: str) -> argparse.Namespace:
    """Parse; under ``--quick`` everything goes to a fresh temp dir (``args.scratch``) so measured
    results are never overwritten by a smoke run."""
    args = parser.parse_args()
    args.scratch = None
    if args.quick:
        args.scratch = Path(tempfile.mkdtemp(prefix=f"xlm-{plugin}-bench-"))
        args.limit = min(args.limit, 32)
        args.out = args.scratch / args.out.name
        if args.checkpoint is None:
            args.run_dir = args.scratch / "run"
    return args


def train_star(plugin: str, run_dir: Path, quick: bool) -> Path:
    """The checkpoint of a finished star-recipe run of ``plugin`` in ``run_dir``, training it first
    when there is none, or when the one there was trained with other settings (the recipe changed).

    ``quick`` trains 20 steps of the tiny preset instead: a smoke run, not a measurement.
    """
    if quick:
        preset, task, items = "tiny", "star-easy", ["training.max_steps=20", "eval.val_predict_limit=8"]
    else:
        preset, task, items = "star", None, []
    if finished_run(run_dir, resolve_run_config(plugin, preset=preset, task=task, sets=items)):
        print(f"using the finished run in {run_dir}", file=sys.stderr)
        return run_dir / "final"
    xlm = shutil.which("xlm") or str(Path(sys.executable).with_name("xlm"))
    command = [xlm, "train", "--plugin", plugin, "--preset", preset, "--out", str(run_dir), "--overwrite"]
    command += ["--task", task] if task else []
    command += sets(items)
    print("$ " + " ".join(command), file=sys.stderr)
    subprocess.run(command, check=True)
    return run_dir / "final"


def measure(
    pipeline: Any, examples: list[Any], overrides: dict[str, Any], seed: int
) -> dict[str, Any]:
    """Decode ``examples`` once under ``overrides``: accuracy, nfe, steps, lengths and throughput."""
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
        "steps": sum(r.steps for r in results) / n,
        "mean_length": sum(len(r.ids) for r in results) / n,
        "short_rate": sum(len(r.ids) < len(t) for r, t in pairs) / n,
        "samples_per_s": n / seconds,
    }


def load_test(checkpoint: Path, args: argparse.Namespace) -> tuple[Any, list[Any]]:
    """The checkpoint's pipeline on ``args.device`` and its first ``args.limit`` test examples."""
    pipeline = xlm_core.load(checkpoint, device=args.device)
    return pipeline, list(pipeline.task.examples("test")[: args.limit])


def measure_grid(
    pipeline: Any, examples: list[Any], grid: list[tuple[str, dict[str, Any]]], seed: int
) -> list[dict[str, Any]]:
    """Warm up once (kernels, allocator), then decode ``examples`` under every ``(label, overrides)``
    of ``grid``: one row each, in grid order."""
    pipeline.generate(num_samples=min(8, len(examples)), seed=seed)
    rows = []
    for label, overrides in grid:
        row = {"label": label, "settings": overrides}
        row.update(measure(pipeline, examples, overrides, seed))
        rows.append(row)
        print(f"{label:>24}: seq_acc {row['seq_acc']:.3f}  nfe {row['nfe']:.2f}", file=sys.stderr)
    return rows


def write_report(
    name: str,
    checkpoint: Path,
    args: argparse.Namespace,
    pipeline: Any,
    n_examples: int,
    rows: list[dict[str, Any]],
    **fields: Any,
) -> dict[str, Any]:
    """Write the benchmark's JSON to ``args.out``: where and how it ran, its own ``fields``, the rows."""
    report = {
        "benchmark": name,
        "checkpoint": str(checkpoint),
        "task": pipeline.run_config.task.name,
        "n_examples": n_examples,
        **fields,
        "batch_size": pipeline.run_config.eval.batch_size,
        "device": str(pipeline.device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "quick": args.quick,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return report
