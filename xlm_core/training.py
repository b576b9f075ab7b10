"""The Lightning harness: one module that wires a family's model, loss, collator and predictor.

It holds no family logic. The family decides what a batch means and how to
decode; this module optimises (AdamW with weight-decay groups, warm-up then
cosine or constant learning rate, clipping by Lightning), validates (loss,
per-token NLL over the split, the loss's own metrics, and task metrics from a
prediction pass) and writes checkpoints. Hardware, precision and distribution
(DDP, FSDP, several nodes) are Lightning's: the settings pass straight through.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

import attrs
import lightning as L
import torch
from lightning.pytorch.callbacks import (
    Callback,
    EMAWeightAveraging,
    LearningRateMonitor,
    TQDMProgressBar,
)
from lightning.pytorch.utilities.seed import isolate_rng
from torch import Tensor, nn

from xlm_core.checkpoint import (
    FINAL_DIR,
    LAST_CKPT,
    LIGHTNING_DIR,
    LOGS_DIR,
    RUN_DIR_ENV,
    RUN_FILE,
    clear_run_dir,
    is_main_process,
    make_meta,
    step_dir,
    write_checkpoint,
    write_json_atomic,
)
from xlm_core.components import Batch, DataShape, Vocab
from xlm_core.data.datamodule import PromptBatch, XLMDataModule, derived_seed
from xlm_core.data.tokenizers import TOKENIZER_FILE
from xlm_core.errors import XLMUserError
from xlm_core.metrics import exact_match, token_matches

# -- optimisation -----------------------------------------------------------------------------


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: decay on weight matrices only, never on norms, biases or embeddings.

    A tied output head shares the embedding's parameter and so is not decayed either.
    """
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decay, no_decay = [], []
    for p in model.parameters():  # parameters() yields a tied parameter once
        if p.requires_grad:
            (no_decay if p.ndim < 2 or id(p) in embeddings else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, training: Any, device: torch.device) -> torch.optim.AdamW:
    return torch.optim.AdamW(
        param_groups(model, training.weight_decay),
        lr=training.lr,
        betas=tuple(training.betas),
        fused=device.type == "cuda",
    )


def lr_factor(step: int, training: Any) -> float:
    """Multiplier of the peak learning rate at optimiser step ``step`` (0-based)."""
    warmup = training.warmup_steps
    if step < warmup:
        return (step + 1) / warmup
    if training.schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, training.max_steps - warmup))
    floor = training.min_lr_ratio
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def resolve_precision(training: Any) -> str:
    """Lightning's precision string; ``auto`` means bf16 autocast on a GPU that supports it, else fp32."""
    if training.precision == "32":
        return "32-true"
    if training.precision != "auto":
        return training.precision
    on_cuda = training.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    return "bf16-mixed" if on_cuda and torch.cuda.is_bf16_supported() else "32-true"


