"""What every command shares: option aliases, JSON output, and one-line user errors."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from xlm_core.errors import XLMUserError

# -- options several commands share ------------------------------------------------------------

CheckpointOption = Annotated[
    Path, typer.Option("--checkpoint", "-c", help="Checkpoint directory (or a run directory).")
]
PredictorSetsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="predictor.KEY=VALUE",
        help="Sampling setting, e.g. --set predictor.temperature=0.",
    ),
]
DeviceOption = Annotated[
    str | None,
    typer.Option("--device", help="cpu, cuda, cuda:1, ... (default: cuda if available, else cpu)."),
]


def debug_mode() -> bool:
    return os.environ.get("XLM_DEBUG", "").strip().lower() in {"1", "true", "yes", "on"}


def fail(message: str) -> XLMUserError:
    """Build a user error to ``raise``: printed as one line, exit code 2."""
    return XLMUserError(message)


def print_json(obj: Any) -> None:
    """Strict JSON: a NaN or infinite number becomes null, and its object says why (``non_finite``)."""
    typer.echo(json.dumps(json_safe(obj), indent=2, default=str, allow_nan=False))


def json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by None.

    An object that held one gains ``"non_finite": {key: "nan" | "inf" | "-inf"}``, so a
    reader can tell "no value" from "the value overflowed" (a perplexity of exp(1000)).
    """
    if isinstance(obj, dict):
        out, reasons = {}, {}
        for key, value in obj.items():
            if isinstance(value, float) and not math.isfinite(value):
                out[key], reasons[key] = None, str(value)
            else:
                out[key] = json_safe(value)
        if reasons:
            out["non_finite"] = reasons
        return out
    if isinstance(obj, list | tuple):
        return [
            None if isinstance(v, float) and not math.isfinite(v) else json_safe(v) for v in obj
        ]
    return obj


def warn(message: str) -> None:
    typer.echo(f"warning: {message}", err=True)


def echo_err(message: str) -> None:
    print(message, file=sys.stderr)
