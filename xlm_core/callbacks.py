"""The Lightning callbacks a run is made of: what is written when, and what stops training.

Order matters and :func:`xlm_core.runner.train` keeps it: ``EMA`` (a step's
checkpoint includes that step's average), ``FiniteLossGuard`` (nothing
non-finite is ever saved), ``GracefulStop`` (signals end training at a step
boundary), then ``RunWriter`` (writes ``step-<N>/`` and ``lightning/last.ckpt``).
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, EMAWeightAveraging
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch import nn

from xlm_core.checkpoint import (
    LAST_CKPT,
    LIGHTNING_DIR,
    RUN_FILE,
    CheckpointRecord,
    write_checkpoint,
)
from xlm_core.errors import TrainingInterrupted, XLMUserError
from xlm_core.files import write_json_atomic
from xlm_core.rundir import RunDirectory, step_dir


class EMA(EMAWeightAveraging):
    """Lightning's EMA callback; the average replaces the weights only when the runner says so.

    Lightning copies the average into the model in ``on_train_end``, before the
    last ``.ckpt`` could record the raw weights a resumed run must continue from;
    the runner calls :meth:`apply_average` after that checkpoint instead.
    """

    def averaged_model(self) -> nn.Module | None:
        average = self._average_model
        return None if average is None else average.module.model

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pass

    def apply_average(self, pl_module: L.LightningModule) -> None:
        if self._average_model is not None:
            self._copy_average_to_current(pl_module)


class FiniteLossGuard(Callback):
    """Stops training with one line naming the step when the loss becomes NaN or infinite.

    The first bad step is recorded on the device every step (no host sync) and
    read every ``check_every`` steps and before anything is saved, so a
    diverged model is never written as a checkpoint.
    """

    def __init__(self, check_every: int):
        self.check_every = check_every
        self._first_bad: torch.Tensor | None = None

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        loss = loss.detach()
        if self._first_bad is None:
            self._first_bad = torch.full((), -1, dtype=torch.long, device=loss.device)
        step = trainer.global_step  # already counts this step: the step number a user sees
        bad = ~torch.isfinite(loss) & (self._first_bad < 0)
        self._first_bad = torch.where(bad, torch.full_like(self._first_bad, step), self._first_bad)
        if step % self.check_every == 0:
            self.check(trainer)

    def check(self, trainer: L.Trainer) -> None:
        """Raise if any step so far had a non-finite loss (on any process)."""
        if self._first_bad is None:
            return
        first_bad = int(trainer.strategy.reduce(self._first_bad.float(), reduce_op="max"))
        if first_bad >= 0:
            raise XLMUserError(
                f"training stopped: the loss became non-finite at step {first_bad}; nothing from that "
                "step on was saved (try a lower training.lr, training.grad_clip, or --precision 32)"
            )


class GracefulStop(Callback):
    """Ctrl-C and SIGTERM end training after the current step, with a resumable state saved.

    The first signal only sets a flag; training stops at the next step boundary
    (every process at the same one) and :class:`RunWriter` saves ``last.ckpt``.
    A second Ctrl-C interrupts at once, keeping the state saved before.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be installed from the main thread
        for signum in self.SIGNALS:
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signum
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        print(f"\n{name}: stopping after this step and saving (Ctrl-C again to abort)", flush=True)
        previous = self._previous.get(signum)
        if signum == signal.SIGTERM and callable(previous):
            previous(
                signum, frame
            )  # Lightning's own SIGTERM handling (it stops its launcher's processes)

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        # Every process must stop at the same step, or the others wait forever in the next all-reduce.
        if trainer.strategy.reduce_boolean_decision(self.received is not None, all=False):
            raise TrainingInterrupted(self.received or signal.SIGTERM)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._restore()  # Lightning skips teardown hooks when fit fails

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._restore()

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}


class RunWriter(Callback):
    """Writes ``step-<N>/`` checkpoints, and ``lightning/last.ckpt`` periodically, at the end and on a stop.

    ``pending_record`` is a ``run.json`` to write with the first saved state (a
    resumed run records its changed settings only once they have trained).
    ``run_directory`` (main process) is told when the first state is saved, so
    an old run set aside by ``--overwrite`` can go.
    """

    def __init__(
        self,
        run_dir: Path,
        tokenizer: Any,
        record: CheckpointRecord,
        *,
        ckpt_every: int | None,
        save_every: int,
        ema: EMA | None,
        guard: FiniteLossGuard,
        run_directory: RunDirectory | None = None,
        pending_record: CheckpointRecord | None = None,
    ):
        self.run_dir, self.tokenizer, self.record = run_dir, tokenizer, record
        self.ckpt_every, self.save_every, self.ema = ckpt_every, save_every, ema
        self.guard, self.run_directory, self.pending_record = guard, run_directory, pending_record
        self.saved_step: int | None = None

    @property
    def last_ckpt(self) -> Path:
        return self.run_dir / LIGHTNING_DIR / LAST_CKPT

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        step = trainer.global_step
        if self.ckpt_every and step % self.ckpt_every == 0:
            self.guard.check(trainer)
            averaged = self.ema.averaged_model() if self.ema is not None else None
            self.export(trainer, pl_module, step_dir(self.run_dir, step), averaged)
        if step % self.save_every == 0:
            self.save_state(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Training may end between saves: at max_steps or at the max_minutes limit.
        if self.saved_step != trainer.global_step:
            self.save_state(trainer)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        # A stop requested by a signal arrives at a step boundary, so the state is whole.
        if isinstance(exception, TrainingInterrupted | SIGTERMException):
            if self.saved_step != trainer.global_step:
                self.save_state(trainer)

    def save_state(self, trainer: L.Trainer) -> None:
        self.guard.check(trainer)
        trainer.save_checkpoint(self.last_ckpt, weights_only=False)
        self.saved_step = trainer.global_step
        if trainer.is_global_zero and self.pending_record is not None:
            write_json_atomic(self.run_dir / RUN_FILE, self.pending_record.dump())
            self.pending_record = None
        if self.run_directory is not None:
            self.run_directory.commit()

    def export(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        directory: Path,
        model: nn.Module | None = None,
    ) -> nn.Module:
        """Write a checkpoint of ``model`` (default: the module's model) and return what was written
        (on the main process; see :func:`gathered_model`). Every rank calls this."""
        model = model if model is not None else gathered_model(trainer, pl_module)
        if trainer.is_global_zero:
            meta = self.record.with_step(trainer.global_step).dump()
            write_checkpoint(directory, model=model, tokenizer=self.tokenizer, meta=meta)
        trainer.strategy.barrier("xlm-export")
        return model


def is_sharded(strategy: Any) -> bool:
    """Whether ``strategy`` splits the weights across processes (FSDP, model parallel)."""
    from lightning.pytorch.strategies import FSDPStrategy, ModelParallelStrategy

    return isinstance(strategy, FSDPStrategy | ModelParallelStrategy)


def gathered_model(trainer: L.Trainer, pl_module: Any) -> nn.Module:
    """The family model with all its weights on the main process: gathered into a CPU copy when
    sharded (other processes get an unfilled copy). Every rank calls this."""
    if not is_sharded(trainer.strategy):
        return pl_module.model
    state = trainer.strategy.lightning_module_state_dict()  # collective: every rank takes part
    copy = pl_module.model_class(pl_module.run_config.model, pl_module.vocab)
    if trainer.is_global_zero:
        copy.load_state_dict(
            {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
        )
    return copy
