"""What ``xlm train --resume DIR --set KEY=VALUE`` may change in a run's saved config."""

from __future__ import annotations

from typing import Any

from xlm_core.config.schema import RunConfig

#: What a resumed run may change: how much longer and how to train (steps, minutes, learning-rate
#: schedule, optimiser settings, hardware, checkpointing) and how to evaluate and sample. Everything
#: else is the run's identity: the model, the task (and with it the tokenizer), the seed and whether
#: an EMA is kept. Changing those would continue a different run from this one's weights and state;
#: start a new run instead.
RESUMABLE_SECTIONS = ("training", "eval", "predictor")
FIXED_ON_RESUME = ("training.seed", "training.ema")


def resume_change_refused(saved: RunConfig, resumed: RunConfig) -> str | None:
    """The first key that differs between a run's saved config and its resumed one and may not, or None."""
    before, after = _flatten(saved.dump()), _flatten(resumed.dump())
    for key in sorted(set(before) | set(after)):
        if before.get(key) == after.get(key):
            continue
        section = key.split(".", 1)[0]
        if section not in RESUMABLE_SECTIONS or key in FIXED_ON_RESUME:
            return key
    return None


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat
