"""What ``xlm eval`` measures over a split: likelihood, task accuracy and sample quality.

Samples and data are measured on the same unit (:class:`Plan`): a prompted task's
target; for text, what one example of the data is, so that lengths, entropy,
distinct-n and generative perplexity compare like with like:

- ``block``: packed text. A block holds several documents separated by EOS, and an
  unconditional sample is a whole block too (:mod:`xlm_core.continuation` goes on
  sampling after each EOS until the block is full);
- ``document``: unpacked text, one document (truncated to the block) per example;
- ``continuation``: with ``prefix_len`` N, the rest of a test block after its first N
  tokens, sampled given those N tokens.

Every seed derives from ``eval.seed`` and the example's index, so no figure depends on
``eval.batch_size``. BrierLM is :mod:`xlm_core.brier`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import attrs
import torch

from xlm_core.components import Example
from xlm_core.continuation import Continued, continue_rows, continues_prompts, left_to_right
from xlm_core.data.datamodule import EvalCollate, derived_seed
from xlm_core.errors import XLMUserError
from xlm_core.judge import Judge
from xlm_core.metrics import Totals
from xlm_core.progress import progress_bar
from xlm_core.sample_metrics import SampleStats, greedy_note, null_reasons

if TYPE_CHECKING:  # pragma: no cover
    from xlm_core.judge import JudgeLike
    from xlm_core.pipeline import Pipeline


def split_examples(pipe: Pipeline, split: str, limit: int | None) -> list[Example]:
    """The first ``limit`` examples of ``split`` (all when None); one line when there are none."""
    examples = pipe.task.examples(split)  # type: ignore[arg-type]
    n = len(examples) if limit is None else min(limit, len(examples))
    if n == 0:
        raise XLMUserError(f"split {split!r} of task {pipe.run_config.task.name!r} has no examples")
    return [examples[i] for i in range(n)]


def packs_documents(pipe: Pipeline) -> bool:
    """Text whose examples are packed blocks: EOS inside a block separates documents."""
    return pipe.task_kind == "text" and bool(getattr(pipe.run_config.task, "pack", False))


def require_continuation(pipe: Pipeline, what: str) -> None:
    """Refuse ``what`` for a family whose predictor declares it does not continue prompts."""
    if not continues_prompts(pipe.predictor):
        raise XLMUserError(
            f"{what} needs a predictor that continues a prompt, and family {pipe.family.name!r} "
            "declares continues_prompts = False"
        )


# -- likelihood ---------------------------------------------------------------------------------


def score_into(pipe: Pipeline, totals: Totals, examples: list[Example], *, progress: bool) -> None:
    """Add the loss of every example, ``eval_nll_samples`` seeded corruption draws each."""
    size = pipe.run_config.eval.batch_size
    draws = pipe.run_config.model.eval_nll_samples
    seed = pipe.run_config.eval.seed
    indexed = list(enumerate(examples))
    with (
        _seeded(seed),
        torch.no_grad(),
        pipe.autocast(),
        progress_bar(draws * len(examples), "nll", progress) as bar,
    ):
        for draw in range(draws):
            collate = EvalCollate(pipe.collator, seed, draw)
            for start in range(0, len(indexed), size):
                chunk = indexed[start : start + size]
                for batch in collate(chunk).to(pipe.device).parts:
                    totals.add_loss_output(pipe.loss(pipe.model, batch), batch.size)
                bar.update(len(chunk))


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Fix the global RNG for code that draws from it (a loss sampling noise levels), then restore it."""
    devices = (
        [torch.cuda.current_device()]
        if torch.cuda.is_available() and torch.cuda.is_initialized()
        else []
    )
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


# -- what is sampled, and what it is compared with ------------------------------------------


