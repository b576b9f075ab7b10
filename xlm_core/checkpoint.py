"""The checkpoint directory format: safetensors weights + config.json + tokenizer file.

Loading never unpickles.
"""

from __future__ import annotations

import os
from pathlib import Path

from xlm_core.errors import XLMUserError

WEIGHTS_FILE = "model.safetensors"


def save_weights(model, directory: str | os.PathLike) -> Path:
    """Write ``model``'s parameters and buffers to ``directory/model.safetensors`` atomically."""
    from safetensors.torch import save_model

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / WEIGHTS_FILE
    tmp = target.with_name(target.name + ".tmp")
    save_model(model, str(tmp))  # handles tied weights (shared storage) by saving one copy
    os.replace(tmp, target)
    return target


def load_weights(model, directory: str | os.PathLike, *, device: str = "cpu") -> None:
    """Load ``directory/model.safetensors`` into ``model``; a missing or corrupt file is a user error."""
    from safetensors import SafetensorError
    from safetensors.torch import load_model

    path = Path(directory) / WEIGHTS_FILE
    if not path.is_file():
        raise XLMUserError(f"checkpoint {Path(directory)} has no {WEIGHTS_FILE}")
    try:
        missing, unexpected = load_model(model, str(path), strict=False, device=device)
    except (SafetensorError, OSError, ValueError) as exc:
        raise XLMUserError(f"{path} is corrupt or truncated ({exc})") from None
    if missing or unexpected:
        raise XLMUserError(
            f"{path} does not match the model (missing: {sorted(missing)[:3]}, unexpected: {sorted(unexpected)[:3]})"
        )
