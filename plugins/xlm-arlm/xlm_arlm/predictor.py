"""ARLM predictor: left-to-right decoding with a KV cache it owns; finished rows leave the batch in groups."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from xlm_arlm.config import ARLMConfig, ARLMSettings
from xlm_arlm.model import ARLMModel
from xlm_core.components import DataShape, Prediction, Vocab
from xlm_core.nn.kv_cache import worth_compacting
from xlm_core.nn.sampling import RowNoise, sample
from xlm_core.predicting import as_settings, predict_preamble


class ARLMPredictor:
    """Samples one token per step for every unfinished row until EOS or the length budget.

    Prompts are left-padded into ``[BOS] prompt`` so every row writes its next
    token at the same cache slot (positions count real tokens only, so padding
    shifts nothing). A row that emits EOS, or fills its budget, stops; finished rows
    leave the batch and the cache together once enough of them have finished. Each row
    draws its noise from its own stream seeded with ``seeds[b]``
    (:class:`~xlm_core.nn.sampling.RowNoise`), so a sample does not depend on the batch
    around it.

    Without the cache (``kv_cache=False``) each step recomputes the whole
    prefix; the tokens are the same, the cost grows with the square of the length.
    """

    #: max_new_tokens only stops a row: its first k tokens are the same under any budget >= k,
    #: so evaluation may decode rows that need different budgets in one call (plugin API 1.1)
    left_to_right = True

    def __init__(self, config: ARLMConfig, vocab: Vocab, shape: DataShape):
        self.config, self.vocab, self.shape = config, vocab, shape

    def step_budget(self, settings: Any) -> int:
        """Most steps a row can take: one per target token; EOS after a full target is never decoded."""
        return as_settings(ARLMSettings, settings).max_new_tokens or self.shape.target_length

    def positions_per_pass(self, settings: Any) -> int | None:
        """With the cache a step computes one position per row (plugin API 1.3: ``auto``
        precision keeps such narrow passes in fp32 on a CPU); without it, the whole row (None)."""
        return 1 if as_settings(ARLMSettings, settings).kv_cache else None

    @predict_preamble(ARLMSettings)
    def predict(self, model, prompts, *, settings, seeds, record_steps=False) -> Prediction:
        return _Decoding(self, model, prompts, settings, seeds, record_steps).run()


class _Decoding:
    """The state of one ``predict`` call. ``out``, ``lengths`` and ``steps`` cover every row;
    ``rows`` lists the rows in the decoding batch (and in the cache), ``live`` marks those of
    them still decoding, and ``token`` / ``next_pos`` follow ``rows``.

    A row that finishes stays in the batch, its draws ignored, until enough rows have finished
    that dropping them is worth a copy of the cache (:func:`~xlm_core.nn.kv_cache.worth_compacting`):
    copying the cache each time one row finishes would cost more than the finished rows do."""

    def __init__(
        self,
        predictor: ARLMPredictor,
        model: ARLMModel,
        prompts: Sequence[Sequence[int]],
        settings: ARLMSettings,
        seeds: Sequence[int],
        record_steps: bool,
    ):
        self.model, self.settings, self.vocab = model, settings, predictor.vocab
        n, self.budget = len(prompts), predictor.step_budget(settings)
        device = next(model.parameters()).device
        prefix, prefix_mask = _left_pad(prompts, predictor.vocab)
        # No padding at all (one prompt, or equal lengths): pass no mask so attention takes its
        # fast path. Decided here, on the CPU, before the prompts go to the device.
        self.attention_mask = None if bool(prefix_mask.all()) else prefix_mask.to(device)
        self.prefix, prefix_mask = prefix.to(device), prefix_mask.to(device)
        self.out = torch.full((n, self.budget), self.vocab.pad_id, dtype=torch.long, device=device)
        self.lengths = torch.zeros(n, dtype=torch.long, device=device)
        self.steps = torch.zeros(n, dtype=torch.long, device=device)
        self.history: list[list[list[int]]] | None = (
            [[] for _ in range(n)] if record_steps else None
        )
        self.noise = RowNoise(seeds, device)
        self.banned, self.banned_with_eos = _banned(self.vocab, device)
        self.rows = torch.arange(n, device=device)  # original index of each row in the batch
        self.live = torch.ones(n, dtype=torch.bool, device=device)
        self.n_live = n
        self.next_pos = prefix_mask.sum(1)  # position of the token each row feeds next
        self.cache = None
        if settings.kv_cache and n and self.budget:
            # The last sampled token is never fed back, hence budget - 1 slots after the prefix.
            self.cache = model.new_cache(n, self.prefix.shape[1] + self.budget - 1, device)
        self.token = self.prefix[:, -1]  # the token each row feeds next (from step 1 on, its last draw)

    def run(self) -> Prediction:
        for t in range(self.budget if len(self.out) else 0):  # no prompts: nothing to run
            done = self._emit(t, self._next_token_logits(t))
            if t + 1 == self.budget or not self._retire(done):
                break
        width = int(self.lengths.max()) if len(self.out) else 0
        return Prediction(
            ids=self.out[:, :width].cpu(),
            lengths=self.lengths.cpu(),
            steps=self.steps.cpu(),
            nfe=self.steps.cpu(),  # one forward pass per step for every row taking part in it
            history=self.history,
        )

    def _next_token_logits(self, t: int) -> Tensor:
        """Logits of the next token of every row in the batch; each live row holds ``t`` tokens."""
        if self.cache is None:
            rows = self.rows
            seq = torch.cat([self.prefix[rows], self.out[rows, :t]], dim=1)
            mask = None
            if self.attention_mask is not None:
                new = seq.new_ones(len(rows), t, dtype=torch.bool)
                mask = torch.cat([self.attention_mask[rows], new], 1)
            return self.model.next_token_logits(seq, mask)
        if t == 0:
            return self.model.next_token_logits(self.prefix, self.attention_mask, cache=self.cache)
        logits = self.model.next_token_logits(
            self.token[:, None], positions=self.next_pos[:, None], cache=self.cache
        )
        self.next_pos = self.next_pos + 1
        return logits

    def _emit(self, t: int, logits: Tensor) -> Tensor:
        """Draw every row's next token and write out the live rows'; returns the rows that finish."""
        s, v, rows = self.settings, self.vocab, self.rows
        # Every live row holds exactly t tokens here: a row stops taking tokens once it finishes.
        banned = self.banned_with_eos if t < s.min_new_tokens else self.banned
        logits = logits.masked_fill(banned, float("-inf"))
        noise = self.noise.select(rows)  # every row in one draw; a finished row's is never read
        self.token = sample(logits, noise, temperature=s.temperature, top_k=s.top_k, top_p=s.top_p)
        done = self.live & (self.token == v.eos_id)
        write = self.live & ~done
        self.out[rows, t] = torch.where(write, self.token, v.pad_id)
        self.lengths[rows] += write.long()
        self.steps[rows] += self.live.long()
        if self.history is not None:
            live = rows[self.live]
            for r, length in zip(live.tolist(), self.lengths[live].tolist(), strict=True):
                self.history[r].append(self.out[r, :length].tolist())
        self.live = write
        return done

    def _retire(self, done: Tensor) -> bool:
        """Count the rows that finished; compact the batch and cache when it pays. False when
        no row is left decoding."""
        finished = int(done.sum())  # the one wait for the device per step: the loop must know
        if not finished:
            return True
        self.n_live -= finished
        if not self.n_live:
            return False
        if worth_compacting(len(self.rows) - self.n_live, len(self.rows)):
            keep = self.live
            self.rows, self.token, self.next_pos = self.rows[keep], self.token[keep], self.next_pos[keep]
            self.live = self.live[keep]
            if self.cache is not None:
                self.cache.select(keep)
        return True


def _left_pad(prompts: Sequence[Sequence[int]], vocab: Vocab) -> tuple[Tensor, Tensor]:
    """``[BOS] prompt`` right-aligned in a ``(B, 1 + longest prompt)`` tensor, and its real-token
    mask, on the CPU."""
    width = 1 + max((len(p) for p in prompts), default=0)
    ids = torch.full((len(prompts), width), vocab.pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.bool)
    for row, prompt in enumerate(prompts):
        seq = [vocab.bos_id, *prompt]
        ids[row, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
        mask[row, width - len(seq) :] = True
    return ids, mask


def _banned(vocab: Vocab, device: torch.device) -> tuple[Tensor, Tensor]:
    """Vocabulary masks of tokens that can never appear in a target, without and with EOS."""
    banned = torch.zeros(vocab.size, dtype=torch.bool, device=device)
    banned[[vocab.pad_id, vocab.mask_id, vocab.bos_id, vocab.cls_id]] = True
    with_eos = banned.clone()
    with_eos[vocab.eos_id] = True
    return banned, with_eos
