"""A trained model ready to use: ``xlm_core.load(path)`` -> :class:`Pipeline`.

``generate`` samples, ``score`` measures likelihood, ``evaluate`` does both over
a split (what ``xlm eval`` prints). Every example's sampling and corruption
seeds derive from the evaluation seed and the example's index, so results do not
depend on batch size. Loading reads ``config.json``, ``tokenizer.json`` and
``model.safetensors`` only; the task's data is generated or read only when a
split is needed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from xlm_core import evaluation
from xlm_core.budget import check_sample_count, rows_per_chunk
from xlm_core.checkpoint import CheckpointRecord, find_checkpoint, load_weights
from xlm_core.components import DataShape, Example
from xlm_core.config import override_section
from xlm_core.data.datamodule import derived_seed
from xlm_core.data.tokenizers import TOKENIZER_FILE, Tokenizer
from xlm_core.devices import inference_autocast, matmul_size, resolve_device
from xlm_core.errors import XLMUserError, renamed_attributes
from xlm_core.generation import MASK_GLYPH, GenerationResult, resolve_prompts
from xlm_core.metrics import Totals
from xlm_core.progress import progress_bar

if TYPE_CHECKING:  # pragma: no cover
    from xlm_core.config import RunConfig
    from xlm_core.data.tasks import Task
    from xlm_core.judge import JudgeLike
    from xlm_core.plugins.registry import Family


class Pipeline:
    """A model with its family's components, tokenizer and run config, in eval mode on one device."""

    def __init__(
        self,
        *,
        family: Family,
        run_config: RunConfig,
        model: torch.nn.Module,
        tokenizer: Tokenizer,
        task_kind: str,
        shape: DataShape,
        device: torch.device | str,
        checkpoint: Path | None = None,
        task: Task | None = None,
    ):
        self.family, self.run_config, self.tokenizer = family, run_config, tokenizer
        self.vocab = tokenizer.vocab
        self.task_kind, self.shape = task_kind, shape
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.checkpoint = checkpoint
        self._task = task
        config = run_config.model
        self.loss = family.component("loss")(config, self.vocab)
        self.predictor = family.component("predictor")(config, self.vocab, shape)
        self.nll_kind: str = type(self.loss).nll_kind

    @classmethod
    def from_checkpoint(
        cls,
        record: CheckpointRecord,
        *,
        family: Family | None = None,
        device: torch.device | str | None = None,
    ) -> Pipeline:
        """The pipeline of a checkpoint whose record has been read (``family``: already resolved)."""
        device = resolve_device(device)
        family = family or record.family()
        run_config = record.load_run_config(family)
        tokenizer_file = record.directory / TOKENIZER_FILE
        tokenizer = Tokenizer.from_file(tokenizer_file)
        task = None
        if record.task_info is not None:
            kind, shape = record.task_info.kind, record.task_info.shape
        else:  # written before checkpoints recorded their task's shape: rebuild the task
            from xlm_core.data.tasks import build_task

            task = build_task(run_config.task, tokenizer_path=tokenizer_file)
            kind, shape = task.kind, task.shape
        model = family.component("model")(run_config.model, tokenizer.vocab)
        load_weights(model, record.directory)
        return cls(
            family=family,
            run_config=run_config,
            model=model,
            tokenizer=tokenizer,
            task_kind=kind,
            shape=shape,
            device=device,
            checkpoint=record.directory,
            task=task,
        )

    @cached_property
    def collator(self) -> Any:
        return self.family.component("collator")(self.run_config.model, self.vocab, self.shape)

    @property
    def task(self) -> Task:
        """The task, rebuilt from the run config with the checkpoint's tokenizer on first use."""
        if self._task is None:
            from xlm_core.data.tasks import build_task

            tokenizer_path = (
                self.checkpoint / TOKENIZER_FILE if self.checkpoint is not None else None
            )
            self._task = build_task(self.run_config.task, tokenizer_path=tokenizer_path)
        return self._task

    # -- sampling ------------------------------------------------------------------------------

    def settings(self, **overrides: Any) -> Any:
        """The run's predictor settings with ``overrides`` applied and validated."""
        return override_section(self.run_config.predictor, overrides, "predictor")

    def generate(
        self,
        prompts: Sequence[str] | None = None,
        *,
        num_samples: int | None = None,
        seed: int = 0,
        record_steps: bool = False,
        progress: bool = False,
        **settings_overrides: Any,
    ) -> list[GenerationResult]:
        """Sample continuations of ``prompts`` (``num_samples`` each, default 1).

        Without prompts: ``num_samples`` (default 4) unconditional samples for a
        text task, or the first ``num_samples`` test prompts of a prompted task.
        Sample ``j`` of the returned list is seeded with ``(seed, j)``.
        """
        settings = self.settings(**settings_overrides)
        per_prompt = 1 if num_samples is None else num_samples
        self._chunk_size(settings, [])  # an impossible length is refused before anything else
        check_sample_count(
            per_prompt * len(prompts) if prompts is not None else (num_samples or 4),
            self.new_tokens(settings),
        )
        prompt_ids, texts, references = resolve_prompts(self, prompts, num_samples)
        seeds = [derived_seed(seed, j) for j in range(len(prompt_ids))]
        results = []
        for j, (ids, steps, nfe, history, counters) in enumerate(
            self._predicted_rows(prompt_ids, seeds, settings, record_steps, progress)
        ):
            text = self.tokenizer.decode(ids)
            results.append(
                GenerationResult(texts[j], text, ids, steps, nfe, history, references[j], counters)
            )
        return results

    def render(self, ids: Sequence[int]) -> str:
        """Token by token, space separated, with ``_`` for an undecided (MASK) position."""
        v = self.vocab
        pieces = []
        for i in ids:
            if i == v.mask_id:
                pieces.append(MASK_GLYPH)
            elif i != v.pad_id:
                pieces.append(self.tokenizer.decode([i], skip_special=False).strip() or "·")
        return " ".join(pieces)

    # -- likelihood and evaluation -------------------------------------------------------------

    def score(
        self, inputs: Sequence[str | Example | tuple[str, str]], *, progress: bool = False
    ) -> dict[str, Any]:
        """Per-token NLL (exact or a bound, see ``nll_kind``), ppl, loss and the family's loss metrics.

        ``inputs``: texts (text tasks), ``(prompt, target)`` string pairs, or :class:`Example` s.
        Families with a stochastic loss average ``eval_nll_samples`` seeded draws per example.
        """
        examples = [self._as_example(x) for x in inputs]
        totals = Totals()
        evaluation.score_into(self, totals, examples, progress=progress)
        tokens = totals.tokens // self.run_config.model.eval_nll_samples
        return {"n_examples": len(examples), "n_tokens": tokens, **totals.summary(self.nll_kind)}

    def evaluate(
        self,
        split: str = "test",
        limit: int | None = None,
        *,
        judge: JudgeLike | None = None,
        prefix_len: int | None = None,
        progress: bool = True,
        **settings_overrides: Any,
    ) -> dict[str, Any]:
        """Likelihood, task and sample metrics over the first ``limit`` examples of ``split`` (all
        when None): what ``xlm eval --json`` prints. ``judge`` (a pipeline or a checkpoint path)
        adds the generative perplexity; ``prefix_len`` samples continuations of test prefixes."""
        settings = self.settings(**settings_overrides)
        options = {"judge": judge, "prefix_len": prefix_len, "progress": progress}
        return evaluation.evaluate(self, split, limit, settings, **options)

    def generative_perplexity(
        self,
        judge: JudgeLike,
        split: str = "test",
        limit: int | None = None,
        *,
        prefix_len: int | None = None,
        progress: bool = False,
        **settings_overrides: Any,
    ) -> dict[str, Any]:
        """``judge``'s perplexity of this model's samples and of the data, with the samples'
        entropy, distinct-n, length and speed (the sample figures of :meth:`evaluate`)."""
        settings = self.settings(**settings_overrides)
        options = {"prefix_len": prefix_len, "progress": progress}
        return evaluation.generative_perplexity(self, judge, split, limit, settings, **options)

    def brier(
        self,
        split: str = "test",
        limit: int | None = None,
        *,
        prefixes: int = 4,
        progress: bool = False,
        **settings_overrides: Any,
    ) -> dict[str, Any]:
        """Brier-1..4 and BrierLM from two sampled continuations of ``prefixes`` cuts per block
        (:mod:`xlm_core.brier`); needs a predictor that continues a prompt."""
        from xlm_core.brier import brier

        settings = self.settings(**settings_overrides)
        return brier(self, split, limit, settings, prefixes=prefixes, progress=progress)

    # -- internals -----------------------------------------------------------------------------

    def _as_example(self, item: str | Example | tuple[str, str]) -> Example:
        if isinstance(item, Example):
            return item
        if isinstance(item, str):
            if self.task_kind == "prompted":
                raise XLMUserError(
                    "this task is prompted: score (prompt, target) pairs or Examples, not plain texts"
                )
            return Example((), tuple(self.tokenizer.encode(item)))
        prompt, target = item
        return Example(tuple(self.tokenizer.encode(prompt)), tuple(self.tokenizer.encode(target)))

    def predict_rows(
        self,
        prompts: list[list[int]],
        seeds: list[int],
        settings: Any,
        *,
        record_steps: bool = False,
        progress: bool = False,
    ) -> Iterator[tuple[list[int], int, int, list[list[int]] | None]]:
        """(ids, steps, nfe, history) per prompt, decoded in batches of ``eval.batch_size``
        (fewer when a batch would not fit in memory: samples do not depend on the batch).
        ``settings``: a settings object of the family, already validated."""
        rows = self._predicted_rows(prompts, seeds, settings, record_steps, progress)
        for ids, steps, nfe, history, _ in rows:
            yield ids, steps, nfe, history

    def _predicted_rows(
        self,
        prompts: list[list[int]],
        seeds: list[int],
        settings: Any,
        record_steps: bool,
        progress: bool,
    ) -> Iterator[tuple[list[int], int, int, list[list[int]] | None, dict[str, int]]]:
        """What :meth:`predict_rows` yields, and each row's ``Prediction.counters``."""
        size = self._chunk_size(settings, prompts)
        with (
            torch.no_grad(),
            self.autocast(settings, min(size, len(prompts))),
            progress_bar(len(prompts), "sampling", progress) as bar,
        ):
            for start in range(0, len(prompts), size):
                chunk = slice(start, start + size)
                prediction = self.predictor.predict(
                    self.model,
                    prompts[chunk],
                    settings=settings,
                    seeds=seeds[chunk],
                    record_steps=record_steps,
                )
                sequences = prediction.sequences()
                steps, nfe = prediction.steps.tolist(), prediction.nfe.tolist()
                counters = {name: value.tolist() for name, value in prediction.counters.items()}
                for b, ids in enumerate(sequences):
                    history = prediction.history[b] if prediction.history is not None else None
                    counted = {name: int(values[b]) for name, values in counters.items()}
                    yield ids, int(steps[b]), int(nfe[b]), history, counted
                bar.update(len(sequences))

    def new_tokens(self, settings: Any) -> int:
        return settings.max_new_tokens or self.shape.target_length

    def _chunk_size(self, settings: Any, prompts: Sequence[Sequence[int]]) -> int:
        """Rows per ``predict`` call: ``eval.batch_size``, fewer if memory says so (refuses if not one fits)."""
        return rows_per_chunk(
            self.run_config.model,
            self.vocab.size,
            prompt_length=max([self.shape.prompt_length, *map(len, prompts)]),
            new_tokens=self.new_tokens(settings),
            batch_size=self.run_config.eval.batch_size,
            device=self.device,
        )

    def autocast(
        self, settings: Any = None, rows: int | None = None
    ) -> contextlib.AbstractContextManager:
        """bf16 autocast where the run's precision asks for it and it pays (``xlm_core.devices``).

        Without arguments, for passes over whole batches of sequences (scoring). For decoding,
        give the predictor ``settings`` and the ``rows`` decoded together: ``auto`` on a CPU
        then keeps a small pass (:meth:`positions_per_pass` x ``rows`` positions of a small
        model) in fp32.
        """
        pass_size = None
        layer = matmul_size(self.run_config.model)  # d_model x d_ff
        if settings is not None and layer is not None:
            pass_size = (rows or 1) * self.positions_per_pass(settings) * layer
        return inference_autocast(
            self.device,
            self.run_config.training.precision,
            matmul_size(self.run_config.model, self.vocab.size),
            pass_size,
        )

    def positions_per_pass(self, settings: Any) -> int:
        """Positions of one row that a decoding pass computes under ``settings``: the predictor's
        own answer where it gives one (plugin API 1.3), else the whole row (prompt and budget)."""
        declared = getattr(self.predictor, "positions_per_pass", None)
        positions = declared(settings) if declared is not None else None
        return positions or self.shape.prompt_length + self.new_tokens(settings) + 1


def load(path: str | os.PathLike[str], device: str | torch.device | None = None) -> Pipeline:
    """Load a checkpoint directory (or a run directory's ``final/``) into a :class:`Pipeline`.

    Problems are one-line :class:`XLMUserError` s: a missing plugin names what to
    ``pip install``; a corrupt or truncated file is named.
    """
    return Pipeline.from_checkpoint(CheckpointRecord.read(find_checkpoint(path)), device=device)


#: Names that moved in xlm-core 0.2 still resolve here, with one warning, until 0.3.0.
__getattr__ = renamed_attributes(
    __name__,
    {"native_bf16": "xlm_core.devices.native_bf16", "task_info": "xlm_core.checkpoint.task_info"},
)
