"""ARLM configuration: the model config, the sampling settings and the presets. Torch-free."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from xlm_core.plugins import STANDARD_PRESETS, FamilyConfig, PredictorSettings


class ARLMConfig(FamilyConfig):
    """The shared backbone fields are all ARLM needs: next-token prediction has no corruption to configure."""


class ARLMSettings(PredictorSettings):
    """Left-to-right sampling settings.

    ``temperature`` keeps the shared default of 1.0 (ancestral sampling, the
    distribution the model was trained to fit); set it to 0 for greedy decoding,
    which is what exact-match metrics on prompted tasks usually want.
    ``max_new_tokens`` bounds the generated target (content tokens, EOS not
    counted); a row stops at EOS or when it is full.
    """

    min_new_tokens: int = Field(
        0,
        ge=0,
        description="EOS is banned until a row has this many tokens (benchmarks use it to force full length).",
    )
    use_cache: bool = Field(
        True,
        description="Decode with a KV cache; false recomputes the whole prefix at every step "
        "(same tokens, far slower; kept as a reference for tests and benchmarks).",
    )

    @model_validator(mode="after")
    def _min_fits_max(self) -> ARLMSettings:
        if self.max_new_tokens is not None and self.min_new_tokens > self.max_new_tokens:
            raise ValueError(
                f"min_new_tokens ({self.min_new_tokens}) exceeds max_new_tokens ({self.max_new_tokens})"
            )
        return self


PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {
        "model": dict(STANDARD_PRESETS["tiny"]["model"]),
        # A 1M-parameter causal model is stable at a high learning rate, which is what
        # lets it fit star-easy within a CPU budget of a few minutes.
        "training": {"lr": 1e-3, "batch_size": 64, "warmup_steps": 100, "weight_decay": 0.01},
    },
    "small": {
        "model": dict(STANDARD_PRESETS["small"]["model"]),
        # GPT-2-small-sized models train best near 3e-4 with stronger decay.
        "training": {"lr": 3e-4, "batch_size": 64, "warmup_steps": 500, "weight_decay": 0.1},
    },
    # The CPU recipe for star-easy, the same budget as the other families' star presets
    # so that their results compare.
    "star": {
        "task": {"name": "star-easy"},
        "model": dict(STANDARD_PRESETS["tiny"]["model"]),
        "training": {
            "max_steps": 6000,
            "batch_size": 64,
            "lr": 1e-3,
            "warmup_steps": 200,
            "weight_decay": 0.01,
            "val_every": 1000,
        },
        # Exact match rewards the most likely path.
        "predictor": {"temperature": 0.0},
    },
}
