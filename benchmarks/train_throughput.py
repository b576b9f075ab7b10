"""Training throughput of the xlm harness vs a bare PyTorch loop: same model, batches and optimiser.

The harness side is ``xlm_core.runner.train`` itself (Lightning Trainer, progress
bar, CSV logging, LR monitor, checkpoint writer), timed by a callback; the bare side
is the loop a person would write by hand: loss, backward, clip, AdamW step, schedule
step. Both draw the same batches from the same DataLoader and collator. Step time is
measured from the start of step ``warmup`` to the start of step ``warmup + steps``, so
start-up, validation and checkpoint writing at the end are outside the window.

The two sides alternate ``repeats`` times; the headline is the median of the per-run
ratios. On a GPU the clock is wall time (after a device sync). On a CPU it is the
process's CPU time: the harness's overhead is CPU work and shows up there in full,
while time spent waiting for a core that other programs hold does not (wall time is
recorded as well). Goal: harness step time <= 1.10x the bare loop's.

    python benchmarks/train_throughput.py [--plugin arlm] [--steps 60] [--repeats 5] [--threads 1]
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
from xlm_core.devices import lightning_precision, matmul_size
from xlm_core.plugins import get_registry
from xlm_core.runner import train
from xlm_core.training import build_optimizer, lr_factor

RESULTS = Path(__file__).parent / "results" / "train_throughput.json"
GOAL = 1.10


class Window:
    """Wall and CPU time over the timed steps, and the tokens (padded positions) they processed."""

    def __init__(self, device: torch.device):
        self.device = device
        self.wall = self.cpu = 0.0
        self.tokens = 0

    def open(self) -> None:
        self._sync()
        self.wall, self.cpu = -time.perf_counter(), -time.process_time()

    def close(self) -> None:
        self._sync()
        self.wall += time.perf_counter()
        self.cpu += time.process_time()

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


class StepTimer(Callback):
    """Opens the window at the start of step ``first`` and closes it at the start of step ``last``."""

    def __init__(self, first: int, last: int):
        self.first, self.last = first, last
        self.window: Window | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        step = trainer.global_step
        if self.window is None:
            self.window = Window(pl_module.device)
        if step == self.first:
            self.window.open()
        elif step == self.last:
            self.window.close()
        if self.first <= step < self.last:
            self.window.tokens += batch.input_ids.numel()  # a shape: no device sync


def run_harness(config, warmup: int, steps: int) -> Window:
    timer = StepTimer(warmup, warmup + steps)
    with tempfile.TemporaryDirectory() as tmp, open(os.devnull, "w") as devnull:
        with contextlib.redirect_stdout(devnull):  # the progress bar still renders, into the void
            train(
                config, run_dir=Path(tmp) / "run", evaluate=False, progress=True, callbacks=[timer]
            )
    assert timer.window is not None
    return timer.window


def run_bare(config, warmup: int, steps: int) -> Window:
    training = config.training
    family = get_registry().get(config.plugin)
    task = build_task(config.task)
    vocab = task.tokenizer.vocab
    L.seed_everything(training.seed, verbose=False)
    device = torch.device(
        "cuda" if torch.cuda.is_available() and training.accelerator != "cpu" else "cpu"
    )
    model = family.component("model")(config.model, vocab).to(device).train()
    loss_fn = family.component("loss")(config.model, vocab)
    collator = family.component("collator")(config.model, vocab, task.shape)
    data = XLMDataModule(
        task,
        collator,
        batch_size=training.batch_size,
        eval_batch_size=1,
        seed=training.seed,
        eval_seed=0,
    )
    optimizer = build_optimizer(model, training, device)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, training))
    # The same precision the harness chooses (xlm_core.devices): bf16 autocast where it is native.
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if lightning_precision(training, matmul_size(config.model, vocab.size)) == "bf16-mixed"
        else contextlib.nullcontext()
    )
    window = Window(device)
    for step, batch in enumerate(data.train_dataloader()):
        if step == warmup:
            window.open()
        if step == warmup + steps:
            window.close()
            break
        if step >= warmup:
            window.tokens += batch.input_ids.numel()
        batch = batch.to(device)
        with autocast:
            out = loss_fn(model, batch)
        out.loss.backward()
        if training.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), training.grad_clip)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
    return window


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plugin", default="arlm")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=60, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps before the window")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each side, alternating")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    total = (
        args.warmup + args.steps + 1
    )  # one step past the window, so end-of-run work is outside it
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
    on_gpu = torch.cuda.is_available() and config.training.accelerator != "cpu"
    clock = "wall" if on_gpu else "cpu"
    bare_runs, harness_runs = [], []
    for repeat in range(args.repeats):
        bare = run_bare(config, args.warmup, args.steps)
        harness = run_harness(config, args.warmup, args.steps)
        bare_runs.append(bare)
        harness_runs.append(harness)
        print(
            f"run {repeat + 1}/{args.repeats}: {clock} time per step: bare {getattr(bare, clock) / args.steps * 1e3:.1f} ms, "
            f"xlm {getattr(harness, clock) / args.steps * 1e3:.1f} ms "
            f"({getattr(harness, clock) / getattr(bare, clock):.3f}x; wall {harness.wall / bare.wall:.3f}x)",
            file=sys.stderr,
        )
    assert all(b.tokens == h.tokens for b, h in zip(bare_runs, harness_runs, strict=True)), (
        "sides saw different data"
    )

    def per_step_ms(runs: list[Window], which: str) -> list[float]:
        return [round(getattr(w, which) / args.steps * 1e3, 3) for w in runs]

    ratios = {
        which: [
            getattr(h, which) / getattr(b, which)
            for b, h in zip(bare_runs, harness_runs, strict=True)
        ]
        for which in ("wall", "cpu")
    }
    ratio = statistics.median(ratios[clock])
    tokens = bare_runs[0].tokens // args.steps
    bare_step = statistics.median(getattr(w, clock) for w in bare_runs) / args.steps
    harness_step = statistics.median(getattr(w, clock) for w in harness_runs) / args.steps
    device = torch.cuda.get_device_name() if on_gpu else f"cpu ({os.cpu_count()} cores)"
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
        "clock": clock,
        "bare_ms_per_step": {
            "wall": per_step_ms(bare_runs, "wall"),
            "cpu": per_step_ms(bare_runs, "cpu"),
        },
        "xlm_ms_per_step": {
            "wall": per_step_ms(harness_runs, "wall"),
            "cpu": per_step_ms(harness_runs, "cpu"),
        },
        "ratios": {which: [round(r, 4) for r in values] for which, values in ratios.items()},
        "bare_tokens_per_s": round(tokens / bare_step, 1),
        "xlm_tokens_per_s": round(tokens / harness_step, 1),
        "ratio": round(ratio, 4),
        "goal": GOAL,
        "meets_goal": ratio <= GOAL,
        "versions": {
            "torch": torch.__version__,
            "lightning": L.__version__,
            "python": platform.python_version(),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"{args.plugin} {args.preset}, batch {args.batch_size} on {device} ({clock} time): "
        f"bare {tokens / bare_step:,.0f} tok/s, xlm {tokens / harness_step:,.0f} tok/s -> "
        f"xlm step time {ratio:.3f}x bare (median of {args.repeats} runs; goal <= {GOAL}x)"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
