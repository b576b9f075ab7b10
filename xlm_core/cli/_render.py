"""How ``xlm plugins`` prints: aligned tables, config schemas and presets as rows.

Everything printed here may come from a plugin (names, versions, errors,
descriptions), so every cell goes through ``printable``. Torch-free, like
``xlm plugins list``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, get_args

if TYPE_CHECKING:  # pragma: no cover
    from pydantic import BaseModel
    from pydantic.fields import FieldInfo

    from xlm_core.plugins.registry import PluginRecord


def short_error(record: PluginRecord) -> str:
    """The error without the ``plugin 'x' (dist v):`` prefix, which the row already shows."""
    if not record.error:
        return "-"
    prefix = f"{record.origin}: "
    return record.error[len(prefix) :] if record.error.startswith(prefix) else record.error


def schema_rows(model: type[BaseModel]) -> list[dict[str, Any]]:
    """One row per field of ``model``: name, type with bounds, default (as JSON), description."""
    from pydantic_core import to_jsonable_python

    rows = []
    for field, info in model.model_fields.items():
        default = "required" if info.is_required() else info.get_default(call_default_factory=True)
        rows.append(
            {
                "field": field,
                "type": type_text(info),
                "default": to_jsonable_python(default, fallback=repr),
                "description": info.description or "",
            }
        )
    return rows


_BOUNDS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}


def type_text(info: FieldInfo) -> str:
    """``float`` / ``int | None`` / ``Literal['a', 'b']``, followed by bounds such as ``>0``."""
    annotation = info.annotation
    if isinstance(annotation, type) and not get_args(annotation):
        text = annotation.__name__
    else:
        text = re.sub(r"\b(typing|typing_extensions)\.", "", repr(annotation)).replace(
            "NoneType", "None"
        )
    bounds = [
        f"{symbol}{getattr(meta, key)}"
        for meta in info.metadata
        for key, symbol in _BOUNDS.items()
        if getattr(meta, key, None) is not None
    ]
    return " ".join([text, *bounds])


def default_text(value: Any) -> str:
    import json

    return value if value == "required" else json.dumps(value)


def flatten(values: dict[str, Any], prefix: str = "") -> list[str]:
    items = []
    for key, value in values.items():
        if isinstance(value, dict):
            items.extend(flatten(value, f"{prefix}{key}."))
        else:
            items.append(f"{prefix}{key}={value}")
    return items


def qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, indent: str = "") -> str:
    """Left-aligned columns two spaces apart; the last column is not padded.

    Cells are made printable: names, versions, errors and descriptions come from plugins.
    """
    from xlm_core.plugins.isolation import printable  # the plugin package: only when printing

    text = [[printable(str(cell)) for cell in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in text) for i in range(len(headers) - 1)]
    lines = []
    for row in text:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)] + [row[-1]]
        lines.append((indent + "  ".join(cells)).rstrip())
    return "\n".join(lines)
