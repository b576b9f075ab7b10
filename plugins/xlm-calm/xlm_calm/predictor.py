"""CALM decoding: one generator step per chunk of K tokens, each step's vector decoded into K tokens.

Each row is laid out as in training (``layout.py``): ``BOS + prompt`` right-aligned in
whole chunks. A step runs the generator once and reads the hidden state of the row's
last chunk; the energy head turns it into vectors (one, or a pool of
``temperature_samples`` when T < 1), the autoencoder decodes each into K tokens
(MASK, BOS and CLS ruled out), and the likelihood-free temperature algorithm picks
one (``pool.py``). The chosen chunk's tokens are the next step's input, re-embedded.
A row stops after the chunk in which its text ends (an EOS, or PAD), or once it holds
its length budget T = ``max_new_tokens`` (default: the task's target length); its
output is cut there, so it has at most T tokens, and at most ceil(T / K) steps.

With ``kv_cache`` the prefix's chunks are cached in one pass and each chosen chunk is
appended in one pass of one position; without it every step recomputes every chunk.
Finished rows stay in the batch, their draws ignored, until enough have finished that
dropping them is worth copying the cache (``worth_compacting``, as ARLM). Each row draws
from its own stream (``RowNoise``): the head's noise, then the pool choice, in the same
order whatever the batch, the cache or the budget, so ``max_new_tokens`` only stops a
row (``left_to_right``).

``nfe`` counts generator passes; ``Prediction.counters["decoder_passes"]`` (plugin API
1.2) counts the autoencoder's, one per step (a whole pool is decoded in one pass).

A stage-1 model has no generator: it draws each chunk's vector from the prior N(0, I)
instead, whatever the prompt (the autoencoder as a model of independent chunks), and
``nfe`` then counts decoder passes. That keeps the harness's validation and samples
working in stage 1; the stage-1 figure that matters is ``recon_acc``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from xlm_calm import layout, pool
from xlm_calm.config import CALMConfig, CALMSettings
from xlm_calm.model import CALMModel
from xlm_core.components import DataShape, Prediction, Vocab
from xlm_core.nn.kv_cache import worth_compacting
from xlm_core.nn.sampling import RowNoise, uniform
from xlm_core.nn.window import first_end, window_logits
from xlm_core.predicting import as_settings, predict_preamble


class CALMPredictor:
    #: the budget only stops a row: its first k tokens are the same under every budget of at least k
    left_to_right = True

    def __init__(self, config: CALMConfig, vocab: Vocab, shape: DataShape):
        self.config, self.vocab, self.shape = config, vocab, shape
        self.k = config.chunk_size

    def length_budget(self, settings: CALMSettings) -> int:
        return settings.max_new_tokens or self.shape.target_length

    def step_budget(self, settings: Any) -> int:
        """One step per chunk: ceil(T / K)."""
        return math.ceil(self.length_budget(as_settings(CALMSettings, settings)) / self.k)

    def positions_per_pass(self, settings: Any) -> int:
        """Per row, the wider of a step's two passes (plugin API 1.3): the generator's (one chunk
        with the cache, every chunk without) and the decoder's (K positions per pooled vector)."""
        settings = as_settings(CALMSettings, settings)
        pool_size = 1 if settings.temperature == 1 else settings.temperature_samples
        chunks = 1
        if not settings.kv_cache:
            chunks = math.ceil((self.shape.prompt_length + 1) / self.k) + self.step_budget(settings)
        return max(chunks, pool_size * self.k)

    @predict_preamble(CALMSettings)
    def predict(self, model, prompts, *, settings, seeds, record_steps=False) -> Prediction:
        return _Decoding(self, model, prompts, settings, seeds, record_steps).run()


