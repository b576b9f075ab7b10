"""Building a run config from layers: defaults, preset, config file, then ``--set`` overrides.

Each layer is a partial config. Its keys are checked, it is merged over the layers
before it, and the result is validated, so a bad value names the layer that set it.

The task's name picks which record the task section is (star, text or a plugin
task), and the name may come in any layer: ``--task text`` after a config file that
sets ``task.path``. So the name the run ends with is found first, and every layer's
task keys are checked against that record.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from xlm_core.config.files import load_config_file
from xlm_core.config.keys import check_keys, describe, error_location, field_at, parse_value
from xlm_core.config.schema import PRESET_SECTIONS, RunConfig, run_config_class
from xlm_core.config.task import DEFAULT_TASK
from xlm_core.errors import XLMUserError
from xlm_core.utils import deep_merge, suggest

DEFAULT_PRESET = "tiny"


def resolve_run_config(
    plugin: str,
    *,
    preset: str | None = None,
    config_file: str | os.PathLike[str] | None = None,
    sets: Sequence[str] = (),
    max_steps: int | None = None,
    task: str | None = None,
) -> RunConfig:
    """Build and validate the run config: defaults, preset, config file, then overrides.

    ``task`` and ``max_steps`` are shorthands for ``--set task.name=...`` and
    ``--set training.max_steps=...`` applied before ``sets``, so an explicit
    ``--set`` wins. Every mistake is an :class:`XLMUserError` naming where it
    came from; nothing here imports torch.
    """
    from xlm_core.plugins.registry import get_registry

    family = get_registry().get(plugin)
    cls = run_config_class(family)
    file_data: dict[str, Any] = {}
    if config_file is not None:
        file_data = load_config_file(config_file)
        named = file_data.pop("plugin", plugin)
        if named != plugin:
            raise XLMUserError(f"{config_file} is a config for plugin {named!r}, not {plugin!r}")
    # A printed config names its preset; honour it when --preset does not say otherwise.
    preset = preset or file_data.pop("preset", None) or DEFAULT_PRESET
    file_data.pop("preset", None)

    layers = [(family.preset(preset), f"preset {preset!r} of plugin {plugin!r}")]
    if config_file is not None:
        layers.append((file_data, str(config_file)))
    shorthands = []
    if task is not None:
        shorthands.append(f"task.name={task}")
    if max_steps is not None:
        shorthands.append(f"training.max_steps={max_steps}")
    sets = [*shorthands, *sets]
    task_name = _final_task_name([layer for layer, _ in layers], sets)
    data = _base(plugin, preset, task_name)
    for layer, origin in layers:
        data = _apply_layer(cls, data, layer, origin, task_name)
    return _apply_sets(cls, data, sets)


def override_run_config(config: RunConfig, sets: Sequence[str]) -> RunConfig:
    """``config`` with ``--set`` overrides applied and validated (used when resuming a run)."""
    return _apply_sets(type(config), config.dump(), sets)


def override_section(current: BaseModel, overrides: dict[str, Any], name: str) -> Any:
    """A copy of the config section ``current`` with ``overrides`` applied and validated."""
    if not overrides:
        return current
    cls = type(current)
    overrides = check_keys(cls, overrides, name + ".", f"{name} settings")
    data = deep_merge(current.model_dump(), overrides)
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise XLMUserError(describe(exc, f"{name} settings", prefix=name + ".")) from None


def validate_run_config(cls: type[RunConfig], data: Any, origin: str) -> RunConfig:
    """``data`` (e.g. a checkpoint's saved config) as a validated ``cls``; errors name ``origin``."""
    if not isinstance(data, dict):
        raise XLMUserError(f"{origin}: expected a mapping of config sections, got {type(data).__name__}")
    return _validate(cls, check_keys(cls, data, "", origin), origin)


def check_presets(presets: Mapping[str, Any], config: type, settings: type) -> None:
    """Each preset applied over the defaults of a family with these config classes validates;
    the first that does not is an :class:`XLMUserError` naming the preset and the section."""
    cls = RunConfig[config, settings]  # type: ignore[valid-type]
    for name, preset in presets.items():
        if not isinstance(preset, Mapping):
            raise XLMUserError(f"preset {name!r} is {type(preset).__name__}, expected a dict")
        task_name = _final_task_name([preset], ())
        for section, fields in preset.items():
            if section not in PRESET_SECTIONS:
                close = suggest(str(section), PRESET_SECTIONS)
                hint = f"did you mean {close!r}" if close else f"expected one of {', '.join(PRESET_SECTIONS)}"
                raise XLMUserError(f"preset {name!r} sets unknown section {section!r}; {hint}")
            origin = f"preset {name!r} section {section!r}"
            _apply_layer(cls, _base("preset-check", name, task_name), {section: fields}, origin, task_name)


def _base(plugin: str, preset: str, task_name: str) -> dict[str, Any]:
    """The layer under every other: the sections whose defaults are the family's classes'."""
    return {"plugin": plugin, "preset": preset, "task": {"name": task_name}, "model": {}, "predictor": {}}


def _final_task_name(layers: Sequence[Mapping[str, Any]], sets: Sequence[str]) -> Any:
    """The task name the layers and ``--set task.name=`` items end with (the last one given)."""
    name = DEFAULT_TASK
    for layer in layers:
        task = layer.get("task")
        if isinstance(task, Mapping) and "name" in task:
            name = task["name"]
    for item in sets:
        key, sep, raw = item.partition("=")
        if sep and key.strip() == "task.name":
            name = raw.strip()
    return name


def _pin_task_name(data: dict[str, Any], name: Any) -> dict[str, Any]:
    """``data`` with its task section, if any, named ``name``."""
    task = data.get("task")
    return {**data, "task": {**task, "name": name}} if isinstance(task, Mapping) else data


def _apply_layer(
    cls: type[RunConfig], data: dict[str, Any], layer: dict[str, Any], origin: str, task_name: Any
) -> dict[str, Any]:
    """``layer``'s keys checked, merged over ``data`` and the result validated, naming ``origin`` on error."""
    layer = _pin_task_name(layer, task_name)
    data = deep_merge(data, check_keys(cls, layer, "", origin))
    _validate(cls, data, origin)
    return data


def _apply_sets(cls: type[RunConfig], data: dict[str, Any], sets: Sequence[str]) -> RunConfig:
    task_name = _final_task_name([data], sets)
    data = _pin_task_name(data, task_name)
    origins: dict[str, str] = {}
    for item in sets:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise XLMUserError(f"--set expects KEY=VALUE with a dotted key such as training.lr=3e-4, got {item!r}")
        field, path = field_at(cls, key.split("."), f"--set {item}", data=data)
        nested: dict[str, Any] = {}
        cursor = nested
        for part in path[:-1]:
            cursor = cursor.setdefault(part, {})
        cursor[path[-1]] = parse_value(raw, field)
        data = _pin_task_name(deep_merge(data, nested), task_name)
        origins[".".join(path)] = f"--set {item}"
    # Validated once, after every override: a pair such as d_model and n_heads must agree only at the end.
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        loc = error_location(exc.errors()[0])
        # The last --set that touched the failing key, or the section a cross-field check failed in.
        related = [o for key, o in origins.items() if _overlaps(key, loc)]
        origin = related[-1] if related else "config"
        raise XLMUserError(describe(exc, origin)) from None


def _overlaps(key: str, loc: str) -> bool:
    return key == loc or key.startswith(loc + ".") or loc.startswith(key + ".")


def _validate(cls: type[RunConfig], data: dict[str, Any], origin: str) -> RunConfig:
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise XLMUserError(describe(exc, origin)) from None
