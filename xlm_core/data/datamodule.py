"""The Lightning data module: a task's splits, batched by the family's collator.

Validation has two loaders: loss batches over the whole validation split, and
prompt batches over its first ``val_predict_limit`` examples for the prediction
pass (prompted tasks only). Every example travels with its index in the split,
so evaluation seeds and metrics are tied to the example, not to the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from xlm_core.components import Batch, Example

#: Mixes a seed with an index into a new 63-bit seed (a large odd multiplier keeps nearby pairs apart).
_MIX = 0x9E3779B97F4A7C15


def derived_seed(seed: int, *parts: int) -> int:
    """A seed for ``(seed, *parts)``: deterministic, distinct for distinct inputs in practice."""
    value = seed & 0x7FFF_FFFF_FFFF_FFFF
    for part in parts:
        value = ((value ^ (part + 1)) * _MIX) & 0x7FFF_FFFF_FFFF_FFFF
    return value


class IndexedExamples(Dataset):
    """``(index, example)`` pairs over a split (or its first ``limit`` examples)."""

    def __init__(self, examples: Sequence[Example], limit: int | None = None):
        self.examples = examples
        self.length = len(examples) if limit is None else min(limit, len(examples))

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[int, Example]:
        return index, self.examples[index]


@attrs.define(slots=True)
class PromptBatch:
    """What the prediction loader yields: split indices and their examples (the predictor pads itself)."""

    indices: list[int]
    examples: list[Example]


class TrainCollate:
    """Collates training batches with a generator of its own, seeded per rank and worker.

    The generator is created in the process that uses it, so DataLoader workers
    each draw a different stream instead of copies of one.
    """

    def __init__(self, collator: Any, seed: int, rank: int = 0):
        self.collator, self.seed, self.rank = collator, seed, rank
        self._generator: torch.Generator | None = None

    def __call__(self, items: list[tuple[int, Example]]) -> Batch:
        if self._generator is None:
            info = get_worker_info()
            self._generator = torch.Generator().manual_seed(
                derived_seed(self.seed, self.rank, info.id if info else -1)
            )
        return self.collator([example for _, example in items], generator=self._generator)

    def __getstate__(
        self,
    ) -> dict[str, Any]:  # workers start without a generator and seed their own
        return {"collator": self.collator, "seed": self.seed, "rank": self.rank, "_generator": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


class EvalCollate:
    """Collates evaluation batches; the corruption is seeded by the batch's first example index.

    So a validation batch gets the same corruption at every validation, and
    validation curves move only because the model does.
    """

    def __init__(self, collator: Any, seed: int, draw: int = 0):
        self.collator, self.seed, self.draw = collator, seed, draw

    def __call__(self, items: list[tuple[int, Example]]) -> Batch:
        generator = torch.Generator().manual_seed(derived_seed(self.seed, items[0][0], self.draw))
        return self.collator([example for _, example in items], generator=generator)


def collate_prompts(items: list[tuple[int, Example]]) -> PromptBatch:
    return PromptBatch([i for i, _ in items], [e for _, e in items])


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
        num_workers: int = 0,
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
        workers = self.num_workers
        return DataLoader(
            dataset,
            batch_size=batch_size,
            collate_fn=collate_fn,
            num_workers=workers,
            persistent_workers=workers > 0,
            **kwargs,
        )

    def train_dataloader(self) -> DataLoader:
        rank = self.trainer.global_rank if self.trainer is not None else 0
        # A resumed run continues with a fresh order instead of replaying the examples it has seen.
        start = self.trainer.global_step if self.trainer is not None else 0
        order = torch.Generator().manual_seed(derived_seed(self.seed, 1, start))
        return self._loader(
            IndexedExamples(self.task.examples("train")),
            self.batch_size,
            TrainCollate(self.collator, self.seed, rank),
            shuffle=True,
            generator=order,
        )

    def val_dataloader(self) -> list[DataLoader]:
        validation = self.task.examples("validation")
        loaders = [
            self._loader(
                IndexedExamples(validation),
                self.eval_batch_size,
                EvalCollate(self.collator, self.eval_seed),
            )
        ]
        if self.predicts_in_validation:
            prompts = IndexedExamples(validation, self.val_predict_limit)
            loaders.append(self._loader(prompts, self.eval_batch_size, collate_prompts))
        return loaders
