"""ILM configuration: the model config, the sampling settings and the presets. Torch-free."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from xlm_core.plugins import FamilyConfig, PredictorSettings, standard_presets


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
    row reaches ``max_new_tokens`` (every ILM target token is new). ``temperature``,
    ``top_k`` and ``top_p`` filter the joint (gap, token) distribution under the
    ``joint`` sampler, and each stage under ``two_stage``.
    """

    renamed_keys: ClassVar[dict[str, str]] = {"max_length": "max_new_tokens", "sampling": "sampler"}

    sampler: Literal["joint", "two_stage"] = Field(
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

    @model_validator(mode="before")
    @classmethod
    def _one_length_budget(cls, data: Any) -> Any:
        """``max_length`` is the old name of ``max_new_tokens``; a run saved before the rename
        holds both, one of them null."""
        if not isinstance(data, dict) or "max_length" not in data:
            return data
        data = {
            key: value
            for key, value in data.items()
            if value is not None or key not in ("max_length", "max_new_tokens")
        }
        old, new = data.get("max_length"), data.get("max_new_tokens")
        if None not in (old, new) and old != new:
            raise ValueError(f"max_length ({old}) and max_new_tokens ({new}) disagree; set max_new_tokens")
        return data


#: The shared presets; ILM's star recipe adds a token shift (each position also reads its
#: neighbours' tokens before attention, as for MDLM): the lookup along an edge then appears around
#: step 3,000 instead of 9,000-12,000. It trains 10,000 steps at lr 3e-3 and keeps an EMA of the
#: weights (decay 0.999), which the checkpoint holds: 0.9995 on 2,000 test examples after 9m18s on
#: an idle 2-core CPU, where 12,000 steps without the EMA, or at lr 2e-3, end at 0.96
#: (docs/benchmarks.md, "ILM — xlm train --plugin ilm --preset star").
PRESETS: dict[str, dict[str, Any]] = standard_presets(
    star={
        "model": {"token_shift": True},
        "training": {"max_steps": 10000, "lr": 3e-3, "ema": 0.999},
    }
)
