"""The MLM collator's masking, the masked cross-entropy and the model's MASK ban."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from xlm_mlm.collator import MLMCollator
from xlm_mlm.loss import MLMLoss
from xlm_mlm.model import MLMModel

from xlm_core.components import IGNORE_INDEX, Batch, Example, ModelOutput

EXAMPLES = [
    Example((5, 6, 7), (8, 9)),
    Example((), (10, 11, 12, 13, 14, 15)),
    Example((5, 6, 7, 8, 9), ()),
]


def test_layout_and_masking_invariants(config, vocab, shape):
    collate = MLMCollator(config, vocab, shape)
    p, w = shape.prompt_length, shape.target_length + 1
    counts = set()
    for seed in range(200):
        batch = collate(EXAMPLES, torch.Generator().manual_seed(seed))
        assert batch.input_ids.shape == (3, p + w)
        masked = batch.input_ids == vocab.mask_id
        assert not masked[:, :p].any(), "prompt tokens are never masked"
        assert (batch.targets[:, :p] == IGNORE_INDEX).all()
        assert masked[:, p:].sum(1).min() >= 1, "every window has at least one masked position"
        assert torch.equal(masked, batch.targets != IGNORE_INDEX), (
            "the loss applies exactly where masked"
        )
        # unmasked window positions show the true token; together they rebuild target + EOS + PAD fill
        window = torch.where(masked, batch.targets, batch.input_ids)[:, p:]
        for row, ex in enumerate(EXAMPLES):
            n = len(ex.target_ids)
            assert window[row].tolist() == [*ex.target_ids, vocab.eos_id] + [vocab.pad_id] * (
                w - n - 1
            )
        assert batch.attention_mask[:, p:].all()
        assert batch.attention_mask[:, :p].sum(1).tolist() == [3, 0, 5], (
            "only left padding is hidden"
        )
        assert batch.extras["target_tokens"].tolist() == [3, 7, 1]
        counts.update(masked[:, p:].sum(1).tolist())
    assert counts == set(range(1, w + 1)), "the masking ratio covers (0, 1]"


def test_generator_makes_batches_reproducible(config, vocab, shape):
    collate = MLMCollator(config, vocab, shape)
    a = collate(EXAMPLES, torch.Generator().manual_seed(3))
    b = collate(EXAMPLES, torch.Generator().manual_seed(3))
    assert torch.equal(a.input_ids, b.input_ids)


def test_target_longer_than_the_task_shape_is_refused(config, vocab, shape):
    collate = MLMCollator(config, vocab, shape)
    with pytest.raises(ValueError, match="target_length is 6"):
        collate([Example((), tuple(range(5, 12)))])


class FixedLogits(nn.Module):
    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.table = nn.Parameter(logits)

    def forward(self, input_ids, attention_mask=None):
        return ModelOutput(logits=self.table.expand(input_ids.shape[0], -1, -1))


def test_loss_is_the_mean_cross_entropy_over_masked_positions(config, vocab):
    # one row, 4 positions, vocabulary of 3; positions 1 and 3 are masked with targets 2 and 0
    table = [[0.0, 0.0, 0.0], [1.0, 2.0, 3.0], [5.0, 0.0, 0.0], [0.5, -1.0, 2.0]]
    model = FixedLogits(torch.tensor([table]))
    batch = Batch(
        input_ids=torch.tensor([[7, 1, 8, 1]]),
        attention_mask=torch.ones(1, 4, dtype=torch.bool),
        targets=torch.tensor([[IGNORE_INDEX, 2, IGNORE_INDEX, 0]]),
        extras={"target_tokens": torch.tensor([3])},
    )

    def nll(row, target):
        return math.log(sum(math.exp(x) for x in row)) - row[target]

    expected = (nll(table[1], 2) + nll(table[3], 0)) / 2
    out = MLMLoss(config, vocab)(model, batch)
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)
    assert out.metrics["masked_ce"].item() == pytest.approx(expected, rel=1e-6)
    assert out.nll_sum is None and MLMLoss.nll_kind == "none"
    assert out.n_tokens.item() == 3
    out.loss.backward()
    assert model.table.grad[0, [0, 2]].abs().sum() == 0, "unmasked positions contribute nothing"


def test_model_never_predicts_mask_and_loss_trains_it(config, vocab, shape):
    torch.manual_seed(0)
    model = MLMModel(config, vocab)
    batch = MLMCollator(config, vocab, shape)(EXAMPLES, torch.Generator().manual_seed(0))
    logits = model(batch.input_ids, batch.attention_mask).logits
    assert logits.shape == (*batch.input_ids.shape, vocab.size)
    assert torch.isfinite(logits).all()
    assert (logits.softmax(-1)[..., vocab.mask_id] == 0).all()
    loss = MLMLoss(config, vocab)(model, batch).loss
    assert torch.isfinite(loss)
    loss.backward()
    assert model.backbone.embed.weight.grad.abs().sum() > 0
