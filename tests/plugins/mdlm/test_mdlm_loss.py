"""The NELBO: a hand-checked value, zero loss from unmasked positions, the normalisation, and unbiasedness in t."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from xlm_mdlm.collator import MDLMCollator
from xlm_mdlm.loss import MDLMLoss

from xlm_core.components import IGNORE_INDEX, Batch, DataShape, Example, Vocab

VOCAB = Vocab(size=20, pad_id=0, mask_id=1, bos_id=2, eos_id=3, cls_id=4)
M = VOCAB.mask_id


def _manual_nll(raw_logits: list[float], token: int) -> float:
    """-log p(token) under softmax over the vocabulary without MASK, in plain Python."""
    kept = [x for i, x in enumerate(raw_logits) if i != M]
    top = max(kept)
    log_z = top + math.log(sum(math.exp(x - top) for x in kept))
    return log_z - raw_logits[token]


def _weight(schedule: str, t: float) -> float:
    """-alpha'_t / (1 - alpha_t), written out from the definitions of the schedules."""
    eps = 1e-3
    if schedule == "log-linear":
        return (1 - eps) / ((1 - eps) * t)
    return (
        (1 - eps)
        * (math.pi / 2)
        * math.sin(math.pi * t / 2)
        / ((1 - eps) * (1 - math.cos(math.pi * t / 2)))
    )


@pytest.mark.parametrize("schedule", ["log-linear", "cosine"])
def test_loss_on_a_hand_built_batch(schedule, make_config, make_model):
    config = make_config(schedule=schedule)
    model = make_model(config)
    # prompt width 2; windows of 4 = target_length 3 + 1
    clean = [[7, 8, 3, 0], [9, 3, 0, 0]]
    noisy = [[M, 8, M, 0], [9, M, M, M]]  # row 1 has a masked PAD: a real target
    prompts = [[5, 6], [0, 11]]
    input_ids = torch.tensor([p + w for p, w in zip(prompts, noisy, strict=True)])
    attention_mask = torch.tensor([[True] * 6, [False] + [True] * 5])
    targets = torch.tensor([[IGNORE_INDEX] * 2 + w for w in clean])
    times = [0.5, 0.25]
    weights = torch.tensor([_weight(schedule, t) for t in times])
    batch = Batch(input_ids, attention_mask, targets, {"t": torch.tensor(times), "weight": weights})

    out = MDLMLoss(config, VOCAB)(model, batch)

    with torch.no_grad():
        raw = model.backbone.logits(model.backbone(input_ids, attention_mask))[:, -4:].tolist()
    expected_sum, masked_terms = 0.0, []
    for row in range(2):
        for pos in range(4):
            if noisy[row][pos] == M:
                nll = _manual_nll(raw[row][pos], clean[row][pos])
                masked_terms.append(nll)
                expected_sum += _weight(schedule, times[row]) * nll
    n_tokens = 3 + 2  # content + EOS of each row; PAD fill is not counted
    assert int(out.n_tokens) == n_tokens
    assert out.nll_sum.item() == pytest.approx(expected_sum, rel=1e-5)
    assert out.loss.item() == pytest.approx(expected_sum / n_tokens, rel=1e-5)
    assert out.metrics["masked_ce"].item() == pytest.approx(
        sum(masked_terms) / len(masked_terms), rel=1e-5
    )


def test_unmasked_positions_contribute_exactly_zero(model, collator, loss, examples, shape):
    batch = collator(examples, torch.Generator().manual_seed(0))
    window = batch.input_ids[:, -(shape.target_length + 1) :]
    log_probs = model(batch.input_ids, batch.attention_mask, window=window.shape[1]).logits
    unmasked = window != M
    assert unmasked.any() and (~unmasked).any()
    carried = log_probs.gather(-1, window.unsqueeze(-1)).squeeze(-1)
    assert (carried[unmasked] == 0).all()  # log p = 0 on the carried token
    assert (log_probs[..., M] == float("-inf")).all()  # MASK is never predicted

    # nothing masked: the loss is exactly zero and no gradient reaches the model
    clean = Batch(
        batch.targets.where(batch.targets != IGNORE_INDEX, batch.input_ids),
        batch.attention_mask,
        batch.targets,
        batch.extras,
    )
    out = loss(model, clean)
    assert out.nll_sum.item() == 0.0 and out.loss.item() == 0.0
    out.loss.backward()
    assert all(p.grad is None or (p.grad == 0).all() for p in model.parameters())


def test_loss_is_finite_and_trains(model, collator, loss, examples):
    model.train()
    batch = collator(examples, torch.Generator().manual_seed(1))
    out = loss(model, batch)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def _pattern_nlls(model, prompt, clean):
    """``(k, s)`` for every mask pattern of the window: its number of masks and the summed -log p
    of its masked positions under the model."""
    w = len(clean)
    patterns = list(itertools.product([False, True], repeat=w))
    inputs = torch.tensor(
        [prompt + [M if m else tok for m, tok in zip(pat, clean, strict=True)] for pat in patterns]
    )
    with torch.no_grad():
        raw = model.backbone.logits(model.backbone(inputs))[:, -w:].double()
    raw[..., M] = float("-inf")
    nll = -torch.log_softmax(raw, -1).gather(
        -1, torch.tensor(clean).expand(len(patterns), w)[..., None]
    )[..., 0]
    return [
        (sum(pat), float(row[torch.tensor(pat)].sum()))
        for pat, row in zip(patterns, nll, strict=True)
    ]


