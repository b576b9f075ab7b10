"""BDLM decoding: blocks left to right, each filled by MDLM's samplers, finished blocks kept in a KV cache.

Each row is laid out as in training (``layout.py``): its prefix, then a window of
``ceil(T / B)`` all-MASK blocks, T = ``max_new_tokens`` (default: the task's target
length); only the first T positions are ever decided, so an output has at most T tokens.
Block b is decoded given the final blocks before it:

- ancestral: the block's own reverse diffusion, ``steps`` steps (default B) on the grid
  t_j = 1 - j / steps; a masked position unmasks between t and s with probability
  (alpha_s - alpha_t) / (1 - alpha_t), its own schedule's with position-dependent masking;
  the last step fills what is left. A row whose block did not change reuses its
  predictions (``reuse_logits``): no time conditioning, so they depend on the input only;
- confidence: the k most confident masked positions of the block per step;
- threshold: every masked position of the block above tau, at least one per step.

With ``kv_cache`` the prefix is cached in one pass and each finished block is appended
in one pass (``passes.py``), which also reads the next block's first step; a denoising
step reads the cache and runs the B positions of the block only. A block thus costs one
pass per denoising step, as without the cache. All rows decode the same block at a time; a row leaves as soon as its
output is fixed (no MASK before its first EOS or PAD), so it stops after the block in
which it writes EOS, without generating the blocks after it. Randomness is per row
(``RowNoise``), drawn in the same order whatever the batch, cache or no cache.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from xlm_bdlm import layout
from xlm_bdlm.config import BDLMConfig, BDLMSettings
from xlm_bdlm.corruption import BlockSchedule
from xlm_bdlm.passes import CachedPasses, StreamPasses
from xlm_core.components import DataShape, Prediction, Vocab
from xlm_core.nn.sampling import RowNoise, confidence, sample, uniform
from xlm_core.nn.schedule import make_schedule
from xlm_core.nn.unmasking import choose_to_unmask
from xlm_core.nn.window import first_end, history_up_to, output_decided, window_logits
from xlm_core.predicting import as_settings, predict_preamble


class BDLMPredictor:
    def __init__(self, config: BDLMConfig, vocab: Vocab, shape: DataShape):
        self.vocab, self.shape, self.config = vocab, shape, config
        self.block = config.block_size
        schedule = make_schedule(config.schedule, config.eps)
        self.schedule = BlockSchedule(schedule, config.block_size, config.position_masking)

    # -- step accounting --------------------------------------------------------------------

    def length_budget(self, settings: BDLMSettings) -> int:
        """T: the most tokens an output may have."""
        return settings.max_new_tokens or self.shape.target_length

    def decided_per_block(self, settings: BDLMSettings) -> list[int]:
        """How many positions each block decides: B, fewer in a last block that reaches past T."""
        t = self.length_budget(settings)
        return [min(self.block, t - start) for start in range(0, t, self.block)]

    def steps_per_block(self, settings: BDLMSettings) -> int:
        """ancestral: steps of each block's own t = 1 -> 0 schedule."""
        return settings.steps or self.block

    def step_budget(self, settings: Any) -> int:
        settings = as_settings(BDLMSettings, settings)
        blocks = self.decided_per_block(settings)
        if settings.sampler == "ancestral":
            return len(blocks) * self.steps_per_block(settings)
        if settings.sampler == "confidence":
            return sum(math.ceil(d / settings.k) for d in blocks)
        return sum(blocks)  # threshold decides at least one position per step

    def positions_per_pass(self, settings: Any) -> int | None:
        """With the cache a denoising step runs the block's B positions per row (plugin API 1.3);
        without it, the whole row (None)."""
        return self.block if as_settings(BDLMSettings, settings).kv_cache else None

    # -- decoding ---------------------------------------------------------------------------

    @predict_preamble(BDLMSettings)
    def predict(self, model, prompts, *, settings, seeds, record_steps=False) -> Prediction:
        return _Decoding(self, model, prompts, settings, seeds, record_steps).run()


