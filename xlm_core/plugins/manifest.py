"""The records a plugin hands to the core: its manifest, config classes and lazy component refs.

Everything here is pydantic and torch-free so that listing plugins, printing
help and validating configs never import torch.
"""

from __future__ import annotations

import copy
import importlib
import warnings
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from xlm_core.errors import XLMDeprecationWarning, XLMUserError
from xlm_core.utils import deep_merge

ComponentKind = Literal["model", "loss", "predictor", "collator"]
COMPONENT_KINDS: tuple[ComponentKind, ...] = ("model", "loss", "predictor", "collator")


#: The release in which the old spellings of renamed keys stop working.
RENAMED_KEYS_REMOVED_IN = "0.3.0"


def warn_renamed(old: str, new: str) -> None:
    warnings.warn(
        f"{old} is renamed {new}; the old name works until xlm-core {RENAMED_KEYS_REMOVED_IN}",
        XLMDeprecationWarning,
        stacklevel=4,
    )


class StrictModel(BaseModel):
    """Base for every user-facing config: unknown keys are errors, assignments are validated.

    No float may be NaN or infinite: such a value passes every bound check and fails
    much later (a learning rate of ``inf`` trains NaN weights).

    ``renamed_keys`` maps the old spelling of a renamed key to the new one: the old
    one keeps working (in files, ``--set``, saved checkpoints and Python) with a
    deprecation warning until xlm-core :data:`RENAMED_KEYS_REMOVED_IN`.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)
    renamed_keys: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _accept_renamed_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not cls.renamed_keys:
            return data
        return rename_keys(cls, data)


def rename_keys(cls: type[StrictModel], data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``data`` with the old spellings of ``cls``'s renamed keys replaced by the new ones (warned once each)."""
    renamed = getattr(cls, "renamed_keys", {})
    if not any(old in data for old in renamed):
        return data
    data = dict(data)
    for old, new in renamed.items():
        if old not in data:
            continue
        value = data.pop(old)
        if new in data and data[new] != value:
            raise ValueError(f"{prefix}{old} is the old name of {prefix}{new}, and both are set; keep {new}")
        data[new] = value
        warn_renamed(prefix + old, prefix + new)
    return data


class FamilyConfig(StrictModel):
    """Base class of a family's model config.

    The backbone fields are shared so that every family builds the same
    transformer from ``xlm_core.nn`` and presets mean the same thing across
    families. A family subclasses it and adds its own fields (noise schedule,
    loss weights, ...).
    """

    d_model: int = Field(128, gt=0, description="Width of the transformer.")
    n_layers: int = Field(4, gt=0, description="Number of transformer blocks.")
    n_heads: int = Field(4, gt=0, description="Attention heads per block.")
    d_ff: int | None = Field(None, gt=0, description="Hidden size of the MLP; default 4 * d_model.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout probability.")
    tie_embeddings: bool = Field(True, description="Share input embedding and output projection.")
    learned_positions: int = Field(
        0,
        ge=0,
        description="Add a learned absolute position embedding for the first N positions on top of "
        "rotary attention (0: rotary only). Helps tasks whose meaning depends on absolute position, "
        "such as the star tasks' flat edge lists.",
    )
    token_shift: bool = Field(
        False,
        description="Add each token's left and right neighbours' embeddings (through a learned map) to "
        "its input, so a position knows its neighbours' tokens before any attention "
        "(bidirectional families only).",
    )
    eval_nll_samples: int = Field(
        1,
        ge=1,
        description="Corruption draws per example when estimating NLL at evaluation "
        "(1 for families whose loss is deterministic given the example).",
    )

    @model_validator(mode="after")
    def _heads_divide_width(self) -> FamilyConfig:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        return self