@attrs.frozen
class Plan:
    """One sample per entry: its context, the data's unit it compares with, its budget."""

    unit: str  # "target", "block", "document" or "continuation"
    indices: list[int]  # the example each entry comes from (its seed)
    contexts: list[list[int]]
    data: list[list[int]]
    budgets: list[int]
    packed: bool
    prefix_len: int | None = None


def plan_units(
    pipe: Pipeline, examples: list[Example], settings: Any, prefix_len: int | None
) -> Plan:
    """The sampling plan of ``examples`` (see the module docstring for the units)."""
    if pipe.task_kind == "prompted":
        if prefix_len is not None:
            raise XLMUserError(
                f"--prefix-len continues text blocks; task {pipe.run_config.task.name!r} is prompted"
            )
        n, budget = len(examples), pipe.new_tokens(settings)
        contexts = [list(e.prompt_ids) for e in examples]
        data = [list(e.target_ids) for e in examples]
        return Plan("target", list(range(n)), contexts, data, [budget] * n, packed=False)
    length, packed = pipe.shape.target_length, packs_documents(pipe)
    if prefix_len is None:
        data = [list(e.target_ids) for e in examples]
        unit = "block" if packed else "document"
        n = len(examples)
        return Plan(unit, list(range(n)), [[] for _ in data], data, [length] * n, packed)
    return _continuation_plan(pipe, examples, prefix_len, packed)


def _continuation_plan(
    pipe: Pipeline, examples: list[Example], prefix_len: int, packed: bool
) -> Plan:
    length = pipe.shape.target_length
    if prefix_len >= length:
        raise XLMUserError(
            f"--prefix-len {prefix_len} leaves nothing to sample in blocks of {length} tokens"
        )
    require_continuation(pipe, "--prefix-len")
    kept = [i for i, e in enumerate(examples) if len(e.target_ids) > prefix_len]
    if not kept:
        raise XLMUserError(f"no test block is longer than --prefix-len {prefix_len}")
    blocks = [list(examples[i].target_ids) for i in kept]
    return Plan(
        "continuation",
        kept,
        [b[:prefix_len] for b in blocks],
        [b[prefix_len:] for b in blocks],
        [length - prefix_len] * len(kept),
        packed,
        prefix_len,
    )


@attrs.frozen
class Drawn:
    """The samples of a plan, in its order, and how long drawing them took."""

    rows: list[Continued]
    seconds: float

    @property
    def samples(self) -> list[list[int]]:
        return [row.ids for row in self.rows]


def draw(pipe: Pipeline, plan: Plan, settings: Any, *, progress: bool) -> Drawn:
    """Sample every entry of ``plan``, timed (decoding only)."""
    seed = pipe.run_config.eval.seed
    seeds = [derived_seed(seed, i) for i in plan.indices]
    start = time.perf_counter()
    with progress_bar(len(seeds), "sampling", progress) as bar:
        rows = continue_rows(
            pipe.predict_rows,
            plan.contexts,
            plan.budgets,
            seeds,
            settings,
            eos_id=pipe.vocab.eos_id,
            packed=plan.packed,
            fresh_documents=not continues_prompts(pipe.predictor),
            one_call=left_to_right(pipe.predictor),
            on_done=bar.update,
        )
    return Drawn(rows, time.perf_counter() - start)


# -- the figures ------------------------------------------------------------------------------


def sample_quality(
    pipe: Pipeline, plan: Plan, settings: Any, *, judge: Judge | None, progress: bool
) -> tuple[dict[str, Any], Drawn]:
    """Speed, length, entropy and distinct-n of samples and data (and, with a judge, gen-PPL)."""
    # the data first: a judge that cannot read it fails before any sampling
    judged = _judged(judge, pipe, plan.contexts, plan.data, "data_") if judge else {}
    drawn = draw(pipe, plan, settings, progress=progress)
    figures = {
        "sample_unit": plan.unit,
        "prefix_len": plan.prefix_len,
        "n_samples": len(drawn.rows),
        **speed(drawn, pipe.run_config.eval.batch_size),
        **_stats(plan.packed, pipe.vocab.eos_id, drawn.samples).summary(),
        **_stats(plan.packed, pipe.vocab.eos_id, plan.data).summary("data_"),
    }
    if judge is not None:
        figures.update(judge.describe(pipe.tokenizer))
        figures.update(_judged(judge, pipe, plan.contexts, drawn.samples, ""))
        figures.update(judged)
    # greedy decoding is what a prompted task's exact match usually wants: noted for text only
    quality = plan.unit != "target" or judge is not None
    return with_notes(figures, settings if quality else None), drawn


