"""A whole training run: the run directory, the Trainer around :class:`XLMModule`, checkpoints, evaluation.

Hardware, precision and distribution (DDP, FSDP, several nodes) are Lightning's:
``training.accelerator/devices/strategy/num_nodes/precision`` pass straight
through, except that ``devices: auto`` means one device (each device adds a batch
to every step, so using several is asked for by number). During training
``RunWriter`` writes ``step-<N>/`` checkpoints and ``lightning/last.ckpt`` (for
``--resume``); at the end ``final/`` is written and, on the main process,
evaluated on the test split.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
import warnings
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import lightning as L
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, TQDMProgressBar
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from torch import nn

from xlm_core import compiling
from xlm_core.callbacks import EMA, FiniteLossGuard, GracefulStop, RunWriter
from xlm_core.checkpoint import (
    FINAL_DIR,
    LAST_CKPT,
    LIGHTNING_DIR,
    LOGS_DIR,
    RUN_FILE,
    CheckpointRecord,
    RecordedTask,
)
from xlm_core.data.datamodule import XLMDataModule
from xlm_core.devices import lightning_precision, matmul_size
from xlm_core.errors import TrainingInterrupted, XLMUserError
from xlm_core.files import write_json_atomic
from xlm_core.init_from import InitSource, check_init_from, initialise
from xlm_core.resume_state import RunStateIO
from xlm_core.rundir import RUN_DIR_ENV, RunDirectory, check_out_dir, is_main_process
from xlm_core.training import XLMModule, log_interval

if TYPE_CHECKING:  # pragma: no cover
    from xlm_core.config import RunConfig
    from xlm_core.data.tasks import Task
    from xlm_core.plugins.registry import Family

# -- a whole run ------------------------------------------------------------------------------


@attrs.define
class TrainResult:
    """What ``train`` did; ``metrics`` and ``samples`` are filled on the main process only."""

    run_dir: Path
    checkpoint: Path
    steps: int
    max_steps: int
    seconds: float
    is_main: bool
    metrics: dict[str, Any] = attrs.field(factory=dict)
    samples: list[Any] = attrs.field(factory=list)


def train(
    run_config: RunConfig,
    *,
    run_dir: Path,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    evaluate: bool = True,
    num_samples: int = 3,
    callbacks: Sequence[Callback] = (),
    init_from: Path | None = None,
) -> TrainResult:
    """Train ``run_config`` into ``run_dir``, write ``final/``, then evaluate on the test split.

    Nothing is written until everything that can be checked before training has
    passed; the run directory is then locked for this process, and an old run
    replaced with ``overwrite`` is kept until the new run has saved its first
    state (:class:`xlm_core.rundir.RunDirectory`). Ctrl-C and SIGTERM save a
    resumable state and raise :class:`TrainingInterrupted`.

    The end-of-run evaluation decodes ``eval.limit`` test examples, or
    ``eval.val_predict_limit`` when no limit is set, so the default run stays bounded.
    ``callbacks`` are added to the Trainer's (benchmarks time steps with one).
    ``init_from`` (a checkpoint or run directory) starts the model from its weights and
    the run from its tokenizer (:mod:`xlm_core.init_from`); a resumed run refuses it.
    """
    run = _Run.prepare(run_config, run_dir, resume, init_from)
    trainer = build_trainer(
        run_config,
        run_dir,
        [*run.callbacks(), *callbacks],
        progress=progress,
        vocab_size=run.task.tokenizer.vocab.size,
    )
    if run_config.training.compile:  # a machine that cannot compile says so before anything is written
        compiling.probe(trainer.strategy.root_device)
    with RunDirectory(run_dir) if is_main_process() else contextlib.nullcontext() as directory:
        if directory is not None:  # every check has passed: only now is anything written
            if not resume:
                check_out_dir(run_dir, overwrite=overwrite)  # again, now that no one else writes
                directory.set_aside()
                run.task.tokenizer.save(run_dir)
                write_json_atomic(run_dir / RUN_FILE, run.record.dump())
            run.writer.run_directory = directory
        start = time.perf_counter()
        _fit(trainer, run.module, run.datamodule, run_dir, run.last_ckpt if resume else None, run.writer)
        seconds = time.perf_counter() - start
        if run.ema is not None:
            run.ema.apply_average(run.module)  # final/ holds the averaged weights
        run.guard.check(trainer)
        # Under FSDP module.model still holds this process's shards: evaluate the gathered copy.
        final_model = run.writer.export(trainer, run.module, run_dir / FINAL_DIR)

    result = TrainResult(
        run_dir,
        run_dir / FINAL_DIR,
        trainer.global_step,
        run_config.training.max_steps,
        seconds,
        trainer.is_global_zero,
    )
    if trainer.is_global_zero and evaluate:
        run.evaluate(result, final_model, trainer.strategy.root_device, num_samples, progress)
    return result


@attrs.define
class _Run:
    """Everything a run trains with, built and checked before anything is written."""

    run_config: RunConfig
    family: Family
    task: Task
    record: CheckpointRecord
    module: XLMModule
    datamodule: XLMDataModule
    ema: EMA | None
    guard: FiniteLossGuard
    writer: RunWriter
    last_ckpt: Path

    @classmethod
    def prepare(
        cls, run_config: RunConfig, run_dir: Path, resume: bool, init_from: Path | None = None
    ) -> _Run:
        from xlm_core.plugins.registry import get_registry

        training = run_config.training
        family = get_registry().get(run_config.plugin)
        if training.ema is not None and "fsdp" in str(training.strategy).lower():
            raise XLMUserError(
                "training.ema cannot be combined with an FSDP strategy (the average is not sharded)"
            )
        last_ckpt = run_dir / LIGHTNING_DIR / LAST_CKPT
        if resume and not last_ckpt.is_file():
            raise XLMUserError(f"cannot resume {run_dir}: it has no {LIGHTNING_DIR}/{LAST_CKPT}")
        source = InitSource.find(init_from, resume=resume) if init_from is not None else None
        if not resume:
            check_init_from(family, run_config.model, source)
        task = source.build_task(run_config.task) if source else _task(run_config, run_dir, resume)
        vocab = task.tokenizer.vocab
        collator = family.component("collator")(run_config.model, vocab, task.shape)

        if torch.cuda.is_available():
            torch.set_float32_matmul_precision("high")
        L.seed_everything(training.seed, workers=True, verbose=False)
        module = XLMModule(run_config, family, vocab, task.shape, task.kind)
        provenance = {}
        if source is not None:  # after the model is built, before anything is written or trained
            report = initialise(module.model, source, run_config.model)
            rank_zero_info(report.describe())
            provenance["init_from"] = report.record()
        record = CheckpointRecord.create(run_config, family, RecordedTask.of(task), **provenance)
        datamodule = XLMDataModule(
            task,
            collator,
            batch_size=training.batch_size,
            eval_batch_size=run_config.eval.batch_size,
            seed=training.seed,
            eval_seed=run_config.eval.seed,
            num_workers=training.num_workers,
            val_predict_limit=run_config.eval.val_predict_limit,
        )
        ema = EMA(decay=training.ema) if training.ema is not None else None
        guard = FiniteLossGuard(check_every=log_interval(training.max_steps))
        writer = RunWriter(
            run_dir,
            task.tokenizer,
            record,
            ckpt_every=training.ckpt_every,
            save_every=training.ckpt_every or training.val_every,
            ema=ema,
            guard=guard,
            pending_record=record if resume else None,  # a resumed run's run.json changes once it has trained
        )
        return cls(run_config, family, task, record, module, datamodule, ema, guard, writer, last_ckpt)

    def callbacks(self) -> list[Callback]:
        """In the order callbacks.py explains: EMA, the loss guard, signals, then the writer."""
        return [*([self.ema] if self.ema else []), self.guard, GracefulStop(), self.writer]

    def evaluate(
        self, result: TrainResult, model: nn.Module, device: torch.device, num_samples: int, progress: bool
    ) -> None:
        """Test metrics and a few samples of the final weights, into ``result``."""
        from xlm_core.pipeline import Pipeline

        task = self.task
        pipeline = Pipeline(
            family=self.family,
            run_config=self.run_config,
            model=model,
            tokenizer=task.tokenizer,
            task_kind=task.kind,
            shape=task.shape,
            device=device,
            checkpoint=result.checkpoint,
            task=task,
        )
        evaluation = self.run_config.eval
        limit = evaluation.limit or evaluation.val_predict_limit
        if limit:
            result.metrics = pipeline.evaluate("test", limit, progress=progress)
        result.samples = pipeline.generate(num_samples=num_samples, seed=evaluation.seed)


def _task(run_config: RunConfig, run_dir: Path, resume: bool) -> Task:
    """The run's task; a resumed run tokenizes with the tokenizer it saved."""
    from xlm_core.data.tasks import build_task
    from xlm_core.data.tokenizers import TOKENIZER_FILE

    saved = run_dir / TOKENIZER_FILE
    return build_task(run_config.task, tokenizer_path=saved if resume and saved.is_file() else None)


