"""What benchmarks/step_profile.py measures with: the step scenarios, a bare training loop, the losses
as they were before issue 13, and the profiler's view of a step sorted into kinds of work."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import lightning as L
import torch
import torch.nn.functional as F

from xlm_core.components import IGNORE_INDEX, Batch
from xlm_core.config import resolve_run_config
from xlm_core.data.datamodule import XLMDataModule
from xlm_core.data.tasks import build_task
from xlm_core.nn import block
from xlm_core.nn import dropout as dropout_module
from xlm_core.plugins import get_registry
from xlm_core.training import build_optimizer

#: name -> (family, --set overrides on the tiny preset). Batch 64 everywhere.
SCENARIOS: dict[str, tuple[str, list[str]]] = {
    "tiny-arlm": ("arlm", []),
    "tiny-mdlm": ("mdlm", []),
    "tiny-mlm": ("mlm", []),
    "tiny-ilm": ("ilm", []),
    "reference": ("arlm", ["model.d_model=384", "model.n_layers=4", "model.n_heads=6", "model.dropout=0.1"]),
    "text": ("arlm", ["task.name=text", "task.vocab_size=4096", "task.block_size=128"]),
}


def run_config(name: str, corpus: list[str], cache: Path, batch_size: int = 64) -> Any:
    """``corpus``: the ``task.*`` settings that read the text corpus (``_corpus.corpus_task``)."""
    plugin, sets = SCENARIOS[name]
    extra = [*corpus, f"task.cache_dir={cache}"] if name == "text" else []
    return resolve_run_config(
        plugin, preset="tiny", sets=[*sets, *extra, f"training.batch_size={batch_size}"]
    )


# -- the losses before issue 13 ----------------------------------------------------------------


def legacy_arlm(loss_fn: Any, model: Any, batch: Batch) -> torch.Tensor:
    """ARLM at 3463788: F.cross_entropy over a float32 copy of all logits; the mask passed
    (the model then asked the device whether the padding was on the right only)."""
    logits = model(batch.input_ids, batch.attention_mask).logits
    nll = F.cross_entropy(
        logits.flatten(0, 1).float(), batch.targets.flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
    )
    return nll / (batch.targets != IGNORE_INDEX).sum().clamp_min(1)


def legacy_mlm(loss_fn: Any, model: Any, batch: Batch) -> torch.Tensor:
    """MLM at 3463788: the all-True mask passed; masked logits picked by boolean indexing."""
    logits = model(batch.input_ids, batch.attention_mask).logits
    masked = batch.targets != IGNORE_INDEX
    return F.cross_entropy(logits[masked].float(), batch.targets[masked])


def legacy_mdlm(loss_fn: Any, model: Any, batch: Batch) -> torch.Tensor:
    """MDLM at 3463788: the window counted on the device, the mask checked there by the model."""
    mask = None if bool(batch.attention_mask.all()) else batch.attention_mask
    batch = attrs.evolve(batch, window=None, needs_mask=mask is not None)
    return loss_fn(model, batch).loss


def legacy_ilm(loss_fn: Any, model: Any, batch: Batch) -> torch.Tensor:
    """ILM at 3463788 (as far as speed goes): the attention mask always passed."""
    return loss_fn(model, attrs.evolve(batch, needs_mask=True)).loss


@contextlib.contextmanager
def legacy_attention() -> Iterator[None]:
    """Attention and dropout at 3463788: scaled_dot_product_attention in the inputs' dtype (bf16
    under autocast), dropout masks drawn by torch (``bernoulli_``). (The rotary embedding's
    rewrite, bitwise the same numbers, is not undone.)"""
    current, current_dropout = block.attention, dropout_module.dropout
    block.attention = lambda q, k, v, mask, p, causal: F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, dropout_p=p, is_causal=causal
    )
    dropout_module.dropout = lambda x, p, training=True: F.dropout(x, p, training)
    try:
        yield
    finally:
        block.attention, dropout_module.dropout = current, current_dropout


LEGACY: dict[str, Callable[[Any, Any, Batch], torch.Tensor]] = {
    "arlm": legacy_arlm,
    "mlm": legacy_mlm,
    "mdlm": legacy_mdlm,
    "ilm": legacy_ilm,
}


# -- a bare training loop ---------------------------------------------------------------------


@attrs.define
class Stepper:
    """One family's model, loss and optimiser, stepping through fixed batches like the harness."""

    config: Any
    model: torch.nn.Module
    loss_fn: Any
    legacy: Callable[[Any, Any, Batch], torch.Tensor]
    optimizer: torch.optim.Optimizer
    batches: list[Batch]
    collator: Any
    examples: list[Any]
    task: Any
    bf16: bool = False
    compiled: torch.nn.Module | None = None

    @classmethod
    def build(cls, config: Any, n_batches: int) -> Stepper:
        family = get_registry().get(config.plugin)
        task = build_task(config.task)
        vocab = task.tokenizer.vocab
        L.seed_everything(0, verbose=False)
        model = family.component("model")(config.model, vocab).train()
        collator = family.component("collator")(config.model, vocab, task.shape)
        data = XLMDataModule(task, collator, batch_size=config.training.batch_size, eval_batch_size=1, seed=0, eval_seed=0)
        loader = iter(data.train_dataloader())
        batches = [next(loader) for _ in range(n_batches)]
        train = task.examples("train")
        examples = [train[i] for i in range(config.training.batch_size * 4)]
        optimizer = build_optimizer(model, config.training, torch.device("cpu"))
        loss_fn = family.component("loss")(config.model, vocab)
        return cls(config, model, loss_fn, LEGACY[config.plugin], optimizer, batches, collator, examples, task)

    def loss(self, batch: Batch, setting: str) -> torch.Tensor:
        if setting == "before":
            with legacy_attention():
                return self.legacy(self.loss_fn, self.model, batch)
        model = self.model
        if setting == "compiled":
            if self.compiled is None:
                self.compiled = torch.compile(self.model)
            model = self.compiled
        return self.loss_fn(model, batch).loss

    def step(self, batch: Batch, setting: str) -> None:
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()
        with torch.profiler.record_function("forward+loss"), autocast:
            loss = self.loss(batch, setting)
        with torch.profiler.record_function("backward"):
            loss.backward()
        with torch.profiler.record_function("optimizer"):
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)

    def timed(self, setting: str, steps: int) -> tuple[float, float]:
        """Seconds per step over ``steps`` steps (wall, process CPU), after one untimed step."""
        batches = self._cycle()
        self.step(next(batches), setting)
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(steps):
            self.step(next(batches), setting)
        return (time.perf_counter() - wall) / steps, (time.process_time() - cpu) / steps

    def _cycle(self) -> Iterator[Batch]:
        while True:
            yield from self.batches


