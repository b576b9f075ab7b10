"""Stage 1: brief training makes the autoencoder round-trip a toy corpus perfectly."""

from __future__ import annotations

import random

import torch
from xlm_calm.collator import CALMCollator
from xlm_calm.loss import CALMLoss
from xlm_calm.model import CALMModel

from xlm_core.components import DataShape, Example
from xlm_core.testing import TINY_VOCAB


def toy_corpus(n: int = 24, length: int = 11) -> list[Example]:
    rng = random.Random(0)
    content = [i for i in range(TINY_VOCAB.size) if i not in TINY_VOCAB.special_ids]
    return [
        Example((), tuple(rng.choice(content) for _ in range(rng.randint(1, length))))
        for _ in range(n)
    ]


def test_the_autoencoder_reconstructs_a_toy_corpus_after_brief_training(make_config):
    config = make_config(stage="autoencoder", d_model=64, latent_size=16, random_phase=False)
    shape = DataShape(prompt_length=0, target_length=11)
    corpus = toy_corpus()
    batch = CALMCollator(config, TINY_VOCAB, shape)(
        corpus, generator=torch.Generator().manual_seed(0)
    )
    torch.manual_seed(0)
    model, loss = CALMModel(config, TINY_VOCAB), CALMLoss(config, TINY_VOCAB)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(150):  # with token masking and latent dropout on, as in training
        optimiser.zero_grad()
        loss(model, batch).loss.backward()
        optimiser.step()
    model.eval()
    with torch.no_grad():
        out = loss(model, batch)  # evaluation: a posterior sample, no masking, no dropout
        logits = model(batch.input_ids).logits  # the posterior mean
    scored = batch.targets != -100
    assert bool((logits.argmax(-1)[scored] == batch.targets[scored]).all())
    assert out.metrics["recon_acc"].item() == 1.0
    assert out.metrics["kl"].item() > 0
