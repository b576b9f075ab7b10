"""Configuration of the ``mdlm`` family: model config, predictor settings and presets (torch-free)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from xlm_core.plugins import ConfidenceSettings, FamilyConfig, standard_presets

ScheduleName = Literal["log-linear", "cosine"]
Sampler = Literal["ancestral", "confidence", "threshold"]


class MDLMConfig(FamilyConfig):
    """A bidirectional transformer that denoises a masked, fixed-length target window.

    The window holds the target, its EOS and PAD fill (target_length + 1
    positions), so the model also learns where a sequence ends. Training
    minimises the continuous-time NELBO of Sahoo et al. (2024); see
    docs/families/mdlm.md. The backbone fields come from ``FamilyConfig``.
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
    time_conditioning: bool = Field(
        False,
        description="Feed the noise level t to the network through adaLN. Off by default: the paper finds it "
        "unnecessary, and without it a sampler may reuse p(x0) for a row whose input did not change.",
    )
    eval_nll_samples: int = Field(
        8,
        ge=1,
        description="Noise levels t drawn per example (stratified) when estimating the NELBO at evaluation.",
    )


class MDLMSettings(ConfidenceSettings):
    """How an MDLM decodes (``--set predictor.<key>=...``).

    Every sampler starts from an all-MASK window and never revises a decided
    token. Confidence scores come from the model's own distribution (temperature
    1, unfiltered), so ``threshold`` means the same thing at every temperature;
    temperature / top-k / top-p shape only the token draws.
    """

    sampler: Sampler = Field(
        "ancestral",
        description="ancestral: the reverse diffusion with `steps` steps; "
        "confidence: unmask the k most confident positions per step; "
        "threshold: unmask every position whose confidence exceeds `threshold` (at least one per step).",
    )
    steps: int | None = Field(
        None,
        ge=1,
        description="ancestral: number of steps T; default: the target length (max_new_tokens, else the task's).",
    )
    cache: bool = Field(
        True,
        description="ancestral: reuse a row's last p(x0) when its input did not change in a step "
        "(identical samples, fewer forward passes). Ignored for time-conditioned models.",
    )
    block_size: int | None = Field(
        None,
        ge=1,
        description="Semi-autoregressive decoding: fill the window B positions at a time, left to right; "
        "default: the whole window at once.",
    )


#: tiny, small and the star recipe, shared with every family so that results compare.
PRESETS: dict[str, dict[str, Any]] = standard_presets()