def _fit(
    trainer: L.Trainer,
    module: XLMModule,
    datamodule: XLMDataModule,
    run_dir: Path,
    ckpt_path: Path | None,
    writer: RunWriter,
) -> None:
    """``trainer.fit`` with Lightning's known chatter filtered and a signal turned into one message."""
    previous = os.environ.get(RUN_DIR_ENV)
    os.environ[RUN_DIR_ENV] = str(run_dir)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
            warnings.filterwarnings("ignore", message=".*treespec, LeafSpec.*")
            warnings.filterwarnings("ignore", message=".*all_gather is deprecated.*")
            # Resuming draws a new data order (see XLMDataModule), so the mid-epoch position is not needed.
            warnings.filterwarnings("ignore", message=".*your dataloader is not resumable.*")
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    except (TrainingInterrupted, SIGTERMException, KeyboardInterrupt, SystemExit) as exc:
        if isinstance(exc, SystemExit) and not trainer.interrupted:
            raise
        signum = getattr(exc, "signum", signal.SIGTERM if isinstance(exc, SIGTERMException) else signal.SIGINT)
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        if writer.saved_step is not None:
            saved = f"its state at step {writer.saved_step} is saved"
        elif writer.last_ckpt.is_file():
            saved = "the state saved before is kept"
        else:
            saved = ""
        how = f"; continue with `xlm train --resume {run_dir}`" if saved else ": nothing was saved"
        raise TrainingInterrupted(
            signum, f"training stopped by {name} at step {trainer.global_step}{', ' + saved if saved else ''}{how}"
        ) from None
    finally:
        if previous is None:
            os.environ.pop(RUN_DIR_ENV, None)
        else:
            os.environ[RUN_DIR_ENV] = previous


