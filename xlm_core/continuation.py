"""Samples as long as the data's unit, through the public predictor contract (``predict`` only).

A predictor stops a row at its first EOS: by contract its ``ids`` hold no EOS. In
packed text (``task.pack``) a block of the data holds several documents separated by
EOS, so a sample comparable with a block is longer than one ``predict`` call gives.
:func:`continue_rows` goes on: a row that stopped short of its budget gets the EOS
the data has there, and the predictor is asked to continue the row from everything
so far (prompt = the row's prefix + its sample so far) with the rest of the budget,
until the row holds its ``budget`` of new tokens (or ``need`` of them, when only the
first few matter). Every family whose predictor continues a prompt gets this for
free; a predictor that declares ``continues_prompts = False`` (plugin API 1.1) starts
each document afresh from an empty prompt instead, so its documents are independent.

``max_new_tokens`` is one setting per call, so rows share a call only when they need
the same budget. Budgets only shrink, so the rows waiting at the largest budget are
decoded first, and those that go on join the rows waiting at their smaller budget:
every budget is decoded at most once, in one call (split into ``eval.batch_size``
chunks by the caller). A predictor that declares ``left_to_right = True`` (plugin API
1.1) promises that the budget only stops a row, so its rows share a call whatever
their budgets: the call gets the largest, and each row keeps what it asked for. A
row's sample never depends on the rows decoded with it (the conformance kit's
``batch_invariance``), so none of this changes a token, only speed. Round r of row j
is seeded with ``derived_seed(seeds[j], r)``, round 0 with ``seeds[j]`` itself: the
first round is the sample ``predict`` alone would give.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import attrs

from xlm_core.data.datamodule import derived_seed

#: ``predict(prompts, seeds, settings)`` -> (ids, steps, nfe, history) per prompt, in order.
PredictRows = Callable[[list[list[int]], list[int], Any], Iterator[tuple[list[int], int, int, Any]]]


def continues_prompts(predictor: Any) -> bool:
    """Whether a predictor continues a prompt (the optional class attribute ``continues_prompts``,
    plugin API 1.1; a predictor that does not say so does, as every predictor takes prompts)."""
    return getattr(type(predictor), "continues_prompts", True) is not False


def left_to_right(predictor: Any) -> bool:
    """Whether a predictor promises that ``max_new_tokens`` only stops a row (the optional class
    attribute ``left_to_right``, plugin API 1.1): a row's first k tokens are the same under every
    budget of at least k. Absent means False."""
    return getattr(type(predictor), "left_to_right", False) is True


@attrs.define(slots=True)
class Continued:
    """One row's new tokens (EOS separators included), and what producing them cost.

    ``stopped``: the predictor ended the row before its budget (its EOS). Set only when
    rows are not continued past an EOS (not packed); a packed row gets that EOS in ``ids``.
    """

    ids: list[int] = attrs.field(factory=list)
    stopped: bool = False
    steps: int = 0
    nfe: int = 0
    rounds: int = 0


def continue_rows(
    predict: PredictRows,
    prefixes: Sequence[Sequence[int]],
    budgets: Sequence[int],
    seeds: Sequence[int],
    settings: Any,
    *,
    eos_id: int,
    packed: bool,
    fresh_documents: bool = False,
    one_call: bool = False,
    need: int | None = None,
    on_done: Callable[[int], Any] | None = None,
) -> list[Continued]:
    """Continue each prefix by ``budgets[j]`` new tokens (see the module docstring).

    ``packed``: an EOS separates documents, so a row that stops early is continued after
    it; otherwise each row gets one round. ``fresh_documents``: continue from an empty
    prompt (for a predictor that does not continue prompts; prefixes must then be empty).
    ``one_call``: rows of any budgets share a call (a ``left_to_right`` predictor); a row
    then asks only for what it lacks of ``need``. ``need``: a row is done once it holds
    this many tokens. ``on_done(k)``: k more rows are finished.
    """
    rows = [Continued() for _ in prefixes]

    def wanted(j: int) -> int:  # what row j asks its next call for
        rest = budgets[j] - len(rows[j].ids)
        return min(rest, need - len(rows[j].ids)) if one_call and need else rest

    waiting: dict[int, list[int]] = {}
    for j in range(len(rows)):
        if budgets[j] > 0:
            waiting.setdefault(0 if one_call else wanted(j), []).append(j)
    while waiting:
        members = waiting.pop(max(waiting))
        asks = [wanted(j) for j in members]
        prompts = [[] if fresh_documents else [*prefixes[j], *rows[j].ids] for j in members]
        round_seeds = [_round_seed(seeds[j], rows[j].rounds) for j in members]
        call_settings = settings.model_copy(update={"max_new_tokens": max(asks)})
        outputs = predict(prompts, round_seeds, call_settings)
        finished = 0
        for j, ask, (ids, steps, nfe, _) in zip(members, asks, outputs, strict=True):
            goes_on = _extend(rows[j], ids[:ask], steps, nfe, ask, eos_id, packed)
            if goes_on and not _full(rows[j], budgets[j], need):
                waiting.setdefault(0 if one_call else wanted(j), []).append(j)
            else:
                finished += 1
        if on_done is not None and finished:
            on_done(finished)
    return rows


def _extend(
    row: Continued, ids: list[int], steps: int, nfe: int, budget: int, eos_id: int, packed: bool
) -> bool:
    """Add one round's output to ``row``; False when the row gets no further round (not packed).

    A round never overfills a row: its output has at most ``budget`` tokens, and the
    separator is added only after a shorter one."""
    row.ids.extend(ids)
    row.steps, row.nfe, row.rounds = row.steps + steps, row.nfe + nfe, row.rounds + 1
    ended = len(ids) < budget  # the predictor stopped the row itself: its EOS
    if not packed:
        row.stopped = ended
        return False
    if ended:
        row.ids.append(eos_id)  # the separator the data has between two documents
    return True


def _full(row: Continued, budget: int, need: int | None) -> bool:
    return len(row.ids) >= min(budget, need or budget)


def _round_seed(seed: int, round_index: int) -> int:
    return seed if round_index == 0 else derived_seed(seed, round_index)
