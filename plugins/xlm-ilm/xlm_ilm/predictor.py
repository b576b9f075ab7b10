"""ILM decoding: insert tokens into gaps until the stop head says the target is complete.

Each step runs the model once on every unfinished row, ``[CLS] prompt [BOS]
target so far``. A row whose ``p(stop) >= stop_threshold`` finishes (that
forward pass is its last); every other row gets one insertion, drawn from the
joint (gap, token) distribution of :func:`xlm_ilm.loss.joint_log_probs`:

- ``sampler="joint"``: temperature / top-k / top-p filter the joint
  distribution over all ``gaps x vocabulary`` entries; the draw is then made
  exactly, as the gap from the filtered marginal followed by the token from the
  filtered conditional.
- ``sampler="two_stage"``: the gap is drawn from ``logsumexp`` over the
  vocabulary (tempered, then top-k / top-p over gaps), then the token in that
  gap (top-k / top-p over tokens). Without top-k / top-p both modes sample the
  same distribution.

``parallel_k > 1`` adds up to ``k - 1`` more insertions per step into other
gaps: for each gap its most likely token, taken in order of joint probability
while that probability is at least ``parallel_threshold``.

A row that reaches ``max_new_tokens`` finishes without another forward pass.
Finished rows leave the batch, so they cost nothing and never grow again.
Noise comes from one stream per row (``RowNoise``) and has a shape fixed by the settings
(gaps are laid out on a ``max_new_tokens``-wide canvas), so a row's sample does not
depend on the other rows in its batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from xlm_core.components import DataShape, Prediction, Vocab
from xlm_core.errors import warn_renamed
from xlm_core.nn.sampling import NoiseRows, RowNoise, filter_logits, sample
from xlm_core.predicting import as_settings, predict_preamble
from xlm_ilm.config import ILMConfig, ILMSettings
from xlm_ilm.loss import banned_tokens, masked_logits


class ILMPredictor:
    def __init__(self, config: ILMConfig, vocab: Vocab, shape: DataShape):
        self.vocab = vocab
        self.shape = shape

    def max_new_tokens(self, settings: ILMSettings) -> int:
        """The longest target a row may grow to under ``settings``."""
        return settings.max_new_tokens or self.shape.target_length

    def max_length(self, settings: ILMSettings) -> int:
        """The old name of :meth:`max_new_tokens`, kept with one warning until xlm-core 0.3.0."""
        warn_renamed("ILMPredictor.max_length()", "ILMPredictor.max_new_tokens()", stacklevel=3)
        return self.max_new_tokens(settings)

    def step_budget(self, settings: Any) -> int:
        # one insertion per step up to max_new_tokens; a row that stops earlier spends one
        # extra forward pass on the stop decision, and a full row needs none
        return self.max_new_tokens(as_settings(ILMSettings, settings)) + 1

    @predict_preamble(ILMSettings)
    def predict(self, model, prompts, *, settings, seeds, record_steps=False) -> Prediction:
        device = next(model.parameters()).device
        decoding = _Decoding(
            prompts, seeds, self.vocab, self.max_new_tokens(settings), settings, device, record_steps
        )
        return decoding.run(model)


class _Decoding:
    """The state of one ``predict`` call: the unfinished rows and what finished rows produced.

    Unfinished rows are kept right-padded as ``[CLS] prompt [BOS] target so far``
    with their BOS position and length; ``rows`` maps them back to the caller's order.
    """

    def __init__(
        self,
        prompts: Sequence[Sequence[int]],
        seeds: Sequence[int],
        vocab: Vocab,
        limit: int,
        settings: ILMSettings,
        device: torch.device,
        record_steps: bool,
    ):
        self.vocab, self.limit, self.settings, self.device = vocab, limit, settings, device
        self.record_steps = record_steps
        self.banned = banned_tokens(vocab, device, eos=True)
        b = len(prompts)
        self.out_ids = torch.full((b, limit), vocab.pad_id, dtype=torch.long)
        self.out_len = torch.zeros(b, dtype=torch.long)
        self.nfe = torch.zeros(b, dtype=torch.long)
        self.history: list[list[list[int]]] = [[] for _ in range(b)]

        width = max((len(p) for p in prompts), default=0) + 2
        tokens = torch.full((b, width), vocab.pad_id, dtype=torch.long)
        for i, p in enumerate(prompts):
            tokens[i, : len(p) + 2] = torch.tensor([vocab.cls_id, *p, vocab.bos_id])
        bos = torch.tensor([len(p) + 1 for p in prompts], dtype=torch.long)
        self.tokens, self.bos, self.length = tokens.to(device), bos.to(device), (bos + 1).to(device)
        self.rows = torch.arange(b, device=device)
        self.noise = RowNoise(seeds, device)  # over the caller's rows: finished rows need no care

    def run(self, model: nn.Module) -> Prediction:
        while True:
            self._finish(self._target_length() >= self.limit)
            if not len(self.rows):
                break
            self._finish(self._step(model))
        return Prediction(
            ids=self.out_ids,
            lengths=self.out_len,
            steps=self.nfe.clone(),  # every ILM step is exactly one forward pass
            nfe=self.nfe,
            history=self.history if self.record_steps else None,
        )

    def _target_length(self) -> Tensor:
        return self.length - self.bos - 1

    def _step(self, model: nn.Module) -> Tensor:
        """One forward pass; inserts into every row that does not stop. Returns the stop flags."""
        width = int(self.length.max())
        ids = self.tokens[:, :width]
        real = torch.arange(width, device=self.device) < self.length[:, None]
        out = model(ids, None if bool(real.all()) else real)
        self.nfe[self.rows.cpu()] += 1
        stop = torch.sigmoid(out.extras["stop_logits"].float()) >= self.settings.stop_threshold

        go = (~stop).nonzero().squeeze(1)
        if len(go):
            logits = self._gap_logits(out.logits[go], go)
            noise = self.noise.select(self.rows[go])
            insert, insert_tok = self._choose(logits, noise, self._target_length()[go])
            self._insert(go, insert, insert_tok)
        if self.record_steps:
            for i, row in enumerate(self.rows.tolist()):
                start = int(self.bos[i]) + 1
                self.history[row].append(self.tokens[i, start : int(self.length[i])].tolist())
        return stop

    def _gap_logits(self, logits: Tensor, rows: Tensor) -> Tensor:
        """``(R, max_new_tokens, V)`` logits on the gap canvas: slot ``j`` is the gap after target token ``j``
        (slot 0 after BOS); slots past the current target are -inf, as are special tokens."""
        slots = torch.arange(self.limit, device=self.device)
        position = (self.bos[rows, None] + slots).clamp(max=logits.shape[1] - 1)
        canvas = logits.gather(1, position[:, :, None].expand(-1, -1, logits.shape[2]))
        return masked_logits(canvas, slots <= self._target_length()[rows, None], self.banned)

    def _choose(
        self, logits: Tensor, noise: NoiseRows, target_length: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Per row: which canvas gaps receive a token ``(R, max_new_tokens)`` bool, and which token."""
        s = self.settings
        greedy = s.temperature == 0
        if s.sampler == "joint":
            staged = filter_logits(
                logits.flatten(1), temperature=s.temperature, top_k=s.top_k, top_p=s.top_p
            )
            staged, stage_filter = staged.view_as(logits), {}
        else:
            staged = logits if greedy else logits / s.temperature
            stage_filter = {"top_k": s.top_k, "top_p": s.top_p}
        t = 0.0 if greedy else 1.0  # the temperature is already applied to ``staged``
        gap = sample(staged.logsumexp(dim=-1), noise, temperature=t, **stage_filter)
        rows = torch.arange(len(gap), device=self.device)
        token = sample(staged[rows, gap], noise, temperature=t, **stage_filter)

        insert = torch.zeros(logits.shape[:2], dtype=torch.bool, device=self.device)
        insert_tok = torch.zeros(logits.shape[:2], dtype=torch.long, device=self.device)
        insert[rows, gap] = True
        insert_tok[rows, gap] = token
        extra = min(s.parallel_k - 1, self.limit - 1)
        if extra > 0:
            # the model's own joint distribution judges confidence, whatever the sampling filters
            joint = logits.flatten(1).softmax(dim=-1).view_as(logits)
            best_p, best_tok = joint.max(dim=-1)
            best_p[rows, gap] = -1.0
            p, slot = best_p.topk(extra, dim=-1)
            room = (self.limit - target_length - 1)[:, None]
            # p > 0 keeps out the gaps past the target (and a threshold of 0 cannot admit them)
            take = (
                (p >= s.parallel_threshold)
                & (p > 0)
                & (torch.arange(extra, device=self.device) < room)
            )
            insert.scatter_(1, slot, take)
            insert_tok.scatter_(1, slot, torch.where(take, best_tok.gather(1, slot), 0))
        return insert, insert_tok

    def _insert(self, rows: Tensor, insert: Tensor, insert_tok: Tensor) -> None:
        """Insert ``insert_tok`` after canvas gaps ``insert`` of active rows ``rows``, shifting what follows."""
        r, width = len(rows), self.tokens.shape[1]
        bos, length = self.bos[rows], self.length[rows]
        # after[i, q]: a token goes in right after input position q (the canvas starts at BOS)
        after = torch.zeros(r, width + self.limit, dtype=torch.long, device=self.device)
        after.scatter_(
            1, bos[:, None] + torch.arange(self.limit, device=self.device), insert.long()
        )
        after = after[:, :width]
        before = after.cumsum(dim=1) - after  # insertions strictly before each old position
        new_length = length + insert.sum(dim=1)
        new_width = max(width, int(new_length.max()))
        dump = new_width  # one spare column takes writes that must not land
        grown = torch.full(
            (r, new_width + 1), self.vocab.pad_id, dtype=torch.long, device=self.device
        )
        positions = torch.arange(width, device=self.device)
        old_target = torch.where(positions < length[:, None], positions + before, dump)
        grown.scatter_(1, old_target, self.tokens[rows])
        gap_position = (bos[:, None] + torch.arange(self.limit, device=self.device)).clamp(
            max=width - 1
        )
        new_target = torch.where(insert, gap_position + before.gather(1, gap_position) + 1, dump)
        grown.scatter_(1, new_target, insert_tok)

        if new_width > width:
            pad = torch.full(
                (len(self.tokens), new_width - width), self.vocab.pad_id, device=self.device
            )
            self.tokens = torch.cat([self.tokens, pad], dim=1)
        self.tokens[rows] = grown[:, :new_width]
        self.length[rows] = new_length

    def _finish(self, done: Tensor) -> None:
        """Write out the rows flagged ``done`` and drop them from the batch."""
        if not bool(done.any()):
            return
        for i in done.nonzero().squeeze(1).tolist():
            row, start, n = int(self.rows[i]), int(self.bos[i]) + 1, int(self._target_length()[i])
            self.out_ids[row, :n] = self.tokens[i, start : start + n].cpu()
            self.out_len[row] = n
        keep = (~done).nonzero().squeeze(1)
        self.tokens, self.bos, self.length, self.rows = (
            self.tokens[keep],
            self.bos[keep],
            self.length[keep],
            self.rows[keep],
        )
