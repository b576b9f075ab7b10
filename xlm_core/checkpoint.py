"""The checkpoint directory format and the run directory around it.

A checkpoint is a directory holding ``config.json`` (format version, xlm-core
version, the plugin that wrote it, the full run config and the task's shape),
``model.safetensors`` and ``tokenizer.json``. It is written into a temporary
sibling and renamed into place, so a reader never sees half a checkpoint.
Loading reads JSON and safetensors only: nothing is unpickled.

A run directory (``xlm train --out DIR``) holds ``run.json`` (the same record,
written when training starts), ``final/`` and ``step-<N>/`` checkpoints,
``lightning/last.ckpt`` for ``--resume`` and the logs. This module is torch-free
until weights are read or written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

import xlm_core
from xlm_core.components import DataShape
from xlm_core.errors import PluginError, XLMUserError
from xlm_core.files import give_user_mode, staging_dir, temp_sibling
from xlm_core.plugins.manifest import api_compatibility, parse_version

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
RUN_FILE = "run.json"
FINAL_DIR = "final"
LIGHTNING_DIR = "lightning"
LAST_CKPT = "last.ckpt"
LOGS_DIR = "logs"


# -- weights ----------------------------------------------------------------------------------


def save_weights(model, directory: str | os.PathLike) -> Path:
    """Write ``model``'s parameters and buffers to ``directory/model.safetensors`` atomically."""
    from safetensors.torch import save_model

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / WEIGHTS_FILE
    tmp = temp_sibling(target)
    try:
        save_model(model, str(tmp))  # handles tied weights (shared storage) by saving one copy
        give_user_mode(tmp)  # safetensors creates its files private (0600)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def load_weights(model, directory: str | os.PathLike, *, device: str = "cpu") -> None:
    """Load ``directory/model.safetensors`` into ``model``.

    A missing or corrupt file, or tensors whose shapes the config does not build,
    is a user error naming the file (and the first mismatching tensor).
    """
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_model

    path = Path(directory) / WEIGHTS_FILE
    if not path.is_file():
        raise XLMUserError(f"checkpoint {Path(directory)} has no {WEIGHTS_FILE}")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as file:
            shapes = {name: tuple(file.get_slice(name).get_shape()) for name in file.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise XLMUserError(f"{path} is corrupt or truncated ({reason})") from None
    for name, tensor in model.state_dict().items():
        if name in shapes and shapes[name] != tuple(tensor.shape):
            raise XLMUserError(
                f"{path}: tensor {name!r} has shape {shapes[name]} but the checkpoint's config "
                f"builds {tuple(tensor.shape)}; config.json and the weights do not belong together"
            )
    try:
        missing, unexpected = load_model(model, str(path), strict=False, device=device)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise XLMUserError(f"{path} is corrupt or truncated ({reason})") from None
    if missing or unexpected:
        raise XLMUserError(
            f"{path} does not match the model (missing: {sorted(missing)[:3]}, unexpected: {sorted(unexpected)[:3]})"
        )


# -- the checkpoint record --------------------------------------------------------------------


class PluginInfo(BaseModel):
    """Who wrote a checkpoint: what ``pip install`` needs to read it back."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str
    distribution: str | None = None
    version: str | None = None
    api_version: str | None = None


class RecordedTask(BaseModel):
    """The task's kind and length budgets, so that loading need not rebuild the task's data."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str | None = None
    kind: Literal["prompted", "text"]
    prompt_length: int = Field(ge=0)
    target_length: int = Field(ge=0)

    @classmethod
    def of(cls, task) -> RecordedTask:
        return cls(
            name=task.name,
            kind=task.kind,
            prompt_length=task.shape.prompt_length,
            target_length=task.shape.target_length,
        )

    @property
    def shape(self) -> DataShape:
        return DataShape(self.prompt_length, self.target_length)


class CheckpointRecord(BaseModel):
    """What a checkpoint's ``config.json`` (or a run's ``run.json``) holds, validated once.

    :meth:`read` parses and checks the file; everything a loader needs then comes
    from the record: :meth:`family` (the installed plugin, or what to install),
    :meth:`run_config` (validated against that family's classes), :attr:`task_info`.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    format_version: int
    xlm_core_version: str | None = None
    plugin: PluginInfo
    task_info: RecordedTask | None = None
    step: int | None = None
    run_config: dict[str, Any]
    source: Path | None = Field(None, exclude=True, description="The file it was read from.")

    @classmethod
    def create(cls, run_config, family, task_info: RecordedTask, **extra: Any) -> CheckpointRecord:
        """The record of a run of ``run_config`` by ``family`` (``extra``: e.g. ``step``)."""
        record = family.record
        return cls(
            format_version=FORMAT_VERSION,
            xlm_core_version=xlm_core.__version__,
            plugin=PluginInfo(
                name=family.name,
                distribution=record.distribution,
                version=record.version,
                api_version=family.manifest.api_version,
            ),
            task_info=task_info,
            run_config=run_config.dump(),
            **extra,
        )

    @classmethod
    def read(cls, directory: str | os.PathLike, file_name: str = CONFIG_FILE) -> CheckpointRecord:
        """Parse and check ``directory/file_name``; every problem is one line naming the file."""
        file = Path(directory) / file_name
        try:
            meta = json.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise XLMUserError(f"{file} not found") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise XLMUserError(f"{file} is corrupt or truncated ({exc})") from None
        required = ("format_version", "plugin", "run_config")
        if not isinstance(meta, dict) or any(k not in meta for k in required):
            raise XLMUserError(f"{file} is not an xlm checkpoint record (needs {', '.join(required)})")
        version = meta["format_version"]
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise XLMUserError(
                f"{file} has checkpoint format {version!r}, newer than this xlm-core "
                f"({xlm_core.__version__}) reads; run `pip install -U xlm-core`"
            )
        if not isinstance(meta["plugin"], dict) or not isinstance(meta["plugin"].get("name"), str):
            raise XLMUserError(f"{file}: 'plugin' must record at least the plugin's name")
        try:
            return cls.model_validate({**meta, "source": file})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise XLMUserError(f"{file}: {where}: {first['msg']}") from None

    @property
    def directory(self) -> Path:
        if self.source is None:
            raise ValueError("this record was not read from a file")
        return self.source.parent

    def dump(self) -> dict[str, Any]:
        """The JSON object ``config.json`` holds."""
        return self.model_dump(mode="json", exclude_none=False)

    def with_step(self, step: int) -> CheckpointRecord:
        return self.model_copy(update={"step": step})

    def family(self):
        """The installed family that can read this checkpoint, or one line saying what to ``pip install``."""
        from xlm_core.plugins.registry import get_registry

        origin = self.directory if self.source is not None else "checkpoint"
        plugin = self.plugin
        if plugin.api_version is not None:
            try:
                compatibility = api_compatibility(plugin.api_version)
            except ValueError:
                raise XLMUserError(
                    f"{origin}: plugin api_version {plugin.api_version!r} is not of the form MAJOR.MINOR"
                ) from None
            if compatibility == "other_major":
                major = parse_version(plugin.api_version)[0]
                raise PluginError(
                    f"{origin} needs plugin API {major}.x but xlm-core {xlm_core.__version__} provides "
                    f"{xlm_core.PLUGIN_API_VERSION}; install xlm-core and "
                    f"{plugin.distribution or 'the plugin'} built for API {major}.x"
                )
        registry = get_registry()
        if plugin.name not in {r.name for r in registry.records()}:
            package = plugin.distribution or f"xlm-{plugin.name}"
            pinned = f"{package}=={plugin.version}" if plugin.distribution and plugin.version else package
            raise PluginError(
                f"{origin} needs plugin {plugin.name!r}, which is not installed; run `pip install {pinned}`"
            )
        return registry.get(plugin.name)  # installed but failed or disabled: the registry's reason

    def load_run_config(self, family):
        """The saved run config, validated against the installed family's config classes."""
        from xlm_core.config import run_config_class, validate_run_config

        origin = self.source if self.source is not None else "checkpoint"
        return validate_run_config(run_config_class(family), self.run_config, f"{origin}: run_config")


def task_info(task) -> dict[str, Any]:
    """What a checkpoint records about its task (:class:`RecordedTask`) as a JSON object."""
    return RecordedTask.of(task).model_dump(mode="json")


def make_meta(run_config, family, task_info: dict[str, Any]) -> dict[str, Any]:
    """The ``config.json`` object of a run (``CheckpointRecord.create(...).dump()``)."""
    return CheckpointRecord.create(run_config, family, RecordedTask(**task_info)).dump()


def require_family(meta: dict[str, Any], origin: str | os.PathLike):
    """``CheckpointRecord.family()`` for a record already read as JSON from the directory ``origin``."""
    return CheckpointRecord.model_validate({**meta, "source": Path(origin) / CONFIG_FILE}).family()


def write_checkpoint(
    directory: str | os.PathLike, *, model, tokenizer, meta: dict[str, Any]
) -> Path:
    """Write a complete checkpoint into a temporary sibling, then rename it to ``directory``.

    An existing checkpoint at ``directory`` (a step written again after a resume)
    is replaced only once the new one is complete.
    """
    directory = Path(directory)
    with staging_dir(directory) as tmp:
        save_weights(model, tmp)
        tokenizer.save(tmp)
        (tmp / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return directory


def find_checkpoint(path: str | os.PathLike) -> Path:
    """The checkpoint directory ``path`` names: itself, or ``path/final`` for a run directory."""
    path = Path(path)
    if not path.exists():
        raise XLMUserError(f"checkpoint not found: {path}")
    if not path.is_dir():
        raise XLMUserError(
            f"{path} is not a checkpoint directory (expected a folder with {CONFIG_FILE})"
        )
    if not (path / CONFIG_FILE).exists() and (path / FINAL_DIR / CONFIG_FILE).exists():
        return path / FINAL_DIR
    if not (path / CONFIG_FILE).exists():
        hint = (
            " (the run has no final/ checkpoint yet; try a step-<N>/ folder)"
            if (path / RUN_FILE).exists()
            else ""
        )
        raise XLMUserError(f"{path} is not a checkpoint: it has no {CONFIG_FILE}{hint}")
    return path


def read_meta(directory: str | os.PathLike, file_name: str = CONFIG_FILE) -> dict[str, Any]:
    """``CheckpointRecord.read(...)`` as the plain JSON object (for code that reads single fields)."""
    return CheckpointRecord.read(directory, file_name).dump()
