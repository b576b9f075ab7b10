"""``xlm generate``: sample from a checkpoint, optionally showing how each sequence forms."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from xlm_core.cli._common import CheckpointOption, DeviceOption, PredictorSetsOption, print_json

EPILOG = (
    "Examples:\n\n"
    "  xlm generate --checkpoint runs/NAME/final       (first 4 test prompts, or 4 texts)\n\n"
    "  xlm generate --checkpoint runs/NAME --prompt '1 2 3 4 1 5' --num-samples 3 --seed 7\n\n"
    "  xlm generate --checkpoint runs/NAME --show-steps --set predictor.temperature=0\n\n"
    "  xlm generate --checkpoint runs/NAME --json\n\n"
    "  xlm generate --checkpoint runs/NAME --device cuda:1"
)


def generate(
    checkpoint: CheckpointOption,
    prompts: Annotated[
        list[str] | None,
        typer.Option("--prompt", metavar="TEXT", help="Prompt text; repeat for several."),
    ] = None,
    num_samples: Annotated[
        int | None,
        typer.Option(
            "--num-samples",
            "-n",
            min=1,
            help="Samples per prompt; without --prompt, how many (default 4).",
        ),
    ] = None,
    seed: Annotated[
        int,
        typer.Option("--seed", help="Sample j is seeded with (seed, j): same seed, same samples."),
    ] = 0,
    sets: PredictorSetsOption = None,
    json_out: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print a JSON list of {prompt, text, ids, steps, nfe} (and counters, for a family that "
            "reports more).",
        ),
    ] = False,
    show_steps: Annotated[
        bool, typer.Option("--show-steps", help="Show the sequence after every decoding step.")
    ] = False,
    device: DeviceOption = None,
) -> None:
    """Sample from a trained model. Without --prompt: test prompts (prompted tasks) or unconditional text."""
    pipeline, overrides = open_checkpoint(checkpoint, sets, device)
    results = pipeline.generate(
        prompts or None,
        num_samples=num_samples,
        seed=seed,
        record_steps=show_steps,
        progress=not json_out,
        **overrides,
    )
    if json_out:
        print_json([_row(r, show_steps) for r in results])
        return
    _print_samples(pipeline, results, show_steps)


def _row(result, show_steps: bool) -> dict:
    row = result.as_dict()
    if not show_steps:
        row.pop("history")
    if not row["counters"]:  # only families that report counts beyond nfe (plugin API 1.2) have them
        row.pop("counters")
    return row


def _print_samples(pipeline, results, show_steps: bool) -> None:
    for j, r in enumerate(results):
        typer.echo(f"[{j}] prompt:    {r.prompt}" if r.prompt else f"[{j}]")
        if show_steps and r.history:
            width = len(str(len(r.history)))
            for step, row in enumerate(r.history, start=1):
                typer.echo(f"    step {step:>{width}}: {pipeline.render(row)}")
        typer.echo(f"    generated: {r.text}")
        if r.reference is not None:
            typer.echo(
                f"    reference: {r.reference}  ({'ok' if r.text == r.reference else 'differs'})"
            )
        counted = "".join(f" · {name} {value}" for name, value in r.counters.items())
        typer.echo(f"    steps {r.steps} · nfe {r.nfe}{counted} · {len(r.ids)} tokens")


def open_checkpoint(checkpoint: Path, sets: list[str] | None, device: str | None = None):
    """Check the checkpoint and the ``--set predictor.*`` overrides, then load onto ``device``
    (only then is torch imported)."""
    record, family, overrides = read_checkpoint(checkpoint, sets)
    return load_pipeline(record, family, overrides, device), overrides


def read_checkpoint(checkpoint: Path, sets: list[str] | None):
    """The checkpoint's record (the one read of config.json), its installed family and the checked
    ``--set predictor.*`` overrides; torch-free, so a command can check more before loading."""
    from xlm_core.checkpoint import CheckpointRecord, find_checkpoint
    from xlm_core.config import parse_section_sets

    record = CheckpointRecord.read(find_checkpoint(checkpoint))
    family = record.family()
    overrides = parse_section_sets(sets or [], family.manifest.predictor_settings, "predictor")
    return record, family, overrides


def load_pipeline(record, family, overrides: dict, device: str | None = None):
    """The pipeline of a checkpoint :func:`read_checkpoint` checked, its settings validated."""
    from xlm_core.pipeline import Pipeline

    pipeline = Pipeline.from_checkpoint(record, family=family, device=device)
    pipeline.settings(**overrides)  # cross-field checks (e.g. min <= max) before any sampling
    return pipeline


def register(app: typer.Typer) -> None:
    app.command("generate", epilog=EPILOG)(generate)
