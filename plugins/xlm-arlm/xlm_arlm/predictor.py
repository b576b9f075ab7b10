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


class ARLMPredictor:
    """Samples one token per step for every unfinished row until EOS or the length budget.

    Prompts are left-padded into ``[BOS] prompt`` so every row writes its next
    token at the same cache slot (positions count real tokens only, so padding
    shifts nothing). A row that emits EOS, or fills its budget, is dropped from
    the batch and from the cache. Each row draws its noise from its own generator
    seeded with ``seeds[b]``, so a sample does not depend on the batch around it.

    Without the cache (``use_cache=False``) each step recomputes the whole
    prefix; the tokens are the same, the cost grows with the square of the length.
    """

    def __init__(self, config: ARLMConfig, vocab: Vocab, shape: DataShape):
        self.config, self.vocab, self.shape = config, vocab, shape

    def step_budget(self, settings: Any) -> int:
        """Most steps a row can take: one per target token; EOS after a full target is never decoded."""
        return _as_settings(settings).max_new_tokens or self.shape.target_length

    @torch.inference_mode()
    def predict(
        self,
        model: ARLMModel,
        prompts: Sequence[Sequence[int]],
        *,
        settings: Any,
        seeds: Sequence[int],
        record_steps: bool = False,
    ) -> Prediction:
        settings = _as_settings(settings)
        if len(seeds) != len(prompts):
            raise ValueError(
                f"got {len(prompts)} prompts but {len(seeds)} seeds; pass one seed per prompt"
            )
        n, budget, v = len(prompts), self.step_budget(settings), self.vocab
        device = next(model.parameters()).device

        prefix, prefix_mask = self._left_pad(prompts, device)
        # No padding at all (one prompt, or equal lengths): pass no mask so attention takes its fast path.
        attention_mask = None if bool(prefix_mask.all()) else prefix_mask
        out = torch.full((n, budget), v.pad_id, dtype=torch.long, device=device)
        lengths = torch.zeros(n, dtype=torch.long, device=device)
        steps = torch.zeros(n, dtype=torch.long, device=device)
        history: list[list[list[int]]] | None = [[] for _ in range(n)] if record_steps else None
        generators = make_generators(seeds, device)
        banned, banned_with_eos = self._banned(device)

        rows = torch.arange(n, device=device)  # original index of each row still decoding
        row_list = rows.tolist()
        next_pos = prefix_mask.sum(1)  # position of the token each row feeds next
        cache = None
        if settings.use_cache and n and budget:
            # The last sampled token is never fed back, hence budget - 1 slots after the prefix.
            cache = model.new_cache(n, prefix.shape[1] + budget - 1, device)
        token = prefix[:, -1]  # the token each row feeds next (from step 1 on, its last draw)

        for t in range(budget if n else 0):  # no prompts: nothing to run
            if cache is None:
                seq = torch.cat([prefix[rows], out[rows, :t]], dim=1)
                mask = None
                if attention_mask is not None:
                    mask = torch.cat(
                        [attention_mask[rows], seq.new_ones(len(row_list), t, dtype=torch.bool)], 1
                    )
                logits = model.next_token_logits(seq, mask)
            elif t == 0:
                logits = model.next_token_logits(prefix, attention_mask, cache=cache)
            else:
                logits = model.next_token_logits(
                    token[:, None], positions=next_pos[:, None], cache=cache
                )
                next_pos = next_pos + 1

            # Every active row holds exactly t tokens here: rows leave the batch as soon as they finish.
            logits = logits.masked_fill(
                banned_with_eos if t < settings.min_new_tokens else banned, float("-inf")
            )
            token = sample(
                logits,
                [generators[i] for i in row_list],
                temperature=settings.temperature,
                top_k=settings.top_k,
                top_p=settings.top_p,
            )
            done = token == v.eos_id
            out[rows, t] = torch.where(done, v.pad_id, token)
            lengths[rows] += (~done).long()
            steps[rows] += 1
            if history is not None:
                for r, length in zip(row_list, lengths[rows].tolist(), strict=True):
                    history[r].append(out[r, :length].tolist())

            if t + 1 == budget:
                break
            keep = ~done
            if not bool(keep.all()):
                if not bool(keep.any()):
                    break
                rows, token, next_pos = rows[keep], token[keep], next_pos[keep]
                row_list = rows.tolist()
                if cache is not None:
                    cache.select(keep)

        width = int(lengths.max()) if n else 0
        return Prediction(
            ids=out[:, :width].cpu(),
            lengths=lengths.cpu(),
            steps=steps.cpu(),
            nfe=steps.cpu(),  # one forward pass per step for every row taking part in it
            history=history,
        )

    def _left_pad(
        self, prompts: Sequence[Sequence[int]], device: torch.device
    ) -> tuple[Tensor, Tensor]:
        """``[BOS] prompt`` right-aligned in a ``(B, 1 + longest prompt)`` tensor, and its real-token mask."""
        width = 1 + max((len(p) for p in prompts), default=0)
        ids = torch.full((len(prompts), width), self.vocab.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.bool)
        for row, prompt in enumerate(prompts):
            seq = [self.vocab.bos_id, *prompt]
            ids[row, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
            mask[row, width - len(seq) :] = True
        return ids.to(device), mask.to(device)

    def _banned(self, device: torch.device) -> tuple[Tensor, Tensor]:
        """Vocabulary masks of tokens that can never appear in a target, without and with EOS."""
        v = self.vocab
        banned = torch.zeros(v.size, dtype=torch.bool, device=device)
        banned[[v.pad_id, v.mask_id, v.bos_id, v.cls_id]] = True
        with_eos = banned.clone()
        with_eos[v.eos_id] = True
        return banned, with_eos


def _as_settings(settings: Any) -> ARLMSettings:
    """Accept ARLMSettings, the shared PredictorSettings, a dict, or None (defaults)."""
    if isinstance(settings, ARLMSettings):
        return settings
    if settings is None:
        return ARLMSettings()
    if isinstance(settings, dict):
        return ARLMSettings(**settings)
    return ARLMSettings(**settings.model_dump())
