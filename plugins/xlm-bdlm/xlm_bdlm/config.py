"""Configuration of the ``bdlm`` family: model config, predictor settings and presets (torch-free)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from xlm_core.plugins import (
    ConfidenceSettings,
    MaskedDiffusionConfig,
    NelboEstimator,
    standard_presets,
)

Sampler = Literal["ancestral", "confidence", "threshold"]


class BDLMConfig(MaskedDiffusionConfig):
    """Block diffusion: the target window cut into blocks of B tokens, each denoised given the clean
    blocks before it (Arriola et al. 2025). See docs/families/bdlm.md.

    The backbone fields come from ``FamilyConfig``; the schedule, ``eps``, the NELBO
    estimator (here per block) and ``eval_nll_samples`` from ``MaskedDiffusionConfig``.
    """

    block_size: int = Field(
        4,
        ge=1,
        description="B, tokens per block. The target window (target, EOS, PAD fill: target_length + 1 "
        "positions) is padded with PAD to a multiple of B. B = 1 is an autoregressive model; B at least "
        "the window is one block, an MDLM.",
    )
    shift: bool = Field(
        True,
        description="Where the prediction for a position is read. true: from the hidden state one position "
        "earlier (in the noisy block, or the last clean position before the block: the previous block, the "
        "prompt's last token or BOS), over the whole vocabulary, as ARLM reads it: an ARLM checkpoint "
        "converts without changing a prediction, and B = 1 is ARLM exactly. false: at the position itself "
        "with MASK ruled out, as MDLM reads it (one block is then MDLM exactly).",
    )
    nelbo_estimator: NelboEstimator = Field(
        "count",
        description=MaskedDiffusionConfig.model_fields["nelbo_estimator"].description
        + " BDLM draws once per block; with count and B = 1 every block is masked with weight 1, the "
        "next-token loss.",
    )
    clip_min: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="Clipped schedule (BD3-LM's beta): training draws t in [max(eps, clip_min), clip_max] "
        "(for log-linear, the mask rate; with count, m / B in that range). Evaluation always uses the whole "
        "range, so the reported NELBO stays a bound.",
    )
    clip_max: float = Field(
        1.0, gt=0.0, le=1.0, description="Clipped schedule (BD3-LM's omega): see clip_min."
    )
    position_masking: float = Field(
        0.0,
        ge=0.0,
        le=8.0,
        description="Position-dependent masking (Efficient-DLM): position j of a block is masked at time "
        "t^k_j with k_j = exp(2 s (B - 1 - j) / B), so earlier positions are masked less often than later "
        "ones, as left-to-right decoding leaves them; the last follows the schedule, and the NELBO weights "
        "follow by the chain rule (still a bound). 0: every position alike. Needs nelbo_estimator 'time'.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> BDLMConfig:
        if self.token_shift:
            raise ValueError(
                "token_shift reads the next token, which crosses into the next block: BDLM refuses it"
            )
        if self.clip_min >= self.clip_max or self.clip_max <= self.eps:
            raise ValueError(
                f"clip_min ({self.clip_min}) must be below clip_max ({self.clip_max}), and clip_max above "
                f"eps ({self.eps})"
            )
        if self.position_masking and self.nelbo_estimator != "time":
            raise ValueError(
                "position_masking gives each position its own schedule, which the count estimator "
                "cannot integrate out: set nelbo_estimator to 'time' or position_masking to 0"
            )
        return self


class BDLMSettings(ConfidenceSettings):
    """How a BDLM decodes (``--set predictor.<key>=...``): block by block, each block with the
    samplers MDLM uses for its window.

    A row stops once its output is fixed: after the block in which it writes EOS, or
    earlier when every position before that EOS is decided. Confidence scores come from
    the model's own distribution (temperature 1, unfiltered), as in MDLM.
    """

    sampler: Sampler = Field(
        "ancestral",
        description="Within a block. ancestral: the reverse diffusion with `steps` steps; confidence: unmask "
        "the k most confident positions per step; threshold: unmask every position whose confidence exceeds "
        "`threshold` (at least one per step).",
    )
    steps: int | None = Field(
        None, ge=1, description="ancestral: steps per block; default: the block size."
    )
    kv_cache: bool = Field(
        True,
        description="Keep the finished blocks' keys and values in a cache, each block computed once; false "
        "recomputes the prompt and every finished block at each step (same tokens, slower; a reference for "
        "tests and benchmarks).",
    )


#: tiny, small and the star recipe, shared with every family so that results compare.
PRESETS: dict[str, dict[str, Any]] = standard_presets()
