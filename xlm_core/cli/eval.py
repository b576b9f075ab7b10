"""``xlm eval``: likelihood, task and sample-quality metrics of a checkpoint over a split."""

from __future__ import annotations

import math
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from xlm_core.cli._common import CheckpointOption, DeviceOption, PredictorSetsOption, print_json
from xlm_core.cli.generate import open_checkpoint
from xlm_core.components import SPLITS
from xlm_core.errors import renamed_attributes

EPILOG = (
    "Examples:\n\n"
    "  xlm eval --checkpoint runs/NAME/final --limit 500\n\n"
    "  xlm eval --checkpoint runs/NAME --split validation --json\n\n"
    "  xlm eval --checkpoint runs/MDLM --judge runs/ARLM --json      (generative perplexity)\n\n"
    "  xlm eval --checkpoint runs/MDLM --judge runs/ARLM --prefix-len 32\n\n"
    "  xlm eval --checkpoint runs/NAME --metric brier --limit 200    (BrierLM only)\n\n"
    "  xlm eval --checkpoint runs/NAME --set predictor.temperature=0 --json\n\n"
    "  xlm eval --checkpoint runs/NAME --device cpu"
)


#: The splits ``xlm eval`` offers: every split but the training data.
EvalSplit = Enum("EvalSplit", {name: name for name in SPLITS if name != "train"}, type=str)


class Metric(str, Enum):
    """``default``: likelihood, task accuracy and sample figures; ``brier``: BrierLM."""

    default = "default"
    brier = "brier"


JudgeOption = Annotated[
    Path | None,
    typer.Option(
        "--judge",
        help="Checkpoint (nll_kind exact, e.g. an ARLM) that scores the samples: generative perplexity.",
    ),
]
PrefixOption = Annotated[
    int | None,
    typer.Option(
        "--prefix-len",
        min=1,
        help="Text: sample continuations of the first N tokens of each test block, not whole blocks.",
    ),
]
MetricOption = Annotated[
    list[Metric] | None,
    typer.Option(
        "--metric",
        help="default: likelihood, task and sample figures (gen-PPL with --judge); "
        "brier: BrierLM. Repeat for both (default: default).",
    ),
]
PrefixesOption = Annotated[
    int, typer.Option("--brier-prefixes", min=1, help="BrierLM: prefixes per test block.")
]


def evaluate(
    checkpoint: CheckpointOption,
    split: Annotated[
        EvalSplit, typer.Option("--split", help="Which split to evaluate.")
    ] = EvalSplit.test,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Use the first N examples (default: all).")
    ] = None,
    metrics: MetricOption = None,
    judge: JudgeOption = None,
    prefix_len: PrefixOption = None,
    brier_prefixes: PrefixesOption = 4,
    sets: PredictorSetsOption = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    device: DeviceOption = None,
) -> None:
    """Evaluate a checkpoint: likelihood, task accuracy, sample quality and speed.

    nll is exact or a bound, as nll_kind says; --judge adds generative perplexity,
    --metric brier adds BrierLM (any family whose predictor continues a prompt).
    """
    chosen = set(metrics or [Metric.default])
    if judge is not None or prefix_len is not None:
        chosen.add(Metric.default)  # the judge scores, and --prefix-len shapes, its samples
    pipeline, overrides = open_checkpoint(checkpoint, sets, device)
    from xlm_core.evaluation import require_continuation
    from xlm_core.judge import Judge

    # every check before any work: a bad judge or an impossible --metric brier fails at once
    judging = Judge.of(judge, pipeline.device).pipeline if judge is not None else None
    if Metric.brier in chosen:
        require_continuation(pipeline, "--metric brier")
    limit = limit if limit is not None else pipeline.run_config.eval.limit
    progress = not json_out
    parts = []
    if Metric.default in chosen:
        options = {"judge": judging, "prefix_len": prefix_len, "progress": progress}
        parts.append(pipeline.evaluate(split.value, limit, **options, **overrides))
    if Metric.brier in chosen:
        options = {"prefixes": brier_prefixes, "progress": progress}
        parts.append(pipeline.brier(split.value, limit, **options, **overrides))
    results = _merged(parts)
    if json_out:
        print_json(results)
        return
    _print(results)


def _merged(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One object from several evaluations: their figures, and their ``notes`` joined."""
    results: dict[str, Any] = {}
    notes: dict[str, str] = {}
    for part in parts:
        notes.update(part.get("notes", {}))
        results.update({k: v for k, v in part.items() if k != "notes"})
    return {**results, "notes": notes} if notes else results


def _print(results: dict[str, Any]) -> None:
    from xlm_core.cli.train import format_metrics

    headline = format_metrics(results) if "nll_kind" in results else _brier_line(results)
    typer.echo(
        f"{results['task']} {results['split']} ({results['n_examples']} examples): {headline}"
    )
    notes = results.get("notes", {})
    for key, value in results.items():
        if key not in ("task", "split", "n_examples", "notes"):
            why = f"  ({notes[key]})" if key in notes else ""
            typer.echo(f"  {key:22} {_shown(value)}{why}")
    for key, why in notes.items():
        if key not in results:
            typer.echo(f"  note: {key} {why}")


def _brier_line(results: dict[str, Any]) -> str:
    lm = results.get("brier_lm")
    return f"BrierLM {_shown(lm)} over {results['brier_prefixes']} prefixes"


def _shown(value: Any) -> str:
    """A figure as text: 4 decimals; null for a missing or non-finite one (never ``nan``)."""
    if value is None:
        return "null"
    if isinstance(value, float):
        return f"{value:.4f}" if math.isfinite(value) else f"null ({value})"
    return str(value)


def register(app: typer.Typer) -> None:
    app.command("eval", epilog=EPILOG)(evaluate)


#: ``Split`` (now :data:`EvalSplit`) still resolves, with one warning, until xlm-core 0.3.0.
__getattr__ = renamed_attributes(__name__, {"Split": "xlm_core.cli.eval.EvalSplit"})