def log_interval(max_steps: int) -> int:
    """Log (and refresh the progress bar) about 50 times a run, at least every 50 steps."""
    return max(1, min(50, max_steps // 50))


# -- the module -------------------------------------------------------------------------------


class XLMModule(L.LightningModule):
    """Trains any family: ``loss(model, batch)`` in training, loss + prediction pass in validation."""

    def __init__(
        self, run_config: Any, family: Any, vocab: Vocab, shape: DataShape, task_kind: str
    ):
        super().__init__()
        config = run_config.model
        components = family.resolve_all()
        self.run_config = run_config
        self.model_class = components["model"]
        self.model = self.model_class(config, vocab)
        self.loss_fn = components["loss"](config, vocab)
        self.predictor = components["predictor"](config, vocab, shape)
        self.nll_kind: str = type(self.loss_fn).nll_kind
        self.vocab, self.shape, self.task_kind = vocab, shape, task_kind
        self.log_every = log_interval(run_config.training.max_steps)
        self._val_sums: dict[str, Tensor] = {}
        self._val_predictions: Tensor | None = None
        self._val_rng = contextlib.ExitStack()

    # training

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        out = self.loss_fn(self.model, batch)
        # Logging costs Python time and, on a GPU, a sync when the bar reads it: only every log_every steps.
        if self.global_step % self.log_every == 0:
            self.log("train/loss", out.loss.detach(), prog_bar=True, batch_size=batch.size)
            for name, value in out.metrics.items():
                self.log(f"train/{name}", value, batch_size=batch.size)
        return out.loss

    def configure_optimizers(self) -> dict[str, Any]:
        training = self.run_config.training
        optimizer = build_optimizer(self.model, training, self.device)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_factor(step, training)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    # validation

    def on_validation_epoch_start(self) -> None:
        # Fixed randomness for anything the loss draws itself, without disturbing training's stream.
        self._val_rng.enter_context(isolate_rng())
        torch.manual_seed(derived_seed(self.run_config.eval.seed, self.global_rank))
        self._val_sums = defaultdict(
            lambda: torch.zeros((), dtype=torch.float64, device=self.device)
        )
        self._val_predictions = None

    def validation_step(
        self, batch: Batch | PromptBatch, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if isinstance(batch, PromptBatch):
            self._predict_batch(batch)
            return
        out = self.loss_fn(self.model, batch)
        sums, size = self._val_sums, batch.size
        sums["examples"] += size
        sums["loss"] += out.loss.detach().double() * size
        sums["n_tokens"] += out.n_tokens.double()
        if out.nll_sum is not None:
            sums["nll_sum"] += out.nll_sum.detach().double()
        for name, value in out.metrics.items():
            sums[f"metric/{name}"] += (
                torch.as_tensor(value, device=self.device).detach().double() * size
            )

    def _predict_batch(self, batch: PromptBatch) -> None:
        """Decode a batch of validation prompts; results are stored per example index."""
        seed = self.run_config.eval.seed
        prediction = self.predictor.predict(
            self.model,
            [list(e.prompt_ids) for e in batch.examples],
            settings=self.run_config.predictor,
            seeds=[derived_seed(seed, i) for i in batch.indices],
        )
        if self._val_predictions is None:
            limit = self.trainer.datamodule.predict_count
            self._val_predictions = torch.zeros(5, limit, dtype=torch.float64, device=self.device)
        nfe = prediction.nfe.tolist()
        for b, (ids, example) in enumerate(
            zip(prediction.sequences(), batch.examples, strict=True)
        ):
            target = list(example.target_ids)
            row = [1.0, exact_match(ids, target), token_matches(ids, target), len(target), nfe[b]]
            self._val_predictions[:, batch.indices[b]] = torch.tensor(row, dtype=torch.float64)

    def on_validation_epoch_end(self) -> None:
        self._val_rng.close()
        strategy = self.trainer.strategy
        names = sorted(self._val_sums)
        logged: dict[str, float] = {}
        if names:
            totals = strategy.reduce(
                torch.stack([self._val_sums[n] for n in names]), reduce_op="sum"
            )
            sums = dict(zip(names, totals.tolist(), strict=True))
            examples = sums.pop("examples")
            logged["val/loss"] = sums.pop("loss") / examples
            n_tokens, nll_sum = sums.pop("n_tokens"), sums.pop("nll_sum", None)
            if self.nll_kind != "none" and nll_sum is not None and n_tokens:
                logged["val/nll"] = nll_sum / n_tokens
            logged.update(
                {f"val/{n.removeprefix('metric/')}": v / examples for n, v in sums.items()}
            )
        if self.trainer.datamodule.predicts_in_validation:
            logged.update(self._prediction_metrics())
        self.log_dict(logged, prog_bar=False)
        self._val_sums = {}

    def _prediction_metrics(self) -> dict[str, float]:
        local = self._val_predictions
        if local is None:  # this rank decoded nothing (more ranks than prompt batches)
            local = torch.zeros(
                5, self.trainer.datamodule.predict_count, dtype=torch.float64, device=self.device
            )
        # A distributed sampler may hand an example to two ranks; both decode it identically, so max merges.
        merged = self.all_gather(local)
        if merged.dim() == 3:
            merged = merged.max(dim=0).values
        seen, exact, correct, length, nfe = merged.sum(dim=1).tolist()
        if not seen:
            return {}
        return {
            "val/seq_acc": exact / seen,
            "val/token_acc": correct / max(length, 1.0),
            "val/nfe": nfe / seen,
        }


# -- checkpoints during training --------------------------------------------------------------


class EMA(EMAWeightAveraging):
    """Lightning's EMA callback, exposing the averaged family model for step checkpoints."""

    def averaged_model(self) -> nn.Module | None:
        average = self._average_model
        return None if average is None else average.module.model


class RunWriter(Callback):
    """Writes ``step-<N>/`` checkpoints and ``lightning/last.ckpt`` for ``--resume``."""

    def __init__(
        self,
        run_dir: Path,
        tokenizer: Any,
        meta: dict[str, Any],
        *,
        ckpt_every: int | None,
        save_every: int,
        ema: EMA | None,
    ):
        self.run_dir, self.tokenizer, self.meta = run_dir, tokenizer, meta
        self.ckpt_every, self.save_every, self.ema = ckpt_every, save_every, ema

    @property
    def last_ckpt(self) -> Path:
        return self.run_dir / LIGHTNING_DIR / LAST_CKPT

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: XLMModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if self.ckpt_every and step % self.ckpt_every == 0:
            averaged = self.ema.averaged_model() if self.ema is not None else None
            self.export(trainer, pl_module, step_dir(self.run_dir, step), averaged)
        if step % self.save_every == 0 or step >= trainer.max_steps:
            trainer.save_checkpoint(self.last_ckpt, weights_only=False)

    def export(
        self,
        trainer: L.Trainer,
        pl_module: XLMModule,
        directory: Path,
        model: nn.Module | None = None,
    ) -> None:
        """Write a checkpoint of ``model`` (default: the module's model). Every rank calls this."""
        model = model if model is not None else _full_model(trainer, pl_module)
        if trainer.is_global_zero:
            meta = {**self.meta, "step": trainer.global_step}
            write_checkpoint(directory, model=model, tokenizer=self.tokenizer, meta=meta)
        trainer.strategy.barrier("xlm-export")


def _full_model(trainer: L.Trainer, pl_module: XLMModule) -> nn.Module:
    """The family model with all its weights on this rank: gathered into a CPU copy when sharded."""
    from lightning.pytorch.strategies import FSDPStrategy, ModelParallelStrategy

    if not isinstance(trainer.strategy, FSDPStrategy | ModelParallelStrategy):
        return pl_module.model
    state = trainer.strategy.lightning_module_state_dict()  # collective: every rank takes part
    copy = pl_module.model_class(pl_module.run_config.model, pl_module.vocab)
    if trainer.is_global_zero:
        copy.load_state_dict(
            {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
        )
    return copy


# -- a whole run ------------------------------------------------------------------------------


@attrs.define
class TrainResult:
    """What ``train`` did; ``metrics`` and ``samples`` are filled on the main process only."""

    run_dir: Path
    checkpoint: Path
    steps: int
    seconds: float
    is_main: bool
    metrics: dict[str, Any] = attrs.field(factory=dict)
    samples: list[Any] = attrs.field(factory=list)


def train(
    run_config: Any,
    *,
    run_dir: Path,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    evaluate: bool = True,
    num_samples: int = 3,
) -> TrainResult:
    """Train ``run_config`` into ``run_dir``, write ``final/``, then evaluate on the test split.

    The end-of-run evaluation decodes ``eval.limit`` test examples, or
    ``eval.val_predict_limit`` when no limit is set, so the default run stays bounded.
    """
    from xlm_core.data.tasks import build_task
    from xlm_core.pipeline import Pipeline, task_info
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
    saved_tokenizer = run_dir / TOKENIZER_FILE
    task = build_task(
        run_config.task,
        tokenizer_path=saved_tokenizer if resume and saved_tokenizer.is_file() else None,
    )
    vocab = task.tokenizer.vocab
    collator = family.component("collator")(run_config.model, vocab, task.shape)
    meta = make_meta(run_config, family, task_info(task))

    if is_main_process():  # every check has passed: only now may an old run be replaced
        if overwrite:
            clear_run_dir(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        task.tokenizer.save(run_dir)
        write_json_atomic(run_dir / RUN_FILE, meta)

    if torch.cuda.is_available():
        torch.set_float32_matmul_precision("high")
    L.seed_everything(training.seed, workers=True, verbose=False)
    module = XLMModule(run_config, family, vocab, task.shape, task.kind)
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
    writer = RunWriter(
        run_dir,
        task.tokenizer,
        meta,
        ckpt_every=training.ckpt_every,
        save_every=training.ckpt_every or training.val_every,
        ema=ema,
    )
    # EMA first: a step's checkpoint must include that step's update of the average.
    callbacks: list[Callback] = [*([ema] if ema else []), writer]
    trainer = build_trainer(run_config, run_dir, callbacks, progress=progress)

    start = time.perf_counter()
    previous = os.environ.get(RUN_DIR_ENV)
    os.environ[RUN_DIR_ENV] = str(run_dir)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
            warnings.filterwarnings("ignore", message=".*treespec, LeafSpec.*")
            # Resuming draws a new data order (see XLMDataModule), so the mid-epoch position is not needed.
            warnings.filterwarnings("ignore", message=".*your dataloader is not resumable.*")
            trainer.fit(module, datamodule=datamodule, ckpt_path=last_ckpt if resume else None)
    finally:
        if previous is None:
            os.environ.pop(RUN_DIR_ENV, None)
        else:
            os.environ[RUN_DIR_ENV] = previous
    seconds = time.perf_counter() - start
    final = run_dir / FINAL_DIR
    writer.export(
        trainer, module, final
    )  # after fit, EMA weights (if any) are already in the model

    result = TrainResult(run_dir, final, trainer.global_step, seconds, trainer.is_global_zero)
    if trainer.is_global_zero and evaluate:
        pipeline = Pipeline(
            family=family,
            run_config=run_config,
            model=module.model,
            tokenizer=task.tokenizer,
            task_kind=task.kind,
            shape=task.shape,
            device=trainer.strategy.root_device,
            checkpoint=final,
            task=task,
        )
        limit = run_config.eval.limit or run_config.eval.val_predict_limit
        if limit:
            result.metrics = pipeline.evaluate("test", limit, progress=progress)
        result.samples = pipeline.generate(num_samples=num_samples, seed=run_config.eval.seed)
    return result


def build_trainer(
    run_config: Any, run_dir: Path, callbacks: list[Callback], *, progress: bool = True
) -> L.Trainer:
    """A Trainer configured from ``training``: hardware settings pass through to Lightning unchanged."""
    import importlib.util

    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    training = run_config.training
    every = log_interval(training.max_steps)
    loggers: list[Any] = [CSVLogger(run_dir, name=LOGS_DIR)]
    if importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX"):
        loggers.append(TensorBoardLogger(run_dir, name="tensorboard"))
    extra: list[Callback] = [LearningRateMonitor(logging_interval="step")]
    if progress:
        extra.append(TQDMProgressBar(refresh_rate=every))
    return L.Trainer(
        accelerator=training.accelerator,
        devices=training.devices,
        strategy=training.strategy,
        num_nodes=training.num_nodes,
        precision=resolve_precision(training),
        max_steps=training.max_steps,
        gradient_clip_val=training.grad_clip,
        val_check_interval=min(training.val_every, training.max_steps),
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        log_every_n_steps=every,
        logger=loggers,
        callbacks=[*callbacks, *extra],
        enable_checkpointing=False,  # RunWriter writes last.ckpt and the safetensors checkpoints
        enable_progress_bar=progress,
        enable_model_summary=progress,
        default_root_dir=run_dir,
    )