def with_notes(figures: dict[str, Any], settings: Any) -> dict[str, Any]:
    """``figures`` with ``notes``: why each null figure is null, and whether sampling was greedy."""
    notes = {**null_reasons(figures), **greedy_note(settings)}
    return {**figures, "notes": notes} if notes else figures


def generative_perplexity(
    pipe: Pipeline,
    judge: JudgeLike,
    split: str,
    limit: int | None,
    settings: Any,
    *,
    prefix_len: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """The sample figures of :func:`evaluate` with ``judge``'s gen-PPL, without the likelihood."""
    judging = Judge.of(judge, pipe.device)
    examples = split_examples(pipe, split, limit)
    plan = plan_units(pipe, examples, settings, prefix_len)
    figures, _ = sample_quality(pipe, plan, settings, judge=judging, progress=progress)
    return {"task": pipe.run_config.task.name, "split": split, **figures}


def _judged(
    judge: Judge, pipe: Pipeline, contexts: list[list[int]], units: list[list[int]], prefix: str
) -> dict[str, Any]:
    """``{prefix}gen_nll``, ``gen_ppl`` and ``gen_ppl_tokens``: the judge's reading of ``units``."""
    scored = judge.score(pipe.tokenizer, list(zip(contexts, units, strict=True)))
    return {
        f"{prefix}gen_nll": scored["nll"],
        f"{prefix}gen_ppl": scored["ppl"],
        f"{prefix}gen_ppl_tokens": scored["n_tokens"],
    }


def speed(drawn: Drawn, batch_size: int, prefix: str = "") -> dict[str, float | int | None]:
    """Samples and generated tokens per second of decoding, and the batch size they were drawn at."""
    seconds = drawn.seconds
    tokens = sum(len(row.ids) for row in drawn.rows)
    return {
        f"{prefix}samples_per_s": len(drawn.rows) / seconds if seconds > 0 else None,
        f"{prefix}tokens_per_s": tokens / seconds if seconds > 0 else None,
        f"{prefix}batch_size": batch_size,
    }


def _stats(packed: bool, eos_id: int, units: list[list[int]]) -> SampleStats:
    stats = SampleStats(eos_id if packed else None)
    for ids in units:
        stats.add(ids)
    return stats


def evaluate(
    pipe: Pipeline,
    split: str,
    limit: int | None,
    settings: Any,
    *,
    judge: JudgeLike | None = None,
    prefix_len: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Likelihood, task accuracy (prompted tasks) and sample quality over ``split``.

    Every check (the judge, ``prefix_len``) comes before the work."""
    judging = None if judge is None else Judge.of(judge, pipe.device)
    examples = split_examples(pipe, split, limit)
    plan = plan_units(pipe, examples, settings, prefix_len)
    totals = Totals()
    score_into(pipe, totals, examples, progress=progress)
    figures, drawn = sample_quality(pipe, plan, settings, judge=judging, progress=progress)
    prompted = plan.unit == "target"
    for row, data in zip(drawn.rows, plan.data, strict=True):
        totals.add_prediction(row.ids, row.nfe, row.steps, data if prompted else None)
    return {
        "task": pipe.run_config.task.name,
        "split": split,
        "n_examples": len(examples),
        **totals.summary(pipe.nll_kind),
        **figures,
    }
