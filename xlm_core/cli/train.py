"""``xlm train``: resolve the run config, train, write checkpoints, evaluate and show samples.

Everything the user typed is checked before torch is imported or a file is touched.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

from xlm_core.cli._common import fail

EPILOG = (
    "Examples:\n\n"
    "  xlm train --plugin mdlm            (tiny preset on star-easy; CPU is fine)\n\n"
    "  xlm train --plugin arlm --task star-hard --preset small --devices 4\n\n"
    "  xlm train --plugin mdlm --set training.lr=3e-4 --print-config\n\n"
    "  xlm train --resume runs/mdlm-star-easy-20250101-120000 --max-steps 5000"
)


def train(
    plugin: str | None = typer.Option(
        None, "--plugin", "-p", help="Model family (see `xlm plugins list`)."
    ),
    task: str | None = typer.Option(
        None, "--task", help="Task name (see `xlm tasks list`); default star-easy."
    ),
    preset: str | None = typer.Option(
        None, "--preset", help="Family preset applied over the defaults; default tiny."
    ),
    config: Path | None = typer.Option(
        None, "--config", help="YAML, TOML or JSON file with config sections."
    ),
    sets: list[str] | None = typer.Option(
        None, "--set", help="Override one key, e.g. --set training.lr=3e-4."
    ),
    max_steps: int | None = typer.Option(
        None, "--max-steps", min=1, help="Optimizer steps (training.max_steps)."
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Run directory; default runs/<plugin>-<task>-<time>."
    ),
    resume: Path | None = typer.Option(
        None, "--resume", help="Continue the run in this directory."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the run already in --out."),
    print_config: bool = typer.Option(
        False, "--print-config", help="Print the resolved config (YAML) and exit."
    ),
    devices: str | None = typer.Option(
        None, "--devices", help="Lightning devices: auto, a count, or ids '0,1'."
    ),
    strategy: str | None = typer.Option(
        None, "--strategy", help="Lightning strategy: auto, ddp, fsdp, ..."
    ),
    num_nodes: int | None = typer.Option(None, "--num-nodes", min=1, help="Lightning nodes."),
    accelerator: str | None = typer.Option(
        None, "--accelerator", help="Lightning accelerator: auto, cpu, gpu."
    ),
    precision: str | None = typer.Option(
        None, "--precision", help="auto, 32, bf16-mixed or 16-mixed."
    ),
) -> None:
    """Train a model family on a task; write DIR/final/ and print test metrics and samples."""
    from xlm_core.config import dump_config
    from xlm_core.rundir import RUN_DIR_ENV, check_out_dir, default_run_dir, is_main_process

    hardware = {
        "devices": devices,
        "strategy": strategy,
        "num_nodes": num_nodes,
        "accelerator": accelerator,
        "precision": precision,
    }
    flag_sets = [f"training.{key}={value}" for key, value in hardware.items() if value is not None]
    if max_steps is not None:
        flag_sets.append(f"training.max_steps={max_steps}")
    overrides = [*flag_sets, *(sets or [])]

    if resume is not None:
        run_config = _resumed_config(
            resume, plugin, overrides, task=task, preset=preset, config=config
        )
    else:
        if plugin is None:
            raise fail(
                "--plugin is required (or --resume DIR to continue a run); see `xlm plugins list`"
            )
        from xlm_core.config import resolve_run_config

        run_config = resolve_run_config(
            plugin, preset=preset, config_file=config, sets=overrides, task=task
        )
    check_task_name(run_config.task.name)
    if print_config:
        typer.echo(dump_config(run_config), nl=False)
        return

    if resume is not None:
        run_dir = resume
    else:
        # Processes Lightning launches for other devices re-run this command: they join rank 0's directory.
        inherited = os.environ.get(RUN_DIR_ENV)
        run_dir = out or (
            Path(inherited)
            if inherited
            else default_run_dir(run_config.plugin, run_config.task.name)
        )
        if is_main_process():
            check_out_dir(run_dir, overwrite=overwrite)

    from xlm_core.runner import train as run_training

    result = run_training(
        run_config, run_dir=run_dir, resume=resume is not None, overwrite=overwrite
    )
    if result.is_main:
        _report(result)


def _resumed_config(run_dir: Path, plugin: str | None, overrides: list[str], **others: object):
    """The run's saved config with ``--set``/``--max-steps``/hardware flags applied."""
    from xlm_core.checkpoint import RUN_FILE, CheckpointRecord
    from xlm_core.config import override_run_config, resume_change_refused

    given = [f"--{name}" for name, value in others.items() if value is not None]
    if given:
        raise fail(
            f"--resume continues a run with its saved config; drop {', '.join(given)} (use --set to change values)"
        )
    if not (run_dir / RUN_FILE).is_file():
        raise fail(f"--resume {run_dir}: not a run directory (it has no {RUN_FILE})")
    record = CheckpointRecord.read(run_dir, RUN_FILE)
    saved = record.load_run_config(record.family())
    if plugin is not None and plugin != saved.plugin:
        raise fail(f"--resume {run_dir} is a run of plugin {saved.plugin!r}, not {plugin!r}")
    resumed = override_run_config(saved, overrides)
    refused = resume_change_refused(saved, resumed)
    if refused is not None:
        raise fail(
            f"--resume cannot change {refused}: a resumed run keeps its model, task, tokenizer and seed "
            f"(docs/usage.md, 'Failure and recovery'); train a new run with --out to change it"
        )
    return resumed


