"""CALM: autoencoder fidelity, BrierLM against ARLM at the same training wall time, and what K buys.

1. ARLM, trained for a wall-time budget of M minutes on a text corpus (the prose of the
   Python documentation, ``benchmarks/python_docs_corpus.py``, unless ``--corpus``).
2. For each K in {1, 2, 4, 8}: a CALM trained for the same M minutes in all, a share
   (``AE_SHARE``) on the autoencoder (stage 1), the rest on the generator (stage 2,
   ``--init-from`` the stage-1 run). Both families run a constant learning rate after
   warm-up, so the time limit cuts neither off half-way through a decay.
3. Autoencoder token reconstruction on the held-out test blocks, K = 4: ``recon_acc`` of
   the stage-1 loss in evaluation (a posterior sample decoded, no masking, no dropout),
   and the same through the posterior mean (``model(input_ids)``); for the stage 1 of
   step 2, and for an autoencoder trained alone for ``--ae-minutes`` (the authors train
   theirs once, to convergence, before any generator: how good it gets is a question of
   its own, apart from how the wall time of step 2 is split).
4. BrierLM on the test split (``xlm eval --metric brier``: 4 prefixes per block, two
   continuations each) for ARLM and every K; CALM / ARLM.
5. Generation tokens/s at batch 1 and 16, the same length budget, ARLM with its KV
   cache against CALM (KV cache over chunks, T = 1); CALM / ARLM as the median of
   ``--pairs`` alternated ARLM/CALM measurements (the host's speed drifts within a run).

Writes benchmarks/results/calm.json and the plot docs/images/calm_chunk_sweep.png
(Brier-1, BrierLM and the speed ratio against K; none for one K), and prints markdown
tables (both drawn by ``_calm_report.py``, which redraws them from a saved JSON too).
Finished runs in ``--work`` are reused when their settings are unchanged. Sizes: ``cpu`` (the ``tiny`` backbone,
blocks of 64, 10 minutes per model) for the 2-core CPU; ``full`` (blocks of 128, 30 minutes per model) for a GPU.
``--quick`` trains a small model half a minute per model on a small corpus in a
temporary directory and writes everything there: a smoke run, not a measurement.

    python benchmarks/calm.py [--size cpu|full] [--corpus C] [--minutes M] [--ae-minutes A]
                              [--chunk-sizes 1,2,4,8] [--blocks N] [--pairs P] [--work DIR] [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from xlm_core.threads import apply_thread_policy

apply_thread_policy()  # what `xlm train` runs with: set before torch is imported

import torch  # noqa: E402
from _calm_report import plot, print_tables  # noqa: E402
from _corpus import add_corpus_argument, corpus_task  # noqa: E402
from _results import finish, finished_run, machine_facts  # noqa: E402
from calm_speed import DECODING, compare  # noqa: E402
from text_corpus import prepare_corpus  # noqa: E402

import xlm_core  # noqa: E402
from xlm_core.brier import brier  # noqa: E402
from xlm_core.checkpoint import FINAL_DIR  # noqa: E402
from xlm_core.config import resolve_run_config  # noqa: E402
from xlm_core.runner import train  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "calm.json"
PLOT = ROOT / "docs" / "images" / "calm_chunk_sweep.png"
CHUNK_SIZES = (1, 2, 4, 8)
COMPARED_K = 4
AE_SHARE = 0.25  # of a CALM's wall time spent on its autoencoder
AE_MINUTES = {"quick": 0.5, "cpu": 8.0, "full": 15.0}  # the autoencoder trained alone (step 3)
COMMON = [
    "task.name=text",
    "training.schedule=constant",
    "training.max_steps=1000000",
    "training.val_every=1000000",
]

#: (settings, minutes per model, test blocks scored, BrierLM prefixes per block, rows decoded at batch 1 / 16)
FULL = (["task.block_size=128", "training.batch_size=64"], 30.0, 500, 4, (16, 64))
CPU = (["task.block_size=64", "training.batch_size=32"], 10.0, 200, 4, (8, 32))
QUICK = (
    [
        "model.d_model=64",
        "model.n_layers=2",
        "task.block_size=32",
        "task.vocab_size=512",
        "training.batch_size=16",
        "training.warmup_steps=10",
    ],
    0.5,
    32,
    2,
    (4, 16),
)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--size", choices=("cpu", "full"), default="cpu", help="cpu (default) or full (a GPU)"
    )
    add_corpus_argument(parser, default="python-docs")
    parser.add_argument("--minutes", type=float, help="M, the training wall time of every model")
    parser.add_argument(
        "--ae-minutes",
        type=float,
        help="training wall time of the K=4 autoencoder trained alone for its reconstruction "
        f"(default: {AE_MINUTES['cpu']:g} at the cpu size)",
    )
    parser.add_argument(
        "--work",
        type=Path,
        help="where the runs go (default runs/bench-calm-SIZE; --quick: a temp dir)",
    )
    parser.add_argument(
        "--chunk-sizes",
        default=",".join(map(str, CHUNK_SIZES)),
        help=f"comma-separated K to train (default {','.join(map(str, CHUNK_SIZES))}; must include {COMPARED_K})",
    )
    parser.add_argument(
        "--blocks",
        type=int,
        help="test blocks scored for BrierLM and reconstruction (default: 200 at the cpu size)",
    )
    parser.add_argument(
        "--pairs", type=int, default=3, help="alternated ARLM/CALM speed pairs (default 3)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--plot", type=Path, default=PLOT)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--threads",
        type=int,
        help="torch threads (default: torch's; 1 is steadier on a busy machine)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run in a temp dir (a few minutes)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.size = "quick"
    args.sets, minutes, args.limit, args.prefixes, args.rows = {
        "quick": QUICK,
        "cpu": CPU,
        "full": FULL,
    }[args.size]
    args.minutes = args.minutes or minutes
    args.limit = args.blocks or args.limit
    args.chunk_sizes = sorted({int(k) for k in args.chunk_sizes.split(",") if k})
    if COMPARED_K not in args.chunk_sizes or min(args.chunk_sizes) < 1:
        parser.error(f"--chunk-sizes: positive sizes that include {COMPARED_K}")
    args.ae_minutes = args.ae_minutes or AE_MINUTES[args.size]
    if args.quick:  # never overwrite measured results with a smoke run
        args.work = args.work or Path(tempfile.mkdtemp(prefix="xlm-calm-bench-"))
        args.out, args.plot = args.work / args.out.name, args.work / args.plot.name
        if args.corpus == "python-docs":  # the default: a small corpus instead (kept if there)
            args.corpus = str(prepare_corpus(args.work / "corpus.txt", max_mb=0.5))
        args.sets = [*args.sets, f"task.cache_dir={args.work / 'cache'}"]
    args.sets = [*COMMON, *corpus_task(args.corpus), *args.sets]
    args.work = args.work or ROOT / "runs" / f"bench-calm-{args.size}"
    return args


def trained(
    args: argparse.Namespace, name: str, plugin: str, minutes: float, *extra: str, init_from=None
) -> Path:
    """The run directory of ``name``, trained for ``minutes`` first unless ``--work`` already holds it
    (with the same settings)."""
    run_dir = args.work / name
    sets = [*args.sets, f"training.max_minutes={minutes}", *extra]
    config = resolve_run_config(plugin, preset="tiny", sets=sets)
    if finished_run(run_dir, config):
        print(f"using the finished run {run_dir}", file=sys.stderr)
        return run_dir
    print(f"training {name}: {plugin}, {minutes:.2f} minutes", file=sys.stderr)
    train(
        config, run_dir=run_dir, overwrite=True, progress=False, evaluate=False, init_from=init_from
    )
    return run_dir


def steps_taken(run_dir: Path) -> int | None:
    return json.loads((run_dir / FINAL_DIR / "config.json").read_text()).get("step")


def brier_lm(pipeline: Any, args: argparse.Namespace) -> dict[str, Any]:
    figures = brier(
        pipeline,
        "test",
        args.limit,
        pipeline.settings(**DECODING),
        prefixes=args.prefixes,
    )
    keys = [f"brier_{n}{end}" for n in range(1, 5) for end in ("", "_stderr")]
    return {key: figures.get(key) for key in (*keys, "brier_lm", "brier_prefixes")}


def speed(arlm: Any, pipeline: Any, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Tokens/s of both at batch 1 and 16 over the whole length budget (calm_speed.py's
    decoding), alternated ``--pairs`` times; CALM / ARLM is the median per-pair ratio."""
    return compare(arlm, pipeline, args.pairs, tuple(zip((1, 16), args.rows, strict=True)))


