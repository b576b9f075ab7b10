"""Where a training step's time goes, and what issue 13's items 3 and 5 removed from it.

Steps profiled (batch 64, the tiny preset unless said):

* ``tiny-arlm``, ``tiny-mdlm``, ``tiny-mlm``, ``tiny-ilm``: the default ``xlm train --plugin X``, star-easy;
* ``reference``: ARLM with d_model 384, 4 layers, 6 heads, dropout 0.1, star-easy;
* ``text``: the tiny ARLM on a text corpus (``--corpus``: Debian text from benchmarks/text_corpus.py
  by default, or the Python documentation, benchmarks/python_docs_corpus.py), BPE vocabulary 4,096,
  blocks of 128.

For each step and precision (fp32, and bf16 autocast where the CPU has native bf16) the
step as it was ("before": the losses, the attention call and the dropout of 3463788, reproduced in
benchmarks/_step_harness.py) and as it is ("after") alternate, ``--pairs`` times each, on the same batches; the headline
is the median of the per-pair ratios after/before. The torch profiler then splits both into
kinds of work (matrix products, attention, softmax and cross-entropy, copies and fills,
element-wise), phases (forward+loss, backward, optimizer) and top operators.

Also measured: ``training.compile`` (compile seconds, step time after it, steps to break
even), collation time per batch against step time (the ``num_workers`` default), per-row
noise (one generator per row against ``RowNoise``) and ARLM decoding with the KV cache
compacted at each finished row against in groups. Absolute times depend on what else runs
on the machine, so the load average is recorded and only ratios are reported.

    python benchmarks/step_profile.py [--scenarios text,reference] [--pairs 3] [--quick] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from xlm_core.threads import apply_thread_policy

apply_thread_policy()  # what `xlm train` runs with: set before torch is imported
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")  # the text task's preparation

import torch  # noqa: E402
from _corpus import add_corpus_argument, corpus_task  # noqa: E402
from _step_harness import SCENARIOS, Stepper, profile, run_config  # noqa: E402

from xlm_core.devices import cpu_native_bf16  # noqa: E402
from xlm_core.nn import kv_cache  # noqa: E402
from xlm_core.nn.sampling import RowNoise, make_generators, uniform  # noqa: E402
from xlm_core.plugins import get_registry  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "step_profile.json"
STEPS = {"reference": 3, "text": 3}  # timed steps per measurement; the tiny steps take 8


def alternate(measure: Any, settings: tuple[str, str], pairs: int) -> dict[str, Any]:
    """``measure(setting) -> (wall, cpu)`` alternated ``pairs`` times, the order flipped every pair;
    the ratios are second/first per pair."""
    runs: dict[str, list[tuple[float, float]]] = {s: [] for s in settings}
    for pair in range(pairs):
        for setting in settings if pair % 2 == 0 else settings[::-1]:
            runs[setting].append(measure(setting))
    first, second = settings
    ratios = [b[0] / a[0] for a, b in zip(runs[first], runs[second], strict=True)]
    cpu_ratios = [b[1] / a[1] for a, b in zip(runs[first], runs[second], strict=True)]
    return {
        "ms_per_step": {s: [round(r[0] * 1e3, 2) for r in v] for s, v in runs.items()},
        "ratios": [round(r, 4) for r in ratios],
        "ratio": round(statistics.median(ratios), 4),
        "cpu_ratio": round(statistics.median(cpu_ratios), 4),
    }


def loss_difference(stepper: Stepper) -> float:
    """Relative difference of the before and after losses on one batch (eval mode: no dropout)."""
    stepper.model.eval()
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=stepper.bf16):
            before = float(stepper.loss(stepper.batches[0], "before"))
            after = float(stepper.loss(stepper.batches[0], "after"))
    finally:
        stepper.model.train()
    return abs(after - before) / abs(before)


def measure_steps(name: str, precision: str, args: argparse.Namespace) -> dict[str, Any]:
    steps = 2 if args.quick else STEPS.get(name, 8)
    stepper = Stepper.build(run_config(name, args.corpus, args.cache), n_batches=steps + 1)
    stepper.bf16 = precision == "bf16"
    result = alternate(lambda s: stepper.timed(s, steps), ("before", "after"), args.pairs)
    result["loss_relative_difference"] = loss_difference(stepper)
    psteps = 1 if args.quick else 2
    result["profile"] = {s: profile(stepper, s, psteps) for s in ("before", "after")}
    before, after = (result["profile"][s]["kinds_ms"] for s in ("before", "after"))
    kinds = ", ".join(f"{k} {before.get(k, 0):.0f}->{after.get(k, 0):.0f}" for k in before)
    print(
        f"{name:10s} {precision:4s} step after/before {result['ratio']:.3f} "
        f"(cpu {result['cpu_ratio']:.3f}); CPU-ms per step: {kinds}",
        file=sys.stderr,
    )
    return result


def measure_compile(name: str, precision: str, args: argparse.Namespace) -> dict[str, Any]:
    """Seconds to compile (the first two compiled steps, less two steady ones), then eager vs compiled."""
    steps = 2 if args.quick else STEPS.get(name, 8)
    stepper = Stepper.build(run_config(name, args.corpus, args.cache), n_batches=steps + 1)
    stepper.bf16 = precision == "bf16"
    start = time.perf_counter()
    for batch in stepper.batches[:2]:  # forward, then backward, compile at their first use
        stepper.step(batch, "compiled")
    first_two = time.perf_counter() - start
    result = alternate(lambda s: stepper.timed(s, steps), ("after", "compiled"), args.pairs)
    eager = statistics.median(result["ms_per_step"]["after"]) / 1e3
    compiled = statistics.median(result["ms_per_step"]["compiled"]) / 1e3
    result["compile_seconds"] = round(first_two - 2 * compiled, 1)
    saved = eager - compiled
    result["break_even_steps"] = round(result["compile_seconds"] / saved) if saved > 0 else None
    print(
        f"{name:10s} {precision:4s} compile: {result['compile_seconds']:.0f} s, then step "
        f"{result['ratio']:.3f}x eager; pays off after {result['break_even_steps']} steps",
        file=sys.stderr,
    )
    return result


def measure_collation(args: argparse.Namespace) -> dict[str, Any]:
    """Collating a batch of 64 against the step it feeds (the after step in the default precision)."""
    out = {}
    for name in ("tiny-arlm", "tiny-mdlm", "tiny-mlm", "tiny-ilm", "text"):
        stepper = Stepper.build(run_config(name, args.corpus, args.cache), n_batches=1)
        generator = torch.Generator().manual_seed(0)
        size, times = stepper.config.training.batch_size, []
        for i in range(4 if args.quick else 20):
            chunk = [stepper.examples[(i * size + j) % len(stepper.examples)] for j in range(size)]
            start = time.perf_counter()
            stepper.collator(chunk, generator=generator)
            times.append(time.perf_counter() - start)
        ms = statistics.median(times) * 1e3
        out[name] = {"collate_ms": round(ms, 3)}
        if name in args.step_ms:
            out[name]["share_of_step"] = round(ms / args.step_ms[name], 4)
    return out


def measure_noise(args: argparse.Namespace) -> dict[str, Any]:
    """Per-row uniforms for a (64, V) draw: one generator call per row against one RowNoise call."""
    return {f"vocab_{v}": alternate(_noise_timer(v), ("generators", "row_noise"), max(3, args.pairs)) for v in (25, 4096)}


def _noise_timer(vocab: int, rows: int = 64, repeats: int = 20) -> Any:
    seeds = list(range(rows))
    streams = {"generators": make_generators(seeds), "row_noise": RowNoise(seeds).select(range(rows))}

    def timed(setting: str) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(repeats):
            uniform(streams[setting], (vocab,), "cpu")
        return (time.perf_counter() - wall) / repeats, (time.process_time() - cpu) / repeats

    return timed


def measure_decode(args: argparse.Namespace) -> dict[str, Any]:
    """ARLM sampling of 64 rows that finish at different steps: the KV cache compacted at every
    finished row (the behaviour before) against once a quarter of the rows have finished."""
    stepper = Stepper.build(run_config("tiny-arlm", args.corpus, args.cache), n_batches=1)
    family = get_registry().get("arlm")
    task = stepper.task
    predictor = family.component("predictor")(stepper.config.model, task.tokenizer.vocab, task.shape)
    settings = family.manifest.predictor_settings(temperature=1.0, max_new_tokens=64)
    prompts = [list(e.prompt_ids) for e in stepper.examples[:64]]
    copies = {"n": 0}
    select = kv_cache.KVCache.select

    def counting(self, rows):
        copies["n"] += 1
        return select(self, rows)

    def timed(setting: str) -> tuple[float, float]:
        share = kv_cache.COMPACT_SHARE
        kv_cache.COMPACT_SHARE = 0.0 if setting == "every_row" else share
        kv_cache.KVCache.select, copies["n"] = counting, 0
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            with torch.no_grad():
                predictor.predict(stepper.model, prompts, settings=settings, seeds=list(range(64)))
        finally:
            kv_cache.COMPACT_SHARE, kv_cache.KVCache.select = share, select
        counts[setting] = copies["n"]
        return time.perf_counter() - wall, time.process_time() - cpu

    counts: dict[str, int] = {}
    result = alternate(timed, ("every_row", "grouped"), max(3, args.pairs))
    result["cache_copies"] = counts
    return result


#: The measurements beside the steps and compile, by name (``--parts``).
PARTS = {"collation": measure_collation, "noise": measure_noise, "decode": measure_decode}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated, of: " + ", ".join(SCENARIOS))
    parser.add_argument("--compile", default="tiny-arlm,reference,text", help="scenarios to measure training.compile on ('' for none)")
    parser.add_argument("--parts", default=",".join(PARTS), help="what to measure, of: " + ", ".join(PARTS))
    parser.add_argument("--pairs", type=int, default=3, help="alternating before/after pairs (the median of their ratios)")
    parser.add_argument("--quick", action="store_true", help="2 steps per measurement (for tests)")
    add_corpus_argument(parser)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    args.corpus = corpus_task(args.corpus)  # the task.* settings the text scenario reads it with
    with tempfile.TemporaryDirectory(prefix="xlm-step-profile-") as cache:
        args.cache = Path(cache)
        result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


def run(args: argparse.Namespace) -> dict[str, Any]:
    load_before = os.getloadavg()
    precisions = ["32", "bf16"] if cpu_native_bf16() else ["32"]
    default = precisions[-1]  # what `training.precision: auto` uses on this CPU
    steps = {
        name: {p: measure_steps(name, p, args) for p in precisions}
        for name in filter(None, args.scenarios.split(","))
    }
    # the after steps in the default precision: what collation is compared with
    args.step_ms = {n: statistics.median(r[default]["ms_per_step"]["after"]) for n, r in steps.items()}
    compiled = {name: measure_compile(name, default, args) for name in filter(None, args.compile.split(","))}
    parts = set(args.parts.split(","))
    extra = {name: measure(args) for name, measure in PARTS.items() if name in parts}
    return {
        "benchmark": "step_profile",
        "device": f"cpu ({os.cpu_count()} cores), {platform.processor() or platform.machine()}",
        "cpu_native_bf16": cpu_native_bf16(),
        "torch_threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "machine_idle": max(load_before[0], os.getloadavg()[0]) < 0.5,
        "pairs": args.pairs,
        "quick": args.quick,
        "steps": steps,
        "compile": compiled,
        **extra,
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
    }


if __name__ == "__main__":
    main()
