"""BDLM conversion: an ARLM teacher converted to block diffusion, a BDLM from scratch, and what B costs.

1. Train an ARLM teacher N steps on a text corpus (the prose of the Python documentation,
   ``benchmarks/python_docs_corpus.py``, unless ``--corpus``).
2. Convert it (``--init-from``) to a BDLM with B = 4 and train N/5 steps; the same with
   Efficient-DLM's position-dependent masking (``POSITION_MASKING``); train a BDLM from
   scratch for N/5 steps.
3. Likelihood on the test split: the teacher's exact NLL, each BDLM's NELBO bound, and
   bound / NLL.
4. Decoding speed at batch 1 and 16, the same length budget for both: BDLM (B = 4, KV
   cache, threshold decoding) against ARLM (KV cache): generated tokens per second; and
   the quality of those samples: generative perplexity under the teacher and unigram
   entropy, for the converted BDLM and for the teacher's own samples; and the same for the
   converted BDLM at lower thresholds (more tokens per pass, worse samples), the trade-off
   threshold decoding offers; and both converted BDLMs deciding in reading order
   (``order: left_to_right``: each token after all of its left context).
5. Block size: B in {1, 2, 4, 8, 16}, each converted from the teacher and trained N/5
   steps: bound / NLL and tokens/s, plotted into ``docs/images/bdlm_block_size.png``.

Finished runs in ``--work`` are reused when their settings are unchanged, so a second call
only measures.

    python benchmarks/bdlm_conversion.py [--size cpu|full] [--corpus C] [--steps N] [--pairs P] [--work DIR] [--out FILE] [--quick]

Writes benchmarks/results/bdlm_conversion.json and prints markdown tables. Sizes:
``full`` (the ``tiny`` backbone, blocks of 128, teacher 5,000 steps) is for a GPU;
``cpu`` (the ``tiny`` backbone, blocks of 64, batch 32, teacher 1,000 steps) is what
docs/benchmarks.md reports from the 2-core CPU. ``--quick`` trains a small model a few
steps on a small corpus in a temporary directory and writes everything there: a smoke
run of a few minutes, not a measurement.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from xlm_core.threads import apply_thread_policy

apply_thread_policy()  # what `xlm train` runs with: set before torch is imported

import torch  # noqa: E402
from _bdlm_conversion_report import plot, print_tables  # noqa: E402
from _corpus import add_corpus_argument, corpus_task  # noqa: E402
from _results import budget_decoder, finish, finished_run, machine_facts, median_row, paired_speeds  # noqa: E402
from text_corpus import prepare_corpus  # noqa: E402

import xlm_core  # noqa: E402
from xlm_core.config import resolve_run_config  # noqa: E402
from xlm_core.evaluation import generative_perplexity  # noqa: E402
from xlm_core.runner import train  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "bdlm_conversion.json"
PLOT = ROOT / "docs" / "images" / "bdlm_block_size.png"
BLOCK_SIZES = (1, 2, 4, 8, 16)
CONVERTED_B = 4
BDLM_DECODING = {"sampler": "threshold", "threshold": 0.9, "kv_cache": True}
THRESHOLDS = (0.9, 0.7, 0.5, 0.3)  # the converted BDLM's speed/quality trade-off
READING_ORDER = {**BDLM_DECODING, "order": "left_to_right"}
ARLM_DECODING = {"kv_cache": True}
#: the converted BDLM once more with Efficient-DLM's position-dependent masking (docs/families/bdlm.md)
POSITION_MASKING = ("model.nelbo_estimator=time", "model.position_masking=2", "model.clip_min=0.9")

#: (model and task settings, teacher steps, test examples scored, rows decoded at batch 1 / 16)
FULL = (["task.block_size=128", "training.batch_size=32"], 5000, 500, (16, 64))
CPU = (["task.block_size=64", "training.batch_size=32"], 1000, 200, (8, 32))
#: unconditional samples scored by the teacher (gen-PPL) per model
JUDGED = {"full": 256, "cpu": 64, "quick": 8}
QUICK = (
    [
        "model.d_model=64",
        "model.n_layers=2",
        "task.block_size=32",
        "task.vocab_size=512",
        "training.batch_size=16",
        "model.eval_nll_samples=2",
    ],
    100,
    32,
    (4, 16),
)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("cpu", "full"), default="cpu", help="cpu (default) or full (a GPU)")
    add_corpus_argument(parser, default="python-docs")
    parser.add_argument("--steps", type=int, help="N, the teacher's steps (default 5000; --quick 100)")
    parser.add_argument("--work", type=Path, help="where the runs go (default runs/bench-bdlm-conversion; --quick: a temp dir)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--plot", type=Path, default=PLOT)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's; 1 is steadier on a busy machine)")
    parser.add_argument("--pairs", type=int, help="alternated teacher / BDLM speed pairs per ratio (default 3; --quick 1)")
    parser.add_argument("--quick", action="store_true", help="a smoke run in a temp dir (a few minutes)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.size = "quick"
    args.sets, default_steps, args.limit, args.rows = {"quick": QUICK, "cpu": CPU, "full": FULL}[args.size]
    args.steps = args.steps or default_steps
    args.judged = JUDGED[args.size]
    args.pairs = args.pairs or (1 if args.quick else 3)
    if args.quick:  # never overwrite measured results with a smoke run
        args.work = args.work or Path(tempfile.mkdtemp(prefix="xlm-bdlm-bench-"))
        args.out, args.plot = args.work / args.out.name, args.work / args.plot.name
        args.corpus = str(prepare_corpus(args.work / "corpus.txt", max_mb=0.5))  # kept if there
        args.sets = [*args.sets, f"task.cache_dir={args.work / 'cache'}"]
    args.sets = [*corpus_task(args.corpus), *args.sets]
    args.work = args.work or ROOT / "runs" / f"bench-bdlm-conversion-{args.size}"
    return args


def trained(args: argparse.Namespace, name: str, plugin: str, steps: int, *extra: str, init_from=None) -> Path:
    """The final checkpoint of run ``name``, trained first unless ``--work`` already holds it
    (with the same settings)."""
    run_dir = args.work / name
    sets = ["task.name=text", f"training.max_steps={steps}", *args.sets, *extra]
    config = resolve_run_config(plugin, preset="tiny", sets=sets)
    if finished_run(run_dir, config):
        print(f"using the finished run {run_dir}", file=sys.stderr)
        return run_dir / "final"
    print(f"training {name}: {plugin}, {steps} steps", file=sys.stderr)
    train(config, run_dir=run_dir, overwrite=True, progress=False, evaluate=False, init_from=init_from)
    return run_dir / "final"


def likelihood(pipeline: Any, limit: int) -> dict[str, Any]:
    """Per-token NLL (exact) or NELBO (bound) on the first ``limit`` test examples."""
    scored = pipeline.score(list(pipeline.task.examples("test")[:limit]))
    return {"nll": scored["nll"], "nll_kind": scored["nll_kind"], "n_tokens": scored["n_tokens"]}


def speed(pipeline: Any, settings: dict[str, Any], args: argparse.Namespace) -> list[dict[str, Any]]:
    run = budget_decoder(pipeline, settings)
    return [run(batch, rows) for batch, rows in zip((1, 16), args.rows, strict=True)]


def quality(pipeline: Any, teacher: Any, settings: dict[str, Any], n: int) -> dict[str, Any]:
    """gen-PPL under the teacher and unigram entropy of ``n`` unconditional samples (whole blocks)."""
    figures = generative_perplexity(pipeline, teacher, "test", n, pipeline.settings(**settings))
    keys = ("gen_ppl", "data_gen_ppl", "entropy", "data_entropy", "mean_length", "samples_per_s")
    return {key: figures.get(key) for key in keys}


def judged(pipeline: Any, teacher: Any, taught: dict[str, Any], settings: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Speed and sample quality of ``pipeline`` decoding with ``settings``, each also as a ratio
    to the teacher's (``taught``); the speed ratios from ``--pairs`` alternated pairs with the teacher."""
    run, reference = budget_decoder(pipeline, settings), budget_decoder(teacher, ARLM_DECODING)
    both = paired_speeds(reference, run, zip((1, 16), args.rows, strict=True), args.pairs)
    q = quality(pipeline, teacher, settings, args.judged)
    return {
        "speed": [median_row(p["second"]) for p in both],
        "tokens_per_s_over_teacher": [p["ratio"] for p in both],
        "pair_ratios": [p["ratios"] for p in both],
        "quality": q,
        "gen_ppl_over_teacher": q["gen_ppl"] / taught["quality"]["gen_ppl"],
        "entropy_over_teacher": q["entropy"] / taught["quality"]["entropy"],
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    n = args.steps
    teacher = xlm_core.load(trained(args, "arlm-teacher", "arlm", n), device=args.device)
    exact = likelihood(teacher, args.limit)
    report: dict[str, Any] = {
        "teacher": {
            **exact,
            "speed": speed(teacher, ARLM_DECODING, args),
            "quality": quality(teacher, teacher, ARLM_DECODING, args.judged),
        }
    }
    teacher_dir = args.work / "arlm-teacher" / "final"
    scratch = xlm_core.load(trained(args, "bdlm-scratch", "bdlm", n // 5, f"model.block_size={CONVERTED_B}"), device=args.device)
    report["scratch"] = {**likelihood(scratch, args.limit)}
    sweep = []
    for block in BLOCK_SIZES:
        run = trained(args, f"bdlm-b{block}", "bdlm", n // 5, f"model.block_size={block}", init_from=teacher_dir)
        pipeline = xlm_core.load(run, device=args.device)
        if block == CONVERTED_B:
            converted = pipeline  # its speed is measured in pairs with the teacher below
            row = {"block_size": block, **likelihood(pipeline, args.limit)}
        else:
            row = {"block_size": block, **likelihood(pipeline, args.limit), "speed": speed(pipeline, BDLM_DECODING, args)}
        sweep.append(row)
    report["converted"] = next(r for r in sweep if r["block_size"] == CONVERTED_B)
    run = trained(args, f"bdlm-b{CONVERTED_B}-positions", "bdlm", n // 5, f"model.block_size={CONVERTED_B}", *POSITION_MASKING, init_from=teacher_dir)
    positions = xlm_core.load(run, device=args.device)
    report["position_masking"] = {"settings": list(POSITION_MASKING), **likelihood(positions, args.limit)}  # speed: judged below
    for row in [report["scratch"], report["position_masking"], *sweep]:
        row["bound_over_nll"] = row["nll"] / exact["nll"]
    judgements = {name: judged(pipeline, teacher, report["teacher"], BDLM_DECODING, args) for name, pipeline in (("converted", converted), ("position_masking", positions))}
    for name, judgement in judgements.items():
        report[name].update(judgement)
    report["thresholds"] = [  # BDLM_DECODING's own threshold is the converted model's judgement, not measured twice
        {"threshold": tau, **(judgements["converted"] if tau == BDLM_DECODING["threshold"] else judged(converted, teacher, report["teacher"], {**BDLM_DECODING, "threshold": tau}, args))}
        for tau in THRESHOLDS
    ]
    # the same threshold, positions decided in reading order: each token after all of its left context
    report["reading_order"] = [
        {"model": name, **judged(pipeline, teacher, report["teacher"], READING_ORDER, args)}
        for name, pipeline in (("converted", converted), ("position_masking", positions))
    ]
    report["block_sizes"] = sweep
    return report


def main() -> None:
    args = arguments()
    start = time.perf_counter()
    report = {
        "benchmark": "bdlm_conversion",
        "quick": args.quick,
        "size": args.size,
        "corpus": str(args.corpus),
        "steps": args.steps,
        "settings": args.sets,
        "bdlm_decoding": BDLM_DECODING,
        **machine_facts(args.device),
        **measure(args),
    }
    finish(report, args, start, plot, print_tables)


if __name__ == "__main__":
    main()