# -- the profiler's view ----------------------------------------------------------------------

#: Kinds of work, by the name of the operator that did it (first match wins).
KINDS = [
    ("matmul", re.compile(r"^aten::(mm|bmm|addmm|baddbmm|addbmm|linear|matmul)$")),
    ("attention", re.compile(r"scaled_dot_product|flash_attention|efficient_attention")),
    ("softmax / cross-entropy", re.compile(r"softmax|nll_loss|logsumexp|cross_entropy")),
    ("copies, casts and fills", re.compile(r"copy_|_to_copy|fill_|zero_|^aten::cat$|clone|empty|index|gather|scatter|masked_select|nonzero")),
    ("element-wise", re.compile(r"^aten::")),
]


def profile(stepper: Stepper, setting: str, steps: int, top: int = 10) -> dict[str, Any]:
    """Self CPU time per step by kind of work, by phase and for the ``top`` operators."""
    batches = stepper._cycle()
    stepper.step(next(batches), setting)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            stepper.step(next(batches), setting)
    events = prof.key_averages()
    kinds: dict[str, float] = {}
    for event in events:
        if not event.key.startswith("aten::"):
            continue
        kind = next(k for k, pattern in KINDS if pattern.search(event.key))
        kinds[kind] = kinds.get(kind, 0.0) + event.self_cpu_time_total / 1e3 / steps
    phases = {e.key: e.cpu_time_total / 1e3 / steps for e in events if e.key in ("forward+loss", "backward", "optimizer")}
    ops = sorted((e for e in events if e.key.startswith("aten::")), key=lambda e: -e.self_cpu_time_total)
    total = sum(kinds.values())
    return {
        "cpu_ms_per_step": round(total, 2),
        "kinds_ms": {k: round(v, 2) for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])},
        "arithmetic_share": round((kinds.get("matmul", 0.0) + kinds.get("attention", 0.0)) / max(total, 1e-9), 3),
        "phases_ms": {k: round(v, 2) for k, v in phases.items()},
        "top_ops_ms": {e.key: round(e.self_cpu_time_total / 1e3 / steps, 2) for e in ops[:top]},
    }
