"""Entry module of the ``mlm`` family (entry point ``xlm.plugins: mlm``).

It imports only pydantic and ``xlm_core.plugins``, so listing plugins and
printing help never import torch; components are named by import path.
"""

from __future__ import annotations

from xlm_core.plugins import ComponentRef, FamilyManifest, hookimpl
from xlm_mlm.config import PRESETS, MLMConfig, MLMSettings


@hookimpl
def xlm_family() -> FamilyManifest:
    return FamilyManifest(
        name="mlm",
        api_version="1.4",
        description="Masked language model (Mask-Predict) with mask-predict, confidence and threshold decoding",
        config=MLMConfig,
        predictor_settings=MLMSettings,
        presets=PRESETS,
    )


@hookimpl
def xlm_model() -> ComponentRef:
    return ComponentRef(path="xlm_mlm.model:MLMModel")


@hookimpl
def xlm_loss() -> ComponentRef:
    return ComponentRef(path="xlm_mlm.loss:MLMLoss")


@hookimpl
def xlm_predictor() -> ComponentRef:
    return ComponentRef(path="xlm_mlm.predictor:MLMPredictor")


@hookimpl
def xlm_collator() -> ComponentRef:
    return ComponentRef(path="xlm_mlm.collator:MLMCollator")
