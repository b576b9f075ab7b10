"""``xlm eval``: likelihood and task metrics of a checkpoint over a split."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from xlm_core.cli._common import CheckpointOption, DeviceOption, PredictorSetsOption, print_json
from xlm_core.cli.generate import open_checkpoint
from xlm_core.components import SPLITS

EPILOG = (
    "Examples:\n\n"
    "  xlm eval --checkpoint runs/NAME/final --limit 500\n\n"
    "  xlm eval --checkpoint runs/NAME --split validation --json\n\n"
    "  xlm eval --checkpoint runs/NAME --set predictor.temperature=0 --json\n\n"
    "  xlm eval --checkpoint runs/NAME --device cpu"
)


#: The splits ``xlm eval`` offers: every split but the training data.
EvalSplit = Enum("EvalSplit", {name: name for name in SPLITS if name != "train"}, type=str)


def evaluate(
    checkpoint: CheckpointOption,
    split: Annotated[
        EvalSplit, typer.Option("--split", help="Which split to evaluate.")
    ] = EvalSplit.test,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Use the first N examples (default: all).")
    ] = None,
    sets: PredictorSetsOption = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    device: DeviceOption = None,
) -> None:
    """Evaluate a checkpoint: task accuracy, per-token NLL and ppl, NFE and speed.

    Prompted tasks report seq_acc and token_acc; nll is exact or a bound, as nll_kind says.
    """
    from xlm_core.cli.train import format_metrics

    pipeline, overrides = open_checkpoint(checkpoint, sets, device)
    limit = limit if limit is not None else pipeline.run_config.eval.limit
    metrics = pipeline.evaluate(split.value, limit, progress=not json_out, **overrides)
    if json_out:
        print_json(metrics)
        return
    typer.echo(
        f"{metrics['task']} {metrics['split']} ({metrics['n_examples']} examples): {format_metrics(metrics)}"
    )
    for key, value in metrics.items():
        if key not in ("task", "split", "n_examples"):
            typer.echo(
                f"  {key:16} {value:.4f}" if isinstance(value, float) else f"  {key:16} {value}"
            )


def register(app: typer.Typer) -> None:
    app.command("eval", epilog=EPILOG)(evaluate)