class _Decoding:
    """The state of one ``predict`` call: tensors cover every row; ``active`` rows are still decoding.

    ``window`` lives on the model's device; ``active``, ``fresh``, ``steps`` and ``nfe``
    on the CPU, where the loop reads them.
    """

    def __init__(
        self,
        predictor: BDLMPredictor,
        model: nn.Module,
        prompts: Sequence[Sequence[int]],
        settings: BDLMSettings,
        seeds: Sequence[int],
        record_steps: bool,
    ):
        self.p, self.model, self.settings = predictor, model, settings
        self.vocab, self.b = predictor.vocab, predictor.block
        device = next(model.parameters()).device
        n, self.t = len(prompts), predictor.length_budget(settings)
        self.n_blocks = len(predictor.decided_per_block(settings))
        self.window = torch.full((n, self.n_blocks * self.b), self.vocab.mask_id, device=device)
        prefix, real = layout.prefix_rows(prompts, self.vocab, predictor.shape, predictor.config.shift)
        passes = CachedPasses if settings.kv_cache else StreamPasses
        self.passes = passes(model, prefix, real, self.window.shape[1])
        self.noise = RowNoise(seeds, device)
        self.positions = torch.arange(self.b, device=device)
        self.log_probs: Tensor | None = None  # (n, B, V): each row's predictions for its block
        self.fresh = torch.zeros(n, dtype=torch.bool)  # log_probs still match the row's block
        self.active = torch.ones(n, dtype=torch.bool)
        self.steps = torch.zeros(n, dtype=torch.long)
        self.nfe = torch.zeros(n, dtype=torch.long)
        self.history: list[list[list[int]]] | None = [[] for _ in range(n)] if record_steps else None
        self.budget = predictor.step_budget(settings)

    def run(self) -> Prediction:
        if len(self.active):
            self.nfe += self.passes.start()
        for b in range(self.n_blocks if len(self.active) else 0):
            self._decode_block(b)
            rows = self.active.nonzero().squeeze(1)
            if len(rows) == 0 or b + 1 == self.n_blocks:
                break
            self.nfe[rows] += self.passes.finish(rows, b, self.window)
        return self._prediction()

    def _decode_block(self, b: int) -> None:
        self.fresh[:] = False
        for step in range(self.budget + 1):  # a bound the loop never reaches: each step decides
            rows = self.active.nonzero().squeeze(1)
            rows = rows[self._eligible(rows, b).any(dim=1).cpu()]
            if len(rows) == 0:
                return
            self._refresh(rows, b)
            self._fill(rows, b, self._choose(rows, b, step))
            self._advance(rows)
        raise RuntimeError(f"BDLM decoding of block {b} did not finish")

    def _eligible(self, rows: Tensor, b: int) -> Tensor:
        """``(n, B)`` bool: the still masked positions of block b, within the length budget."""
        block = self.window[rows.to(self.window.device), b * self.b : (b + 1) * self.b]
        return (block == self.vocab.mask_id) & (b * self.b + self.positions < self.t)[None, :]

    def _refresh(self, rows: Tensor, b: int) -> None:
        """A forward pass for the rows whose predictions are stale; the others keep theirs."""
        stale = rows[~self.fresh[rows]] if self.settings.reuse_logits else rows
        if len(stale) == 0:
            return
        predictions, passes = self.passes.block(stale, b, self.window)
        # MASK, BOS and CLS never occur in a window
        out = torch.log_softmax(window_logits(predictions.float(), self.vocab), dim=-1)
        if self.log_probs is None:
            self.log_probs = out.new_empty((len(self.active), *out.shape[1:]))
        self.log_probs[stale.to(out.device)] = out
        self.fresh[stale] = True
        self.nfe[stale] += passes

    def _choose(self, rows: Tensor, b: int, step: int) -> Tensor:
        """``(n, B)`` bool: the positions of block b that each row decides in this step."""
        idx = rows.to(self.window.device)
        eligible = self._eligible(rows, b)
        if self.settings.sampler == "ancestral":
            steps = self.p.steps_per_block(self.settings)
            t = torch.full((len(rows),), 1.0 - step / steps, dtype=torch.float64, device=idx.device)
            s = torch.full_like(t, 1.0 - (step + 1) / steps)
            # exactly 1 on a block's last step (s = 0): every remaining mask is filled
            p_unmask = self.p.schedule.unmask_probability(t, s)
            u = uniform(self.noise.select(idx), (self.b,), idx.device)
            return eligible & (u < p_unmask)
        score = confidence(self.log_probs[idx].exp(), self.settings.confidence)
        return choose_to_unmask(score, eligible, self.settings)

    def _fill(self, rows: Tensor, b: int, chosen: Tensor) -> None:
        """Draw tokens at the chosen positions, each from its row's stream, and write them in."""
        row_in_pass, pos = chosen.nonzero(as_tuple=True)
        if len(pos) == 0:
            return
        idx = rows.to(self.window.device)[row_in_pass]
        # rows in order, positions ascending within a row: each row's draws come in a fixed order
        s = self.settings
        tokens = sample(
            self.log_probs[idx, pos],
            self.noise.select(idx),
            temperature=s.temperature,
            top_k=s.top_k,
            top_p=s.top_p,
        )
        self.window[idx, b * self.b + pos] = tokens
        self.fresh[rows[row_in_pass.cpu()]] = False

    def _advance(self, rows: Tensor) -> None:
        """Count the step, record it, and retire the rows whose output is fixed."""
        self.steps[rows] += 1
        decided = self.window[rows.to(self.window.device), : self.t]
        if self.history is not None:
            for row, state in zip(rows.tolist(), decided.tolist(), strict=True):
                self.history[row].append(state)
        self.active[rows[output_decided(decided, self.vocab).cpu()]] = False
        if int(self.steps.max()) > self.budget:  # every step decides a position or moves time on
            raise RuntimeError(f"BDLM decoding exceeded its step budget of {self.budget}")

    def _prediction(self) -> Prediction:
        window = self.window[:, : self.t].cpu()
        lengths = first_end(window, self.vocab)
        after = torch.arange(window.shape[1])[None, :] >= lengths[:, None]
        ids = window.masked_fill(after, self.vocab.pad_id)
        ids = ids[:, : int(lengths.max())] if len(lengths) else ids
        history = history_up_to(self.history, lengths)
        return Prediction(
            ids=ids, lengths=lengths, steps=self.steps.clone(), nfe=self.nfe.clone(), history=history
        )
