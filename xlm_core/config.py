"""The run configuration: one validated pydantic record per run, torch-free.

``RunConfig`` holds the plugin name, the task, the family's model config and
predictor settings, and the training and evaluation settings. It is built by
:func:`resolve_run_config` from, in order: the defaults, ``--preset NAME``,
``--config FILE`` and repeated ``--set a.b=value`` overrides. Every key and value
is checked before any work starts; a mistake is one line naming the key path and,
for a misspelt key, the closest valid one.
"""

from __future__ import annotations

import copy
import difflib
import json
import os
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, Field, SerializeAsAny, ValidationError
from pydantic.fields import FieldInfo

from xlm_core.errors import XLMUserError
from xlm_core.plugins.manifest import (
    FamilyConfig,
    PredictorSettings,
    StrictModel,
    rename_keys,
    warn_renamed,
)

M = TypeVar("M", bound=FamilyConfig)
P = TypeVar("P", bound=PredictorSettings)


class TaskConfig(StrictModel):
    """Which data to train and evaluate on."""

    name: str = Field("star-easy", description="Task name: star-easy, star-medium, star-hard, text, or a plugin task.")
    seed: int = Field(0, description="Seed of generated tasks (star graphs).")
    path: str | None = Field(None, description="text: a local .txt/.jsonl/.parquet file or a folder of them.")
    dataset: str | None = Field(None, description="text: a Hugging Face dataset name, loaded with `datasets`.")
    dataset_config: str | None = Field(None, description="text: the dataset's configuration name.")
    text_field: str = Field("text", description="text: the column holding the text.")
    tokenizer: str | None = Field(
        None, description="text: a tokenizers JSON file; default: train a BPE tokenizer on the corpus."
    )
    vocab_size: int = Field(4096, ge=64, description="text: vocabulary size of a locally trained tokenizer.")
    block_size: int = Field(128, ge=8, description="text: sequence length after truncation or packing.")
    pack: bool = Field(True, description="text: pack documents into blocks with EOS separators.")
    validation_fraction: float = Field(
        0.05, gt=0.0, lt=1.0, description="text: share held out when the source has one split only."
    )
    cache_dir: str | None = Field(None, description="Where prepared Arrow data is cached; default ~/.cache/xlm.")


class TrainingConfig(StrictModel):
    """Optimisation, schedule, precision, checkpointing and hardware (passed to Lightning)."""

    max_steps: int = Field(2000, ge=1, description="Optimizer steps.")
    max_minutes: float | None = Field(
        None, gt=0.0, description="Stop training after this many minutes, even before max_steps; null: no limit."
    )
    batch_size: int = Field(64, ge=1, description="Examples per step (per device).")
    lr: float = Field(1e-3, gt=0.0, description="Peak learning rate (AdamW).")
    warmup_steps: int = Field(100, ge=0, description="Linear warm-up steps.")
    schedule: Literal["cosine", "constant"] = Field("cosine", description="Learning-rate schedule after warm-up.")
    min_lr_ratio: float = Field(0.1, ge=0.0, le=1.0, description="Cosine floor as a fraction of lr.")
    weight_decay: float = Field(0.01, ge=0.0, description="AdamW decay on matrices (not norms, biases, embeddings).")
    betas: tuple[Annotated[float, Field(ge=0.0, lt=1.0)], Annotated[float, Field(ge=0.0, lt=1.0)]] = Field(
        (0.9, 0.98), description="AdamW betas, each in [0, 1)."
    )
    grad_clip: float | None = Field(1.0, gt=0.0, description="Gradient norm clip; null disables.")
    precision: Literal["auto", "32", "bf16-mixed", "16-mixed"] = Field(
        "auto", description="auto: bf16 autocast where the device supports it, else fp32."
    )
    ema: float | None = Field(None, gt=0.0, lt=1.0, description="EMA decay of weights (e.g. 0.999); null disables.")
    seed: int = Field(0, description="Seed for initialisation, data order and corruption.")
    val_every: int = Field(500, ge=1, description="Validate every N steps.")
    ckpt_every: int | None = Field(None, ge=1, description="Write DIR/step-<N>/ every N steps; null: final only.")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes.")
    accelerator: str = Field("auto", description="Lightning accelerator: auto, cpu, gpu, ...")
    devices: int | str = Field("auto", description="Lightning devices: auto, a count, or a list like '0,1'.")
    strategy: str = Field("auto", description="Lightning strategy: auto, ddp, fsdp, ...")
    num_nodes: int = Field(1, ge=1, description="Lightning nodes.")


