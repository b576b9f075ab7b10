"""``training.compile``: torch.compile of the model for training, and a failure that ends in one line.

Inductor turns the model's forward and backward into fused kernels (C++ on a CPU,
Triton on a GPU): the element-wise work between matrix products (norms, rotary,
GELU, dropout, residuals) stops making a round trip through memory per operation.
What that buys, after a compile that takes tens of seconds, is measured in
benchmarks/step_profile.py and summarised in docs/usage.md ("Speed").

Only training runs the compiled model. Validation and decoding call the model with
ever-changing shapes (a KV cache that grows, batches that shrink as rows finish),
which would recompile again and again, so they run it as it is. The compiled wrapper
is kept beside the model rather than in its place, so parameter names, checkpoints
and the optimiser see the model exactly as without compile.

A machine where inductor cannot build kernels (no C++ compiler, no Triton) must not
fail with a compiler's traceback: :func:`probe` tries a tiny compile before the run
writes anything, and :func:`failures_as_user_errors` turns a compile failure during
the first steps into one line naming the setting.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from xlm_core.errors import XLMUserError

SETTING = "training.compile=true"


def compile_errors() -> tuple[type[BaseException], ...]:
    """What torch.compile raises when it cannot build kernels (inductor's errors are among them)."""
    import torch._dynamo.exc as dynamo_exc

    return (dynamo_exc.TorchDynamoException,)


def user_error(exc: BaseException) -> XLMUserError:
    """One line: the setting, what went wrong (the compiler's first line) and the way out."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    reason = lines[0] if lines else type(exc).__name__
    return XLMUserError(
        f"{SETTING}: torch.compile cannot build kernels on this machine ({reason}); install a C++ "
        "compiler (CPU) or Triton (GPU), or set training.compile=false"
    )


def probe(device: torch.device) -> None:
    """Compile and run a two-operation function on ``device``; raises :class:`XLMUserError` if it fails.

    A few seconds the first time, well under one once inductor's cache holds it: far less
    than the model's own compile, and before the run directory is touched.
    """
    fused = torch.compile(lambda x: (x * 2.0 + 1.0).relu(), dynamic=False)
    try:
        fused(torch.ones(8, device=device))
    except (RuntimeError, OSError) as exc:  # dynamo's and inductor's errors are RuntimeErrors
        raise user_error(exc) from exc


@contextlib.contextmanager
def failures_as_user_errors(enabled: bool) -> Iterator[None]:
    """Around a compiled model's forward and backward: a compile failure becomes one line."""
    if not enabled:
        yield
        return
    try:
        yield
    except compile_errors() as exc:
        raise user_error(exc) from exc


class CompiledModel:
    """The training view of a model under ``training.compile``: compiled on first use.

    Kept outside the module tree (a plain object, not an ``nn.Module`` attribute), so
    the compiled wrapper never shows up in ``state_dict`` or ``named_parameters``.
    """

    def __init__(self) -> None:
        self._compiled: nn.Module | None = None
        self._source: nn.Module | None = None

    def __call__(self, model: nn.Module) -> nn.Module:
        # compiled lazily and again if the model was replaced (a strategy that wraps it in place)
        if self._compiled is None or self._source is not model:
            self._compiled, self._source = torch.compile(model), model
        return self._compiled