def build_trainer(
    run_config: RunConfig,
    run_dir: Path,
    callbacks: list[Callback],
    *,
    progress: bool = True,
    vocab_size: int | None = None,
) -> L.Trainer:
    """A Trainer configured from ``training``: hardware settings pass through to Lightning unchanged
    (``vocab_size`` sizes the model for ``precision: auto``)."""
    import importlib.util

    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    training = run_config.training
    every = log_interval(training.max_steps)
    # Each device adds a batch to every step at the same learning rate: several only on request.
    devices = 1 if training.devices == "auto" else training.devices
    _quiet_lightning_tips()
    loggers: list[Any] = [CSVLogger(run_dir, name=LOGS_DIR)]
    if importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX"):
        loggers.append(TensorBoardLogger(run_dir, name="tensorboard"))
    extra: list[Callback] = [LearningRateMonitor(logging_interval="step")]
    if progress:
        extra.append(TQDMProgressBar(refresh_rate=every))
    try:
        trainer = L.Trainer(
            accelerator=training.accelerator,
            devices=devices,
            strategy=training.strategy,
            num_nodes=training.num_nodes,
            precision=lightning_precision(training, matmul_size(run_config.model, vocab_size)),
            max_steps=training.max_steps,
            max_time=timedelta(minutes=training.max_minutes) if training.max_minutes else None,
            gradient_clip_val=training.grad_clip,
            val_check_interval=min(training.val_every, training.max_steps),
            check_val_every_n_epoch=None,
            num_sanity_val_steps=0,
            log_every_n_steps=every,
            logger=loggers,
            callbacks=[*callbacks, *extra],
            enable_checkpointing=False,  # RunWriter writes last.ckpt and the safetensors checkpoints
            plugins=[RunStateIO()],
            use_distributed_sampler=False,  # XLMDataModule divides the data itself
            enable_progress_bar=progress,
            enable_model_summary=progress,
            default_root_dir=run_dir,
        )
    except (MisconfigurationException, ValueError, RuntimeError) as exc:
        # Lightning's word on an impossible combination (--devices 4 on one GPU, an unknown strategy, ...)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise XLMUserError(f"cannot set up training hardware: {reason}") from exc
    global_batch = training.batch_size * trainer.num_devices * trainer.num_nodes
    rank_zero_info(
        f"global batch: {global_batch} examples per step ({training.batch_size} per device × "
        f"{trainer.num_devices} device(s) × {trainer.num_nodes} node(s))"
    )
    return trainer


class _NoTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip:" not in record.getMessage()


def _quiet_lightning_tips() -> None:
    """Drop Lightning's advertising line ("Tip: try installing litlogger"), keep its real messages."""
    log = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _NoTips) for f in log.filters):
        log.addFilter(_NoTips())
