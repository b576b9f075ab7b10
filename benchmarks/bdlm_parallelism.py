"""BDLM parallelism: how many tokens threshold decoding fills per forward pass, and why.

Threshold decoding fills, in one pass, every masked position of the block whose top
probability exceeds tau; it is faster than the ARLM only when a pass fills several. This
converts an ARLM teacher (``--teacher``, any ARLM checkpoint) to a BDLM with B = 4 and
Efficient-DLM's position masking (bdlm_conversion.py's recipe), trains it ``--steps``
steps, and measures:

1. Confidence: each position of a fully masked block, given the clean text before it
   (test blocks): its mean top probability, top-1 accuracy and the share of positions
   above 0.9 and above 0.5; and the share of blocks with two positions above 0.9 (what
   a first pass needs to fill two tokens). Position 1 is read where the teacher reads
   it (the block's left context is clean); positions 2-4 have masked tokens to their left.
2. Threshold decoding at each tau in THRESHOLDS, in confidence and in reading order:
   tokens per pass (whole 64-token budgets from empty prompts), and the gen-PPL and
   unigram entropy of unconditional samples judged by the teacher, each over the
   teacher's own samples'.
3. Tokens/s over the teacher's (KV caches, alternated pairs), at batch 1 and 16, with the
   goal's setting (tau = 0.9, confidence order).

Results accumulate in ``--out`` under ``--label`` (one entry per teacher):

    python benchmarks/bdlm_parallelism.py --teacher CKPT --label NAME [--steps N] [--work DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from xlm_core.threads import apply_thread_policy

apply_thread_policy()  # what `xlm train` runs with: set before torch is imported

import torch  # noqa: E402
from _results import budget_decoder, machine_facts, paired_speeds  # noqa: E402
from bdlm_conversion import (  # noqa: E402  its recipe, runs and decodings
    ARLM_DECODING,
    BDLM_DECODING,
    CONVERTED_B,
    POSITION_MASKING,
    likelihood,
    trained,
)
from xlm_bdlm import layout  # noqa: E402

import xlm_core  # noqa: E402
from xlm_core.checkpoint import CheckpointRecord  # noqa: E402
from xlm_core.evaluation import generative_perplexity  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "bdlm_parallelism.json"
THRESHOLDS = (0.9, 0.7, 0.5, 0.3, 0.1)
ORDERS = ("confidence", "left_to_right")


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--teacher", type=Path, required=True, help="an ARLM checkpoint (a run's final/)"
    )
    parser.add_argument(
        "--label", help="the teacher's name in --out (default: its run directory's name)"
    )
    parser.add_argument(
        "--steps", type=int, default=1000, help="the converted BDLM's training steps"
    )
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench-bdlm-parallelism")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--blocks", type=int, default=200, help="test examples probed for confidence"
    )
    parser.add_argument("--judged", type=int, default=64, help="unconditional samples per gen-PPL")
    parser.add_argument("--rows", type=int, default=32, help="rows decoded for tokens per pass")
    parser.add_argument(
        "--pairs", type=int, default=3, help="alternated teacher / BDLM speed pairs"
    )
    parser.add_argument(
        "--speed-rows", type=int, nargs=2, default=(8, 32), help="rows timed at batch 1 and 16"
    )
    args = parser.parse_args()
    args.label = args.label or args.teacher.resolve().parent.name
    return args


def converted(args: argparse.Namespace, teacher: Any) -> Any:
    """The teacher converted to BDLM (B = 4, position masking) and trained ``--steps`` steps on
    the teacher's task and backbone; a finished run in ``--work`` with the same settings is reused."""
    task, model = teacher.run_config.task, teacher.run_config.model
    sets = [f"task.{key}={value}" for key, value in task.model_dump().items() if value is not None]
    sets += [
        f"model.{key}={getattr(model, key)}"
        for key in ("d_model", "n_layers", "n_heads", "learned_positions")
    ]
    sets += [f"training.batch_size={teacher.run_config.training.batch_size}"]
    run = trained(
        argparse.Namespace(work=args.work, sets=sets),
        f"{args.label}-b{CONVERTED_B}-{args.steps}",
        "bdlm",
        args.steps,
        f"model.block_size={CONVERTED_B}",
        *POSITION_MASKING,
        init_from=args.teacher,
    )
    return xlm_core.load(run, device="cpu")


