"""continue_rows: whole packed blocks and n-token continuations through ``predict`` alone."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from xlm_core.continuation import continue_rows, continues_prompts, left_to_right
from xlm_core.data.datamodule import derived_seed

EOS = 3


class Settings(BaseModel):
    max_new_tokens: int | None = None


class Script:
    """A fake ``predict_rows``: each row's rounds give scripted outputs; every call is recorded."""

    def __init__(self, outputs: dict[int, list[list[int]]]):
        self.outputs = outputs  # seed -> the output of each of its rounds
        self.calls: list[tuple[list[list[int]], list[int], int]] = []

    def __call__(self, prompts, seeds, settings):
        self.calls.append((prompts, seeds, settings.max_new_tokens))
        assert len(prompts) == len(seeds)
        for seed in seeds:
            base = next(s for s in self.outputs if seed in self._seeds(s))
            ids = self.outputs[base][self._seeds(base).index(seed)]
            assert len(ids) <= settings.max_new_tokens
            yield ids, 1, 2, None

    @staticmethod
    def _seeds(seed: int) -> list[int]:
        return [seed, *(derived_seed(seed, r) for r in range(1, 6))]


def test_a_packed_row_goes_on_after_each_eos_until_its_block_is_full():
    script = Script({1000: [[5, 6], [7], [8]], 2000: [[5, 5, 5, 5, 5, 5]]})
    rows = continue_rows(
        script, [[], []], [6, 6], [1000, 2000], Settings(), eos_id=EOS, packed=True
    )
    assert rows[0].ids == [5, 6, EOS, 7, EOS, 8]  # the last round filled the block
    assert rows[1].ids == [5, 5, 5, 5, 5, 5] and rows[1].rounds == 1
    assert (rows[0].steps, rows[0].nfe, rows[0].rounds) == (3, 6, 3)
    # the first round is the sample predict alone gives; later rounds continue the row so far
    assert script.calls[0] == ([[], []], [1000, 2000], 6)
    assert script.calls[1] == ([[5, 6, EOS]], [derived_seed(1000, 1)], 3)
    assert script.calls[2] == ([[5, 6, EOS, 7, EOS]], [derived_seed(1000, 2)], 1)


def test_rows_share_a_call_only_when_they_share_a_budget():
    script = Script({1000: [[5], [6, 6, 6]], 2000: [[5, 5], [6, 6]], 3000: [[5], [6, 6, 6]]})
    seeds = [1000, 2000, 3000]
    continue_rows(script, [[], [], []], [5, 5, 5], seeds, Settings(), eos_id=EOS, packed=True)
    # round 2: rows 1 and 3 hold two tokens (budget 3), row 2 holds three (budget 2)
    assert [(len(p), budget) for p, _, budget in script.calls] == [(3, 5), (2, 3), (1, 2)]


def test_need_stops_a_row_once_it_has_enough_tokens_and_prefixes_lead_the_prompt():
    script = Script({7: [[5], [6, 6, 6, 6]]})
    rows = continue_rows(script, [[8, 8]], [10], [7], Settings(), eos_id=EOS, packed=True, need=2)
    assert rows[0].ids == [5, EOS] and script.calls[0][0] == [[8, 8]]


def test_unpacked_rows_get_one_round_and_say_whether_the_predictor_stopped():
    script = Script({1: [[5]], 2: [[5, 6, 7]]})
    rows = continue_rows(script, [[9], [9]], [3, 3], [1, 2], Settings(), eos_id=EOS, packed=False)
    assert [r.ids for r in rows] == [[5], [5, 6, 7]]
    assert [r.stopped for r in rows] == [True, False]


def test_fresh_documents_start_from_an_empty_prompt():
    script = Script({4: [[5, 6], [7, 7]]})
    rows = continue_rows(
        script, [[]], [5], [4], Settings(), eos_id=EOS, packed=True, fresh_documents=True
    )
    assert rows[0].ids == [5, 6, EOS, 7, 7]
    assert [prompts for prompts, _, _ in script.calls] == [[[]], [[]]]


def test_left_to_right_rows_of_any_budget_share_a_call_and_ask_only_what_they_need():
    script = Script({1000: [[5, 5], [6, 6]], 2000: [[5], [6, 6, 6]], 3000: [[5, 5, 5, 5, 5]]})
    seeds = [1000, 2000, 3000]
    rows = continue_rows(
        script, [[], [], []], [5, 5, 5], seeds, Settings(), eos_id=EOS, packed=True, one_call=True
    )
    # round 2: rows 1 and 2 need 2 and 3 more tokens; they share one call with budget 3
    assert [(len(p), budget) for p, _, budget in script.calls] == [(3, 5), (2, 3)]
    assert [r.ids for r in rows] == [[5, 5, EOS, 6, 6], [5, EOS, 6, 6, 6], [5, 5, 5, 5, 5]]
    script = Script({1000: [[5, 6, 7]]})
    continue_rows(
        script, [[]], [9], [1000], Settings(), eos_id=EOS, packed=True, one_call=True, need=3
    )
    assert script.calls[0][2] == 3  # only the first 3 tokens are needed: no more are asked for


def test_what_a_predictor_declares():
    class Plain:
        pass

    class Unconditional:
        continues_prompts = False

    class Causal:
        left_to_right = True

    assert continues_prompts(Plain()) and not continues_prompts(Unconditional())
    assert left_to_right(Causal()) and not left_to_right(Plain())


@pytest.mark.parametrize("packed", [True, False])
def test_nothing_is_asked_of_a_row_without_budget(packed):
    script = Script({1: [[5]]})
    rows = continue_rows(script, [[]], [0], [1], Settings(), eos_id=EOS, packed=packed)
    assert rows[0].ids == [] and script.calls == []
