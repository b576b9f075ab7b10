"""Decoding an MLM: mask-predict (with revision), confidence unmasking and threshold parallel decoding.

Every sampler starts from a window of MASK after the left-padded prompt (the
layout of :mod:`xlm_mlm.collator`) and fills it step by step:

* ``mask_predict`` (Ghazvininejad et al. 2019): iteration 1 predicts every
  position; after iteration t the n_t = L·(T−t)/T least confident positions are
  masked again and re-predicted, so earlier tokens may be revised. A token keeps
  the confidence it had when it was last predicted. T = 1 is one-shot argmax.
* ``confidence``: unmask the k most confident masked positions per step; a
  decided token is final.
* ``threshold`` (as in Fast-dLLM): unmask every masked position whose confidence
  exceeds τ, and at least the most confident one.

``confidence`` and ``threshold`` choose positions with ``xlm_core.nn.unmasking``, and
windows are laid out and read back with ``xlm_core.nn.window``, as in every
masked-window family.

The state (windows, confidences, last logits) lives here, never in the model.
Two things skip work without changing any token: a row whose window did not
change since its last forward pass reuses those logits (``reuse_logits``), and a
row leaves the batch once its output is fixed (mask-predict: after the first
iteration that masks nothing again, the T-th or, for T > L, an earlier one; the
others: when every position before its first EOS/PAD is decided, as nothing
decided is ever revised).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from xlm_core.components import DataShape, Prediction, Vocab
from xlm_core.nn import window as layout
from xlm_core.nn.sampling import NoiseRows, RowNoise, confidence, sample
from xlm_core.nn.unmasking import choose_to_unmask
from xlm_core.predicting import as_settings, predict_preamble
from xlm_mlm.config import MLMConfig, MLMSettings


class MLMPredictor:
    def __init__(self, config: MLMConfig, vocab: Vocab, shape: DataShape):
        self.vocab = vocab
        self.shape = shape

    def window_length(self, settings: MLMSettings) -> int:
        """Target budget plus the position that holds EOS when the target fills the budget."""
        return layout.window_length(self.shape, settings.max_new_tokens)

    def step_budget(self, settings: Any) -> int:
        settings = as_settings(MLMSettings, settings)
        length = self.window_length(settings)
        if settings.sampler != "mask_predict":
            return length
        return next(
            step
            for step in range(1, settings.steps + 1)
            if remask_count(length, settings.steps, step) == 0
        )

    @predict_preamble(MLMSettings)
    def predict(self, model, prompts, *, settings, seeds, record_steps=False) -> Prediction:
        return _Decoding(self.vocab, settings, self.window_length(settings), model).run(
            prompts, layout.prompt_width(prompts, self.shape), seeds, record_steps
        )


def remask_count(length: int, iterations: int, step: int) -> int:
    """Mask-predict: how many of the ``length`` positions iteration ``step`` masks again.

    Zero at the last iteration, and earlier when ``iterations > length``: nothing is
    masked after that iteration, so it is the last that can change the window.
    """
    return length * (iterations - step) // iterations


class _Decoding:
    """One ``predict`` call. Batch tensors are indexed by row; ``active`` lists the rows still decoding."""

    def __init__(self, vocab: Vocab, settings: MLMSettings, window: int, model: nn.Module):
        self.vocab, self.settings, self.length, self.model = vocab, settings, window, model
        self.device = next(model.parameters(), torch.empty(0)).device

    def run(
        self, prompts: Sequence[Sequence[int]], width: int, seeds: Sequence[int], record_steps: bool
    ) -> Prediction:
        v, n_rows, length = self.vocab, len(prompts), self.length
        prompt_ids, prompt_real = layout.left_pad(prompts, width, v.pad_id)
        self.prompt_ids, self.prompt_real = prompt_ids.to(self.device), prompt_real.to(self.device)
        self.window = torch.full((n_rows, length), v.mask_id, dtype=torch.long, device=self.device)
        # mask-predict: the confidence each token had when it was last predicted
        self.confidence = torch.zeros((n_rows, length), device=self.device)
        self.nfe = torch.zeros(n_rows, dtype=torch.long)
        self.steps = torch.zeros(n_rows, dtype=torch.long)
        noise = RowNoise(seeds, self.device)
        history: list[list[list[int]]] | None = (
            [[] for _ in range(n_rows)] if record_steps else None
        )

        active = torch.arange(n_rows, device=self.device)
        logits: Tensor | None = None  # (A, L, V): the last logits of each active row
        # per active row: its window changed since those logits were computed
        stale = torch.ones(n_rows, dtype=torch.bool, device=self.device)
        step = 0  # every row starts together, so mask-predict rows share their iteration number
        while active.numel():
            step += 1
            logits = self._refresh(active, logits, stale)
            before = self.window[active]
            after, done = self._step(active, logits, noise.select(active), step)
            self.window[active] = after
            self.steps[active.cpu()] += 1
            changed = (after != before).any(dim=1)
            stale = changed if self.settings.reuse_logits else torch.ones_like(changed)
            if history is not None:
                for row, ids in zip(active.tolist(), self._visible(after), strict=True):
                    history[row].append(ids)
            keep = ~done
            active, logits, stale = active[keep], logits[keep], stale[keep]

        lengths = layout.output_lengths(self.window, v)
        ids = layout.output_ids(self.window, lengths, v)
        return Prediction(
            ids=ids.cpu(), lengths=lengths.cpu(), steps=self.steps, nfe=self.nfe, history=history
        )

    # -- model calls -------------------------------------------------------------------------

    def _refresh(self, active: Tensor, logits: Tensor | None, stale: Tensor) -> Tensor:
        """Logits of the active rows, running the model only on rows whose window changed."""
        if logits is None or bool(stale.all()):
            return self._forward(active)
        if bool(stale.any()):
            logits[stale] = self._forward(active[stale])
        return logits

    def _forward(self, rows: Tensor) -> Tensor:
        input_ids, attention_mask = layout.append_window(
            self.prompt_ids[rows], self.prompt_real[rows], self.window[rows]
        )
        if bool(attention_mask.all()):
            attention_mask = None  # no padding: attention takes its fast path
        logits = self.model(input_ids, attention_mask).logits[:, -self.length :]
        self.nfe[rows.cpu()] += 1
        return layout.window_logits(logits, self.vocab)  # whatever the model, never write another special

    # -- one step ------------------------------------------------------------------------------

    def _step(
        self, active: Tensor, logits: Tensor, noise: NoiseRows, step: int
    ) -> tuple[Tensor, Tensor]:
        """The active rows' windows after one step, and which rows are finished."""
        s = self.settings
        window = self.window[active]
        masked = window == self.vocab.mask_id
        tokens = sample(logits, noise, temperature=s.temperature, top_k=s.top_k, top_p=s.top_p)
        # confidence from the model's own distribution, so a threshold means the same at any temperature
        scores = confidence(logits.float().softmax(dim=-1), s.confidence)

        if s.sampler == "mask_predict":
            window = torch.where(masked, tokens, window)
            kept = torch.where(masked, scores, self.confidence[active])
            self.confidence[active] = kept
            n_remask = remask_count(self.length, s.steps, step)
            if n_remask:
                least = torch.sort(kept, dim=1, stable=True).indices[:, :n_remask]
                window = window.scatter(1, least, self.vocab.mask_id)
            # with nothing masked again, a further iteration would predict no position
            return window, torch.full_like(masked[:, 0], n_remask == 0)

        window = torch.where(choose_to_unmask(scores, masked, s), tokens, window)
        # nothing decided is revised: a row is done once its output is
        return window, layout.output_decided(window, self.vocab)

    # -- reading windows -------------------------------------------------------------------------

    def _visible(self, window: Tensor) -> list[list[int]]:
        """The target as the output would read it now (MASK = undecided), for ``history``."""
        return [
            row[:n].tolist()
            for row, n in zip(window, layout.output_lengths(window, self.vocab).tolist(), strict=True)
        ]