class _Decoding:
    """The state of one ``predict`` call. ``out`` and ``steps`` cover every row; ``rows`` lists the rows in the decoding batch (and the cache), ``live`` marks those of
    them still decoding."""

    def __init__(
        self,
        predictor: CALMPredictor,
        model: CALMModel,
        prompts: Sequence[Sequence[int]],
        settings: CALMSettings,
        seeds: Sequence[int],
        record_steps: bool,
    ):
        self.model, self.settings, self.vocab, self.k = (
            model,
            settings,
            predictor.vocab,
            predictor.k,
        )
        self.generator = model.generator
        device = next(model.parameters()).device
        n = len(prompts)
        self.budget = predictor.length_budget(settings)
        self.n_steps = predictor.step_budget(settings)
        self.pool_size = 1 if settings.temperature == 1 else settings.temperature_samples
        prefix, real = layout.prefix_rows(prompts, self.vocab, predictor.shape, self.k)
        chunk_real = layout.real_chunks(real, self.k)
        self.prefix = layout.chunks(prefix, self.k).to(device)  # (n, P, K)
        # no padding chunk anywhere (decided on the CPU): attention takes its fast path
        self.prefix_mask = None if bool(chunk_real.all()) else chunk_real.to(device)
        self.out = torch.full(
            (n, self.n_steps * self.k), self.vocab.pad_id, dtype=torch.long, device=device
        )
        self.steps = torch.zeros(n, dtype=torch.long, device=device)
        self.noise = RowNoise(seeds, device)
        self.rows = torch.arange(n, device=device)
        self.live = torch.ones(n, dtype=torch.bool, device=device)
        self.history: list[list[list[int]]] | None = (
            [[] for _ in range(n)] if record_steps else None
        )
        self.cache = None
        if self.generator is not None and settings.kv_cache and n:
            # the last chosen chunk is never fed back, hence n_steps - 1 slots after the prefix
            self.cache = self.generator.new_cache(
                n, self.prefix.shape[1] + self.n_steps - 1, device
            )

    def run(self) -> Prediction:
        for s in range(self.n_steps if len(self.out) else 0):
            hidden = self._hidden(s)
            chosen = self._choose(hidden)
            if not self._emit(s, chosen):
                break
        return self._prediction()

    # -- one step -----------------------------------------------------------------------------

    def _hidden(self, s: int) -> Tensor | None:
        """``(rows, d)``: each row's hidden state after its last chunk (None in stage 1)."""
        if self.generator is None:
            return None
        rows = self.rows
        if self.cache is None:
            done = layout.chunks(self.out[rows, : s * self.k], self.k)
            seq = torch.cat([self.prefix[rows], done], dim=1)
            mask = None
            if self.prefix_mask is not None:
                mask = torch.cat(
                    [self.prefix_mask[rows], self.prefix_mask.new_ones(len(rows), s)], dim=1
                )
            return self.generator.hidden(seq, mask)[:, -1]
        if s == 0:
            return self.generator.hidden(self.prefix, self.prefix_mask, cache=self.cache)[:, -1]
        last = layout.chunks(self.out[rows, (s - 1) * self.k : s * self.k], self.k)
        return self.generator.hidden(last, cache=self.cache)[:, -1]

    def _choose(self, hidden: Tensor | None) -> Tensor:
        """``(rows, K)``: each row's next chunk, from a pool of decoded vectors."""
        ae, n = self.model.autoencoder, len(self.rows)
        streams = self.noise.select(self.rows)
        if hidden is None:  # stage 1: the prior, through the Box-Muller transform of two uniforms
            u = uniform(streams, (self.pool_size, 2, ae.latent_size), self.rows.device)
            latents = torch.sqrt(-2 * torch.log1p(-u[:, :, 0])) * torch.cos(
                2 * math.pi * u[:, :, 1]
            )
            latents = latents.to(ae.embed.weight.dtype)
        else:
            noise = uniform(streams, (self.pool_size, self.generator.noise_size), hidden.device)
            latents = self.generator.sample(hidden, noise)  # (n, pool, D)
        tokens = window_logits(ae.decode(latents).float(), self.vocab).argmax(
            dim=-1
        )  # (n, pool, K)
        tokens = _cut_at_end(tokens, self.vocab)
        if self.pool_size == 1:
            return tokens[:, 0]
        index = pool.choose(tokens, self.settings.temperature, uniform(streams, (), tokens.device))
        return tokens[torch.arange(n, device=tokens.device), index]

    def _emit(self, s: int, chosen: Tensor) -> bool:
        """Write the live rows' chunks, count the step, retire the rows that end. False when none is left."""
        rows, live = self.rows, self.live
        self.out[rows[live], s * self.k : (s + 1) * self.k] = chosen[live]
        self.steps[rows] += live.long()
        ends = (chosen == self.vocab.eos_id) | (chosen == self.vocab.pad_id)
        finished = live & (ends.any(dim=1) | ((s + 1) * self.k >= self.budget))
        if self.history is not None:
            text = self._text()
            for r in rows[live].tolist():
                self.history[r].append(text[r])
        self.live = live & ~finished
        n_live = int(self.live.sum())  # the one wait for the device per step: the loop must know
        if n_live == 0 or s + 1 == self.n_steps:
            return False
        if worth_compacting(len(rows) - n_live, len(rows)):
            keep = self.live
            self.rows, self.live = self.rows[keep], self.live[keep]
            if self.cache is not None:
                self.cache.select(keep)
        return True

    # -- the result ---------------------------------------------------------------------------

    def _lengths(self) -> Tensor:
        return first_end(self.out, self.vocab).clamp(max=self.budget).cpu()

    def _text(self) -> list[list[int]]:
        out = self.out.cpu()
        return [out[b, :n].tolist() for b, n in enumerate(self._lengths().tolist())]

    def _prediction(self) -> Prediction:
        lengths = self._lengths()
        width = int(lengths.max()) if len(lengths) else 0
        out = self.out.cpu()[:, :width]
        after = torch.arange(width)[None, :] >= lengths[:, None]
        ids = out.masked_fill(after, self.vocab.pad_id)
        # stage 2: one generator pass per step (the head's samples share it); stage 1 has none, and
        # counts the decoder's
        steps = self.steps.cpu()
        return Prediction(
            ids=ids,
            lengths=lengths,
            steps=steps,
            nfe=steps.clone(),
            history=self.history,
            counters={"decoder_passes": steps.clone()},
        )


def _cut_at_end(tokens: Tensor, vocab: Vocab) -> Tensor:
    """Tokens after a chunk's first EOS or PAD set to PAD: they are no part of the text, and two
    chunks that make the same text must count as one in the pool."""
    end = (tokens == vocab.eos_id) | (tokens == vocab.pad_id)
    after_first = (end.cumsum(dim=-1) - end.long()) > 0  # an end came strictly before
    return tokens.masked_fill(after_first, vocab.pad_id)