def check_task_name(name: str) -> None:
    """Reject an unknown task before any work, suggesting the closest known name."""
    from xlm_core.data.tasks import list_tasks
    from xlm_core.utils import suggest

    known = [info.name for info in list_tasks()]
    if name not in known:
        close = suggest(name, known)
        hint = f" (did you mean {close!r}?)" if close else ""
        raise fail(f"unknown task {name!r}{hint}; known tasks: {', '.join(known)}")


def _report(result) -> None:
    """Samples, test metrics and where everything is: what a person looks at after training."""
    if result.samples:
        typer.echo("\nsamples:")
        for sample in result.samples:
            if sample.prompt:
                typer.echo(f"  prompt:    {sample.prompt}")
            typer.echo(f"  generated: {sample.text}")
            if sample.reference is not None:
                mark = "ok" if sample.text == sample.reference else "differs"
                typer.echo(f"  reference: {sample.reference}  ({mark})")
            typer.echo("")
    if result.metrics:
        typer.echo(
            f"test ({result.metrics['n_examples']} examples): {format_metrics(result.metrics)}"
        )
    minutes, seconds = divmod(int(result.seconds), 60)
    steps = f"{result.steps} steps"
    if result.steps < result.max_steps:
        steps = f"{result.steps} of {result.max_steps} steps (training.max_minutes reached)"
    typer.echo(f"done: {steps} in {minutes}m{seconds:02d}s · checkpoint: {result.checkpoint}")
    typer.echo(
        f"next: xlm generate --checkpoint {result.checkpoint} · xlm eval --checkpoint {result.checkpoint} --json"
    )


def format_metrics(metrics: dict) -> str:
    """The headline numbers of an evaluation on one line."""
    parts = []
    for key in ("seq_acc", "token_acc"):
        if metrics.get(key) is not None:
            parts.append(f"{key} {metrics[key]:.3f}")
    if metrics.get("nll") is not None:
        parts.append(f"nll {metrics['nll']:.4f} ({metrics['nll_kind']})")
        parts.append(f"ppl {metrics['ppl']:.3f}")
    else:
        parts.append(f"nll none ({metrics.get('nll_kind')})")
    if metrics.get("nfe") is not None:
        parts.append(f"nfe {metrics['nfe']:.1f}")
    if metrics.get("samples_per_s") is not None:
        parts.append(f"{metrics['samples_per_s']:.1f} samples/s")
    return " · ".join(parts)


def register(app: typer.Typer) -> None:
    app.command("train", epilog=EPILOG, no_args_is_help=False)(train)
