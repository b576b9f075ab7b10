"""``xlm plugins``: list, show, validate and scaffold plugins.

``list`` and ``show`` read only manifests and pydantic configs, so they never
import torch; ``validate`` runs the conformance kit and does. How the tables
and schemas look is ``_render``'s concern.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from xlm_core.cli._common import print_json, warn
from xlm_core.cli._render import default_text, flatten, qualname, schema_rows, short_error, table

if TYPE_CHECKING:  # pragma: no cover
    from xlm_core.plugins.registry import PluginRecord, Registry

plugins_app = typer.Typer(
    help="Inspect, validate and scaffold model-family plugins.",
    no_args_is_help=True,
    epilog="Examples:\n\n  xlm plugins list\n\n  xlm plugins show mdlm\n\n  xlm plugins validate mdlm\n\n"
    "  xlm plugins new toy --dir ~/src",
)


# -- list -------------------------------------------------------------------------------------


@plugins_app.command(
    "list",
    epilog="Examples:\n\n  xlm plugins list\n\n  xlm plugins list --json\n\n"
    "  XLM_STRICT_PLUGINS=1 xlm plugins list      exit code 1 if any plugin failed to load",
)
def list_plugins(json_out: bool = typer.Option(False, "--json", help="Print a JSON list.")) -> None:
    """One row per plugin found: name, distribution, version, API version, status, error."""
    registry = _registry()
    records = registry.records()
    if json_out:
        print_json([r.as_row() for r in records])
    elif not records:
        typer.echo("no plugins installed; try `pip install xlm-mdlm` or `xlm plugins new NAME`")
    else:
        rows = [
            [
                r.name,
                r.distribution or "(in-process)",
                r.version or "-",
                r.api_version or "-",
                r.status,
                short_error(r),
            ]
            for r in records
        ]
        typer.echo(table(["NAME", "DISTRIBUTION", "VERSION", "API", "STATUS", "ERROR"], rows))
    registry.check_strict()


# -- show -------------------------------------------------------------------------------------


@plugins_app.command(
    "show", epilog="Examples:\n\n  xlm plugins show mdlm\n\n  xlm plugins show mdlm --json"
)
def show(
    name: str = typer.Argument(..., help="Family name, as listed by `xlm plugins list`."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """A family's config schema (field, type, default, description), its predictor settings and presets."""
    from xlm_core.plugins.isolation import printable

    family = _registry().get(name)
    manifest, record = family.manifest, family.record
    config_rows = schema_rows(manifest.config)
    settings_rows = schema_rows(manifest.predictor_settings)
    if json_out:
        print_json(
            {
                "name": record.name,
                "distribution": record.distribution,
                "version": record.version,
                "api_version": record.api_version,
                "description": manifest.description,
                "config": {"class": qualname(manifest.config), "fields": config_rows},
                "predictor_settings": {
                    "class": qualname(manifest.predictor_settings),
                    "fields": settings_rows,
                },
                "presets": manifest.presets,
            }
        )
        return
    description = printable(manifest.description)  # the plugin's text, bound for a terminal
    typer.echo(f"{record.name}: {description}" if description else record.name)
    typer.echo(f"  {record.source}, plugin API {record.api_version}")
    for title, cls, rows, section in (
        ("Model config", manifest.config, config_rows, "model"),
        ("Predictor settings", manifest.predictor_settings, settings_rows, "predictor"),
    ):
        typer.echo(f"\n{title} ({qualname(cls)}), set with --set {section}.FIELD=VALUE")
        table_rows = [
            [r["field"], r["type"], default_text(r["default"]), r["description"]] for r in rows
        ]
        typer.echo(table(["FIELD", "TYPE", "DEFAULT", "DESCRIPTION"], table_rows, indent="  "))
    typer.echo("\nPresets, chosen with --preset NAME")
    preset_rows = [
        [preset, " ".join(flatten(values)) or "(no changes)"]
        for preset, values in manifest.presets.items()
    ]
    typer.echo(table(["NAME", "SETS"], preset_rows, indent="  ") if preset_rows else "  (none)")


# -- validate ---------------------------------------------------------------------------------


