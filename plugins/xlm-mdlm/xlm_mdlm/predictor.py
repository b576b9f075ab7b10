"""MDLM decoding: ancestral sampling (with p(x0) reuse), confidence and threshold unmasking, in blocks.

Every row starts from an all-MASK window (target + EOS + PAD fill, W positions)
after its prompt, laid out as in training (``collator.py``). A step chooses some
masked positions of the row's current block and draws their tokens from
p(x0 | z) (SUBS: never MASK); decided tokens are never revised. Only the first
W - 1 positions are ever decided: the last one holds EOS or PAD in every
training window, so an output has at most W - 1 tokens whatever it would be.

- ancestral: on the grid t_j = 1 - j/T (default T = W - 1, the target length),
  a masked position unmasks between t and
  s with probability (alpha_s - alpha_t) / (1 - alpha_t); the last step (s = 0)
  fills every remaining mask. Many steps change nothing, and without time
  conditioning p(x0 | z) depends on z alone, so a row whose window did not change
  reuses its last p(x0) (``reuse_logits``): fewer forward passes, identical samples.
- confidence: the k most confident masked positions per step.
- threshold: every masked position whose confidence exceeds tau, at least one
  (both from ``xlm_core.nn.unmasking``, shared with every masked-window family).
- block_size B: positions are decided B at a time, left to right (semi-AR);
  ancestral runs ceil(T / n_blocks) steps per block.

Randomness is per row (``xlm_core.nn.sampling.RowNoise``): row i draws its noise from
its own stream, the same draws in the same order whatever the batch, so a sample
does not depend on its batch or on the cache. A row leaves the batch as soon as
its output is determined: every position before its first EOS/PAD is decided
(what follows is cut anyway).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from xlm_core.components import DataShape, Prediction, Vocab
from xlm_core.nn import window as layout
from xlm_core.nn.sampling import RowNoise, confidence, sample, uniform
from xlm_core.nn.schedule import make_schedule
from xlm_core.nn.unmasking import choose_to_unmask
from xlm_core.predicting import as_settings, predict_preamble
from xlm_mdlm.config import MDLMConfig, MDLMSettings


class MDLMPredictor:
    def __init__(self, config: MDLMConfig, vocab: Vocab, shape: DataShape):
        self.vocab = vocab
        self.shape = shape
        self.schedule = make_schedule(config.schedule, config.eps)
        self.time_conditioned = config.time_conditioning

    # -- step accounting --------------------------------------------------------------------

    def window_length(self, settings: MDLMSettings) -> int:
        """W: the target budget plus the position of its EOS, as in training."""
        return layout.window_length(self.shape, settings.max_new_tokens)

    def decoded_length(self, settings: MDLMSettings) -> int:
        """Positions a sampler decides: all but the window's last, which only ever holds EOS or PAD
        (an output has at most W - 1 tokens) and so never needs deciding."""
        return self.window_length(settings) - 1

    def blocks(self, settings: MDLMSettings) -> list[tuple[int, int]]:
        """``[start, end)`` of each block of decided positions, left to right."""
        n = self.decoded_length(settings)
        size = settings.block_size or n
        return [(start, min(start + size, n)) for start in range(0, n, size)]

    def steps_per_block(self, settings: MDLMSettings) -> int:
        """ancestral: steps of each block's own t = 1 -> 0 schedule."""
        total = settings.steps or self.decoded_length(settings)
        return math.ceil(total / len(self.blocks(settings)))

    def step_budget(self, settings: Any) -> int:
        settings = as_settings(MDLMSettings, settings)
        blocks = self.blocks(settings)
        if settings.sampler == "ancestral":
            return len(blocks) * self.steps_per_block(settings)
        if settings.sampler == "confidence":
            return sum(math.ceil((end - start) / settings.k) for start, end in blocks)
        return self.decoded_length(settings)  # threshold decides at least one position per step

    # -- decoding ---------------------------------------------------------------------------

    @predict_preamble(MDLMSettings)
    def predict(self, model, prompts, *, settings, seeds, record_steps=False) -> Prediction:
        return _Decoding(self, model, prompts, settings, seeds, record_steps).run()


