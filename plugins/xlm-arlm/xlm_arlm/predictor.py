"""ARLM predictor: left-to-right decoding with a KV cache it owns; finished rows leave the batch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from xlm_arlm.config import ARLMConfig, ARLMSettings
from xlm_arlm.model import ARLMModel
from xlm_core.components import DataShape, Prediction, Vocab
from xlm_core.nn.sampling import make_generators, sample
from xlm_core.predicting import as_settings, predict_preamble


class ARLMPredictor:
    """Samples one token per step for every unfinished row until EOS or the length budget.

    Prompts are left-padded into ``[BOS] prompt`` so every row writes its next
    token at the same cache slot (positions count real tokens only, so padding
    shifts nothing). A row that emits EOS, or fills its budget, is dropped from
    the batch and from the cache. Each row draws its noise from its own generator
    seeded with ``seeds[b]``, so a sample does not depend on the batch around it.

    Without the cache (``kv_cache=False``) each step recomputes the whole
    prefix; the tokens are the same, the cost grows with the square of the length.
    """

    def __init__(self, config: ARLMConfig, vocab: Vocab, shape: DataShape):
        self.config, self.vocab, self.shape = config, vocab, shape

    def step_budget(self, settings: Any) -> int:
        """Most steps a row can take: one per target token; EOS after a full target is never decoded."""
        return as_settings(ARLMSettings, settings).max_new_tokens or self.shape.target_length

    @predict_preamble(ARLMSettings)
    def predict(self, model, prompts, *, settings, seeds, record_steps=False) -> Prediction:
        return _Decoding(self, model, prompts, settings, seeds, record_steps).run()


class _Decoding:
    """The state of one ``predict`` call. ``out``, ``lengths`` and ``steps`` cover every row;
    ``rows`` lists the rows still decoding, and ``token`` / ``next_pos`` follow them."""

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
        self.prefix, prefix_mask = _left_pad(prompts, predictor.vocab, device)
        # No padding at all (one prompt, or equal lengths): pass no mask so attention takes its fast path.
        self.attention_mask = None if bool(prefix_mask.all()) else prefix_mask
        self.out = torch.full((n, self.budget), self.vocab.pad_id, dtype=torch.long, device=device)
        self.lengths = torch.zeros(n, dtype=torch.long, device=device)
        self.steps = torch.zeros(n, dtype=torch.long, device=device)
        self.history: list[list[list[int]]] | None = (
            [[] for _ in range(n)] if record_steps else None
        )
        self.generators = make_generators(seeds, device)
        self.banned, self.banned_with_eos = _banned(self.vocab, device)
        self.rows = torch.arange(n, device=device)  # original index of each row still decoding
        self.row_list = self.rows.tolist()
        self.next_pos = prefix_mask.sum(1)  # position of the token each row feeds next
        self.cache = None
        if settings.kv_cache and n and self.budget:
            # The last sampled token is never fed back, hence budget - 1 slots after the prefix.
            self.cache = model.new_cache(n, self.prefix.shape[1] + self.budget - 1, device)
        self.token = self.prefix[:, -1]  # the token each row feeds next (from step 1 on, its last draw)

    def run(self) -> Prediction:
        for t in range(self.budget if len(self.out) else 0):  # no prompts: nothing to run
            done = self._emit(t, self._next_token_logits(t))
            if t + 1 == self.budget or not self._keep(~done):
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
        """Logits of the next token of every active row, each of which holds ``t`` tokens."""
        if self.cache is None:
            rows = self.rows
            seq = torch.cat([self.prefix[rows], self.out[rows, :t]], dim=1)
            mask = None
            if self.attention_mask is not None:
                new = seq.new_ones(len(self.row_list), t, dtype=torch.bool)
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
        """Draw each active row's next token and write it out; returns the rows that drew EOS."""
        s, v, rows = self.settings, self.vocab, self.rows
        # Every active row holds exactly t tokens here: rows leave the batch as soon as they finish.
        banned = self.banned_with_eos if t < s.min_new_tokens else self.banned
        logits = logits.masked_fill(banned, float("-inf"))
        gens = [self.generators[i] for i in self.row_list]
        self.token = sample(logits, gens, temperature=s.temperature, top_k=s.top_k, top_p=s.top_p)
        done = self.token == v.eos_id
        self.out[rows, t] = torch.where(done, v.pad_id, self.token)
        self.lengths[rows] += (~done).long()
        self.steps[rows] += 1
        if self.history is not None:
            for r, length in zip(self.row_list, self.lengths[rows].tolist(), strict=True):
                self.history[r].append(self.out[r, :length].tolist())
        return done

    def _keep(self, keep: Tensor) -> bool:
        """Drop the rows not in ``keep`` from the batch and the cache; False when none is left."""
        if bool(keep.all()):
            return True
        if not bool(keep.any()):
            return False
        self.rows, self.token, self.next_pos = self.rows[keep], self.token[keep], self.next_pos[keep]
        self.row_list = self.rows.tolist()
        if self.cache is not None:
            self.cache.select(keep)
        return True


def _left_pad(
    prompts: Sequence[Sequence[int]], vocab: Vocab, device: torch.device
) -> tuple[Tensor, Tensor]:
    """``[BOS] prompt`` right-aligned in a ``(B, 1 + longest prompt)`` tensor, and its real-token mask."""
    width = 1 + max((len(p) for p in prompts), default=0)
    ids = torch.full((len(prompts), width), vocab.pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.bool)
    for row, prompt in enumerate(prompts):
        seq = [vocab.bos_id, *prompt]
        ids[row, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
        mask[row, width - len(seq) :] = True
    return ids.to(device), mask.to(device)


def _banned(vocab: Vocab, device: torch.device) -> tuple[Tensor, Tensor]:
    """Vocabulary masks of tokens that can never appear in a target, without and with EOS."""
    banned = torch.zeros(vocab.size, dtype=torch.bool, device=device)
    banned[[vocab.pad_id, vocab.mask_id, vocab.bos_id, vocab.cls_id]] = True
    with_eos = banned.clone()
    with_eos[vocab.eos_id] = True
    return banned, with_eos
