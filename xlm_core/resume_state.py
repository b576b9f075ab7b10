"""``lightning/last.ckpt``: the state ``xlm train --resume`` continues from.

Lightning's own writer stages the file in the system temp directory and moves
it into place; across filesystems that move is a copy, and a kill during it
leaves a truncated ``last.ckpt``. Here the file is written next to its target
and renamed (:func:`xlm_core.files.write_atomic`). Reading uses
``torch.load(weights_only=True)``: tensors, numbers, strings and containers
only, so a crafted file cannot run code; everything xlm writes loads that way.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from xlm_core.errors import XLMUserError
from xlm_core.files import write_atomic


class RunStateIO(TorchCheckpointIO):
    """Lightning's checkpoint I/O with atomic, same-directory writes and safe loading."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        try:
            write_atomic(path, lambda file: torch.save(checkpoint, file))
        except OSError as exc:
            raise XLMUserError(
                f"cannot write {path}: {exc.strerror or exc}; the state saved before is intact"
            ) from exc

    def load_checkpoint(
        self,
        path: Any,
        map_location: Callable | str | torch.device | None = "cpu",
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        try:
            return torch.load(path, map_location=map_location, weights_only=True)
        except FileNotFoundError:
            raise XLMUserError(f"cannot resume: {path} not found") from None
        except pickle.UnpicklingError as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if "weights_only" in str(exc) or "Unsupported global" in str(exc):
                raise XLMUserError(
                    f"{path} holds Python objects that a safe load refuses (it was not written by xlm); "
                    "refusing to resume from it"
                ) from None
            raise XLMUserError(f"{path} is corrupt or truncated ({reason})") from None
        except (RuntimeError, EOFError, OSError, ValueError, KeyError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise XLMUserError(f"{path} is corrupt or truncated ({reason})") from None
