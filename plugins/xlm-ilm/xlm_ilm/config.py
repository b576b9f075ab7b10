"""ILM configuration: the model config, the sampling settings and the presets. Torch-free."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from xlm_core.plugins import STANDARD_PRESETS, FamilyConfig, PredictorSettings


class ILMConfig(FamilyConfig):
    """The shared backbone plus the weighting of the stop classifier.

    The training objective is ``insertion_ce + stop_loss_weight * stop_bce``.
    A training example is a stop example (nothing left to insert) with
    probability ``1 / (L + 1)`` for a target of ``L`` tokens, so stop positives
    are rare; ``stop_pos_weight`` rescales them inside the binary cross-entropy.
    """

    stop_loss_weight: float = Field(
        1.0,
        ge=0.0,
        description="Weight of the stop-classification loss added to the insertion loss.",
    )
    stop_pos_weight: float = Field(
        1.0,
        gt=0.0,
        description="Weight of the positive class ('stop: the sequence is complete') in the stop loss.",
    )


class ILMSettings(PredictorSettings):
    """Insertion sampling settings (``--set predictor.<key>=...``).

    Every step inserts one token per row (``parallel_k`` > 1: up to that many,
    into different gaps) until the stop head says the row is complete or the
    row reaches ``max_length``. ``temperature``, ``top_k`` and ``top_p`` filter the
    joint (gap, token) distribution in ``joint`` mode, and each stage in
    ``two_stage`` mode. ``max_new_tokens`` is accepted as a synonym of
    ``max_length`` (every ILM target token is new).
    """

    sampling: Literal["joint", "two_stage"] = Field(
        "joint",
        description="joint: draw (gap, token) from one softmax; two_stage: draw the gap from the "
        "log-sum-exp over the vocabulary, then the token in that gap.",
    )
    stop_threshold: float = Field(
        0.5,
        gt=0.0,
        le=1.0,
        description="A row stops once p(stop) from the CLS head reaches this value.",
    )
    max_length: int | None = Field(
        None,
        ge=1,
        description="Longest target a row may grow to; default: the task's target length.",
    )
    parallel_k: int = Field(
        1,
        ge=1,
        description="Insert into up to this many different gaps per step (1: one insertion per step).",
    )
    parallel_threshold: float = Field(
        0.3,
        ge=0.0,
        le=1.0,
        description="An extra parallel insertion is made only when its joint probability p(gap, token) "
        "reaches this value.",
    )

    @model_validator(mode="after")
    def _one_length_budget(self) -> ILMSettings:
        if (
            None not in (self.max_length, self.max_new_tokens)
            and self.max_length != self.max_new_tokens
        ):
            raise ValueError(
                f"max_length ({self.max_length}) and max_new_tokens ({self.max_new_tokens}) disagree; set one"
            )
        return self


PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {
        "model": dict(STANDARD_PRESETS["tiny"]["model"]),
        "training": {"lr": 1e-3, "batch_size": 64, "warmup_steps": 100, "weight_decay": 0.01},
    },
    "small": {
        "model": dict(STANDARD_PRESETS["small"]["model"]),
        # GPT-2-small-sized models train best near 3e-4 with stronger decay.
        "training": {"lr": 3e-4, "batch_size": 64, "warmup_steps": 500, "weight_decay": 0.1},
    },
    # The CPU recipe for star-easy (docs/families/ilm.md, "Star recipe"): the tiny model,
    # trained longer. Rows are short (CLS, 26 prompt tokens, BOS, at most 8 target tokens),
    # so 10,000 steps of batch 64 are meant to fit a 30-minute budget on a 2-core CPU.
    "star": {
        "task": {"name": "star-easy"},
        "model": dict(STANDARD_PRESETS["tiny"]["model"]),
        "training": {
            "max_steps": 10000,
            "batch_size": 64,
            "lr": 1e-3,
            "warmup_steps": 200,
            "weight_decay": 0.01,
            "val_every": 1000,
        },
        # Exact match rewards the most likely path; the stop head stays at 0.5.
        "predictor": {"temperature": 0.0},
    },
}
