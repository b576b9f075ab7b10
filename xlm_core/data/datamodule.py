"""The Lightning data module: a task's splits, batched by the family's collator.

Validation has two loaders: loss batches over the whole validation split, and
prompt batches over its first ``val_predict_limit`` examples for the prediction
pass (prompted tasks only). Every example travels with its index in the split,
so evaluation seeds and metrics are tied to the example, not to the batch.

The data module chooses every sampler itself (the Trainer runs with
``use_distributed_sampler=False``): processes divide the training data with one
``DistributedSampler`` seeded per start step, and the evaluation splits without
the repeats a ``DistributedSampler`` pads with, so each example counts once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, get_worker_info

from xlm_core.callbacks import is_sharded
from xlm_core.components import Batch, Example
from xlm_core.threads import usable_cores

#: Mixes a seed with an index into a new 63-bit seed (a large odd multiplier keeps nearby pairs apart).
_MIX = 0x9E3779B97F4A7C15


def derived_seed(seed: int, *parts: int) -> int:
    """A seed for ``(seed, *parts)``: deterministic, distinct for distinct inputs in practice."""
    value = seed & 0x7FFF_FFFF_FFFF_FFFF
    for part in parts:
        value = ((value ^ (part + 1)) * _MIX) & 0x7FFF_FFFF_FFFF_FFFF
    return value


class IndexedExamples(Dataset):
    """``(index, example)`` pairs over a split (or its first ``limit`` examples).

    With ``parts > 1``, only this process's share: every ``parts``-th example from ``part``
    on, so that processes divide an evaluation split without padding it with repeats.
    """

    def __init__(
        self, examples: Sequence[Example], limit: int | None = None, parts: int = 1, part: int = 0
    ):
        self.examples = examples
        end = len(examples) if limit is None else min(limit, len(examples))
        self.indices = range(part, end, parts)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> tuple[int, Example]:
        index = self.indices[position]
        return index, self.examples[index]


@attrs.define(slots=True)
class PromptBatch:
    """What the prediction loader yields: split indices and their examples (the predictor pads itself)."""

    indices: list[int]
    examples: list[Example]
    counted: bool = True


@attrs.define(slots=True)
class EvalBatch:
    """What the validation loss loader yields: a loader batch's rows, one ``Batch`` per layout.

    ``counted`` is False on a process that evaluates a replicated split only to take part in
    the sharded model's collectives: its sums are not counted again.
    """

    parts: list[Batch]
    counted: bool = True

    def to(self, device: torch.device | str) -> EvalBatch:  # Lightning moves batches with this
        return EvalBatch([part.to(device) for part in self.parts], self.counted)

    def pin_memory(self) -> EvalBatch:
        return EvalBatch([part.pin_memory() for part in self.parts], self.counted)


class TrainCollate:
    """Collates training batches with a generator of its own, seeded per rank, worker and start.

    The generator is created in the process that uses it, so DataLoader workers
    each draw a different stream instead of copies of one; a resumed run (a new
    start step) draws new corruption instead of repeating the first run's.
    """

    def __init__(self, collator: Any, seed: int, rank: int = 0, start: int = 0):
        self.collator, self.seed, self.rank, self.start = collator, seed, rank, start
        self._generator: torch.Generator | None = None

    def __call__(self, items: list[tuple[int, Example]]) -> Batch:
        if self._generator is None:
            info = get_worker_info()
            self._generator = torch.Generator().manual_seed(
                derived_seed(self.seed, self.rank, info.id if info else -1, self.start)
            )
        return self.collator([example for _, example in items], generator=self._generator)

    def __getstate__(self) -> dict[str, Any]:
        # workers start without a generator and seed their own
        return {**self.__dict__, "_generator": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


class EvalCollate:
    """Collates evaluation batches; each example's corruption is seeded by its index in the split.

    So an example is corrupted the same way at every validation, in a batch of any
    size and on any process: validation curves move only because the model does,
    and the figures do not depend on ``eval.batch_size`` or the number of devices.
    The collator takes one generator per call, so each example is collated alone
    (which also keeps a batch-level draw, like MDLM's stratified times, per example);
    the rows are then joined by layout (:func:`join_rows`).
    """

    def __init__(self, collator: Any, seed: int, draw: int = 0, counted: bool = True):
        self.collator, self.seed, self.draw, self.counted = collator, seed, draw, counted

    def __call__(self, items: list[tuple[int, Example]]) -> EvalBatch:
        rows = [
            self.collator(
                [example],
                generator=torch.Generator().manual_seed(derived_seed(self.seed, index, self.draw)),
            )
            for index, example in items
        ]
        return EvalBatch(join_rows(rows), self.counted)


def join_rows(rows: list[Batch]) -> list[Batch]:
    """One-row batches stacked into one batch per layout (the shapes of all their tensors).

    Rows of different layouts stay apart rather than being re-padded: only the family
    knows where its padding goes and what fills it (MDLM right-aligns its window, ILM
    counts gaps by column, extras have fills of their own).
    """
    layouts: dict[tuple, list[Batch]] = {}
    for row in rows:
        tensors = (row.input_ids, row.attention_mask, row.targets, *row.extras.values())
        key = (tuple(row.extras), row.window, *(tuple(t.shape) for t in tensors))
        layouts.setdefault(key, []).append(row)
    return [
        Batch(
            torch.cat([r.input_ids for r in group]),
            torch.cat([r.attention_mask for r in group]),
            torch.cat([r.targets for r in group]),
            {k: torch.cat([r.extras[k] for r in group]) for k in group[0].extras},
            needs_mask=any(r.needs_mask for r in group),  # one row's padding is the batch's
            window=group[0].window,
        )
        for group in layouts.values()
    ]


@attrs.define(frozen=True)
class CollatePrompts:
    """Prompt batches for the prediction pass; ``counted`` as for :class:`EvalBatch`."""

    counted: bool = True

    def __call__(self, items: list[tuple[int, Example]]) -> PromptBatch:
        return PromptBatch([i for i, _ in items], [e for _, e in items], self.counted)


#: ``num_workers: auto`` on a GPU. Collating a batch of 64 takes 1-4 ms (benchmarks/step_profile.py):
#: ~1% of a CPU step, where a worker would only take a core from the step, but on a GPU about as
#: long as a small model's whole step, which would wait for it without workers.
GPU_WORKERS = 2


def loader_workers(setting: int | str, on_gpu: bool) -> int:
    """DataLoader workers for ``training.num_workers``: a number as given; ``auto``: none on a CPU,
    :data:`GPU_WORKERS` on a GPU (fewer on a machine with fewer spare cores)."""
    if setting != "auto":
        return int(setting)
    if not on_gpu:
        return 0
    return max(0, min(GPU_WORKERS, usable_cores() - 1))


class XLMDataModule(L.LightningDataModule):
    """Wraps a task and the family's collator for ``Trainer.fit``."""

    def __init__(
        self,
        task: Any,
        collator: Any,
        *,
        batch_size: int,
        eval_batch_size: int,
        seed: int,
        eval_seed: int,
        num_workers: int | str = 0,
        val_predict_limit: int = 0,
    ):
        super().__init__()
        self.task, self.collator = task, collator
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.seed, self.eval_seed = seed, eval_seed
        self.num_workers = num_workers
        self.val_predict_limit = val_predict_limit if task.kind == "prompted" else 0

    @property
    def predict_count(self) -> int:
        """How many validation examples the prediction pass decodes (0: none)."""
        if not self.val_predict_limit:
            return 0
        return min(self.val_predict_limit, len(self.task.examples("validation")))

    @property
    def predicts_in_validation(self) -> bool:
        return self.predict_count > 0

    def _loader(
        self, dataset: Dataset, batch_size: int, collate_fn: Any, **kwargs: Any
    ) -> DataLoader:
        on_gpu = self._device_type() == "cuda"
        workers = loader_workers(self.num_workers, on_gpu)
        return DataLoader(
            dataset,
            batch_size=batch_size,
            collate_fn=collate_fn,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=on_gpu,  # page-locked batches copy to the GPU without blocking (Batch.to)
            **kwargs,
        )

    def _device_type(self) -> str:
        """Where batches go: the trainer's device, ``cpu`` before there is one."""
        device = getattr(getattr(self.trainer, "strategy", None), "root_device", None)
        return device.type if device is not None else "cpu"

    def _processes(self) -> tuple[int, int]:
        """(number of processes, this one's rank)."""
        trainer = self.trainer
        return (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)

    def _eval_share(self, n: int) -> tuple[int, int, bool]:
        """How processes divide an evaluation split of ``n`` examples: (parts, this process's
        part, whether it counts its sums).

        Each process takes its share, except when the model is sharded (a forward pass
        is then a collective, so every process must run the same batches) or the split
        has fewer examples than processes: then all evaluate all of it and the first counts.
        """
        world, rank = self._processes()
        if world > 1 and (n < world or is_sharded(self.trainer.strategy)):
            return 1, 0, rank == 0
        return world, rank, True

    def train_dataloader(self) -> DataLoader:
        world, rank = self._processes()
        # A resumed run (a later start step) draws a new order and new corruption instead of
        # replaying what the first run saw. The sampler is the same for any number of processes,
        # so the k-th global batch holds the same examples on one device as on several.
        start = self.trainer.global_step if self.trainer is not None else 0
        examples = IndexedExamples(self.task.examples("train"))
        order = DistributedSampler(
            examples, world, rank, shuffle=True, seed=derived_seed(self.seed, 1, start)
        )
        return self._loader(
            examples,
            self.batch_size,
            TrainCollate(self.collator, self.seed, rank, start),
            sampler=order,
        )

    def val_dataloader(self) -> list[DataLoader]:
        validation = self.task.examples("validation")
        parts, part, counted = self._eval_share(len(validation))
        loaders = [
            self._loader(
                IndexedExamples(validation, parts=parts, part=part),
                self.eval_batch_size,
                EvalCollate(self.collator, self.eval_seed, counted=counted),
            )
        ]
        if self.predicts_in_validation:
            parts, part, counted = self._eval_share(self.predict_count)
            prompts = IndexedExamples(validation, self.val_predict_limit, parts, part)
            loaders.append(self._loader(prompts, self.eval_batch_size, CollatePrompts(counted)))
        return loaders
