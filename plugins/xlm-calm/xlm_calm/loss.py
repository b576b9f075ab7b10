"""CALM's two objectives, one per stage; neither is a likelihood (``nll_kind = "none"``).

**Stage 1, the autoencoder** (Shao et al. 2025, section 2.2). For each target chunk x
(the chunks up to the one with the final EOS):

    z ~ q(z | mask(x)) = N(mean, std^2),     loss = K * CE(decode(dropout(z)), x)
                                                    + kl_weight * sum_d max(kl_clamp, KL_d)

with KL_d = (mean_d^2 + std_d^2 - 1) / 2 - log std_d the KL of dimension d from N(0, 1).
In training each input token is replaced by MASK with probability ``ae_token_mask``
and the latent goes through dropout ``latent_dropout``; in evaluation neither, but z
is still a posterior sample, the kind of vector the decoder must read at generation.
CE is the mean over the chunk's tokens, so K * CE is a sum per chunk, and the loss is a
mean over chunks. Metrics: ``recon_acc`` (share of target tokens the decoder's argmax
gets right), ``recon_ce`` and ``kl``.

**Stage 2, the generator** (section 3.2). The hidden state before chunk c gives N
samples of the head, and the frozen encoder's posterior of chunk c gives M target
draws; the loss is twice the energy score (``energy.py``), the authors' scale,

    loss = 2 E ||x - y||^beta - E ||x - x'||^beta,

a mean over the target chunks, and the metric ``energy_score`` is the score itself.

All positions are computed and the chunks that are no target weigh 0, so a step never
waits for the device to count them. The randomness is drawn here, on the model's device
(training: the run's seeded stream; validation: a fixed seed, as every family's loss).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from xlm_calm import layout
from xlm_calm.config import CALMConfig
from xlm_calm.energy import energy_score
from xlm_calm.model import CALMModel
from xlm_core.components import IGNORE_INDEX, Batch, LossOutput, NLLKind, Vocab
from xlm_core.nn.cross_entropy import token_nll
from xlm_core.nn.window import window_logits


class CALMLoss:
    nll_kind: ClassVar[NLLKind] = "none"

    def __init__(self, config: CALMConfig, vocab: Vocab):
        self.config, self.vocab, self.k = config, vocab, config.chunk_size

    def __call__(self, model: CALMModel, batch: Batch) -> LossOutput:
        if model.generator is None:
            return self.autoencoder_loss(model, batch)
        return self.generator_loss(model, batch)

    # -- stage 1 ---------------------------------------------------------------------------------

    def autoencoder_loss(self, model: CALMModel, batch: Batch) -> LossOutput:
        c, v = self.config, self.vocab
        width = batch.window if batch.window is not None else batch.input_ids.shape[1]
        clean = layout.chunks(batch.input_ids[:, -width:], self.k)  # (B, C, K)
        targets = layout.chunks(batch.targets[:, -width:], self.k)
        scored = targets != IGNORE_INDEX
        weight = scored[..., 0].to(
            torch.float32
        )  # (B, C): a whole chunk is a target or none of it is
        training = model.training
        inputs = clean
        if training and c.ae_token_mask > 0:
            hidden = torch.rand(clean.shape, device=clean.device) < c.ae_token_mask
            inputs = clean.masked_fill(hidden, v.mask_id)
        ae = model.autoencoder
        mean, log_std = ae.posterior(inputs)
        std = log_std.exp()
        z = mean + std * torch.randn_like(mean)
        z = F.dropout(z, p=c.latent_dropout, training=training)
        logits = ae.decode(z)  # (B, C, K, V)
        nll = token_nll(logits, targets)
        n_tokens = scored.sum()
        n_chunks = weight.sum().clamp_min(1)
        recon_ce = nll.sum() / n_tokens.clamp_min(1)
        kl = 0.5 * (mean.float().square() + std.float().square() - 1) - log_std.float()
        kl = (kl.clamp_min(c.kl_clamp).sum(-1) * weight).sum() / n_chunks
        loss = self.k * recon_ce + c.kl_weight * kl
        with torch.no_grad():
            guess = window_logits(logits.detach(), v).argmax(-1)
            recon_acc = ((guess == targets) & scored).sum() / n_tokens.clamp_min(1)
        metrics = {"recon_acc": recon_acc, "recon_ce": recon_ce.detach(), "kl": kl.detach()}
        return LossOutput(loss, n_tokens, None, metrics, loss_weight=n_chunks)

    # -- stage 2 ---------------------------------------------------------------------------------

    def generator_loss(self, model: CALMModel, batch: Batch) -> LossOutput:
        c = self.config
        ids = layout.chunks(batch.input_ids, self.k)  # (B, C, K)
        weight = (layout.chunks(batch.targets, self.k)[..., 0] != IGNORE_INDEX)[:, 1:].to(
            torch.float32
        )
        real = layout.real_chunks(batch.model_mask, self.k)
        with torch.no_grad():  # the frozen encoder's view of each chunk that has a chunk before it
            mean, log_std = model.autoencoder.posterior(ids[:, 1:])
        hidden = model.generator.hidden(
            ids[:, :-1], None if real is None else real[:, :-1]
        )  # (B, C-1, d)
        noise = torch.rand(
            (*hidden.shape[:-1], c.energy_samples, c.noise_size), device=hidden.device
        )
        samples = model.generator.sample(hidden, noise).movedim(-2, 0)  # (N, B, C-1, D)
        draws = torch.randn((c.target_samples, *mean.shape), device=mean.device)
        targets = mean.float() + log_std.float().exp() * draws  # (M, B, C-1, D)
        score = energy_score(samples, targets, c.energy_beta)  # (B, C-1)
        n_chunks = weight.sum().clamp_min(1)
        energy = (score * weight).sum() / n_chunks
        n_tokens = (batch.targets != IGNORE_INDEX).sum()
        return LossOutput(
            2 * energy, n_tokens, None, {"energy_score": energy.detach()}, loss_weight=n_chunks
        )
