"""ARLM configuration: the model config, the sampling settings and the presets. Torch-free."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, model_validator

from xlm_core.plugins import FamilyConfig, PredictorSettings, standard_presets


class ARLMConfig(FamilyConfig):
    """The shared backbone fields are all ARLM needs: next-token prediction has no corruption to configure."""

    @model_validator(mode="after")
    def _no_token_shift(self) -> ARLMConfig:
        if self.token_shift:
            raise ValueError(
                "token_shift reads the next token, which a left-to-right model must not see"
            )
        return self


class ARLMSettings(PredictorSettings):
    """Left-to-right sampling settings.

    ``temperature`` keeps the shared default of 1.0 (ancestral sampling, the
    distribution the model was trained to fit); set it to 0 for greedy decoding,
    which is what exact-match metrics on prompted tasks usually want.
    ``max_new_tokens`` bounds the generated target (content tokens, EOS not
    counted); a row stops at EOS or when it is full.
    """

    renamed_keys: ClassVar[dict[str, str]] = {"use_cache": "kv_cache"}

    min_new_tokens: int = Field(
        0,
        ge=0,
        description="EOS is banned until a row has this many tokens (benchmarks use it to force full length).",
    )
    kv_cache: bool = Field(
        True,
        description="Decode with a key/value cache; false recomputes the whole prefix at every step "
        "(same tokens, far slower; kept as a reference for tests and benchmarks).",
    )

    @model_validator(mode="after")
    def _min_fits_max(self) -> ARLMSettings:
        if self.max_new_tokens is not None and self.min_new_tokens > self.max_new_tokens:
            raise ValueError(
                f"min_new_tokens ({self.min_new_tokens}) exceeds max_new_tokens ({self.max_new_tokens})"
            )
        return self


PRESETS: dict[str, dict[str, Any]] = standard_presets()
