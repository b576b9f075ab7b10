"""The Lightning harness: one module that wires a family's model, loss, collator and predictor.

It holds no family logic. The family decides what a batch means and how to
decode; this module optimises (AdamW with weight-decay groups, warm-up then
cosine or constant learning rate; Lightning clips gradients) and validates:
loss, per-token NLL over the split, the loss's own metrics, and task metrics
from a prediction pass. :mod:`xlm_core.runner` builds the Trainer around it and
writes the run directory.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import lightning as L
import torch
from lightning.pytorch.utilities.seed import isolate_rng
from torch import Tensor, nn

from xlm_core import compiling
from xlm_core.components import Batch, DataShape, Vocab
from xlm_core.data.datamodule import EvalBatch, PromptBatch, derived_seed
from xlm_core.errors import renamed_attributes
from xlm_core.metrics import Totals
from xlm_core.threads import adapt_threads

if TYPE_CHECKING:  # pragma: no cover
    from xlm_core.config import RunConfig
    from xlm_core.plugins.registry import Family

# -- optimisation -----------------------------------------------------------------------------


#: Prefixes that wrappers (FSDP, activation checkpointing, torch.compile) add to parameter names.
_WRAPPER_PREFIXES = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")


def _named_parameters(model: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
    """``named_parameters()`` (a tied parameter once), named as in the unwrapped model."""
    for name, p in model.named_parameters():
        for prefix in _WRAPPER_PREFIXES:
            name = name.replace(prefix, "")
        yield name, p


def no_decay_names(model: nn.Module) -> frozenset[str]:
    """Parameters AdamW does not decay: norms, biases and embeddings (and a head tied to one).

    Decided on the unwrapped model and kept by name: FSDP flattens every parameter into
    a 1-D shard, after which every parameter would look like a bias.
    """
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    return frozenset(n for n, p in _named_parameters(model) if p.ndim < 2 or id(p) in embeddings)


def param_groups(
    model: nn.Module, weight_decay: float, no_decay: frozenset[str] | None = None
) -> list[dict[str, Any]]:
    """AdamW groups: decay on weight matrices only, never on norms, biases or embeddings.

    ``no_decay`` (:func:`no_decay_names` of the model before a strategy wrapped it)
    decides; without it the model must be unwrapped. A tied output head shares the
    embedding's parameter and so is not decayed either.
    """
    skip = no_decay_names(model) if no_decay is None else no_decay
    decay, rest, names = [], [], set()
    for name, p in _named_parameters(model):
        names.add(name)
        if p.requires_grad:
            (rest if name in skip else decay).append(p)
    if not skip <= names:  # a wrapper renamed them, and they would be decayed without a word
        raise RuntimeError(f"parameters renamed by a wrapper: {sorted(skip - names)[:3]}")
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": rest, "weight_decay": 0.0},
    ]


def build_optimizer(
    model: nn.Module,
    training: Any,
    device: torch.device,
    no_decay: frozenset[str] | None = None,
) -> torch.optim.AdamW:
    return torch.optim.AdamW(
        param_groups(model, training.weight_decay, no_decay),
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


def log_interval(max_steps: int) -> int:
    """Log (and refresh the progress bar) about 50 times a run, at least every 50 steps."""
    return max(1, min(50, max_steps // 50))


# -- the module -------------------------------------------------------------------------------


class XLMModule(L.LightningModule):
    """Trains any family: ``loss(model, batch)`` in training, loss + prediction pass in validation."""

    def __init__(
        self, run_config: RunConfig, family: Family, vocab: Vocab, shape: DataShape, task_kind: str
    ):
        super().__init__()
        config = run_config.model
        components = family.resolve_all()
        self.run_config = run_config
        self.model_class = components["model"]
        self.model = self.model_class(config, vocab)
        self.no_decay = no_decay_names(self.model)  # before any strategy wraps the model
        self.loss_fn = components["loss"](config, vocab)
        self.predictor = components["predictor"](config, vocab, shape)
        self.nll_kind: str = type(self.loss_fn).nll_kind
        self.vocab, self.shape, self.task_kind = vocab, shape, task_kind
        self.log_every = log_interval(run_config.training.max_steps)
        self._val_totals = Totals()
        self._val_rng = contextlib.ExitStack()
        self._compiled = compiling.CompiledModel() if run_config.training.compile else None

    # training

    def training_model(self) -> nn.Module:
        """The model the training step runs: compiled with ``training.compile`` (xlm_core.compiling)."""
        return self.model if self._compiled is None else self._compiled(self.model)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        with compiling.failures_as_user_errors(self._compiled is not None):
            out = self.loss_fn(self.training_model(), batch)
        # Logging costs Python time and, on a GPU, a sync when the bar reads it: log only on the
        # steps Lightning writes (it writes when (step + 1) % log_every_n_steps == 0). sync_dist
        # averages over processes, a collective that every process reaches on these same steps.
        if (self.global_step + 1) % self.log_every == 0:
            size = batch.size
            self.log("train/loss", out.loss.detach(), prog_bar=True, batch_size=size, sync_dist=True)
            for name, value in out.metrics.items():
                self.log(f"train/{name}", value, batch_size=size, sync_dist=True)
        return out.loss

    def on_train_batch_start(self, batch: Batch, batch_idx: int) -> None:
        if self.device.type == "cpu":
            adapt_threads()  # run on the cores other processes leave free (xlm_core/threads.py)

    def backward(self, loss: Tensor, *args: Any, **kwargs: Any) -> None:
        # the compiled backward is built at the first backward pass, and may fail there
        with compiling.failures_as_user_errors(self._compiled is not None):
            super().backward(loss, *args, **kwargs)

    def on_train_start(self) -> None:
        # Resuming restores the optimiser's saved learning rate, betas and decay; the run config
        # wins, so `xlm train --resume DIR --set training.lr=...` takes effect. A no-op otherwise.
        training = self.run_config.training
        for optimizer in self.trainer.optimizers:
            decay, no_decay = optimizer.param_groups
            decay["weight_decay"] = training.weight_decay
            for group in (decay, no_decay):
                group["betas"] = tuple(training.betas)
        for config in self.trainer.lr_scheduler_configs:
            scheduler = config.scheduler
            scheduler.base_lrs = [training.lr] * len(scheduler.base_lrs)
            factor = lr_factor(scheduler.last_epoch, training)
            for group in scheduler.optimizer.param_groups:
                group["lr"] = training.lr * factor

    def configure_optimizers(self) -> dict[str, Any]:
        training = self.run_config.training
        optimizer = build_optimizer(self.model, training, self.device, self.no_decay)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_factor(step, training)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    # validation

    def on_validation_epoch_start(self) -> None:
        # Fixed randomness for anything the loss draws itself, without disturbing training's stream.
        self._val_rng.enter_context(isolate_rng())
        torch.manual_seed(derived_seed(self.run_config.eval.seed, self.global_rank))
        self._val_totals = Totals()

    def validation_step(
        self, batch: EvalBatch | PromptBatch, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if isinstance(batch, PromptBatch):
            self._predict_batch(batch)
            return
        for part in batch.parts:
            out = self.loss_fn(self.model, part)
            self._val_totals.add_loss_output(out, part.size, counted=batch.counted)

    def _predict_batch(self, batch: PromptBatch) -> None:
        """Decode a batch of validation prompts, each with its example's seed."""
        seed = self.run_config.eval.seed
        prediction = self.predictor.predict(
            self.model,
            [list(e.prompt_ids) for e in batch.examples],
            settings=self.run_config.predictor,
            seeds=[derived_seed(seed, i) for i in batch.indices],
        )
        if not batch.counted:  # a replicated decode: the first process counts it
            return
        steps, nfe = prediction.steps.tolist(), prediction.nfe.tolist()
        for b, (ids, example) in enumerate(zip(prediction.sequences(), batch.examples, strict=True)):
            self._val_totals.add_prediction(ids, nfe[b], steps[b], list(example.target_ids))

    def on_validation_epoch_end(self) -> None:
        self._val_rng.close()
        totals = self._val_totals.reduced(self._sum_across_processes)
        summary = totals.summary(self.nll_kind)
        logged = {"val/loss": summary.get("loss"), "val/nll": summary.get("nll")}
        logged.update({f"val/{name}": summary[name] for name in totals.metric_sums})
        if totals.predicted:
            logged.update({f"val/{k}": summary[k] for k in ("seq_acc", "token_acc", "nfe")})
        # Already global: every rank logs the same numbers, and the mean Lightning takes keeps them.
        self.log_dict({k: v for k, v in logged.items() if v is not None}, sync_dist=True)

    def _sum_across_processes(self, numbers: list[float]) -> list[float]:
        packed = torch.tensor(numbers, dtype=torch.float64, device=self.device)
        return self.trainer.strategy.reduce(packed, reduce_op="sum").tolist()


#: Names that moved in xlm-core 0.2 still resolve here, with one warning, until 0.3.0.
__getattr__ = renamed_attributes(__name__, {"resolve_precision": "xlm_core.devices.lightning_precision"})
