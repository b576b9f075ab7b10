"""``xlm tasks``: the tasks ``--task`` accepts, built in or contributed by plugins."""

from __future__ import annotations

import typer

from xlm_core.cli._common import print_json

tasks_app = typer.Typer(
    help="List the tasks models can train and be evaluated on.", no_args_is_help=True
)


@tasks_app.command("list", epilog="Example: xlm tasks list --json")
def list_tasks(json_out: bool = typer.Option(False, "--json", help="Print a JSON list.")) -> None:
    """One row per task: name, kind (prompted or text), source (built-in or the plugin), description."""
    from xlm_core.data.tasks import list_tasks as all_tasks
    from xlm_core.plugins.registry import get_registry

    rows = [info.as_row() for info in all_tasks()]
    if json_out:
        print_json(rows)
    else:
        for row in rows:
            typer.echo(
                f"{row['name']:14} {row['kind'] or '-':9} {row['source']:10} {row['description']}"
            )
    get_registry().check_strict()


def register(app: typer.Typer) -> None:
    app.add_typer(tasks_app, name="tasks")