@torch.no_grad()
def confidence(pipeline: Any, limit: int) -> dict[str, Any]:
    """Per position of a fully masked block given the clean text before it: mean top probability,
    top-1 accuracy, share above 0.9 and 0.5; and the share of blocks with two positions above 0.9."""
    vocab, model = pipeline.vocab, pipeline.model.eval()
    targets = [list(e.target_ids) for e in pipeline.task.examples("test")[:limit]]
    width = min(len(t) for t in targets) // CONVERTED_B * CONVERTED_B
    text = torch.tensor([t[:width] for t in targets])
    prefix, _ = layout.prefix_rows(
        [[] for _ in targets], vocab, pipeline.shape, pipeline.run_config.model.shift
    )
    top, right, above_9, above_5, two = [], [], [], [], []
    for start in range(0, width, CONVERTED_B):
        masked = torch.full((len(text), CONVERTED_B), vocab.mask_id)
        stream = torch.cat([prefix, text[:, :start], masked], dim=1)
        probs, guess = model.stream_logits(stream, None).float().softmax(-1).max(-1)
        top.append(probs)
        right.append(guess == text[:, start : start + CONVERTED_B])
        above_9.append(probs > 0.9)
        above_5.append(probs > 0.5)
        two.append((probs > 0.9).sum(1) >= 2)

    def by_position(parts: list[torch.Tensor]) -> list[float]:
        return torch.cat(parts).float().mean(0).tolist()

    return {
        "blocks": len(text) * (width // CONVERTED_B),
        "mean_top_probability": by_position(top),
        "top1_accuracy": by_position(right),
        "share_above_0.9": by_position(above_9),
        "share_above_0.5": by_position(above_5),
        "blocks_with_two_above_0.9": torch.cat(two).float().mean().item(),
    }


@torch.no_grad()
def tokens_per_pass(pipeline: Any, settings: Any, rows: int) -> float:
    prediction = pipeline.predictor.predict(
        pipeline.model, [[] for _ in range(rows)], settings=settings, seeds=list(range(rows))
    )
    return float(prediction.lengths.sum()) / float(prediction.nfe.sum())


def sweep(
    pipeline: Any, teacher: Any, own: dict[str, Any], args: argparse.Namespace
) -> list[dict[str, Any]]:
    rows = []
    for order in ORDERS:
        for tau in THRESHOLDS:
            settings = pipeline.settings(
                **BDLM_DECODING | {"threshold": tau, "order": order},
                max_new_tokens=pipeline.shape.target_length,
            )
            judged = generative_perplexity(pipeline, teacher, "test", args.judged, settings)
            rows.append(
                {
                    "order": order,
                    "threshold": tau,
                    "tokens_per_pass": tokens_per_pass(pipeline, settings, args.rows),
                    "gen_ppl": judged["gen_ppl"],
                    "gen_ppl_over_teacher": judged["gen_ppl"] / own["gen_ppl"],
                    "entropy_over_teacher": judged["entropy"] / own["entropy"],
                }
            )
            print(
                f"{order} tau={tau}: {rows[-1]['tokens_per_pass']:.3f} tokens/pass", file=sys.stderr
            )
    return rows


def speed(pipeline: Any, teacher: Any, args: argparse.Namespace) -> list[dict[str, Any]]:
    """BDLM (tau = 0.9) tokens/s over the teacher's (KV cache), median of alternated pairs."""
    bdlm, arlm = budget_decoder(pipeline, BDLM_DECODING), budget_decoder(teacher, ARLM_DECODING)
    batches = list(zip((1, 16), args.speed_rows, strict=True))
    out = []
    for (batch, _), p in zip(batches, paired_speeds(arlm, bdlm, batches, args.pairs), strict=True):
        out.append(
            {
                "batch": batch,
                "ratio": p["ratio"],
                "ratios": p["ratios"],
                "nfe_per_token": p["second"][0]["nfe_per_token"],
            }
        )
    return out


def print_table(report: dict[str, Any]) -> None:
    for label, entry in report["teachers"].items():
        c = entry["confidence"]
        print(
            f"\n{label}: teacher {entry['teacher_steps']} steps (NLL {entry['teacher_nll']:.3f}), converted {entry['steps']} steps (bound {entry['bdlm_nll']:.3f})"
        )
        print(
            "\n| position in block | mean top probability | top-1 accuracy | share > 0.9 | share > 0.5 |\n|---:|---:|---:|---:|---:|"
        )
        for i in range(CONVERTED_B):
            print(
                f"| {i + 1} | {c['mean_top_probability'][i]:.3f} | {c['top1_accuracy'][i]:.3f} | {c['share_above_0.9'][i]:.4f} | {c['share_above_0.5'][i]:.4f} |"
            )
        print(
            f"\nblocks with two positions above 0.9: {c['blocks_with_two_above_0.9']:.4f} of {c['blocks']}"
        )
        print(
            "\n| order | tau | tokens / pass | gen-PPL ÷ teacher's | entropy ÷ teacher's |\n|---|---:|---:|---:|---:|"
        )
        for r in entry["thresholds"]:
            print(
                f"| {r['order']} | {r['threshold']} | {r['tokens_per_pass']:.3f} | {r['gen_ppl_over_teacher']:.2f} | {r['entropy_over_teacher']:.3f} |"
            )
        speeds = ", ".join(
            f"batch {s['batch']}: {s['ratio']:.2f}× (pairs {', '.join(f'{x:.2f}' for x in s['ratios'])})"
            for s in entry["speed"]
        )
        print(f"\ntokens/s ÷ teacher's, tau = 0.9: {speeds}")


def main() -> None:
    args = arguments()
    start = time.perf_counter()
    teacher = xlm_core.load(args.teacher, device="cpu")
    if teacher.family.name != "arlm":
        raise SystemExit(
            f"error: --teacher {args.teacher} is a {teacher.family.name} checkpoint, not an ARLM"
        )
    pipeline = converted(args, teacher)
    limit = args.blocks
    own = generative_perplexity(
        teacher, teacher, "test", args.judged, teacher.settings(kv_cache=True)
    )
    entry = {
        **machine_facts("cpu"),
        "teacher": str(args.teacher),
        "teacher_steps": CheckpointRecord.read(teacher.checkpoint).step,
        "teacher_nll": likelihood(teacher, limit)["nll"],
        "steps": args.steps,
        "bdlm_nll": likelihood(pipeline, limit)["nll"],
        "teacher_gen_ppl": own["gen_ppl"],
        "confidence": confidence(pipeline, limit),
        "thresholds": sweep(pipeline, teacher, own, args),
        "speed": speed(pipeline, teacher, args),
    }
    entry["seconds"] = time.perf_counter() - start
    report = (
        json.loads(args.out.read_text())
        if args.out.is_file()
        else {"benchmark": "bdlm_parallelism", "teachers": {}}
    )
    report["teachers"][args.label] = entry
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print_table(report)
    print(f"\nwrote {args.out} ({entry['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
