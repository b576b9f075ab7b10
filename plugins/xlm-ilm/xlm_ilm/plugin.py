"""Entry module of the ``ilm`` family (entry point ``ilm = "xlm_ilm.plugin"``).

Imports only pydantic-based records from ``xlm_core.plugins`` and the config:
listing plugins and printing help never import torch.
"""

from __future__ import annotations

from xlm_core.plugins import ComponentRef, FamilyManifest, hookimpl
from xlm_ilm.config import PRESETS, ILMConfig, ILMSettings


@hookimpl
def xlm_family() -> FamilyManifest:
    return FamilyManifest(
        name="ilm",
        api_version="1.1",
        description="Insertion LM: joint (gap x token) insertion softmax with a learned stop head.",
        config=ILMConfig,
        predictor_settings=ILMSettings,
        presets=PRESETS,
    )


@hookimpl
def xlm_model() -> ComponentRef:
    return ComponentRef(path="xlm_ilm.model:ILMModel")


@hookimpl
def xlm_loss() -> ComponentRef:
    return ComponentRef(path="xlm_ilm.loss:ILMLoss")


@hookimpl
def xlm_predictor() -> ComponentRef:
    return ComponentRef(path="xlm_ilm.predictor:ILMPredictor")


@hookimpl
def xlm_collator() -> ComponentRef:
    return ComponentRef(path="xlm_ilm.collator:ILMCollator")