@plugins_app.command(
    "validate",
    epilog="Examples:\n\n  xlm plugins validate mdlm\n\n  xlm plugins validate            every installed plugin\n\n"
    "  xlm plugins validate --strict   load warnings and incompatible plugins fail too",
)
def validate(
    name: str | None = typer.Argument(
        None, help="Family to validate; default: every plugin found."
    ),
    strict: bool = typer.Option(
        False,
        "--strict",
        help="Also fail on load warnings and incompatible plugins (XLM_STRICT_PLUGINS=1 too).",
    ),
) -> None:
    """Resolve each family's components and run the conformance kit on a tiny config.

    Exit code 1 if any check fails: a plugin that failed to load, a failed check,
    and under --strict a load warning or an incompatible plugin.
    """
    from xlm_core.plugins.registry import strict_mode

    registry = _registry(warnings_to_stderr=False)  # the report below shows them
    strict = strict or strict_mode()
    records = _records_to_validate(registry, name)
    if not records:
        typer.echo("no plugins to validate")
        return
    failures: list[str] = []
    for record in records:
        failures.extend(_validate_one(registry, record, strict=strict, named=name is not None))
    checked = f"{len(records)} plugin{'s' if len(records) != 1 else ''}"
    if failures:
        typer.echo(f"\nFAILED ({checked}): {', '.join(failures)}")
        raise typer.Exit(1)
    registry.check_strict()  # these passed, but XLM_STRICT_PLUGINS=1 also counts the plugins not named
    typer.echo(f"\nall checks passed ({checked})")


def _records_to_validate(registry: Registry, name: str | None) -> list[PluginRecord]:
    records = [
        r for r in registry.records() if r.status != "disabled" and (name is None or r.name == name)
    ]
    if name is not None and not records:
        registry.get(name)  # raises the one-line "unknown" or "disabled" error (exit 2)
    return records


def _validate_one(
    registry: Registry, record: PluginRecord, *, strict: bool, named: bool
) -> list[str]:
    """Print one plugin's report; return its failures as ``name/check``."""
    typer.echo(f"{record.name} ({record.source})")
    failures = []
    for message in record.warnings:
        typer.echo(f"  {'FAIL' if strict else 'WARN'}  warning: {message}")
        if strict:
            failures.append(f"{record.name}/warning")
    if record.status == "incompatible" and not (strict or named):
        typer.echo(f"  SKIP  incompatible: {short_error(record)}")
        return failures
    if record.status != "ok":
        typer.echo(f"  FAIL  load: {short_error(record)}")
        return [*failures, f"{record.name}/load"]
    from xlm_core.testing import run_conformance  # imports torch

    # Not registry.get(): under XLM_STRICT_PLUGINS it would stop at another plugin's failure
    # before this report is printed.
    family = next(f for f in registry.families() if f.name == record.name)
    for result in run_conformance(family):
        if result.passed:
            typer.echo(f"  PASS  {result.name}")
        else:
            typer.echo(f"  FAIL  {result.name}: {result.message}")
            failures.append(f"{record.name}/{result.name}")
    return failures


# -- new --------------------------------------------------------------------------------------


@plugins_app.command(
    "new",
    epilog="Examples:\n\n  xlm plugins new toy\n\n  xlm plugins new my_family --dir ~/src",
)
def new(
    name: str = typer.Argument(..., help="Family name: a lowercase identifier such as 'toy'."),
    directory: Path = typer.Option(Path("."), "--dir", help="Where to create the xlm-NAME folder."),
) -> None:
    """Scaffold a plugin package xlm-NAME: a small working masked-denoising family to change."""
    from xlm_core.scaffold import create_plugin

    path = create_plugin(name, directory)
    typer.echo(f"created {path}")
    typer.echo("next:")
    for step in (
        f"pip install -e {path}",
        "xlm plugins list",
        f"xlm plugins validate {name}",
        f"pytest {path / 'tests'}",
    ):
        typer.echo(f"  {step}")


# -- helpers ----------------------------------------------------------------------------------


def _registry(*, warnings_to_stderr: bool = True) -> Registry:
    from xlm_core.plugins.registry import get_registry

    registry = get_registry()
    if warnings_to_stderr:
        for record in registry.records():
            for message in record.warnings:
                warn(message)
    return registry


def register(app: typer.Typer) -> None:
    app.add_typer(plugins_app, name="plugins")
