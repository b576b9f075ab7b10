"""Which command groups the ``xlm`` app has. Each module adds its commands with ``register(app)``."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    from xlm_core.cli import plugins

    plugins.register(app)
    from xlm_core.cli import tasks

    tasks.register(app)
    from xlm_core.cli import distill, eval, generate, train

    for module in (train, generate, eval, distill):
        module.register(app)
