"""The presets every family shares: ``tiny``, ``small``, ``star`` and the published text recipes
``lm1b`` and ``owt`` (docs/usage.md, "Text recipes")."""

from __future__ import annotations

import copy
from typing import Any

from xlm_core.utils import deep_merge

#: The model and optimiser of MDLM (Sahoo et al. 2024, arXiv 2406.07524; kuleshov-group/mdlm
#: configs/config.yaml and configs/model/small.yaml): a 12-layer, 768-wide, 12-head transformer
#: (GPT-2 small) with dropout 0.1 and an untied output layer, AdamW at 3e-4 with betas (0.9, 0.999)
#: and no weight decay, 2,500 warm-up steps then a constant rate, gradients clipped at 1, EMA
#: 0.9999, 1M steps of a global batch of 512. ``batch_size`` is per device: 64 on each of 8
#: devices, as MDLM ran; on fewer devices raise it so that devices x batch_size = 512.
_MDLM_RECIPE: dict[str, Any] = {
    "model": {
        "d_model": 768,
        "n_layers": 12,
        "n_heads": 12,
        "dropout": 0.1,
        "tie_embeddings": False,
    },
    "training": {
        "max_steps": 1_000_000,
        "batch_size": 64,
        "lr": 3e-4,
        "warmup_steps": 2500,
        "schedule": "constant",
        "weight_decay": 0.0,
        "betas": [0.9, 0.999],
        "grad_clip": 1.0,
        "ema": 0.9999,
        "val_every": 10_000,
    },
}
#: Script-free copies on the Hub (`datasets` >= 4 runs no loading scripts): LM1B with its
#: train and test splits, OpenWebText with one train split.
LM1B_DATASET = "dvruette/lm1b"
OWT_DATASET = "Skylion007/openwebtext"

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
    # LM1B as MDLM trains it: bert-base-uncased, each sentence one example of at most 128 tokens
    # (no packing). LM1B has no validation split: 0.1% of train (~30k sentences) is held out.
    # Published test perplexity at 33B training tokens: MDLM <= 27.04, AR 22.32 (MDLM, Table 1).
    "lm1b": {
        "task": {
            "name": "text",
            "dataset": LM1B_DATASET,
            "tokenizer": "bert-base-uncased",
            "block_size": 128,
            "pack": False,
            "validation_fraction": 0.001,
        },
        **copy.deepcopy(_MDLM_RECIPE),
    },
    # OpenWebText as MDLM trains it: the GPT-2 tokenizer, documents packed into blocks of 1,024.
    # OWT has one split: 1.25% of its 8M documents (about MDLM's 100k) are held out for each of
    # validation and test. Published perplexity at 262B tokens: MDLM <= 23.21, AR 17.54 (Table 2).
    "owt": {
        "task": {
            "name": "text",
            "dataset": OWT_DATASET,
            "tokenizer": "gpt2",
            "block_size": 1024,
            "pack": True,
            "validation_fraction": 0.0125,
        },
        **copy.deepcopy(_MDLM_RECIPE),
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
