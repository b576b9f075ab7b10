"""bf16 on the CPU: what `precision: auto` buys where the CPU has native bf16, and what it costs in loss.

Five measurements, each comparing `training.precision=auto` (bf16 autocast on a
CPU with AMX or AVX512-BF16, fp32 elsewhere) with `training.precision=32` in one run:

* matmul: GFLOP/s of one bf16 and one fp32 product of the reference model's MLP shape;
* step time: the reference-size ARLM (d_model 384, 4 layers, 6 heads, dropout 0.1,
  batch 64, star-easy) and the tiny ARLM on text (BPE vocabulary 4,096, block 128,
  batch 64), timed over the same steps, the two settings alternating, median of the
  per-pair ratios (goals: <= 0.40 and <= 0.50);
* sampling: samples/s of MDLM and ARLM at batch 64, alternating (goal: >= 1.5);
* decoding: bf16 / fp32 decoding speed by the width of a forward pass (ARLM with its KV
  cache at batch 1 to 64, one position a row; MDLM at batch 1 and 4, whole rows), for the
  reference model and the tiny text model, which sets where ``auto`` starts decoding in
  bf16 (``CPU_BF16_MIN_PASS``);
* loss parity: the same training in each precision for ``--parity-seeds`` seeds, and the
  mean validation loss after the same number of steps (goal: within 2%); the spread of
  each precision over the seeds says how much of a difference is noise. Three trainings:
  the reference model on star-easy (``parity_reference``), the tiny model on text
  (``parity_text``) and the reference model on text (``parity_reference_text``), whose
  loss falls smoothly where star-easy's sits on a plateau.

The text corpus is Debian-shipped text (benchmarks/text_corpus.py) unless ``--corpus`` names
another (``python-docs``: benchmarks/python_docs_corpus.py, or a file or folder).

    python benchmarks/precision.py [--repeats 3] [--parity-steps 300] [--parity-seeds 3] [--corpus C]
                                   [--quick] [--out FILE] [--only PART ...]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback

sys.path.insert(0, str(Path(__file__).parent))
from _corpus import add_corpus_argument, corpus_task  # noqa: E402

from xlm_core.config import resolve_run_config  # noqa: E402
from xlm_core.devices import cpu_native_bf16  # noqa: E402
from xlm_core.runner import train  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "precision.json"
REFERENCE = ["model.d_model=384", "model.n_layers=4", "model.n_heads=6", "model.dropout=0.1"]
PARTS = (
    "matmul",
    "reference_step",
    "text_step",
    "sampling",
    "decoding",
    "parity_reference",
    "parity_text",
    "parity_reference_text",
)
GOALS = {"reference_step": 0.40, "text_step": 0.50, "sampling": 1.5, "parity": 0.02}


def text_task(corpus: list[str], cache: Path) -> list[str]:
    return [
        "task.name=text",
        *corpus,
        "task.vocab_size=4096",
        "task.block_size=128",
        f"task.cache_dir={cache}",
    ]


class StepClock(Callback):
    """Wall time from the start of step ``first`` to the start of step ``last``."""

    def __init__(self, first: int, last: int):
        self.first, self.last, self.seconds = first, last, None

    def on_train_batch_start(self, trainer, *args):
        if trainer.global_step == self.first:
            self.start = time.perf_counter()
        elif trainer.global_step == self.last:
            self.seconds = time.perf_counter() - self.start


def run(sets: list[str], precision: str, steps: int, *, clock: StepClock | None = None) -> Path:
    config = resolve_run_config(
        "arlm", sets=[*sets, f"training.precision={precision}", f"training.max_steps={steps}"]
    )
    out = Path(tempfile.mkdtemp(prefix="xlm-precision-")) / "run"
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        train(
            config, run_dir=out, progress=False, evaluate=False, callbacks=[clock] if clock else []
        )
    return out


def step_ratio(sets: list[str], repeats: int, steps: int, warmup: int = 3) -> dict:
    """Per-pair auto/fp32 step-time ratios, the two settings alternating."""
    times: dict[str, list[float]] = {"auto": [], "32": []}
    common = [*sets, "training.val_every=100000", "eval.val_predict_limit=0"]
    for _ in range(repeats):
        for precision in ("32", "auto"):
            clock = StepClock(warmup, warmup + steps)
            run(common, precision, warmup + steps + 1, clock=clock)
            times[precision].append(clock.seconds / steps)
    ratios = [a / b for a, b in zip(times["auto"], times["32"], strict=True)]
    return {"s_per_step": times, "ratios": ratios, "median_ratio": statistics.median(ratios)}


def untrained(plugin: str, sets: list[str] = REFERENCE) -> Any:
    """A checkpoint of ``plugin`` (the reference size unless ``sets`` say otherwise) after one fp32
    step, loaded on the CPU."""
    import xlm_core

    config_sets = [*sets, "training.max_steps=1", "eval.val_predict_limit=0"]
    config = resolve_run_config(plugin, sets=[*config_sets, "training.precision=32"])
    out = Path(tempfile.mkdtemp(prefix="xlm-sampling-")) / "run"
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        train(config, run_dir=out, progress=False, evaluate=False)
    return xlm_core.load(out, device="cpu")


def sampling_ratio(pipeline: Any, repeats: int, batch: int = 64, against: str = "auto") -> dict:
    """samples/s of ``pipeline`` decoding ``batch`` rows at a time in fp32 and under precision
    ``against`` (``xlm generate``'s choice for that batch), alternating."""
    pipeline.run_config.eval.batch_size = batch
    speed: dict[str, list[float]] = {against: [], "32": []}
    for precision in ("32", against):  # warm-up: the first call of each dtype prepares its kernels
        pipeline.run_config.training.precision = precision
        pipeline.generate(num_samples=batch, seed=1)
    for _ in range(repeats):
        for precision in ("32", against):
            pipeline.run_config.training.precision = precision
            start = time.perf_counter()
            pipeline.generate(num_samples=batch, seed=0)
            speed[precision].append(batch / (time.perf_counter() - start))
    ratios = [a / b for a, b in zip(speed[against], speed["32"], strict=True)]
    return {"samples_per_s": speed, "ratios": ratios, "median_ratio": statistics.median(ratios)}


def decoding(repeats: int, batches: tuple[int, ...], sizes: dict[str, list[str]]) -> dict:
    """bf16 / fp32 decoding speed by the width of a pass (rows x positions per row): ARLM with its
    KV cache (one position a row) and MDLM (the whole row) at each batch size, for each model of
    ``sizes``; where bf16 starts to pay sets ``xlm_core.devices.CPU_BF16_MIN_PASS``."""
    out = {}
    for size, sets in sizes.items():
        for plugin in ("arlm", "mdlm"):
            pipeline = untrained(plugin, sets)
            per_row = pipeline.positions_per_pass(pipeline.settings())
            for batch in batches if plugin == "arlm" else batches[:2]:
                result = sampling_ratio(pipeline, repeats, batch, against="bf16-mixed")
                out[f"{size}_{plugin}_batch{batch}"] = {"positions": batch * per_row, **result}
                print(
                    f"{size} {plugin} batch {batch} ({batch * per_row} positions a pass) "
                    f"bf16/fp32: {result['median_ratio']:.2f}",
                    flush=True,
                )
    return out


def val_loss(run_dir: Path) -> float:
    rows = list(csv.DictReader(open(next((run_dir / "logs").glob("version_*/metrics.csv")))))
    return float([r for r in rows if r.get("val/loss")][-1]["val/loss"])


def parity(sets: list[str], steps: int, seeds: int) -> dict:
    """Validation loss after ``steps`` in fp32 and under ``auto`` for seeds 0..seeds-1 (the two
    settings alternating), compared by their means; the spread over seeds gives the scale.

    One seed is not enough: on star-easy the validation loss leaves a plateau near 1.0 at a
    step that moves by hundreds of steps from seed to seed, and the same seed takes a
    different path in each precision once rounding differs, so one pair can differ by 10%
    (the pair of seed 0 did at 1,000 steps) for reasons that have nothing to do with bf16."""
    common = [*sets, f"training.val_every={steps}", "eval.val_predict_limit=0"]
    losses: dict[str, list[float]] = {"32": [], "auto": []}
    for seed in range(seeds):
        for precision in losses:
            losses[precision].append(val_loss(run([*common, f"training.seed={seed}"], precision, steps)))
    mean = {p: statistics.fmean(v) for p, v in losses.items()}
    spread = {p: statistics.stdev(v) / mean[p] if seeds > 1 else None for p, v in losses.items()}
    return {
        "steps": steps,
        "seeds": seeds,
        "val_loss": losses,
        "mean": mean,
        "relative_difference": abs(mean["auto"] - mean["32"]) / mean["32"],
        "seed_spread": spread,
    }


def matmul() -> dict:
    a, b = torch.randn(2688, 384), torch.randn(384, 1536)
    flops = 2 * 2688 * 384 * 1536
    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        x, y = a.to(dtype), b.to(dtype)
        for _ in range(3):
            x @ y
        start, n = time.perf_counter(), 30
        for _ in range(n):
            x @ y
        out[name] = flops / ((time.perf_counter() - start) / n) / 1e9
    out["bf16_over_fp32"] = out["bf16"] / out["fp32"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per step-time run")
    parser.add_argument("--parity-steps", type=int, default=300)
    parser.add_argument("--parity-seeds", type=int, default=3, help="seeds per precision in the parity runs")
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny budgets")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--only",
        nargs="+",
        choices=PARTS,
        help="measure these parts only, keeping the others from --out (default: all)",
    )
    add_corpus_argument(parser)
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.steps, args.parity_steps, args.parity_seeds = 1, 3, 6, 1
    cache = Path(tempfile.mkdtemp(prefix="xlm-precision-cache-"))
    text = text_task(corpus_task(args.corpus), cache)
    load = os.getloadavg()

    parts = set(args.only or PARTS)
    report = json.loads(args.out.read_text()) if args.only and args.out.is_file() else {}
    report.update({"benchmark": "precision", "native_bf16": cpu_native_bf16(), "goals": GOALS})
    reference = [*REFERENCE, "training.batch_size=64"]
    text_batches = [*text, "training.batch_size=64"]
    if "matmul" in parts:
        report["matmul_gflops"] = matmul()
        print(f"matmul: {report['matmul_gflops']}", flush=True)
    for name, sets in (("reference_step", reference), ("text_step", text_batches)):
        if name in parts:
            report[name] = step_ratio(sets, args.repeats, args.steps)
            print(f"{name} auto/fp32: {report[name]['median_ratio']:.2f}", flush=True)
    if "sampling" in parts:
        report["sampling"] = {
            p: sampling_ratio(untrained(p), args.repeats) for p in ("mdlm", "arlm")
        }
        for plugin, result in report["sampling"].items():
            print(f"{plugin} sampling auto/fp32: {result['median_ratio']:.2f}", flush=True)
    if "decoding" in parts:
        batches = (1, 2) if args.quick else (1, 4, 16, 32, 64)
        sizes = {"reference": REFERENCE, "tiny_text": text}
        report["decoding"] = decoding(args.repeats, batches, sizes)
    parities = (("reference", reference), ("text", text_batches), ("reference_text", [*REFERENCE, *text_batches]))
    for name, sets in parities:
        if f"parity_{name}" in parts:
            result = report.setdefault("parity", {})[name] = parity(sets, args.parity_steps, args.parity_seeds)
            spread = ", ".join(f"{p} {v:.2%}" for p, v in result["seed_spread"].items() if v is not None)
            print(
                f"parity {name}: {result['val_loss']} (means auto vs fp32 {result['relative_difference']:.2%}; "
                f"spread over seeds: {spread or 'one seed'})",
                flush=True,
            )
    # parts measured in separate runs keep their own time and load (a step ratio wants an idle machine)
    when = {"at": time.strftime("%Y-%m-%d %H:%M"), "load_average_before": load}
    report.setdefault("measured", {}).update({part: when for part in parts})
    report["machine"] = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "load_average_before": load,
        "torch": torch.__version__,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
