"""The base classes of every user-facing config: strict pydantic models with renamed-key support.

``FamilyConfig`` is the shared backbone a family's model config extends;
``PredictorSettings`` and ``ConfidenceSettings`` are the sampling settings whose
keys mean the same in every family. Torch-free, like everything a plugin's entry
module imports.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from xlm_core.errors import RENAMED_REMOVED_IN
from xlm_core.errors import warn_renamed as warn_renamed  # plugins import it from here

#: The release in which the old spellings of renamed keys stop working.
RENAMED_KEYS_REMOVED_IN = RENAMED_REMOVED_IN


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


ScheduleName = Literal["log-linear", "cosine"]
NelboEstimator = Literal["time", "count"]


class MaskedDiffusionConfig(FamilyConfig):
    """Base class of the masked-diffusion families' configs (MDLM, BDLM): the noise schedule and
    the NELBO estimator, which mean the same in both (``xlm_core.nn.schedule``, ``xlm_core.nn.nelbo``).

    A *unit* is what one draw corrupts: MDLM's target window, or one of BDLM's blocks.
    """

    schedule: ScheduleName = Field(
        "log-linear",
        description="Noise schedule alpha_t (probability that a token is still unmasked at time t): "
        "log-linear 1 - (1 - eps) t, or cosine eps + (1 - eps) cos(pi t / 2).",
    )
    eps: float = Field(
        1e-3,
        gt=0.0,
        le=0.1,
        description="alpha_1 = eps, and training draws t in [eps, 1] (the weight 1/t stays bounded).",
    )
    nelbo_estimator: NelboEstimator = Field(
        "time",
        description="How a training example is corrupted. time: draw t (stratified), mask each position "
        "of a unit (MDLM: the window; BDLM: a block) with probability 1 - alpha_t, weight "
        "-alpha'_t / (1 - alpha_t). count: draw the number of masks m (stratified over 1..W, W the "
        "unit's length), mask m positions, weight W / m: the same NELBO with t integrated out, and "
        "bounded weights (the model must not see t).",
    )
    eval_nll_samples: int = Field(
        8,
        ge=1,
        description="Corruptions drawn per example (stratified) when estimating the NELBO at evaluation.",
    )


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
        "`confidence` (a probability for top_prob and margin, a negative number for neg_entropy); one "
        "above the scale's top (1, or 0 for neg_entropy) is refused.",
    )
    reuse_logits: bool = Field(
        True,
        description="Reuse a row's last logits instead of a forward pass when its input did not change "
        "since they were computed (identical samples, fewer forward passes); a model that sees the "
        "decoding step (a time-conditioned MDLM) always recomputes.",
    )
    order: Literal["confidence", "left_to_right"] = Field(
        "confidence",
        description="confidence and threshold: which positions a step decides. confidence: the most "
        "confident ones; left_to_right: the leftmost masked ones (confidence: k of them; threshold: the "
        "first, then each next one while its confidence exceeds `threshold`), so every token is decided "
        "after all of its left context (plugin API 1.4).",
    )

    @model_validator(mode="after")
    def _order_needs_a_confidence_sampler(self) -> ConfidenceSettings:
        if self.order != "confidence" and self.sampler not in ("confidence", "threshold"):
            raise ValueError(
                f"order={self.order} applies to the confidence and threshold samplers, not {self.sampler}"
            )
        return self

    @model_validator(mode="after")
    def _threshold_on_the_confidence_scale(self) -> ConfidenceSettings:
        # no score can exceed it, so every step would decide one position: most likely a typo (90 for 0.9)
        top = 0.0 if self.confidence == "neg_entropy" else 1.0
        if self.sampler == "threshold" and self.threshold > top:
            raise ValueError(
                f"threshold={self.threshold} is above every {self.confidence} confidence (at most {top:g}), "
                "so no position would ever pass it"
            )
        return self