class _Decoding:
    """The state of one ``predict`` call: all tensors cover every row; ``active`` rows are still decoding."""

    def __init__(
        self,
        predictor: MDLMPredictor,
        model: nn.Module,
        prompts: Sequence[Sequence[int]],
        settings: MDLMSettings,
        seeds: Sequence[int],
        record_steps: bool,
    ):
        self.p, self.model, self.settings = predictor, model, settings
        self.vocab = v = predictor.vocab
        device = next(model.parameters()).device
        b, w = len(prompts), predictor.window_length(settings)
        self.w = w
        seq, real = layout.masked_rows(prompts, predictor.shape, w, v)
        self.seq, real = seq.to(device), real.to(device)
        self.real = None if bool(real.all()) else real
        self.noise = RowNoise(seeds, device)
        self.blocks = torch.tensor(predictor.blocks(settings), device=device)  # (n_blocks, 2)
        # each row's current block, and its ancestral step within that block
        self.block = torch.zeros(b, dtype=torch.long, device=device)
        self.block_step = torch.zeros(b, dtype=torch.long, device=device)
        self.steps_per_block = predictor.steps_per_block(settings)
        self.positions = torch.arange(w, device=device)
        # p(x0 | z) of each row's current window, valid while `fresh`; reused only without time conditioning
        self.log_probs: Tensor | None = None
        self.fresh = torch.zeros(b, dtype=torch.bool, device=device)
        self.reuse = settings.reuse_logits and not predictor.time_conditioned
        self.steps = torch.zeros(b, dtype=torch.long)
        self.nfe = torch.zeros(b, dtype=torch.long)
        self.active = torch.ones(b, dtype=torch.bool)
        self.history: list[list[list[int]]] | None = (
            [[] for _ in range(b)] if record_steps else None
        )
        self.budget = predictor.step_budget(settings)

    @property
    def window(self) -> Tensor:
        return self.seq[:, -self.w :]

    def run(self) -> Prediction:
        while self.active.any():
            rows = self.active.nonzero().squeeze(1)
            self._refresh(rows)
            chosen = self._choose(rows)
            self._fill(rows, chosen)
            self._advance(rows)
            # every step decides a position or moves the ancestral time on, so this is a bug
            if int(self.steps.max()) > self.budget:
                raise RuntimeError(f"MDLM decoding exceeded its step budget of {self.budget}")
        return self._prediction()

    def _refresh(self, rows: Tensor) -> None:
        """Forward pass for the rows whose p(x0) is stale; the others keep theirs."""
        stale = rows if not self.reuse else rows[~self.fresh[rows.to(self.fresh.device)].cpu()]
        if len(stale) == 0:
            return
        dev = self.seq.device
        idx = stale.to(dev)
        real = None if self.real is None else self.real[idx]
        t = self._noise_level(idx) if self.p.time_conditioned else None
        out = self.model(self.seq[idx], real, t, window=self.w).logits.float()
        # BOS and CLS are ruled out like MASK (SUBS)
        out = torch.log_softmax(layout.window_logits(out, self.vocab), dim=-1)
        if self.log_probs is None:
            self.log_probs = out.new_empty((self.seq.shape[0], *out.shape[1:]))
        self.log_probs[idx] = out
        self.fresh[idx] = True
        self.nfe[stale] += 1

    def _noise_level(self, idx: Tensor) -> Tensor:
        """t fed to a time-conditioned model: the ancestral grid time without blocks, otherwise the time
        whose masking rate equals the row's fraction of masked window positions."""
        if self.settings.sampler == "ancestral" and len(self.blocks) == 1:
            return 1.0 - self.block_step[idx].double() / self.steps_per_block
        masked = (self.window[idx] == self.vocab.mask_id).double().mean(dim=1)
        return self.p.schedule.time_at(masked)

    def _choose(self, rows: Tensor) -> Tensor:
        """``(n, W)`` bool: the masked positions of each row's current block decided in this step."""
        idx = rows.to(self.seq.device)
        eligible = self._masked_in_block(idx, self.window[idx])
        if self.settings.sampler == "ancestral":
            j = self.block_step[idx].double()
            t = 1.0 - j / self.steps_per_block
            s = 1.0 - (j + 1.0) / self.steps_per_block
            # exactly 1 on a block's last step (s = 0): every remaining mask is filled
            p_unmask = self.p.schedule.unmask_probability(t, s)
            u = uniform(self.noise.select(idx), (self.w,), self.seq.device)
            return eligible & (u < p_unmask[:, None])
        score = confidence(self.log_probs[idx].exp(), self.settings.confidence)
        return choose_to_unmask(score, eligible, self.settings)

    def _masked_in_block(self, idx: Tensor, window: Tensor) -> Tensor:
        """``(n, W)`` bool: the still masked positions of each row's current block."""
        start, end = self.blocks[self.block[idx]].unbind(dim=1)
        pos = self.positions[None, :]
        return (window == self.vocab.mask_id) & (pos >= start[:, None]) & (pos < end[:, None])

    def _fill(self, rows: Tensor, chosen: Tensor) -> None:
        """Draw tokens at the chosen positions, each from its row's generator, and write them in."""
        row_in_batch, pos = chosen.nonzero(as_tuple=True)
        if len(pos) == 0:
            return
        idx = rows.to(self.seq.device)
        # (N, V): rows in order, positions ascending within a row, so each row's draws come in a fixed order
        logits = self.log_probs[idx[row_in_batch], pos]
        # a row deciding k positions takes k successive draws of its stream, left to right
        noise = self.noise.select(idx[row_in_batch])
        s = self.settings
        tokens = sample(logits, noise, temperature=s.temperature, top_k=s.top_k, top_p=s.top_p)
        self.seq[idx[row_in_batch], self.seq.shape[1] - self.w + pos] = tokens
        self.fresh[idx[row_in_batch]] = False

    def _advance(self, rows: Tensor) -> None:
        """Count the step, move rows to their next block, and retire rows whose output is determined."""
        idx = rows.to(self.seq.device)
        self.steps[rows] += 1
        window = self.window[idx]
        self.block_step[idx] += 1
        next_block = ~self._masked_in_block(idx, window).any(dim=1)
        self.block[idx] += next_block.long()
        self.block_step[idx] = torch.where(next_block, 0, self.block_step[idx])

        done = layout.output_decided(window[:, :-1], self.vocab)  # the last position is never decided
        if self.history is not None:
            for row, state in zip(rows.tolist(), window.tolist(), strict=True):
                self.history[row].append(state)
        self.active[rows[done.cpu()]] = False

    def _prediction(self) -> Prediction:
        window = self.window.cpu()
        lengths = layout.output_lengths(window, self.vocab)
        ids = layout.output_ids(window, lengths, self.vocab)
        ids = ids[:, : int(lengths.max())] if len(lengths) else ids
        return Prediction(
            ids=ids,
            lengths=lengths,
            steps=self.steps.clone(),
            nfe=self.nfe.clone(),
            history=layout.history_up_to(self.history, lengths),
        )