class EvalConfig(StrictModel):
    """What validation and ``xlm eval`` measure."""

    val_predict_limit: int = Field(100, ge=0, description="Examples decoded at each validation for task metrics.")
    limit: int | None = Field(None, ge=1, description="xlm eval: examples to use (default: the whole split).")
    batch_size: int = Field(64, ge=1, description="Batch size for evaluation and generation.")
    seed: int = Field(0, description="Seed of evaluation-time corruption and sampling.")


class RunConfig(StrictModel, Generic[M, P]):
    """Everything a run needs; saved verbatim in every checkpoint's config.json."""

    plugin: str = Field(description="The model family (an installed plugin).")
    preset: str | None = Field(None, description="The preset applied over the defaults, if any.")
    task: TaskConfig = Field(default_factory=TaskConfig)
    model: SerializeAsAny[M]
    predictor: SerializeAsAny[P]
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


# -- resolution -------------------------------------------------------------------------------

DEFAULT_PRESET = "tiny"


def run_config_class(family: Any) -> type[RunConfig]:
    """``RunConfig`` parametrised with a family's config and predictor settings classes."""
    return RunConfig[family.manifest.config, family.manifest.predictor_settings]  # type: ignore[name-defined]


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

    data: dict[str, Any] = {"plugin": plugin, "preset": preset, "model": {}, "predictor": {}}
    _apply_layer(cls, data, family.preset(preset), f"preset {preset!r} of plugin {plugin!r}")
    if config_file is not None:
        _apply_layer(cls, data, file_data, str(config_file))
    shorthands = []
    if task is not None:
        shorthands.append(f"task.name={task}")
    if max_steps is not None:
        shorthands.append(f"training.max_steps={max_steps}")
    return _apply_sets(cls, data, [*shorthands, *sets])


def override_run_config(config: RunConfig, sets: Sequence[str]) -> RunConfig:
    """``config`` with ``--set`` overrides applied and validated (used when resuming a run)."""
    return _apply_sets(type(config), config.dump(), sets)


#: What ``xlm train --resume DIR --set KEY=VALUE`` may change: how much longer and how to train
#: (steps, minutes, learning-rate schedule, optimiser settings, hardware, checkpointing) and how
#: to evaluate and sample. Everything else is the run's identity: the model, the task (and with
#: it the tokenizer), the seed and whether an EMA is kept. Changing those would continue a
#: different run from this one's weights and state; start a new run instead.
RESUMABLE_SECTIONS = ("training", "eval", "predictor")
FIXED_ON_RESUME = ("training.seed", "training.ema")


def resume_change_refused(saved: RunConfig, resumed: RunConfig) -> str | None:
    """The first key that differs between a run's saved config and its resumed one and may not, or None."""
    before, after = _flatten(saved.dump()), _flatten(resumed.dump())
    for key in sorted(set(before) | set(after)):
        if before.get(key) == after.get(key):
            continue
        section = key.split(".", 1)[0]
        if section not in RESUMABLE_SECTIONS or key in FIXED_ON_RESUME:
            return key
    return None


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def parse_section_sets(sets: Sequence[str], section: type[BaseModel], name: str) -> dict[str, Any]:
    """``--set NAME.key=value`` items as overrides of one section (e.g. predictor settings at generation)."""
    overrides: dict[str, Any] = {}
    for item in sets:
        key, sep, raw = item.partition("=")
        path = key.strip().split(".")
        if not sep or len(path) < 2 or path[0] != name or any(not part for part in path):
            raise XLMUserError(f"--set expects {name}.KEY=VALUE here, got {item!r}")
        field, keys = _field_at(section, path[1:], f"--set {item}", prefix=name + ".")
        cursor = overrides
        for part in keys[:-1]:
            cursor = cursor.setdefault(part, {})
        cursor[keys[-1]] = _parse_value(raw, field)
    return overrides


