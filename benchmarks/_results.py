"""The common ends of a benchmark that trains runs, measures them and plots: the facts of the
machine it ran on, decoding speed, and writing the JSON, the plot and the tables."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any

import torch

from xlm_core.checkpoint import FINAL_DIR, CheckpointRecord
from xlm_core.plugins import get_registry


def machine_facts(device: str) -> dict[str, Any]:
    """Where the figures come from; the load average says whether other work shared the cores."""
    return {
        "device": device,
        "machine": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "load_average_1m_at_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def sets(items: list[str]) -> list[str]:
    """``xlm`` command-line flags for config items: ``--set k=v`` each."""
    return [arg for item in items for arg in ("--set", item)]


def finished_run(run_dir: Path, config: Any) -> bool:
    """Whether ``run_dir`` holds a finished run of ``config``: its ``final/`` checkpoint exists and
    its recorded run config, read with today's defaults, is ``config``. A benchmark reuses such
    a run; a changed preset, default or setting trains it anew instead of reusing a stale one."""
    final = run_dir / FINAL_DIR
    if not (final / "model.safetensors").is_file():
        return False
    record = CheckpointRecord.read(final)
    return record.load_run_config(get_registry().get(config.plugin)) == config


def tokens_per_s(pipeline: Any, settings: Any, batch: int, rows: int) -> dict[str, Any]:
    """Generated tokens per second decoding ``rows`` empty prompts ``batch`` at a time (best of
    two, after a warm-up), in the precision ``xlm generate`` would use for that batch."""
    prompts, seeds = [[] for _ in range(rows)], list(range(rows))

    def decode(count: int) -> tuple[int, int]:
        tokens = nfe = 0
        with pipeline.autocast(settings, batch):
            for i in range(0, count, batch):
                pred = pipeline.predictor.predict(
                    pipeline.model,
                    prompts[i : i + batch],
                    settings=settings,
                    seeds=seeds[i : i + batch],
                )
                tokens, nfe = tokens + int(pred.lengths.sum()), nfe + int(pred.nfe.sum())
        if pipeline.device.type == "cuda":
            torch.cuda.synchronize(pipeline.device)
        return tokens, nfe

    decode(batch)  # warm-up
    best, tokens, nfe = float("inf"), 0, 0
    for _ in range(2):
        start = time.perf_counter()
        tokens, nfe = decode(rows)
        best = min(best, time.perf_counter() - start)
    return {
        "batch": batch,
        "tokens_per_s": tokens / best,
        "mean_length": tokens / rows,
        "nfe_per_token": nfe / max(tokens, 1),
    }


def budget_decoder(pipeline: Any, settings: dict[str, Any]) -> Callable[[int, int], dict[str, Any]]:
    """``(batch, rows) -> tokens_per_s row`` of ``pipeline`` decoding with ``settings`` and the
    task's whole length budget (``max_new_tokens``), the same for every model compared."""
    settings = pipeline.settings(**settings, max_new_tokens=pipeline.shape.target_length)
    return lambda batch, rows: tokens_per_s(pipeline, settings, batch, rows)


def paired(
    first: Callable[[], dict[str, Any]], second: Callable[[], dict[str, Any]], pairs: int
) -> dict[str, Any]:
    """Two speed measurements (:func:`tokens_per_s` rows) alternated ``pairs`` times, the order
    flipped every pair: both lists of rows, the per-pair ratios of tokens/s (second / first) and
    their median. A ratio of two measurements taken side by side survives a host whose speed
    drifts, where a ratio to one early measurement does not."""
    runs: dict[str, list[dict[str, Any]]] = {"first": [], "second": []}
    for pair in range(pairs):
        for name in ("first", "second") if pair % 2 == 0 else ("second", "first"):
            runs[name].append((first if name == "first" else second)())
    ratios = [
        b["tokens_per_s"] / a["tokens_per_s"]
        for a, b in zip(runs["first"], runs["second"], strict=True)
    ]
    return {**runs, "ratios": ratios, "ratio": statistics.median(ratios)}


def paired_speeds(
    first: Callable[[int, int], dict[str, Any]],
    second: Callable[[int, int], dict[str, Any]],
    batches: Iterable[tuple[int, int]],
    pairs: int,
) -> list[dict[str, Any]]:
    """:func:`paired` at each ``(batch size, rows decoded)`` of ``batches``, for two decoders
    ``(batch, rows) -> tokens_per_s row`` (:func:`budget_decoder`)."""
    return [paired(partial(first, b, n), partial(second, b, n), pairs) for b, n in batches]


def median_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One :func:`tokens_per_s` row for several measurements of the same decoding: their median speed."""
    return {**rows[0], "tokens_per_s": statistics.median(r["tokens_per_s"] for r in rows)}


def finish(
    report: dict[str, Any],
    args: argparse.Namespace,
    start: float,
    plot: Callable[[dict[str, Any], Any], None] | None,
    print_tables: Callable[[dict[str, Any]], None],
) -> None:
    """Plot into ``args.plot`` (unless ``plot`` is None), write ``report`` to ``args.out`` and
    print the tables."""
    report["seconds"] = time.perf_counter() - start
    if plot is not None:
        plot(report, args.plot)
    report["plot"] = None if plot is None else str(args.plot)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print_tables(report)
    wrote = args.out if plot is None else f"{args.out} and {args.plot}"
    print(f"\nwrote {wrote} ({report['seconds']:.0f} s)")
