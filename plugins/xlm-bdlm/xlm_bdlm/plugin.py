"""Entry module of the ``bdlm`` family (entry point ``xlm.plugins: bdlm``).

It imports only pydantic and ``xlm_core.plugins``, so listing plugins and
printing help never import torch; components are named by import path.
"""

from __future__ import annotations

from xlm_bdlm.config import PRESETS, BDLMConfig, BDLMSettings
from xlm_core.plugins import ComponentRef, FamilyManifest, hookimpl


@hookimpl
def xlm_family() -> FamilyManifest:
    return FamilyManifest(
        name="bdlm",
        api_version="1.4",
        description="Block diffusion (Arriola et al. 2025): blocks left to right, masked diffusion within "
        "a block, KV cache of finished blocks; starts from an ARLM checkpoint with --init-from",
        config=BDLMConfig,
        predictor_settings=BDLMSettings,
        presets=PRESETS,
    )


@hookimpl
def xlm_model() -> ComponentRef:
    return ComponentRef(path="xlm_bdlm.model:BDLMModel")


@hookimpl
def xlm_loss() -> ComponentRef:
    return ComponentRef(path="xlm_bdlm.loss:BDLMLoss")


@hookimpl
def xlm_predictor() -> ComponentRef:
    return ComponentRef(path="xlm_bdlm.predictor:BDLMPredictor")


@hookimpl
def xlm_collator() -> ComponentRef:
    return ComponentRef(path="xlm_bdlm.collator:BDLMCollator")
