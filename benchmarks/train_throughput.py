"""Training throughput of the xlm harness vs a bare PyTorch loop: same model, batches and optimiser.

The harness side is ``xlm_core.training.train`` itself (Lightning Trainer, progress
bar, CSV logging, LR monitor, checkpoint writer), timed by a callback; the bare side
is the loop a person would write by hand: loss, backward, clip, AdamW step, schedule
step. Both draw batches from the same DataLoader and collator. Step time is measured
from the start of step ``warmup`` to the start of step ``warmup + steps``, so start-up,
validation and checkpoint writing at the end are outside the window. The two sides
alternate ``repeats`` times and each keeps its best run (the least disturbed by other
work on the machine). Goal: harness step time <= 1.10x the bare loop's.

    python benchmarks/train_throughput.py [--plugin arlm] [--steps 40] [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from xlm_core.config import resolve_run_config
from xlm_core.data.datamodule import XLMDataModule
from xlm_core.data.tasks import build_task
from xlm_core.plugins import get_registry
from xlm_core.runner import train
from xlm_core.training import build_optimizer, lr_factor

RESULTS = Path(__file__).parent / "results" / "train_throughput.json"
GOAL = 1.10


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StepTimer(Callback):
    """Wall time from the start of step ``first`` to the start of step ``last``; tokens seen in between."""

    def __init__(self, first: int, last: int):
        self.first, self.last = first, last
        self.start = self.end = 0.0
        self.tokens = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        step = trainer.global_step
        if step == self.first:
            _sync(pl_module.device)
            self.start = time.perf_counter()
        elif step == self.last:
            _sync(pl_module.device)
            self.end = time.perf_counter()
        if self.first <= step < self.last:
            self.tokens += batch.input_ids.numel()  # a shape: no device sync


def run_harness(config, warmup: int, steps: int) -> tuple[float, int]:
    timer = StepTimer(warmup, warmup + steps)
    with tempfile.TemporaryDirectory() as tmp, open(os.devnull, "w") as devnull:
        with contextlib.redirect_stdout(devnull):  # the progress bar still renders, into the void
            train(config, run_dir=Path(tmp) / "run", evaluate=False, progress=True, callbacks=[timer])
    return (timer.end - timer.start) / steps, timer.tokens // steps


def run_bare(config, warmup: int, steps: int) -> tuple[float, int]:
    training = config.training
    family = get_registry().get(config.plugin)
    task = build_task(config.task)
    vocab = task.tokenizer.vocab
    L.seed_everything(training.seed, verbose=False)
    device = torch.device("cuda" if torch.cuda.is_available() and training.accelerator != "cpu" else "cpu")
    model = family.component("model")(config.model, vocab).to(device).train()
    loss_fn = family.component("loss")(config.model, vocab)
    collator = family.component("collator")(config.model, vocab, task.shape)
    data = XLMDataModule(
        task, collator, batch_size=training.batch_size, eval_batch_size=1, seed=training.seed, eval_seed=0
    )
    optimizer = build_optimizer(model, training, device)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, training))
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if device.type == "cuda" and torch.cuda.is_bf16_supported()
        else contextlib.nullcontext()
    )
    start = end = 0.0
    tokens = 0
    for step, batch in enumerate(data.train_dataloader()):
        if step == warmup:
            _sync(device)
            start = time.perf_counter()
        if step == warmup + steps:
            _sync(device)
            end = time.perf_counter()
            break
        if step >= warmup:
            tokens += batch.input_ids.numel()
        batch = batch.to(device)
        with autocast:
            out = loss_fn(model, batch)
        out.loss.backward()
        if training.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), training.grad_clip)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
    return (end - start) / steps, tokens // steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plugin", default="arlm")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=40, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps before the window")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each side, alternating")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    total = args.warmup + args.steps + 1  # one step past the window, so end-of-run work is outside it
    config = resolve_run_config(
        args.plugin,
        preset=args.preset,
        sets=[
            f"training.batch_size={args.batch_size}",
            f"training.max_steps={total}",
            f"training.val_every={total}",  # one validation, after the window
            "eval.val_predict_limit=0",
            "training.warmup_steps=2",
        ],
    )
    bare_times, harness_times = [], []
    tokens = 0
    for repeat in range(args.repeats):
        bare, tokens = run_bare(config, args.warmup, args.steps)
        harness, harness_tokens = run_harness(config, args.warmup, args.steps)
        bare_times.append(bare)
        harness_times.append(harness)
        print(
            f"run {repeat + 1}/{args.repeats}: bare {bare * 1e3:.1f} ms/step, xlm {harness * 1e3:.1f} ms/step "
            f"({harness / bare:.3f}x)",
            file=sys.stderr,
        )
    bare_best, harness_best = min(bare_times), min(harness_times)
    ratio = harness_best / bare_best
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)"
    result = {
        "benchmark": "train_throughput",
        "plugin": args.plugin,
        "preset": args.preset,
        "task": config.task.name,
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
        "tokens_per_step": tokens,
        "timed_steps": args.steps,
        "repeats": args.repeats,
        "bare_ms_per_step": [round(t * 1e3, 3) for t in bare_times],
        "xlm_ms_per_step": [round(t * 1e3, 3) for t in harness_times],
        "bare_tokens_per_s": round(tokens / bare_best, 1),
        "xlm_tokens_per_s": round(tokens / harness_best, 1),
        "ratio_best": round(ratio, 4),
        "ratio_median": round(statistics.median(harness_times) / statistics.median(bare_times), 4),
        "goal": GOAL,
        "meets_goal": ratio <= GOAL,
        "versions": {"torch": torch.__version__, "lightning": L.__version__, "python": platform.python_version()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"{args.plugin} {args.preset} on {device}: bare {tokens / bare_best:,.0f} tok/s, "
        f"xlm {tokens / harness_best:,.0f} tok/s -> xlm step time {ratio:.3f}x bare (goal <= {GOAL}x)"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
