"""Configuration of the ``mlm`` family: the model config and the predictor settings (torch-free)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from xlm_core.errors import renamed_attributes
from xlm_core.plugins import ConfidenceSettings, FamilyConfig, standard_presets

Sampler = Literal["mask_predict", "confidence", "threshold"]


class MLMConfig(FamilyConfig):
    """A bidirectional transformer trained to fill masked positions of a fixed-length target window.

    The window holds the target, its EOS and PAD fill, so the model also learns
    where the sequence ends. The backbone fields come from ``FamilyConfig``.
    """


class MLMSettings(ConfidenceSettings):
    """How an MLM decodes (``--set predictor.<key>=...``).

    Every sampler starts from an all-MASK window. Confidence is computed from the
    model's distribution (temperature 1, unfiltered) whatever the sampling settings,
    so ``threshold`` means the same thing at every temperature.
    """

    renamed_keys: ClassVar[dict[str, str]] = {"strategy": "sampler", "iterations": "steps"}

    temperature: float = Field(
        0.0, ge=0.0, description="Softmax temperature of the token draws; 0 (default) means greedy."
    )
    sampler: Sampler = Field(
        "mask_predict",
        description="mask_predict: `steps` iterations re-masking the least confident tokens (tokens may be "
        "revised); confidence: unmask the k most confident positions per step; "
        "threshold: unmask every position whose confidence exceeds the threshold (at least one per step).",
    )
    steps: int = Field(
        10,
        ge=1,
        description="mask_predict: iterations T; 1 is one-shot argmax. Beyond the window length, iterations "
        "repeat a mask count and may re-mask the same tokens, which logit reuse makes free.",
    )


PRESETS: dict[str, dict[str, Any]] = standard_presets()


#: ``Strategy`` (now :data:`Sampler`) still resolves, with one warning, until xlm-core 0.3.0.
__getattr__ = renamed_attributes(__name__, {"Strategy": "xlm_mlm.config.Sampler"})
