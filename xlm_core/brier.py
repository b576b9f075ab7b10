"""BrierLM of any family whose predictor continues a prompt: two sampled continuations per prefix.

The arithmetic is :mod:`xlm_core.sample_metrics`; this module chooses the prefixes and
draws the continuations. As in the CALM authors' evaluation, a prefix is a test text
cut after some position and its truth is the next 4 tokens; they score every position
of a document, here ``prefixes`` evenly spaced cuts per block (each leaving at least
one token before it and four after it), which samples the same spread of context
lengths at a fraction of the cost. A prompted task has one prefix per example, its
prompt, and its truth is the target followed by EOS.

Each continuation is asked for the rest of the block (the block length minus the cut)
and only its first tokens are compared: a non-autoregressive family's next tokens
depend on how much text it believes follows, so it is given the data's length, as in
training; a ``left_to_right`` predictor, whose first tokens do not depend on the
budget, is asked for those 4 tokens only. In packed text a continuation runs on past an EOS (:mod:`xlm_core.continuation`),
so an EOS in the truth is matched like any other token. Sample d of prefix k of example
i is seeded with ``derived_seed(eval.seed, i, k, d)``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import attrs

from xlm_core.components import Example
from xlm_core.continuation import continue_rows, left_to_right
from xlm_core.data.datamodule import derived_seed
from xlm_core.errors import XLMUserError
from xlm_core.evaluation import (
    Drawn,
    packs_documents,
    require_continuation,
    speed,
    split_examples,
    with_notes,
)
from xlm_core.progress import progress_bar
from xlm_core.sample_metrics import ORDERS, BrierTotals

if TYPE_CHECKING:  # pragma: no cover
    from xlm_core.pipeline import Pipeline

#: Continuations compared per prefix (the estimator needs two independent ones).
DRAWS = 2


@attrs.frozen
class Cut:
    """A prefix to continue, the true next tokens, the continuation's budget and its seed parts."""

    prompt: list[int]
    truth: list[int]
    budget: int
    index: int
    k: int


def cut_points(n_tokens: int, prefixes: int) -> list[int]:
    """Up to ``prefixes`` evenly spaced cut positions c, each with 1 <= c <= n_tokens - 4."""
    span = n_tokens - max(ORDERS)
    if span < 1:
        return []
    return sorted({1 + (2 * k + 1) * (span - 1) // (2 * prefixes) for k in range(prefixes)})


def cuts(pipe: Pipeline, examples: list[Example], prefixes: int, budget: int) -> list[Cut]:
    """Every prefix of ``examples``; ``budget``: a prompted target's length budget."""
    eos = pipe.vocab.eos_id
    if pipe.task_kind == "prompted":
        return [
            Cut(list(e.prompt_ids), [*e.target_ids, eos][: max(ORDERS)], budget, i, 0)
            for i, e in enumerate(examples)
        ]
    length = pipe.shape.target_length
    out = []
    for i, e in enumerate(examples):
        block = list(e.target_ids)
        for k, c in enumerate(cut_points(len(block), prefixes)):
            out.append(Cut(block[:c], block[c : c + max(ORDERS)], length - c, i, k))
    return out


def brier(
    pipe: Pipeline,
    split: str,
    limit: int | None,
    settings: Any,
    *,
    prefixes: int = 4,
    progress: bool = False,
) -> dict[str, Any]:
    """Brier-1..4 (with Monte-Carlo standard errors), BrierLM, and the sampling speed."""
    require_continuation(pipe, "--metric brier")
    examples = split_examples(pipe, split, limit)
    chosen = cuts(pipe, examples, prefixes, pipe.new_tokens(settings))
    if not chosen:
        raise XLMUserError(
            f"--metric brier: no {split} block has the {max(ORDERS) + 1} tokens a prefix and "
            f"its next {max(ORDERS)} tokens need"
        )
    drawn = _continue(pipe, chosen, settings, progress)
    totals = BrierTotals()
    for j, cut in enumerate(chosen):
        x1, x2 = (_stream(drawn, DRAWS * j + d, pipe.vocab.eos_id) for d in range(DRAWS))
        totals.add(x1, x2, cut.truth)
    figures = {
        "task": pipe.run_config.task.name,
        "split": split,
        "n_examples": len(examples),
        "brier_prefixes": len(chosen),
        **totals.summary(),
        **speed(drawn, pipe.run_config.eval.batch_size, prefix="brier_"),
    }
    return with_notes(figures, settings)


def _continue(pipe: Pipeline, chosen: list[Cut], settings: Any, progress: bool) -> Drawn:
    """``DRAWS`` independent continuations of every cut, each only as long as it must be."""
    seed = pipe.run_config.eval.seed
    rows = [(cut, d) for cut in chosen for d in range(DRAWS)]
    start = time.perf_counter()
    with progress_bar(len(rows), "brier", progress) as bar:
        continued = continue_rows(
            pipe.predict_rows,
            [cut.prompt for cut, _ in rows],
            [cut.budget for cut, _ in rows],
            [derived_seed(seed, cut.index, cut.k, d) for cut, d in rows],
            settings,
            eos_id=pipe.vocab.eos_id,
            packed=packs_documents(pipe),
            one_call=left_to_right(pipe.predictor),
            need=max(ORDERS),
            on_done=bar.update,
        )
    return Drawn(continued, time.perf_counter() - start)


def _stream(drawn: Drawn, j: int, eos_id: int) -> list[int]:
    """Row j's continuation as a token stream: a row the predictor stopped ends with its EOS."""
    row = drawn.rows[j]
    return [*row.ids, eos_id] if row.stopped else row.ids
