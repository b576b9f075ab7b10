"""The records a plugin hands to the core: its manifest, lazy component refs and tasks.

Also the plugin API version rule, which checkpoints apply too. The config base
classes live in ``settings`` and the shared presets in ``presets``; both are
re-exported here, where they were first defined. Everything here is pydantic and
torch-free so that listing plugins, printing help and validating configs never
import torch.
"""

from __future__ import annotations

import importlib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from xlm_core.errors import XLMUserError

# Re-exported (``import X as X``) for the code that imports them from here.
from xlm_core.plugins.presets import STANDARD_PRESETS as STANDARD_PRESETS
from xlm_core.plugins.presets import standard_presets
from xlm_core.plugins.settings import RENAMED_KEYS_REMOVED_IN as RENAMED_KEYS_REMOVED_IN
from xlm_core.plugins.settings import ConfidenceKind as ConfidenceKind
from xlm_core.plugins.settings import ConfidenceSettings as ConfidenceSettings
from xlm_core.plugins.settings import FamilyConfig, PredictorSettings
from xlm_core.plugins.settings import StrictModel as StrictModel
from xlm_core.plugins.settings import rename_keys as rename_keys
from xlm_core.plugins.settings import warn_renamed as warn_renamed

ComponentKind = Literal["model", "loss", "predictor", "collator"]
COMPONENT_KINDS: tuple[ComponentKind, ...] = ("model", "loss", "predictor", "collator")


class ComponentRef(BaseModel):
    """Names a component class by import path (``"package.module:Attribute"``), resolved on first use."""

    model_config = ConfigDict(frozen=True)

    path: str = Field(description='Import path, e.g. "xlm_mdlm.model:MDLMModel".')

    @field_validator("path")
    @classmethod
    def _looks_like_import_path(cls, value: str) -> str:
        module, _, attr = value.partition(":")
        if not module or not attr:
            raise ValueError(f'expected "package.module:Attribute", got {value!r}')
        return value

    def resolve(self) -> Any:
        module, _, attr = self.path.partition(":")
        obj: Any = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
        return obj


class TaskRef(BaseModel):
    """A task contributed by a plugin through the optional ``xlm_tasks`` hook."""

    model_config = ConfigDict(frozen=True)

    name: str
    kind: Literal["prompted", "text"] | None = Field(None, description="prompted (prompt -> target) or text.")
    description: str = ""
    factory: ComponentRef = Field(description="Callable ``(TaskConfig) -> Task``, resolved on first use.")


class FamilyManifest(BaseModel):
    """What ``xlm_family()`` returns: who the family is and how it is configured."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    name: str = Field(description="Family name; must equal the entry point name.")
    api_version: str = Field(description="xlm plugin API version this plugin targets, e.g. '1.0'.")
    description: str = ""
    config: type = Field(description="The family's config class, a subclass of FamilyConfig.")
    predictor_settings: type = Field(PredictorSettings, description="Sampling settings class.")
    presets: dict[str, dict[str, Any]] = Field(default_factory=standard_presets, validate_default=True)

    @field_validator("config")
    @classmethod
    def _config_is_family_config(cls, value: type) -> type:
        if not (isinstance(value, type) and issubclass(value, BaseModel)):
            raise ValueError(f"config {value!r} is not a pydantic model class")
        if not issubclass(value, FamilyConfig):
            raise ValueError(f"config {value.__name__} must subclass xlm_core.plugins.FamilyConfig")
        return value

    @field_validator("predictor_settings")
    @classmethod
    def _settings_are_predictor_settings(cls, value: type) -> type:
        if not (isinstance(value, type) and issubclass(value, PredictorSettings)):
            raise ValueError(
                f"predictor_settings {value!r} must subclass xlm_core.plugins.PredictorSettings"
            )
        return value

    @field_validator("presets")
    @classmethod
    def _presets_validate(cls, value: dict[str, dict[str, Any]], info: ValidationInfo) -> Any:
        """A preset that does not apply cleanly over the defaults fails the plugin at load, not at train time."""
        config, settings = info.data.get("config"), info.data.get("predictor_settings")
        if config is None or settings is None:  # already reported: the presets cannot be checked
            return value
        from xlm_core.config import check_presets  # the config package imports this module

        try:
            check_presets(value, config, settings)
        except XLMUserError as exc:
            raise PydanticCustomError("preset", "{problem}", {"problem": str(exc)}) from None
        return value

    @field_validator("api_version")
    @classmethod
    def _parse_api_version(cls, value: str) -> str:
        try:
            parse_version(value)
        except ValueError as exc:
            raise ValueError(f"{exc}; {api_version_hint()}") from None
        return value


def api_version_hint() -> str:
    """What a plugin author writes to target this core's plugin API."""
    import xlm_core

    major, minor = parse_version(xlm_core.PLUGIN_API_VERSION)
    return f'set api_version="{major}.{minor}" in xlm_family() (xlm_core.PLUGIN_API_VERSION)'


ApiCompatibility = Literal["compatible", "newer_minor", "other_major"]


def api_compatibility(declared: str) -> ApiCompatibility:
    """How a plugin API version (a plugin's, or a checkpoint's) relates to this core's.

    The one rule both the registry and checkpoint loading apply: another major
    version is incompatible; a newer minor version of the same major may use what
    this core does not provide yet (load, with a warning); anything else is fine.
    Raises ValueError for a malformed version.
    """
    import xlm_core

    major, minor = parse_version(declared)
    core_major, core_minor = parse_version(xlm_core.PLUGIN_API_VERSION)
    if major != core_major:
        return "other_major"
    return "newer_minor" if minor > core_minor else "compatible"


def parse_version(text: str) -> tuple[int, int]:
    """``"1.2"`` or ``"1.2.3"`` -> ``(1, 2)``; raises ValueError on anything else."""
    parts = str(text).split(".")
    try:
        major, minor = int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        raise ValueError(f"api_version {text!r} is not of the form MAJOR.MINOR[.PATCH]") from None
    return major, minor
