"""``xlm generate``: sample from a checkpoint, optionally showing how each sequence forms."""

from __future__ import annotations

from pathlib import Path

import typer

from xlm_core.cli._common import print_json

EPILOG = (
    "Examples:\n\n"
    "  xlm generate --checkpoint runs/NAME/final       (first 4 test prompts, or 4 texts)\n\n"
    "  xlm generate --checkpoint runs/NAME --prompt '1 2 3 4 1 5' --num-samples 3 --seed 7\n\n"
    "  xlm generate --checkpoint runs/NAME --show-steps --set predictor.temperature=0\n\n"
    "  xlm generate --checkpoint runs/NAME --json\n\n"
    "  xlm generate --checkpoint runs/NAME --device cuda:1"
)

DEVICE_OPTION = typer.Option(
    None, "--device", help="cpu, cuda, cuda:1, ... (default: cuda if available, else cpu)."
)


def generate(
    checkpoint: Path = typer.Option(
        ..., "--checkpoint", "-c", help="Checkpoint directory (or a run directory)."
    ),
    prompts: list[str] | None = typer.Option(
        None, "--prompt", help="Prompt text; repeat for several."
    ),
    num_samples: int | None = typer.Option(
        None,
        "--num-samples",
        "-n",
        min=1,
        help="Samples per prompt; without --prompt, how many (default 4).",
    ),
    seed: int = typer.Option(
        0, "--seed", help="Sample j is seeded with (seed, j): same seed, same samples."
    ),
    sets: list[str] | None = typer.Option(
        None,
        "--set",
        metavar="predictor.KEY=VALUE",
        help="Sampling setting, e.g. --set predictor.temperature=0.",
    ),
    json_out: bool = typer.Option(
        False, "--json", help="Print a JSON list of {prompt, text, ids, steps, nfe}."
    ),
    show_steps: bool = typer.Option(
        False, "--show-steps", help="Show the sequence after every decoding step."
    ),
    device: str | None = DEVICE_OPTION,
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
        rows = []
        for r in results:
            row = r.as_dict()
            if not show_steps:
                row.pop("history")
            rows.append(row)
        print_json(rows)
        return
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
        typer.echo(f"    steps {r.steps} · nfe {r.nfe} · {len(r.ids)} tokens")


def open_checkpoint(checkpoint: Path, sets: list[str] | None, device: str | None = None):
    """Check the checkpoint and the ``--set predictor.*`` overrides, then load onto ``device``
    (only then is torch imported)."""
    from xlm_core.checkpoint import CheckpointRecord, find_checkpoint
    from xlm_core.config import parse_section_sets

    record = CheckpointRecord.read(find_checkpoint(checkpoint))  # the one read of config.json
    family = record.family()
    overrides = parse_section_sets(sets or [], family.manifest.predictor_settings, "predictor")

    from xlm_core.pipeline import Pipeline

    pipeline = Pipeline.from_checkpoint(record, family=family, device=device)
    pipeline.settings(**overrides)  # cross-field checks (e.g. min <= max) before any sampling
    return pipeline, overrides


def register(app: typer.Typer) -> None:
    app.command("generate", epilog=EPILOG)(generate)
