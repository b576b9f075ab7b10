"""CALM's decoding speed as the backbone grows: K tokens per step against ARLM's one.

``benchmarks/calm.py`` times the models it trains, at the ``tiny`` size a 2-core CPU can
train in minutes, and the rows its models end: a briefly trained CALM ends its text
sooner and less evenly than the ARLM, so a batch waits for its longest row. Decoding
speed depends on the tensors' shapes and on where rows stop, not on what the weights
learned. This benchmark builds ARLM and CALM at each preset's size (``tiny``: d_model
128, 4 layers; ``small``: d_model 768, 12 layers, 12 heads) with freshly initialised
weights, on the text task of ``calm.py`` (its tokenizer and 64-token length budget),
and decodes the whole budget: an untrained model seldom ends a row early (the mean
lengths are reported). ARLM decodes with its KV cache, CALM with its cache over chunks
at T = 1; the two alternate, and each ratio is the median of the per-pair ratios
(``--pairs``). At ``tiny`` the generator's transformer costs about as much as the two
networks that run once per CALM step besides it (the energy head and the autoencoder's
decoder); at ``small`` it is most of the step.

    python benchmarks/calm_speed.py [--presets tiny,small] [--chunk-sizes 1,2,4,8] [--pairs 5] [--corpus C]
                                  [--set KEY=VALUE ...] [--calm-set KEY=VALUE ...] [--out FILE]

Writes benchmarks/results/calm_speed.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from xlm_core.threads import apply_thread_policy

apply_thread_policy()  # what `xlm generate` runs with: set before torch is imported

import torch  # noqa: E402
from _corpus import add_corpus_argument, corpus_task  # noqa: E402
from _results import budget_decoder, machine_facts, median_row, paired_speeds  # noqa: E402

from xlm_core.config import resolve_run_config  # noqa: E402
from xlm_core.data.tasks import build_task  # noqa: E402
from xlm_core.pipeline import Pipeline  # noqa: E402
from xlm_core.plugins import get_registry  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "calm_speed.json"
TEXT = ["task.name=text", "task.block_size=64"]  # calm.py's cpu size
BATCHES = ((1, 2), (16, 16))  # (batch size, rows decoded per measurement)
DECODING = {"temperature": 1.0, "kv_cache": True}  # both families sample at T = 1, cached


def fresh(plugin: str, preset: str, extra: list[str], args: argparse.Namespace) -> Pipeline:
    """``plugin`` at ``preset``'s size with freshly initialised weights (seed 0), in eval mode."""
    config = resolve_run_config(
        plugin, preset=preset, sets=[*TEXT, *corpus_task(args.corpus), *args.sets, *extra]
    )
    task = build_task(config.task)
    family = get_registry().get(plugin)
    torch.manual_seed(0)
    model = family.component("model")(config.model, task.tokenizer.vocab)
    return Pipeline(
        family=family,
        run_config=config,
        model=model,
        tokenizer=task.tokenizer,
        task_kind=task.kind,
        shape=task.shape,
        device=args.device,
    )


def parameters(module: torch.nn.Module | None) -> int:
    return sum(p.numel() for p in module.parameters()) if module is not None else 0


def compare(
    arlm: Pipeline, calm: Pipeline, pairs: int, batches: tuple[tuple[int, int], ...] = BATCHES
) -> list[dict[str, Any]]:
    """Per (batch size, rows decoded): both speeds alternated ``pairs`` times (order flipped
    every pair)."""
    out = []
    a, c = budget_decoder(arlm, DECODING), budget_decoder(calm, DECODING)
    for (batch, _), both in zip(batches, paired_speeds(a, c, batches, pairs), strict=True):
        runs = {"arlm": both["first"], "calm": both["second"]}
        out.append({
            "batch": batch,
            "tokens_per_s": {n: median_row(v)["tokens_per_s"] for n, v in runs.items()},
            "mean_length": {n: statistics.mean(r["mean_length"] for r in v) for n, v in runs.items()},
            "ratios": both["ratios"],
            "calm_over_arlm": both["ratio"],
        })  # fmt: skip
    return out


def measure(preset: str, args: argparse.Namespace) -> dict[str, Any]:
    arlm = fresh("arlm", preset, [], args)
    report: dict[str, Any] = {
        "preset": preset,
        "arlm_parameters": parameters(arlm.model),
        "chunk_sizes": [],
    }
    for k in args.chunk_sizes:
        extra = [f"model.chunk_size={k}", "model.stage=generator", *args.calm_sets]
        calm = fresh("calm", preset, extra, args)
        generator = calm.model.generator
        # CALM starts its head's output layer at zero: every step would then decode the one chunk
        # of the origin (which may hold EOS and end every row at once). At the scale of the other
        # layers the vectors vary, as a trained head's do.
        torch.nn.init.normal_(generator.head.out[-1].weight, std=0.02)
        row = {
            "chunk_size": k,
            "parameters": {
                "transformer": parameters(generator.backbone),
                "chunk_input": parameters(generator.compress),
                "energy_head": parameters(generator.head),
                "autoencoder": parameters(calm.model.autoencoder),
            },
            "speed": compare(arlm, calm, args.pairs),
        }
        print(json.dumps({"preset": preset, "chunk_size": k, **{f"batch {s['batch']}": round(s["calm_over_arlm"], 2) for s in row["speed"]}}),
              file=sys.stderr, flush=True)  # fmt: skip
        report["chunk_sizes"].append(row)
    return report


def print_table(report: dict[str, Any]) -> None:
    rows = [(size["preset"], r) for size in report["sizes"] for r in size["chunk_sizes"]]
    head = " | ".join(
        f"CALM tokens/s batch {s['batch']} (ARLM) | ÷ ARLM" for s in rows[0][1]["speed"]
    )
    print(f"\n| size | K | {head} |\n|---|---:|" + "---:|---:|" * len(rows[0][1]["speed"]))
    for preset, r in rows:
        cells = " | ".join(
            f"{s['tokens_per_s']['calm']:.0f} ({s['tokens_per_s']['arlm']:.0f}) | **{s['calm_over_arlm']:.2f}**"
            for s in r["speed"]
        )
        print(f"| {preset} | {r['chunk_size']} | {cells} |")


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--presets",
        default="tiny,small",
        help="backbone sizes, comma-separated (default tiny,small)",
    )
    parser.add_argument(
        "--chunk-sizes", default="1,2,4,8", help="comma-separated K (default 1,2,4,8)"
    )
    parser.add_argument(
        "--pairs", type=int, default=5, help="alternated ARLM/CALM pairs per figure"
    )
    add_corpus_argument(parser, default="python-docs")
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a config item for both families, as `xlm train --set` (repeatable)",
    )
    parser.add_argument(
        "--calm-set",
        dest="calm_sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a config item for CALM only, e.g. model.ae_d_model=512 (repeatable)",
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    args.chunk_sizes = [int(k) for k in args.chunk_sizes.split(",") if k]
    args.presets = [p for p in args.presets.split(",") if p]
    return args


def main() -> None:
    args = arguments()
    start = time.perf_counter()
    report = {
        "benchmark": "calm_speed",
        "corpus": args.corpus,
        "weights": "fresh (seed 0): speed depends on shapes and lengths, not on training",
        "decoding": {**DECODING, "budget": "the task's target length"},
        "pairs": args.pairs,
        "settings": {"both": args.sets, "calm": args.calm_sets},
        **machine_facts(args.device),
        "sizes": [measure(preset, args) for preset in args.presets],
    }
    report["seconds"] = time.perf_counter() - start
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    print(f"\nwrote {args.out} ({report['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