def reconstruction(run_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Token reconstruction of the stage-1 autoencoder on the first ``limit`` test blocks."""
    pipeline = xlm_core.load(run_dir / FINAL_DIR, device=args.device)
    examples = list(pipeline.task.examples("test")[: args.limit])
    sampled = pipeline.score(examples)["recon_acc"]  # the eval-mode loss: a posterior sample
    right = total = 0
    with torch.no_grad(), pipeline.autocast():
        for i in range(0, len(examples), 16):
            batch = pipeline.collator(
                examples[i : i + 16], generator=torch.Generator().manual_seed(i)
            ).to(pipeline.device)
            guess = pipeline.model(batch.input_ids).logits.argmax(-1)
            scored = batch.targets != -100
            right += int((guess == batch.targets)[scored].sum())
            total += int(scored.sum())
    return {"recon_acc_sampled": sampled, "recon_acc_mean": right / max(total, 1), "tokens": total}


def calm(args: argparse.Namespace, k: int) -> tuple[Path, Path]:
    """(stage-1 run, stage-2 run) of K = ``k``, ``args.minutes`` in all."""
    shared = [f"model.chunk_size={k}"]
    ae = trained(
        args, f"calm-k{k}-ae", "calm", args.minutes * AE_SHARE, *shared, "model.stage=autoencoder"
    )
    rest = args.minutes * (1 - AE_SHARE)
    gen = trained(
        args, f"calm-k{k}", "calm", rest, *shared, "model.stage=generator", init_from=ae / FINAL_DIR
    )
    return ae, gen


def measure(args: argparse.Namespace) -> dict[str, Any]:
    arlm_dir = trained(args, "arlm", "arlm", args.minutes)
    arlm = xlm_core.load(arlm_dir / FINAL_DIR, device=args.device)
    report: dict[str, Any] = {"arlm": {"steps": steps_taken(arlm_dir), **brier_lm(arlm, args)}}
    sweep = []
    for k in args.chunk_sizes:
        ae_dir, gen_dir = calm(args, k)
        pipeline = xlm_core.load(gen_dir / FINAL_DIR, device=args.device)
        row = {
            "chunk_size": k,
            "autoencoder_steps": steps_taken(ae_dir),
            "generator_steps": steps_taken(gen_dir),
            **brier_lm(pipeline, args),
            "speed": speed(arlm, pipeline, args),
        }
        row["brier_lm_over_arlm"] = _ratio(row["brier_lm"], report["arlm"]["brier_lm"])
        row["tokens_per_s_over_arlm"] = [s["calm_over_arlm"] for s in row["speed"]]
        if k == COMPARED_K:
            row["reconstruction"] = reconstruction(ae_dir, args)
        sweep.append(row)
    report["chunk_sizes"] = sweep
    alone = trained(
        args,
        f"calm-k{COMPARED_K}-ae-alone",
        "calm",
        args.ae_minutes,
        f"model.chunk_size={COMPARED_K}",
        "model.stage=autoencoder",
    )
    report["autoencoder_alone"] = {
        "minutes": args.ae_minutes,
        "steps": steps_taken(alone),
        **reconstruction(alone, args),
    }
    report["compared"] = next(r for r in sweep if r["chunk_size"] == COMPARED_K)
    return report


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def main() -> None:
    args = arguments()
    start = time.perf_counter()
    report = {
        "benchmark": "calm",
        "quick": args.quick,
        "size": args.size,
        "corpus": str(args.corpus),
        "minutes": args.minutes,
        "autoencoder_share": AE_SHARE,
        "settings": args.sets,
        "decoding": DECODING,
        **machine_facts(args.device),
        **measure(args),
    }
    # a plot against K needs more than one K
    finish(report, args, start, plot if len(args.chunk_sizes) > 1 else None, print_tables)


if __name__ == "__main__":
    main()
