"""Collator layout, corruption and time sampling; the entry module stays torch-free."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from xlm_mdlm.collator import MDLMCollator, stratified_times
from xlm_mdlm.schedule import make_schedule

from xlm_core.components import IGNORE_INDEX, Example


def test_layout(collator, examples, vocab, shape):
    batch = collator(examples, torch.Generator().manual_seed(0))
    p, w = shape.prompt_length, shape.target_length + 1
    assert batch.input_ids.shape == (len(examples), p + w)
    # prompts right-aligned against the window, PAD before them and hidden from attention
    assert batch.input_ids[0, :p].tolist() == [vocab.pad_id, 5, 6, 7]
    assert batch.attention_mask[0].tolist() == [False] + [True] * (p - 1 + w)
    assert batch.attention_mask[2, :p].tolist() == [False] * p  # empty prompt
    # the target window: content, EOS, PAD fill; every window position is a target
    assert batch.targets[0, p:].tolist() == [8, 9, 10, vocab.eos_id, vocab.pad_id, vocab.pad_id]
    assert batch.targets[2, p:].tolist() == [5, 6, 7, 8, 9, vocab.eos_id]
    assert (batch.targets[:, :p] == IGNORE_INDEX).all()
    # corruption only replaces window tokens by MASK
    window, clean = batch.input_ids[:, p:], batch.targets[:, p:]
    assert ((window == clean) | (window == vocab.mask_id)).all()
    assert batch.extras["t"].shape == (len(examples),)


def test_prompts_are_never_masked(collator, vocab, shape):
    prompt = (5, 6, 7, 8)
    batch = collator([Example(prompt, (9,))] * 256, torch.Generator().manual_seed(0))
    assert (batch.input_ids[:, : shape.prompt_length] == torch.tensor(prompt)).all()


def test_times_are_stratified_in_eps_one():
    t = stratified_times(64, 1e-3, torch.Generator().manual_seed(0))
    assert t.min() >= 1e-3 and t.max() <= 1.0
    strata = ((t - 1e-3) / (1 - 1e-3) * 64).floor().long()
    assert sorted(strata.tolist()) == list(range(64))  # one draw in each of 64 equal slices


def test_masking_rate_follows_the_schedule(collator, config, vocab, shape):
    examples = [Example((5,), (6, 7, 8, 9, 10))] * 4000
    batch = collator(examples, torch.Generator().manual_seed(0))
    masked = (batch.input_ids[:, -(shape.target_length + 1) :] == vocab.mask_id).double()
    expected = make_schedule(config.schedule, config.eps).mask_rate(batch.extras["t"].double())
    # per-example rates are noisy; their regression on 1 - alpha_t has slope ~1 and no offset
    residual = masked.mean(1) - expected
    assert abs(float(residual.mean())) < 0.01
    assert abs(float((residual * expected).mean() / (expected * expected).mean())) < 0.02


def test_the_generator_decides_everything(collator, examples):
    a = collator(examples, torch.Generator().manual_seed(3))
    torch.manual_seed(99)
    b = collator(examples, torch.Generator().manual_seed(3))
    assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.extras["t"], b.extras["t"])


def test_entry_module_does_not_import_torch():
    code = "import sys, xlm_mdlm.plugin as p; p.xlm_family(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_time_estimator_weight_is_the_schedule_weight(collator, config, examples):
    batch = collator(examples, torch.Generator().manual_seed(0))
    schedule = make_schedule(config.schedule, config.eps)
    expected = schedule.loss_weight(batch.extras["t"].double()).float()
    assert torch.allclose(batch.extras["weight"], expected, rtol=1e-4)


def test_count_estimator_masks_exactly_m_positions(make_config, vocab, shape):
    config = make_config(nelbo_estimator="count")
    collator = MDLMCollator(config, vocab, shape)
    w = shape.target_length + 1
    batch = collator([Example((5,), (6, 7))] * 60, torch.Generator().manual_seed(0))
    counts = (batch.input_ids[:, -w:] == vocab.mask_id).sum(1)
    # stratified over 1..W: every count appears equally often (60 rows, W = 6)
    assert sorted(counts.tolist()) == sorted(list(range(1, w + 1)) * (60 // w))
    assert torch.allclose(batch.extras["weight"], w / counts.float())
    # which positions is uniform: every window position gets masked about equally often
    many = collator([Example((5,), (6, 7))] * 6000, torch.Generator().manual_seed(1))
    share = (many.input_ids[:, -w:] == vocab.mask_id).double().mean(0)
    assert torch.allclose(
        share, torch.full((w,), (w + 1) / (2 * w), dtype=torch.float64), atol=0.02
    )


def test_count_estimator_refuses_a_time_conditioned_model(make_config):
    with pytest.raises(ValueError, match="time_conditioning"):
        make_config(nelbo_estimator="count", time_conditioning=True)
