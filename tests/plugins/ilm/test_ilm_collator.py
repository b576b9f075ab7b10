"""Collator targets on hand-built examples: which gap each deleted token is credited to."""

from __future__ import annotations

import subprocess
import sys

import torch
from xlm_ilm.collator import ILMCollator, gap_counts
from xlm_ilm.config import PRESETS, ILMConfig, ILMSettings

from xlm_core.components import IGNORE_INDEX, DataShape, Example, Vocab
from xlm_core.config import TaskConfig, TrainingConfig
from xlm_core.plugins import get_registry

VOCAB = Vocab(size=20, pad_id=0, mask_id=1, bos_id=2, eos_id=3, cls_id=4)
SHAPE = DataShape(prompt_length=4, target_length=6)
CONFIG = ILMConfig(d_model=32, n_layers=2, n_heads=4)


def _collate(examples, dropped):
    """Collate with chosen deletions: ``dropped[i]`` lists the deleted target positions of example i."""
    masks = []
    for ex, positions in zip(examples, dropped, strict=True):
        mask = torch.zeros(len(ex.target_ids), dtype=torch.bool)
        mask[positions] = True
        masks.append(mask)
    return ILMCollator(CONFIG, VOCAB, SHAPE).collate(examples, masks)


def _credited(batch, row):
    """[(gap input position, token)] of one row, in clean-target order."""
    n = int(batch.extras["n_drops"][row])
    gaps, tokens = batch.extras["gap_index"][row, :n], batch.extras["gap_token"][row, :n]
    return list(zip(gaps.tolist(), tokens.tolist(), strict=True))


def test_deleted_tokens_are_credited_to_the_gap_after_the_last_kept_token():
    # prompt (5, 6); target 10 11 12 13 14, delete 11, 12 and 14
    batch = _collate([Example((5, 6), (10, 11, 12, 13, 14))], [[1, 2, 4]])
    assert batch.input_ids.tolist() == [[4, 5, 6, 2, 10, 13]]  # CLS prompt BOS kept
    # BOS is at 3; kept 10 at 4, kept 13 at 5
    assert _credited(batch, 0) == [(4, 11), (4, 12), (5, 14)]
    # targets: the first deletion after each gap
    assert batch.targets.tolist() == [[IGNORE_INDEX] * 4 + [11, 14]]
    assert batch.extras["stop"].tolist() == [0.0]


def test_leading_deletions_belong_to_the_bos_gap():
    batch = _collate([Example((7,), (10, 11, 12, 13))], [[0, 1]])
    assert batch.input_ids.tolist() == [[4, 7, 2, 12, 13]]
    assert _credited(batch, 0) == [(2, 10), (2, 11)]
    assert batch.targets[0, 2].item() == 10


def test_nothing_deleted_means_stop_and_no_counts():
    batch = _collate([Example((5,), (10, 11, 12))], [[]])
    assert batch.input_ids.tolist() == [[4, 5, 2, 10, 11, 12]]
    assert batch.extras["stop"].tolist() == [1.0]
    assert batch.extras["n_drops"].tolist() == [0]
    assert (batch.extras["gap_index"] == IGNORE_INDEX).all()
    assert (batch.targets == IGNORE_INDEX).all()
    assert gap_counts(batch, VOCAB.size).sum() == 0


def test_everything_deleted_is_credited_to_the_bos_gap():
    batch = _collate([Example((), (10, 11, 10))], [[2, 0, 1]])
    assert batch.input_ids.tolist() == [[4, 2]]
    counts = gap_counts(batch, VOCAB.size)
    assert counts[0, 1, 10].item() == 2 and counts[0, 1, 11].item() == 1
    assert counts.sum().item() == 3 and counts[0, 1].sum().item() == 3


def test_a_batch_holds_each_row_as_collated_alone():
    # prompts and targets of different lengths (one target empty): the batch is computed at
    # once, so check that no row reads another's positions
    examples = [
        Example((5, 6), (10, 11, 12, 13, 14)),
        Example((), (9,)),
        Example((7, 8, 5), ()),
        Example((5,), (10, 11, 10, 12)),
    ]
    dropped = [[1, 2, 4], [0], [], [0, 3]]
    batch = _collate(examples, dropped)
    assert batch.needs_mask
    for row, (example, positions) in enumerate(zip(examples, dropped, strict=True)):
        alone = _collate([example], [positions])
        width = alone.input_ids.shape[1]
        assert batch.input_ids[row, :width].tolist() == alone.input_ids[0].tolist()
        assert (batch.input_ids[row, width:] == VOCAB.pad_id).all()
        assert batch.attention_mask[row].tolist() == [
            c < width for c in range(batch.input_ids.shape[1])
        ]
        assert batch.targets[row, :width].tolist() == alone.targets[0].tolist()
        assert (batch.targets[row, width:] == IGNORE_INDEX).all()
        assert _credited(batch, row) == _credited(alone, 0)
        assert batch.extras["stop"][row] == alone.extras["stop"][0]


def test_prompt_is_never_deleted_and_padding_is_masked():
    examples = [Example((5, 6, 7, 8), (10, 11, 12, 13, 14, 15)), Example((), (9,))]
    generator = torch.Generator().manual_seed(3)
    for _ in range(20):
        batch = ILMCollator(CONFIG, VOCAB, SHAPE)(examples, generator)
        assert batch.input_ids[0, :6].tolist() == [4, 5, 6, 7, 8, 2]
        lengths = batch.attention_mask.sum(1)
        kept = lengths - torch.tensor([6, 2])
        assert (kept + batch.extras["n_drops"]).tolist() == [6, 1]
        assert (batch.input_ids[~batch.attention_mask] == VOCAB.pad_id).all()
        counts = gap_counts(batch, VOCAB.size)
        assert counts.sum((1, 2)).tolist() == batch.extras["n_drops"].float().tolist()
        assert counts[~batch.attention_mask].sum() == 0


def test_n_drops_covers_zero_to_the_whole_target():
    generator = torch.Generator().manual_seed(0)
    collator = ILMCollator(CONFIG, VOCAB, SHAPE)
    seen = set()
    for _ in range(20):
        seen.update(
            collator([Example((5,), (10, 11, 12))] * 8, generator).extras["n_drops"].tolist()
        )
    assert seen == {0, 1, 2, 3}


def test_entry_module_does_not_import_torch():
    code = "import sys, xlm_ilm.plugin; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_registry_loads_the_family_and_its_presets():
    family = get_registry().get("ilm")
    assert family.record.status == "ok"
    assert family.resolve_all()["loss"].nll_kind == "none"
    small = PRESETS["small"]["model"]
    assert (small["d_model"], small["n_layers"], small["n_heads"]) == (768, 12, 12)
    star = PRESETS["star"]
    ILMConfig(**star["model"]), TrainingConfig(**star["training"]), TaskConfig(**star["task"])
    ILMSettings(**star["predictor"])


def test_max_length_and_max_new_tokens_must_agree():
    assert ILMSettings(max_new_tokens=4, max_length=4).max_length == 4
    try:
        ILMSettings(max_new_tokens=4, max_length=5)
    except ValueError as exc:
        assert "disagree" in str(exc)
    else:
        raise AssertionError("conflicting length budgets were accepted")