def override_section(current: BaseModel, overrides: dict[str, Any], name: str) -> Any:
    """A copy of the config section ``current`` with ``overrides`` applied and validated."""
    if not overrides:
        return current
    cls = type(current)
    overrides = _check_keys(cls, overrides, name + ".", f"{name} settings")
    data = current.model_dump()
    _deep_merge(data, overrides)
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise XLMUserError(_describe(exc, f"{name} settings", prefix=name + ".")) from None


def validate_run_config(cls: type[RunConfig], data: Any, origin: str) -> RunConfig:
    """``data`` (e.g. a checkpoint's saved config) as a validated ``cls``; errors name ``origin``."""
    if not isinstance(data, dict):
        raise XLMUserError(f"{origin}: expected a mapping of config sections, got {type(data).__name__}")
    return _validate(cls, _check_keys(cls, data, "", origin), origin)


def load_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML, TOML or JSON config file into a dict; a missing or malformed file is one line."""
    file = Path(path)
    if not file.is_file():
        raise XLMUserError(f"config file not found: {file}")
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise XLMUserError(f"cannot read config file {file}: {exc}") from None
    suffix = file.suffix.lower()
    if suffix == ".toml":
        data = _parse_toml(text, file)
    elif suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise XLMUserError(f"{file}: malformed JSON at line {exc.lineno}: {exc.msg}") from None
    else:  # YAML, which also reads JSON; unknown suffixes get the most forgiving parser
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise XLMUserError(f"{file}: malformed YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise XLMUserError(f"{file}: expected a mapping of config sections, got {type(data).__name__}")
    return data


def dump_config(config: RunConfig, fmt: Literal["yaml", "json"] = "yaml") -> str:
    """The resolved config as YAML (readable, and valid input for ``--config``) or JSON."""
    data = config.dump()
    if fmt == "json":
        return json.dumps(data, indent=2)
    import yaml

    return yaml.safe_dump(data, sort_keys=False)


def _parse_toml(text: str, file: Path) -> Any:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError:
            raise XLMUserError(f"{file}: reading TOML on Python 3.10 needs `pip install tomli`") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise XLMUserError(f"{file}: malformed TOML: {exc}") from None


def _apply_layer(cls: type[RunConfig], data: dict[str, Any], layer: dict[str, Any], origin: str) -> None:
    """Check ``layer``'s keys, merge it into ``data`` and validate the result, naming ``origin`` on error."""
    _deep_merge(data, _check_keys(cls, layer, "", origin))
    _validate(cls, data, origin)


def _apply_sets(cls: type[RunConfig], data: dict[str, Any], sets: Sequence[str]) -> RunConfig:
    origins: dict[str, str] = {}
    for item in sets:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise XLMUserError(f"--set expects KEY=VALUE with a dotted key such as training.lr=3e-4, got {item!r}")
        field, path = _field_at(cls, key.split("."), f"--set {item}")
        nested: dict[str, Any] = {}
        cursor = nested
        for part in path[:-1]:
            cursor = cursor.setdefault(part, {})
        cursor[path[-1]] = _parse_value(raw, field)
        _deep_merge(data, nested)
        origins[".".join(path)] = f"--set {item}"
    # Validated once, after every override: a pair such as d_model and n_heads must agree only at the end.
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        loc = ".".join(str(p) for p in exc.errors()[0]["loc"])
        # The last --set that touched the failing key, or the section a cross-field check failed in.
        related = [o for key, o in origins.items() if _overlaps(key, loc)]
        origin = related[-1] if related else "config"
        raise XLMUserError(_describe(exc, origin)) from None


