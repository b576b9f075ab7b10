"""``xlm train``: resolve the run config, train, write checkpoints, evaluate and show samples.

Everything the user typed is checked before torch is imported or a file is touched.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from xlm_core.cli._common import fail

EPILOG = (
    "Examples:\n\n"
    "  xlm train --plugin mdlm            (tiny preset on star-easy; CPU is fine)\n\n"
    "  xlm train --plugin arlm --task star-hard --preset small --devices 4\n\n"
    "  xlm train --plugin mdlm --set training.lr=3e-4 --print-config\n\n"
    "  xlm train --resume runs/mdlm-star-easy-20250101-120000 --max-steps 5000\n\n"
    "  xlm train --plugin bdlm --init-from runs/arlm-star-easy-20250101-120000/final"
)


# The options, one alias each so that the command's signature reads as a list.
PluginOption = Annotated[
    str | None, typer.Option("--plugin", "-p", help="Model family (see `xlm plugins list`).")
]
TaskOption = Annotated[
    str | None, typer.Option("--task", help="Task name (see `xlm tasks list`); default star-easy.")
]
PresetOption = Annotated[
    str | None,
    typer.Option("--preset", help="Family preset applied over the defaults; default tiny."),
]
ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="YAML, TOML or JSON file with config sections.")
]
SetsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set", metavar="KEY=VALUE", help="Override one key, e.g. --set training.lr=3e-4."
    ),
]
MaxStepsOption = Annotated[
    int | None, typer.Option("--max-steps", min=1, help="Optimizer steps (training.max_steps).")
]
OutOption = Annotated[
    Path | None, typer.Option("--out", help="Run directory; default runs/<plugin>-<task>-<time>.")
]
ResumeOption = Annotated[
    Path | None, typer.Option("--resume", help="Continue the run in this directory.")
]
InitFromOption = Annotated[
    Path | None,
    typer.Option(
        "--init-from",
        metavar="CHECKPOINT",
        help="Start the model from this checkpoint's weights (same backbone) and the run from its "
        "tokenizer; recorded in run.json (docs/usage.md, 'Converting an autoregressive model').",
    ),
]
OverwriteOption = Annotated[
    bool, typer.Option("--overwrite", help="Replace the xlm run already in --out.")
]
PrintConfigOption = Annotated[
    bool, typer.Option("--print-config", help="Print the resolved config (YAML) and exit.")
]
DevicesOption = Annotated[
    str | None,
    typer.Option("--devices", help="Lightning devices: a count or ids '0,1' (auto: one device)."),
]
StrategyOption = Annotated[
    str | None, typer.Option("--strategy", help="Lightning strategy: auto, ddp, fsdp, ...")
]
NumNodesOption = Annotated[int | None, typer.Option("--num-nodes", min=1, help="Lightning nodes.")]
AcceleratorOption = Annotated[
    str | None, typer.Option("--accelerator", help="Lightning accelerator: auto, cpu, gpu.")
]
PrecisionOption = Annotated[
    str | None, typer.Option("--precision", help="auto, 32, bf16-mixed or 16-mixed.")
]


def train(
    plugin: PluginOption = None,
    task: TaskOption = None,
    preset: PresetOption = None,
    config: ConfigOption = None,
    sets: SetsOption = None,
    max_steps: MaxStepsOption = None,
    out: OutOption = None,
    resume: ResumeOption = None,
    init_from: InitFromOption = None,
    overwrite: OverwriteOption = False,
    print_config: PrintConfigOption = False,
    devices: DevicesOption = None,
    strategy: StrategyOption = None,
    num_nodes: NumNodesOption = None,
    accelerator: AcceleratorOption = None,
    precision: PrecisionOption = None,
) -> None:
    """Train a model family on a task; write DIR/final/ and print test metrics and samples."""
    from xlm_core.config import dump_config

    hardware = {
        "devices": devices,
        "strategy": strategy,
        "num_nodes": num_nodes,
        "accelerator": accelerator,
        "precision": precision,
        "max_steps": max_steps,
    }
    overrides = [f"training.{k}={v}" for k, v in hardware.items() if v is not None] + (sets or [])
    if resume is not None and init_from is not None:
        raise fail("--init-from starts a new run; --resume continues one from its own state: drop one")
    if resume is not None:
        run_config = _resumed_config(
            resume, plugin, overrides, task=task, preset=preset, config=config
        )
    elif plugin is None:
        raise fail(
            "--plugin is required (or --resume DIR to continue a run); see `xlm plugins list`"
        )
    else:
        from xlm_core.config import resolve_run_config

        run_config = resolve_run_config(
            plugin, preset=preset, config_file=config, sets=overrides, task=task
        )
    check_task_name(run_config.task.name)
    if print_config:
        typer.echo(dump_config(run_config), nl=False)
        return

    from xlm_core.runner import train as run_training

    run_dir = resume if resume is not None else _new_run_dir(out, run_config, overwrite)
    result = run_training(
        run_config,
        run_dir=run_dir,
        resume=resume is not None,
        overwrite=overwrite,
        init_from=init_from,
    )
    if result.is_main:
        _report(result)


def _new_run_dir(out: Path | None, run_config, overwrite: bool) -> Path:
    """``--out``, or the directory the launching process chose, or a new one; checked on the main process."""
    from xlm_core.rundir import RUN_DIR_ENV, check_out_dir, default_run_dir, is_main_process

    # Processes Lightning launches for other devices re-run this command: they join rank 0's directory.
    inherited = os.environ.get(RUN_DIR_ENV)
    run_dir = out or (
        Path(inherited) if inherited else default_run_dir(run_config.plugin, run_config.task.name)
    )
    if is_main_process():
        check_out_dir(run_dir, overwrite=overwrite)
    return run_dir


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
