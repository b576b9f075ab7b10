"""Entry module of the ``mdlm`` family (entry point ``xlm.plugins: mdlm``).

It imports only pydantic and ``xlm_core.plugins``, so listing plugins and
printing help never import torch; components are named by import path.
"""

from __future__ import annotations

from xlm_core.plugins import ComponentRef, FamilyManifest, hookimpl
from xlm_mdlm.config import PRESETS, MDLMConfig, MDLMSettings


@hookimpl
def xlm_family() -> FamilyManifest:
    return FamilyManifest(
        name="mdlm",
        api_version="1.4",
        description="Masked diffusion language model (Sahoo et al. 2024): NELBO training, "
        "ancestral (cached), confidence, threshold and block decoding",
        config=MDLMConfig,
        predictor_settings=MDLMSettings,
        presets=PRESETS,
    )


@hookimpl
def xlm_model() -> ComponentRef:
    return ComponentRef(path="xlm_mdlm.model:MDLMModel")


@hookimpl
def xlm_loss() -> ComponentRef:
    return ComponentRef(path="xlm_mdlm.loss:MDLMLoss")


@hookimpl
def xlm_predictor() -> ComponentRef:
    return ComponentRef(path="xlm_mdlm.predictor:MDLMPredictor")


@hookimpl
def xlm_collator() -> ComponentRef:
    return ComponentRef(path="xlm_mdlm.collator:MDLMCollator")