def _exact_expectation(model, config, prompt, clean, per_token):
    """E over t ~ U[eps, 1] and the masks of the time estimator, by enumerating every mask pattern of
    the window and integrating over t with Gauss-Legendre quadrature (exact for these smooth integrands).

    ``per_token(t, k)`` is what one masked position's -log p is multiplied by when k positions are masked.
    """
    from xlm_mdlm.schedule import make_schedule

    schedule = make_schedule(config.schedule, config.eps)
    w = len(clean)
    nodes, weights = np.polynomial.legendre.leggauss(200)
    t = torch.tensor(config.eps + (1 - config.eps) * (nodes + 1) / 2, dtype=torch.float64)
    dt = torch.tensor(weights * (1 - config.eps) / 2, dtype=torch.float64)
    r = schedule.mask_rate(t)
    total = torch.zeros_like(t)
    for k, s in _pattern_nlls(model, prompt, clean):
        if k:
            total += r**k * (1 - r) ** (w - k) * s * per_token(t, k, schedule)
    return float((total * dt).sum()) / (1 - config.eps)


def _exact_nelbo_eps0(model, prompt, clean):
    """The NELBO of a model that does not see t, at eps -> 0: sum over patterns of s / (k * C(W, k))."""
    w = len(clean)
    return sum(s / (k * math.comb(w, k)) for k, s in _pattern_nlls(model, prompt, clean) if k)


def _batch_means(collator, loss, model, example, batches=16):
    """NELBO estimates per token of i.i.d. batches (each batch is stratified on its own)."""
    generator = torch.Generator().manual_seed(0)
    means = []
    with torch.no_grad():
        for _ in range(batches):
            out = loss(model, collator([example] * 250, generator))
            means.append(out.nll_sum.item() / int(out.n_tokens))
    return np.array(means)


@pytest.mark.parametrize("schedule", ["log-linear", "cosine"])
def test_nelbo_estimator_is_unbiased_across_t(schedule, make_config, make_model):
    config = make_config(d_model=16, n_layers=1, n_heads=2, schedule=schedule)
    model = make_model(config, seed=3)
    shape = DataShape(prompt_length=2, target_length=2)
    collator, loss = MDLMCollator(config, VOCAB, shape), MDLMLoss(config, VOCAB)
    prompt, target = [5, 6], [7]
    clean = target + [VOCAB.eos_id, VOCAB.pad_id]
    n_tokens = len(target) + 1

    nelbo = (
        _exact_expectation(model, config, prompt, clean, lambda t, k, s: s.loss_weight(t))
        / n_tokens
    )
    # what a mean over masked tokens (the known bug) would converge to instead: not a bound, and different
    masked_mean = _exact_expectation(
        model, config, prompt, clean, lambda t, k, s: torch.full_like(t, 1.0 / k)
    )

    means = _batch_means(collator, loss, model, Example(tuple(prompt), tuple(target)))
    estimate = float(means.mean())
    stderr = float(means.std(ddof=1) / math.sqrt(len(means)))
    assert abs(estimate - nelbo) < 4 * stderr, (estimate, nelbo, stderr)
    assert abs(masked_mean / n_tokens - nelbo) > 10 * stderr  # the test can tell the two apart
    # the closed form at eps -> 0 is the same objective, up to O(eps)
    assert _exact_nelbo_eps0(model, prompt, clean) / n_tokens == pytest.approx(nelbo, rel=1e-2)


@pytest.mark.parametrize("schedule", ["log-linear", "cosine"])
def test_count_estimator_is_unbiased_and_steadier(schedule, make_config, make_model):
    shape = DataShape(prompt_length=2, target_length=3)
    prompt, target = [5, 6], [7, 8]
    clean = target + [VOCAB.eos_id, VOCAB.pad_id]
    n_tokens = len(target) + 1
    example = Example(tuple(prompt), tuple(target))
    spreads = {}
    for estimator in ("count", "time"):
        config = make_config(
            d_model=16, n_layers=1, n_heads=2, schedule=schedule, nelbo_estimator=estimator
        )
        model = make_model(config, seed=3)
        collator, loss = MDLMCollator(config, VOCAB, shape), MDLMLoss(config, VOCAB)
        means = _batch_means(collator, loss, model, example)
        spreads[estimator] = float(means.std(ddof=1))
        if estimator == "count":  # exact at eps -> 0 for any schedule: t is integrated out
            nelbo = _exact_nelbo_eps0(model, prompt, clean) / n_tokens
            stderr = spreads["count"] / math.sqrt(len(means))
            assert abs(float(means.mean()) - nelbo) < 4 * stderr, (means.mean(), nelbo, stderr)
    assert spreads["count"] < spreads["time"] / 2, spreads
