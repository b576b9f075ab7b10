"""What the decoding benchmarks share: a star-recipe checkpoint, and one timed, scored decoding pass."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from xlm_core.metrics import exact_match, token_matches


def train_star(plugin: str, run_dir: Path, quick: bool) -> Path:
    """The checkpoint of a finished star-recipe run of ``plugin`` in ``run_dir``, training it first when there is none.

    ``quick`` trains 20 steps of the tiny preset instead: a smoke run, not a measurement.
    """
    final = run_dir / "final"
    if (final / "model.safetensors").is_file():
        print(f"using the finished run in {run_dir}", file=sys.stderr)
        return final
    xlm = shutil.which("xlm") or str(Path(sys.executable).with_name("xlm"))
    command = [xlm, "train", "--plugin", plugin, "--out", str(run_dir)]
    if quick:
        command += ["--preset", "tiny", "--task", "star-easy", "--max-steps", "20"]
        command += ["--set", "eval.val_predict_limit=8"]
    else:
        command += ["--preset", "star"]
    print("$ " + " ".join(command), file=sys.stderr)
    subprocess.run(command, check=True)
    return final


def measure(pipeline: Any, examples: list[Any], overrides: dict[str, Any], seed: int) -> dict[str, Any]:
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
