"""Keys and values of partial configs: checked level by level, with one-line errors.

A key must be a field of its section (renamed keys are read in their new
spelling); an unknown one names its path and the closest valid key. A ``--set``
value is read as YAML, except where only text is valid.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from xlm_core.config.task import (
    TASK_KINDS,
    TaskConfig,
    drop_flat_record_fields,
    foreign_key,
    task_kind,
)
from xlm_core.errors import XLMUserError
from xlm_core.plugins.settings import rename_keys, warn_renamed
from xlm_core.utils import suggest


def check_keys(model: type[BaseModel], data: dict[str, Any], prefix: str, origin: str) -> dict[str, Any]:
    """``data`` with renamed keys in their new spelling (and a flat task record's stale fields
    dropped); any key ``model`` does not define is an error naming ``origin``."""
    try:
        data = rename_keys(model, data, prefix)  # type: ignore[arg-type]
        if issubclass(model, TaskConfig):
            data = drop_flat_record_fields(model, data, prefix)
    except ValueError as exc:
        raise XLMUserError(f"{origin}: {exc}") from None
    fields = model.model_fields
    checked = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if key not in fields:
            raise XLMUserError(f"{origin}: {_unknown_key(model, str(key), prefix)}")
        section = _section_class(fields[key], value)
        if section is not None and isinstance(value, dict):
            value = check_keys(section, value, path + ".", origin)
        checked[key] = value
    return checked


def field_at(
    model: type[BaseModel] | None,
    path: list[str],
    origin: str,
    prefix: str = "",
    data: Mapping[str, Any] | None = None,
) -> tuple[FieldInfo, list[str]]:
    """The pydantic field a dotted key names, and the key's path with renamed parts in their new
    spelling; unknown keys and keys below a plain value are errors. ``data``, the config the key
    is set in, says which record a task section is."""
    field = None
    canonical = []
    for part in path:
        if model is None:
            raise XLMUserError(f"{origin}: {prefix[:-1]!r} is a value, not a section with keys")
        fields = model.model_fields
        renamed = getattr(model, "renamed_keys", {})
        if part not in fields and part in renamed:
            warn_renamed(prefix + part, prefix + renamed[part])
            part = renamed[part]
        if part not in fields:
            raise XLMUserError(f"{origin}: {_unknown_key(model, part, prefix)}")
        field = fields[part]
        canonical.append(part)
        data = data.get(part) if isinstance(data, Mapping) else None
        model = _section_class(field, data)
        prefix += part + "."
    assert field is not None
    return field, canonical


def parse_section_sets(sets: Sequence[str], section: type[BaseModel], name: str) -> dict[str, Any]:
    """``--set NAME.key=value`` items as overrides of one section (e.g. predictor settings at generation)."""
    overrides: dict[str, Any] = {}
    for item in sets:
        key, sep, raw = item.partition("=")
        path = key.strip().split(".")
        if not sep or len(path) < 2 or path[0] != name or any(not part for part in path):
            raise XLMUserError(f"--set expects {name}.KEY=VALUE here, got {item!r}")
        field, keys = field_at(section, path[1:], f"--set {item}", prefix=name + ".")
        cursor = overrides
        for part in keys[:-1]:
            cursor = cursor.setdefault(part, {})
        cursor[keys[-1]] = parse_value(raw, field)
    return overrides


def describe(exc: ValidationError, origin: str, prefix: str = "") -> str:
    """One line for the first problem pydantic found: where, which key, what is wrong."""
    errors = exc.errors()
    first = errors[0]
    loc = (prefix + error_location(first)).strip(".") or "config"
    msg = str(first["msg"]).removeprefix("Value error, ")
    value = first.get("input")
    got = "" if isinstance(value, dict) or first["type"] == "missing" else f" (got {value!r})"
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return f"{origin}: invalid value for {loc}: {msg}{got}{more}"


def error_location(error: Any) -> str:
    """A pydantic error's dotted key, without the tag pydantic adds after ``task`` (the record's kind)."""
    loc = error["loc"]
    parts = [p for i, p in enumerate(loc) if not (i and loc[i - 1] == "task" and p in TASK_KINDS)]
    return ".".join(str(p) for p in parts)


def parse_value(raw: str, field: FieldInfo) -> Any:
    """A ``--set`` value as YAML (numbers, booleans, null, lists, mappings), strings kept verbatim for text fields."""
    import yaml

    raw = raw.strip()
    try:
        value = yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError:
        return raw
    # A task name like "123", a path like "yes" or a precision like "32" must stay a string
    # where only strings are valid.
    textual = [t for t in _members(field.annotation) if t is not type(None)]
    if textual and all(_is_text_type(t) for t in textual) and value is not None:
        return raw
    return value


def _unknown_key(model: type[BaseModel], key: str, prefix: str) -> str:
    if issubclass(model, TaskConfig):
        elsewhere = foreign_key(model, key, prefix)
        if elsewhere:
            return elsewhere
    fields = model.model_fields
    close = suggest(key, fields)
    if close:
        return f"unknown key {prefix + key!r} (did you mean {prefix + close!r}?)"
    where = f"under {prefix[:-1]}" if prefix else "at the top level"
    return f"unknown key {prefix + key!r} (valid keys {where}: {', '.join(fields)})"


def _section_class(field: FieldInfo, value: Any = None) -> type[BaseModel] | None:
    """The pydantic model a field holds (``X`` or ``X | None``), or None for a plain value; for
    the task section, the record the task name in ``value`` selects."""
    models = [m for m in _members(field.annotation) if isinstance(m, type) and issubclass(m, BaseModel)]
    if len(models) > 1 and all(issubclass(m, TaskConfig) for m in models):
        return TASK_KINDS[task_kind(value if isinstance(value, dict) else {})]
    return models[0] if len(models) == 1 else None


def _members(annotation: Any) -> list[Any]:
    """The types a union annotation admits (``Annotated`` metadata stripped), or the annotation alone."""
    if typing.get_origin(annotation) not in (typing.Union, types.UnionType):
        return [annotation]
    return [
        typing.get_args(a)[0] if typing.get_origin(a) is Annotated else a
        for a in typing.get_args(annotation)
    ]


def _is_text_type(annotation: Any) -> bool:
    """``str``, or a Literal of strings only."""
    if annotation is str:
        return True
    args = typing.get_args(annotation)
    return typing.get_origin(annotation) is Literal and all(isinstance(a, str) for a in args)
