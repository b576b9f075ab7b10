"""Entry module of the ``calm`` family (entry point ``xlm.plugins: calm``).

It imports only pydantic and ``xlm_core.plugins``, so listing plugins and
printing help never import torch; components are named by import path.
"""

from __future__ import annotations

from xlm_calm.config import PRESETS, CALMConfig, CALMSettings
from xlm_core.plugins import ComponentRef, FamilyManifest, hookimpl


@hookimpl
def xlm_family() -> FamilyManifest:
    return FamilyManifest(
        name="calm",
        api_version="1.3",
        description="Continuous autoregressive LM (Shao et al. 2025): a chunk autoencoder (stage 1), then "
        "a transformer with an energy head predicting one vector per K tokens (stage 2, --init-from)",
        config=CALMConfig,
        predictor_settings=CALMSettings,
        presets=PRESETS,
    )


@hookimpl
def xlm_model() -> ComponentRef:
    return ComponentRef(path="xlm_calm.model:CALMModel")


@hookimpl
def xlm_loss() -> ComponentRef:
    return ComponentRef(path="xlm_calm.loss:CALMLoss")


@hookimpl
def xlm_predictor() -> ComponentRef:
    return ComponentRef(path="xlm_calm.predictor:CALMPredictor")


@hookimpl
def xlm_collator() -> ComponentRef:
    return ComponentRef(path="xlm_calm.collator:CALMCollator")
