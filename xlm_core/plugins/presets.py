"""The presets every family shares: ``tiny``, ``small`` and ``star``."""

from __future__ import annotations

import copy
from typing import Any

from xlm_core.utils import deep_merge

#: Presets every family gets unless it overrides them. A preset is a partial run
#: config (``task``, ``model``, ``training``, ``predictor`` sections) applied after
#: the defaults and before ``--config`` and ``--set``. Sharing them keeps families
#: comparable: the same backbone sizes and the same training budget on the same task.
STANDARD_PRESETS: dict[str, dict[str, Any]] = {
    # ~1M parameters, stable at a high learning rate. The default of `xlm train --plugin X`:
    # a bounded budget that finishes in a few minutes on a 2-core CPU.
    "tiny": {
        "model": {"d_model": 128, "n_layers": 4, "n_heads": 4},
        "training": {
            "max_steps": 1000,
            "lr": 1e-3,
            "batch_size": 64,
            "warmup_steps": 100,
            "weight_decay": 0.01,
            "val_every": 500,
        },
    },
    # GPT-2-small-sized, the size used in the literature; such models train best near 3e-4.
    "small": {
        "model": {"d_model": 768, "n_layers": 12, "n_heads": 12},
        "training": {"lr": 3e-4, "batch_size": 64, "warmup_steps": 500, "weight_decay": 0.1},
    },
    # The star recipe; docs/benchmarks.md ("Star-easy: the star recipe") says why each value.
    "star": {
        "task": {"name": "star-easy"},
        "model": {"d_model": 64, "n_layers": 4, "n_heads": 4, "learned_positions": 64},
        "training": {
            "max_steps": 36000,
            "batch_size": 64,
            "lr": 2e-3,
            "warmup_steps": 200,
            "weight_decay": 0.01,
            "val_every": 1000,
        },
        "predictor": {"temperature": 0.0},
    },
}


def standard_presets(**overrides: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A fresh copy of :data:`STANDARD_PRESETS` with per-preset changes merged in, section by section.

    ``standard_presets(star={"training": {"max_steps": 10000}})`` changes one knob of one
    preset; a name that is not a standard preset adds a new preset.
    """
    presets = copy.deepcopy(STANDARD_PRESETS)
    for name, change in overrides.items():
        presets[name] = deep_merge(presets.get(name, {}), change)
    return presets