class PredictorSettings(StrictModel):
    """Base class of a family's sampling settings (``--set predictor.<key>=...``).

    One concept has one name in every family (docs/usage.md, "Predictor settings"). An old
    spelling in ``renamed_keys`` keeps working, set or read, with a deprecation warning.
    """

    temperature: float = Field(1.0, ge=0.0, description="Softmax temperature; 0 means greedy.")
    top_k: int | None = Field(None, ge=1, description="Keep only the k most likely tokens.")
    top_p: float | None = Field(None, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    max_new_tokens: int | None = Field(
        None, ge=1, description="Length budget of the generated target; default: the task's target length."
    )

    def __getattr__(self, name: str) -> Any:  # only called for names that are not attributes
        new = type(self).renamed_keys.get(name)
        if new is None:
            return super().__getattr__(name)  # type: ignore[misc]
        warn_renamed(name, new)
        return getattr(self, new)


ConfidenceKind = Literal["top_prob", "margin", "neg_entropy"]


class ConfidenceSettings(PredictorSettings):
    """Settings of families that decode a masked window by confidence (MDLM, MLM, ...).

    ``sampler`` offers ``confidence`` and ``threshold`` (``xlm_core.nn.unmasking``); a family
    with samplers of its own redeclares it with a wider ``Literal``, in the same place.
    Confidence is read from the model's own distribution (temperature 1, unfiltered),
    so ``threshold`` means the same thing at every sampling temperature.
    """

    sampler: Literal["confidence", "threshold"] = Field(
        "confidence",
        description="confidence: unmask the k most confident positions per step; "
        "threshold: unmask every position whose confidence exceeds `threshold` (at least one per step).",
    )
    k: int = Field(1, ge=1, description="confidence: positions unmasked per step.")
    confidence: ConfidenceKind = Field(
        "top_prob",
        description="Score that ranks positions: top_prob (probability of the most likely token), "
        "margin (top-1 minus top-2 probability) or neg_entropy (minus the entropy, always <= 0).",
    )
    threshold: float = Field(
        0.9,
        description="threshold: unmask positions whose confidence is above this value, on the scale of "
        "`confidence` (a probability for top_prob and margin, a negative number for neg_entropy).",
    )
    reuse_logits: bool = Field(
        True,
        description="Reuse a row's last logits instead of a forward pass when its input did not change "
        "since they were computed (identical samples, fewer forward passes); a model that sees the "
        "decoding step (a time-conditioned MDLM) always recomputes.",
    )


#: Presets every family gets unless it overrides them. A preset is a partial run
#: config (``task``, ``model``, ``training``, ``predictor`` sections) applied after
#: the defaults and before ``--config`` and ``--set``. Sharing them keeps families
#: comparable: the same backbone sizes and the same training budget on the same task.
STANDARD_PRESETS: dict[str, dict[str, Any]] = {
    # ~1M parameters, stable at a high learning rate. The default of `xlm train --plugin X`:
    # a bounded budget that finishes in a few minutes on a 2-core CPU.
    "tiny": {
        "model": {"d_model": 128, "n_layers": 4, "n_heads": 4},
        "training": {
            "max_steps": 1000,
            "lr": 1e-3,
            "batch_size": 64,
            "warmup_steps": 100,
            "weight_decay": 0.01,
            "val_every": 500,
        },
    },
    # GPT-2-small-sized, the size used in the literature; such models train best near 3e-4.
    "small": {
        "model": {"d_model": 768, "n_layers": 12, "n_heads": 12},
        "training": {"lr": 3e-4, "batch_size": 64, "warmup_steps": 500, "weight_decay": 0.1},
    },
    # The star recipe: a narrow model with learned absolute positions (rotary attention alone
    # cannot tell the source slot of an edge from its destination slot in the flat edge list,
    # and stalls), trained ~30 minutes on an idle 2-core CPU (36,000 steps: the lookup is
    # learned around step 9k-12k and the rest of the schedule takes ILM from ~95% to >99.9%),
    # decoded greedily (exact match rewards the most likely path). The same recipe for every family;
    # MDLM adds a token shift and stops at 12,000 steps (xlm_mdlm/config.py says why).
    "star": {
        "task": {"name": "star-easy"},
        "model": {"d_model": 64, "n_layers": 4, "n_heads": 4, "learned_positions": 64},
        "training": {
            "max_steps": 36000,
            "batch_size": 64,
            "lr": 2e-3,
            "warmup_steps": 200,
            "weight_decay": 0.01,
            "val_every": 1000,
        },
        "predictor": {"temperature": 0.0},
    },
}


def standard_presets(**overrides: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A fresh copy of :data:`STANDARD_PRESETS` with per-preset changes merged in, section by section.

    ``standard_presets(star={"training": {"max_steps": 10000}})`` changes one knob of one
    preset; a name that is not a standard preset adds a new preset.
    """
    presets = copy.deepcopy(STANDARD_PRESETS)
    for name, change in overrides.items():
        presets[name] = deep_merge(presets.get(name, {}), change)
    return presets


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
