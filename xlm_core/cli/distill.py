"""``xlm distill``: write a teacher's outputs as a dataset any family trains on (``--task distilled``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from xlm_core.cli._common import DeviceOption, PredictorSetsOption

EPILOG = (
    "Examples:\n\n"
    "  xlm distill --teacher runs/arlm-star/final --task star-easy --out data/star-arlm\n\n"
    "  xlm distill --teacher runs/arlm-text --task text --out data/text-arlm --limit 10000"
    " --set predictor.top_p=0.9\n\n"
    "  xlm train --plugin mdlm --task distilled --set task.path=data/star-arlm"
)


def distill(
    teacher: Annotated[
        Path, typer.Option("--teacher", help="The teacher's checkpoint (or its run directory).")
    ],
    task: Annotated[
        str,
        typer.Option(
            "--task",
            help="The task the teacher was trained on: its training prompts are answered "
            "(prompted tasks), or it samples unconditionally (text).",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Directory to write; must be new or empty.")],
    sets: PredictorSetsOption = None,
    seed: Annotated[
        int, typer.Option("--seed", help="Seed of the teacher's sampling: same seed, same data.")
    ] = 0,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit",
            min=1,
            help="Prompted: the first N training prompts (default: all). Text: N samples "
            "(default: as many as the task has training blocks).",
        ),
    ] = None,
    device: DeviceOption = None,
) -> None:
    """Sequence-level knowledge distillation: the teacher's outputs for its task's training data,
    with provenance; validation and test stay the original task's."""
    from xlm_core.cli.generate import load_pipeline, read_checkpoint
    from xlm_core.distilling import check_out, check_teacher_task

    check_out(out)
    record, family, overrides = read_checkpoint(teacher, sets)
    check_teacher_task(record, task)
    pipeline = load_pipeline(record, family, overrides, device)

    from xlm_core.distilling import distill as write_distilled

    written = write_distilled(
        pipeline, record, out, seed=seed, limit=limit, overrides=overrides, progress=True
    )
    dropped = f" ({written.empty_outputs} empty outputs left out)" if written.empty_outputs else ""
    typer.echo(f"wrote {written.examples} {written.kind} examples to {out}{dropped}")
    typer.echo(f"next: xlm train --plugin NAME --task distilled --set task.path={out}")


def register(app: typer.Typer) -> None:
    app.command("distill", epilog=EPILOG)(distill)
