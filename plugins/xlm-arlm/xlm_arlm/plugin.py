"""Entry module of the ``arlm`` family (entry point ``arlm = "xlm_arlm.plugin"``).

Imports only pydantic-based records from ``xlm_core.plugins`` and the config:
listing plugins and printing help never import torch.
"""

from __future__ import annotations

from xlm_arlm.config import PRESETS, ARLMConfig, ARLMSettings
from xlm_core.plugins import ComponentRef, FamilyManifest, hookimpl


@hookimpl
def xlm_family() -> FamilyManifest:
    return FamilyManifest(
        name="arlm",
        api_version="1.3",
        description="Autoregressive baseline: causal transformer, next-token loss, KV-cached decoding.",
        config=ARLMConfig,
        predictor_settings=ARLMSettings,
        presets=PRESETS,
    )


@hookimpl
def xlm_model() -> ComponentRef:
    return ComponentRef(path="xlm_arlm.model:ARLMModel")


@hookimpl
def xlm_loss() -> ComponentRef:
    return ComponentRef(path="xlm_arlm.loss:ARLMLoss")


@hookimpl
def xlm_predictor() -> ComponentRef:
    return ComponentRef(path="xlm_arlm.predictor:ARLMPredictor")


@hookimpl
def xlm_collator() -> ComponentRef:
    return ComponentRef(path="xlm_arlm.collator:ARLMCollator")