def _overlaps(key: str, loc: str) -> bool:
    return key == loc or key.startswith(loc + ".") or loc.startswith(key + ".")


def _validate(cls: type[RunConfig], data: dict[str, Any], origin: str) -> RunConfig:
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise XLMUserError(_describe(exc, origin)) from None


def _describe(exc: ValidationError, origin: str, prefix: str = "") -> str:
    """One line for the first problem pydantic found: where, which key, what is wrong."""
    errors = exc.errors()
    first = errors[0]
    loc = (prefix + ".".join(str(p) for p in first["loc"])).strip(".") or "config"
    msg = str(first["msg"]).removeprefix("Value error, ")
    value = first.get("input")
    got = "" if isinstance(value, dict) or first["type"] == "missing" else f" (got {value!r})"
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return f"{origin}: invalid value for {loc}: {msg}{got}{more}"


def _check_keys(model: type[BaseModel], data: dict[str, Any], prefix: str, origin: str) -> dict[str, Any]:
    """``data`` with renamed keys in their new spelling; any key ``model`` does not define is an
    error suggesting the closest valid name at that level."""
    try:
        data = rename_keys(model, data, prefix)
    except ValueError as exc:
        raise XLMUserError(f"{origin}: {exc}") from None
    fields = model.model_fields
    checked = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if key not in fields:
            raise XLMUserError(f"{origin}: unknown key {path!r}{_suggestion(str(key), fields, prefix)}")
        section = _section_class(fields[key])
        if section is not None and isinstance(value, dict):
            value = _check_keys(section, value, path + ".", origin)
        checked[key] = value
    return checked


def _field_at(
    model: type[BaseModel] | None, path: list[str], origin: str, prefix: str = ""
) -> tuple[FieldInfo, list[str]]:
    """The pydantic field a dotted key names, and the key's path with renamed parts in their new
    spelling; unknown keys and keys below a plain value are errors."""
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
            raise XLMUserError(f"{origin}: unknown key {prefix + part!r}{_suggestion(part, fields, prefix)}")
        field = fields[part]
        canonical.append(part)
        model = _section_class(field)
        prefix += part + "."
    assert field is not None
    return field, canonical


def _suggestion(key: str, fields: dict[str, Any], prefix: str) -> str:
    close = difflib.get_close_matches(key, list(fields), n=1, cutoff=0.6)
    if close:
        return f" (did you mean {prefix + close[0]!r}?)"
    where = f"under {prefix[:-1]}" if prefix else "at the top level"
    return f" (valid keys {where}: {', '.join(fields)})"


def _section_class(field: FieldInfo) -> type[BaseModel] | None:
    """The pydantic model a field holds (``X`` or ``X | None``), or None for a plain value."""
    annotation = field.annotation
    candidates = (
        typing.get_args(annotation)
        if typing.get_origin(annotation) in (typing.Union, types.UnionType)
        else (annotation,)
    )
    models = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
    return models[0] if len(models) == 1 else None


def _parse_value(raw: str, field: FieldInfo) -> Any:
    """A ``--set`` value as YAML (numbers, booleans, null, lists, mappings), strings kept verbatim for text fields."""
    import yaml

    raw = raw.strip()
    try:
        value = yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError:
        return raw
    annotation = field.annotation
    accepts = (
        set(typing.get_args(annotation))
        if typing.get_origin(annotation) in (typing.Union, types.UnionType)
        else {annotation}
    )
    # A task name like "123", a path like "yes" or a precision like "32" must stay a string
    # where only strings are valid.
    textual = [t for t in accepts if t is not type(None)]
    if textual and all(_is_text_type(t) for t in textual) and value is not None:
        return raw
    return value


def _is_text_type(annotation: Any) -> bool:
    """``str``, or a Literal of strings only."""
    if annotation is str:
        return True
    args = typing.get_args(annotation)
    return typing.get_origin(annotation) is Literal and all(isinstance(a, str) for a in args)


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
