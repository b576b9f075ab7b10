"""``xlm plugins``: list, show, validate and scaffold plugins."""

from __future__ import annotations

import typer

from xlm_core.cli._common import print_json

plugins_app = typer.Typer(help="Inspect, validate and scaffold model-family plugins.", no_args_is_help=True)


@plugins_app.command("list", epilog="Example: xlm plugins list --json")
def list_plugins(json_out: bool = typer.Option(False, "--json", help="Print a JSON list.")) -> None:
    """One row per plugin found: name, distribution, version, API version, status, error."""
    from xlm_core.plugins.registry import get_registry

    registry = get_registry()
    rows = [r.as_row() for r in registry.records()]
    if json_out:
        print_json(rows)
    else:
        for row in rows:
            typer.echo(f"{row['name']:12} {row['status']:12} {row['distribution'] or '-'} {row['version'] or ''}")
    registry.check_strict()


def register(app: typer.Typer) -> None:
    app.add_typer(plugins_app, name="plugins")
