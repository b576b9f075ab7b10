"""What every command shares: option aliases, JSON output, and one-line user errors."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import typer

from xlm_core.errors import XLMUserError


def debug_mode() -> bool:
    return os.environ.get("XLM_DEBUG", "").strip().lower() in {"1", "true", "yes", "on"}


def fail(message: str) -> XLMUserError:
    """Build a user error to ``raise``: printed as one line, exit code 2."""
    return XLMUserError(message)


def print_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str))


def warn(message: str) -> None:
    typer.echo(f"warning: {message}", err=True)


def echo_err(message: str) -> None:
    print(message, file=sys.stderr)
