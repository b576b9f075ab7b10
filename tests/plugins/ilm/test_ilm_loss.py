"""The joint (gap x vocabulary) softmax and the ILM objective, checked against a dense recomputation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from xlm_ilm.collator import ILMCollator, gap_counts
from xlm_ilm.config import ILMConfig
from xlm_ilm.loss import ILMLoss, banned_tokens, gap_mask, joint_log_probs
from xlm_ilm.model import ILMModel

from xlm_core.components import DataShape, Example, Vocab

VOCAB = Vocab(size=20, pad_id=0, mask_id=1, bos_id=2, eos_id=3, cls_id=4)
SHAPE = DataShape(prompt_length=4, target_length=6)
EXAMPLES = [
    Example((5, 6), (10, 11, 12, 13, 14)),
    Example((), (7, 8, 9)),
    Example((5, 6, 7, 8), (15,)),
    Example((9,), (16, 17, 18, 19, 10, 11)),
]


def _setup(**config):
    cfg = ILMConfig(d_model=32, n_layers=2, n_heads=4, **config)
    torch.manual_seed(0)
    model = ILMModel(cfg, VOCAB)
    batch = ILMCollator(cfg, VOCAB, SHAPE)(EXAMPLES, torch.Generator().manual_seed(1))
    return cfg, model, batch


def test_joint_softmax_normalises_over_gaps_and_vocabulary_together():
    _, model, batch = _setup()
    with torch.no_grad():
        logits = model(batch.input_ids, batch.attention_mask).logits
    gaps = gap_mask(batch.input_ids, batch.attention_mask, VOCAB.bos_id)
    probs = joint_log_probs(logits, gaps, banned_tokens(VOCAB, "cpu", eos=False)).exp()

    assert torch.allclose(probs.sum(dim=(1, 2)), torch.ones(len(EXAMPLES)), atol=1e-5)
    # a softmax per gap would give each gap a total of 1; the joint one splits 1 across the gaps
    several = gaps.sum(dim=1) > 1
    assert several.sum() >= 2
    assert (probs.sum(dim=2)[gaps & several[:, None]] < 0.99).all()
    # CLS, prompt and padding positions, and PAD/MASK/BOS/CLS anywhere, are exactly impossible
    assert (probs[~gaps] == 0).all()
    never = [VOCAB.pad_id, VOCAB.mask_id, VOCAB.bos_id, VOCAB.cls_id]
    assert (probs[:, :, never] == 0).all()
    # EOS separates documents in packed text, so the loss must be able to score it
    assert (probs[gaps][:, [VOCAB.eos_id, *range(5, VOCAB.size)]] > 0).all()
    # BOS is the first gap of every row
    bos = (batch.input_ids == VOCAB.bos_id).nonzero()
    assert gaps[bos[:, 0], bos[:, 1]].all() and not gaps[bos[:, 0], bos[:, 1] - 1].any()


def test_loss_is_soft_cross_entropy_against_normalised_counts_plus_weighted_stop_bce():
    cfg, model, batch = _setup(stop_loss_weight=0.5, stop_pos_weight=3.0)
    out = ILMLoss(cfg, VOCAB)(model, batch)

    logits = model(batch.input_ids, batch.attention_mask)
    gaps = gap_mask(batch.input_ids, batch.attention_mask, VOCAB.bos_id)
    logp = joint_log_probs(logits.logits, gaps, banned_tokens(VOCAB, "cpu", eos=False))
    counts = gap_counts(batch, VOCAB.size)
    n = counts.sum(dim=(1, 2))
    soft = counts / n.clamp(min=1)[:, None, None]
    ce = -(soft * logp.masked_fill(counts == 0, 0.0)).sum(dim=(1, 2))  # 0 * -inf stays out
    stop = F.binary_cross_entropy_with_logits(
        logits.extras["stop_logits"], (n == 0).float(), pos_weight=torch.tensor(3.0)
    )
    expected = ce.mean() + 0.5 * stop

    assert torch.allclose(out.metrics["insertion_loss"], ce.mean(), atol=1e-5)
    assert torch.allclose(out.metrics["stop_loss"], stop, atol=1e-6)
    assert torch.allclose(out.loss, expected, atol=1e-5)
    assert out.metrics["ilm_loss"] == out.loss.detach()
    assert out.nll_sum is None
    assert int(out.n_tokens) == sum(len(e.target_ids) + 1 for e in EXAMPLES)


def test_complete_rows_only_train_the_stop_head():
    cfg = ILMConfig(d_model=32, n_layers=2, n_heads=4)
    torch.manual_seed(0)
    model = ILMModel(cfg, VOCAB)
    nothing_dropped = [torch.zeros(len(e.target_ids), dtype=torch.bool) for e in EXAMPLES]
    batch = ILMCollator(cfg, VOCAB, SHAPE).collate(EXAMPLES, nothing_dropped)
    out = ILMLoss(cfg, VOCAB)(model, batch)
    assert out.metrics["insertion_loss"] == 0
    out.loss.backward()
    assert model.stop_head.weight.grad.abs().sum() > 0
    # the head is tied to the embedding, which the stop head reaches through the trunk
    assert model.backbone.head.weight.grad is not None


def test_eos_inside_packed_text_is_a_finite_insertion_target():
    cfg = ILMConfig(d_model=32, n_layers=2, n_heads=4)
    torch.manual_seed(0)
    model = ILMModel(cfg, VOCAB)
    packed = [Example((), (10, 11, VOCAB.eos_id, 12, 13, VOCAB.eos_id))]
    everything = [torch.ones(6, dtype=torch.bool)]
    out = ILMLoss(cfg, VOCAB)(model, ILMCollator(cfg, VOCAB, SHAPE).collate(packed, everything))
    assert torch.isfinite(out.loss)
