"""Configuration of the ``mdlm`` family: model config, predictor settings and presets (torch-free)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from xlm_core.plugins import ConfidenceSettings, FamilyConfig, standard_presets

ScheduleName = Literal["log-linear", "cosine"]
Estimator = Literal["time", "count"]
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
    nelbo_estimator: Estimator = Field(
        "time",
        description="How a training example is corrupted. time: draw t (stratified), mask each window "
        "position with probability 1 - alpha_t, weight -alpha'_t / (1 - alpha_t). count: draw the number "
        "of masks m (stratified over 1..W), mask m positions, weight W / m: the same NELBO with t "
        "integrated out, and bounded weights (needs time_conditioning off).",
    )
    eval_nll_samples: int = Field(
        8,
        ge=1,
        description="Corruptions drawn per example (stratified) when estimating the NELBO at evaluation.",
    )

    @model_validator(mode="after")
    def _count_needs_a_time_free_model(self) -> MDLMConfig:
        if self.nelbo_estimator == "count" and self.time_conditioning:
            raise ValueError(
                "nelbo_estimator 'count' integrates t out, so the model must not see t: "
                "set time_conditioning to false or use nelbo_estimator 'time'"
            )
        return self


class MDLMSettings(ConfidenceSettings):
    """How an MDLM decodes (``--set predictor.<key>=...``).

    Every sampler starts from an all-MASK window and never revises a decided
    token. Confidence scores come from the model's own distribution (temperature
    1, unfiltered), so ``threshold`` means the same thing at every temperature;
    temperature / top-k / top-p shape only the token draws. ``reuse_logits`` matters
    for ``ancestral``, where many steps change nothing; a time-conditioned model
    sees every step's noise level and never reuses.
    """

    renamed_keys: ClassVar[dict[str, str]] = {"cache": "reuse_logits"}

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
    block_size: int | None = Field(
        None,
        ge=1,
        description="Semi-autoregressive decoding: fill the window B positions at a time, left to right; "
        "default: the whole window at once.",
    )


#: tiny, small and the star recipe, shared with every family so that results compare. MDLM's
#: star recipe adds a token shift: a masked slot must look up its *neighbour's* token in the edge
#: list, and without the shift the 4-layer model never formed that two-step circuit (36,000 steps,
#: chance on the star probe); with it the lookup appears within ~2,000 steps, so 12,000 suffice.
#: The count estimator is the same NELBO with less noise (docs/families/mdlm.md).
PRESETS: dict[str, dict[str, Any]] = standard_presets(
    star={
        "model": {"token_shift": True, "nelbo_estimator": "count"},
        "training": {"max_steps": 12000},
    }
)
