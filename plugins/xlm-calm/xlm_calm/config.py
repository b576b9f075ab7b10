"""Configuration of the ``calm`` family: model config, predictor settings and presets (torch-free)."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, model_validator

from xlm_core.plugins import FamilyConfig, PredictorSettings, standard_presets

Stage = Literal["autoencoder", "generator"]

#: The settings that decide the autoencoder's tensors and what its latent vectors mean: a stage-2
#: run must use the autoencoder of its stage-1 checkpoint exactly (``CALMModel.check_init_from``).
AUTOENCODER_KEYS = ("chunk_size", "latent_size", "ae_d_model", "ae_d_ff", "ae_layers")


class CALMConfig(FamilyConfig):
    """CALM: chunks of K tokens, each one vector of an autoencoder's latent space, predicted left to
    right by a causal transformer with an energy-based head (Shao et al. 2025). See
    docs/families/calm.md.

    The backbone fields (``d_model``, ``n_layers``, ...) are the generator's transformer, which
    runs over chunks, one position per chunk. The generator has no vocabulary head (it predicts
    vectors), so ``tie_embeddings`` changes nothing there; the autoencoder always reads its logits
    off its own embedding, as the authors' does.
    """

    stage: Stage = Field(
        "autoencoder",
        description="What this run trains. autoencoder (stage 1): the chunk autoencoder, alone. "
        "generator (stage 2): the generator, on the frozen autoencoder of a stage-1 checkpoint given "
        "with --init-from; the final checkpoint holds both, so it generates on its own.",
    )
    chunk_size: int = Field(
        4,
        ge=1,
        description="K, tokens per chunk: one generator step and one latent vector per K tokens. The "
        "target window (target, EOS, PAD fill: target_length + 1 positions) is padded with PAD to a "
        "multiple of K, and the prompt (behind BOS) is left-padded to one.",
    )
    latent_size: int = Field(128, ge=1, description="Dimensions of a chunk's latent vector.")
    ae_d_model: int | None = Field(
        None, ge=1, description="Width of the autoencoder; default: d_model."
    )
    ae_d_ff: int | None = Field(
        None,
        ge=1,
        description="Hidden size of the autoencoder's gated MLPs; default: 2.5 * its width (512 -> 1280 "
        "in the authors' recipe).",
    )
    ae_layers: int = Field(
        2,
        ge=1,
        description="Residual MLP layers of the encoder and of the decoder each: half of them per token, "
        "half (the larger half) per chunk, around the layer that squeezes K tokens into one vector (or "
        "expands it back).",
    )
    ae_token_mask: float = Field(
        0.15,
        ge=0.0,
        lt=1.0,
        description="Stage 1: each input token of the encoder is replaced by MASK with this probability "
        "(the reconstruction target stays the clean token), so the latent does not hang on any one token.",
    )
    latent_dropout: float = Field(
        0.15,
        ge=0.0,
        lt=1.0,
        description="Stage 1: dropout on the sampled latent vector before the decoder, so the decoder "
        "tolerates an imprecise vector, as the generator's predictions are.",
    )
    kl_weight: float = Field(
        1e-3, ge=0.0, description="Stage 1: weight of the KL term of the variational objective."
    )
    kl_clamp: float = Field(
        0.5,
        ge=0.0,
        description="Stage 1: each latent dimension's KL is clipped from below at this value (a "
        "dimension already that close to the prior is not pushed further, so none collapses).",
    )
    noise_size: int = Field(
        64,
        ge=1,
        description="Stage 2: dimensions of the uniform noise the energy head turns into a vector.",
    )
    head_layers: int = Field(
        4, ge=1, description="Stage 2: residual MLP blocks of the energy head (width d_model)."
    )
    energy_samples: int = Field(
        8,
        ge=2,
        description="Stage 2: N, vectors the energy head draws per chunk for the energy score (the "
        "authors' 8); the repulsion term compares them pairwise.",
    )
    target_samples: int = Field(
        100,
        ge=1,
        description="Stage 2: M, draws of the target chunk's posterior N(mean, std) that the energy "
        "score's attraction term compares with (the authors' 100).",
    )
    energy_beta: float = Field(
        1.0,
        gt=0.0,
        lt=2.0,
        description="Stage 2: the distance exponent beta of the energy score, ||x - y||^beta; the score "
        "is strictly proper for 0 < beta < 2.",
    )
    random_phase: bool = Field(
        True,
        description="For examples without a prompt (text): move the first r ~ U{0..K-1} target tokens "
        "into the prompt, so training sees every alignment of BOS and the text to the chunk grid, as "
        "continuing a prefix of any length (BrierLM, --prefix-len) does.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> CALMConfig:
        if self.token_shift:
            raise ValueError(
                "token_shift reads the next position, which the causal generator must not see: CALM "
                "refuses it"
            )
        return self

    @property
    def ae_width(self) -> int:
        return self.ae_d_model or self.d_model

    @property
    def ae_hidden(self) -> int:
        return self.ae_d_ff or math.ceil(2.5 * self.ae_width)


class CALMSettings(PredictorSettings):
    """How a CALM generates (``--set predictor.<key>=...``): one generator step per chunk of K
    tokens, each step's vector decoded into K tokens by the autoencoder.

    ``temperature`` uses the authors' likelihood-free algorithm: a pool of
    ``temperature_samples`` vectors is drawn and decoded, and a chunk that occurs k times
    in it is chosen with weight C(k, 1/T) (falling back to the most frequent chunks when
    none occurs 1/T times); T = 1 draws one vector, T = 0 chooses among the most frequent
    chunks of the pool. There is no distribution over single tokens to filter, so
    ``top_k`` and ``top_p`` are refused.
    """

    temperature: float = Field(
        1.0,
        ge=0.0,
        le=1.0,
        description="Sampling temperature T in [0, 1]: 1 samples the model; below 1 sharpens it by the "
        "likelihood-free pool algorithm (exact in the limit of a large pool); 0 chooses among the most "
        "frequent chunks of the pool.",
    )
    top_k: int | None = Field(
        None,
        ge=1,
        description="Refused: CALM samples vectors, and has no distribution over single tokens to filter.",
    )
    top_p: float | None = Field(
        None,
        gt=0.0,
        le=1.0,
        description="Refused: CALM samples vectors, and has no distribution over single tokens to filter.",
    )
    temperature_samples: int = Field(
        200,
        ge=1,
        description="Pool of vectors drawn per step when temperature < 1 (the authors' 200); each is "
        "decoded, and chunks are counted in it.",
    )
    kv_cache: bool = Field(
        True,
        description="Keep the chunks' keys and values in a cache, one generator pass over one chunk per "
        "step; false recomputes every chunk at each step (same tokens, slower; a reference for tests and "
        "benchmarks).",
    )

    @model_validator(mode="after")
    def _no_token_filters(self) -> CALMSettings:
        for name in ("top_k", "top_p"):
            if getattr(self, name) is not None:
                raise ValueError(
                    f"{name} filters a distribution over single tokens, which CALM does not have (it "
                    "samples vectors); use temperature"
                )
        return self


#: tiny, small and the star recipe, shared with every family so that results compare.
PRESETS: dict[str, dict[str, Any]] = standard_presets()
