"""The runtime contracts of xlm_core.components as assertions: what a batch, a model's output, a
loss and a prediction must look like. Each failure is an ``AssertionError`` saying what is wrong
and what was expected."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from xlm_core.components import IGNORE_INDEX, Batch, LossOutput, ModelOutput, Prediction, Vocab

if TYPE_CHECKING:
    from xlm_core.testing.tiny import TinySetup


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def name_list(names: Sequence[str], limit: int = 4) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def assert_batch(batch: Any, vocab: Vocab, n_examples: int) -> None:
    expect(isinstance(batch, Batch), f"the collator returned {type(batch).__name__}, expected Batch")
    for field in ("input_ids", "attention_mask", "targets"):
        expect(isinstance(getattr(batch, field), Tensor), f"Batch.{field} is not a tensor")
    ids, mask, targets = batch.input_ids, batch.attention_mask, batch.targets
    expect(
        ids.dim() == 2 and ids.shape[0] == n_examples,
        f"input_ids has shape {tuple(ids.shape)}, expected ({n_examples}, L) for {n_examples} examples",
    )
    expect(ids.dtype == torch.long, f"input_ids is {ids.dtype}, expected torch.long")
    expect(mask.dtype == torch.bool, f"attention_mask is {mask.dtype}, expected torch.bool")
    expect(
        mask.shape == ids.shape,
        f"attention_mask has shape {tuple(mask.shape)}, expected input_ids' {tuple(ids.shape)}",
    )
    expect(
        targets.shape == ids.shape,
        f"targets has shape {tuple(targets.shape)}, expected input_ids' {tuple(ids.shape)}",
    )
    expect(targets.dtype == torch.long, f"targets is {targets.dtype}, expected torch.long")
    expect(bool(mask.any(dim=1).all()), "a row of attention_mask is all False: the model would see nothing")
    expect(
        bool(((ids >= 0) & (ids < vocab.size)).all()),
        f"input_ids holds ids outside [0, {vocab.size}): {_outside(ids, vocab.size)}",
    )
    in_range = (targets >= 0) & (targets < vocab.size)
    expect(
        bool((in_range | (targets == IGNORE_INDEX)).all()),
        f"targets holds ids outside [0, {vocab.size}) that are not IGNORE_INDEX ({IGNORE_INDEX}): "
        f"{_outside(targets[targets != IGNORE_INDEX], vocab.size)}",
    )
    expect(isinstance(batch.extras, Mapping), "Batch.extras must be a dict of tensors")
    _assert_per_example(batch.extras, "Batch.extras", n_examples)


def assert_model_output(out: Any, batch: Batch, vocab: Vocab) -> None:
    expect(isinstance(out, ModelOutput), f"the model returned {type(out).__name__}, expected ModelOutput")
    b, length = batch.input_ids.shape
    expect(
        tuple(out.logits.shape) == (b, length, vocab.size),
        f"logits have shape {tuple(out.logits.shape)}, expected (B, L, vocab.size) = ({b}, {length}, {vocab.size})",
    )
    logits = out.logits.float()
    # -inf is how a family rules a token out (MDLM never predicts MASK); NaN and +inf are bugs.
    expect(not bool(torch.isnan(logits).any()), "logits contain NaN")
    expect(not bool(torch.isposinf(logits).any()), "logits contain +inf")
    expect(bool(torch.isfinite(logits).any(dim=-1).all()), "a position has no finite logit (all -inf)")
    _assert_per_example(out.extras, "ModelOutput.extras", b)


def loss_and_backward(loss_fn: Any, model: nn.Module, batch: Batch, loss_cls: type) -> LossOutput:
    """The loss of ``batch``, checked against the LossOutput contract, with its gradients computed."""
    model.zero_grad(set_to_none=True)
    out = loss_fn(model, batch)
    expect(isinstance(out, LossOutput), f"the loss returned {type(out).__name__}, expected LossOutput")
    loss = out.loss
    expect(isinstance(loss, Tensor) and loss.dim() == 0, "LossOutput.loss must be a scalar (0-d) tensor")
    expect(bool(torch.isfinite(loss)), f"the loss is not finite ({loss.item()})")
    expect(loss.requires_grad, "the loss does not require grad: it is detached from the model")
    n_tokens = float(out.n_tokens)
    expect(n_tokens > 0, f"n_tokens is {n_tokens}; the batch must have target tokens")
    kind = loss_cls.nll_kind
    if kind == "none":
        expect(out.nll_sum is None, 'nll_kind is "none" but nll_sum is set; declare "exact" or "bound"')
    else:
        expect(out.nll_sum is not None, f'nll_kind is "{kind}" but nll_sum is None')
        nll = float(out.nll_sum)
        expect(math.isfinite(nll) and nll >= 0, f"nll_sum is {nll}; expected a finite, non-negative sum")
    for key, value in out.metrics.items():
        expect(
            isinstance(value, Tensor) and value.numel() == 1 and bool(torch.isfinite(value).all()),
            f"metrics[{key!r}] must be a finite scalar tensor, got {value!r}",
        )
    loss.backward()
    return out


def assert_prediction(pred: Any, setup: TinySetup, settings: Any, *, history: bool) -> None:
    """The Prediction contract, for a prediction of every example of ``setup`` under ``settings``."""
    n = len(setup.examples)
    expect(isinstance(pred, Prediction), f"predict returned {type(pred).__name__}, expected Prediction")
    expect(
        pred.ids.dim() == 2 and pred.ids.shape[0] == n,
        f"ids have shape {tuple(pred.ids.shape)}, expected ({n}, L)",
    )
    for field in ("lengths", "steps", "nfe"):
        t = getattr(pred, field)
        expect(tuple(t.shape) == (n,), f"Prediction.{field} has shape {tuple(t.shape)}, expected ({n},)")
        expect(not t.is_floating_point(), f"Prediction.{field} is {t.dtype}, expected an integer tensor")
    _assert_budgets(pred, setup, settings)
    _assert_generated_ids(pred, setup.vocab)
    if history:
        expect(
            pred.history is not None and len(pred.history) == n,
            "record_steps=True must fill history[b] for every row",
        )
        for b, rows in enumerate(pred.history):
            expect(
                len(rows) == int(pred.steps[b]),
                f"history[{b}] has {len(rows)} entries but the row took {int(pred.steps[b])} steps (one entry per step)",
            )


def same_prediction(a: Prediction, b: Prediction) -> bool:
    return all(torch.equal(getattr(a, f), getattr(b, f)) for f in ("ids", "lengths", "steps", "nfe"))


def _assert_budgets(pred: Prediction, setup: TinySetup, settings: Any) -> None:
    """Steps within the predictor's step budget, lengths within the length budget."""
    steps, lengths = pred.steps, pred.lengths
    budget = setup.predictor().step_budget(settings)
    expect(isinstance(budget, int) and budget >= 1, f"step_budget returned {budget!r}, expected an int >= 1")
    expect(
        bool((steps <= budget).all()) and bool((steps >= 0).all()),
        f"steps {steps.tolist()} exceed step_budget(settings) = {budget}",
    )
    expect(bool((pred.nfe >= 1).all()), f"nfe {pred.nfe.tolist()}: every row takes at least one forward pass")
    max_len = settings.max_new_tokens or setup.shape.target_length
    expect(
        bool((lengths >= 0).all()) and bool((lengths <= max_len).all()),
        f"lengths {lengths.tolist()} exceed the length budget {max_len} "
        "(settings.max_new_tokens, else shape.target_length)",
    )


def _assert_generated_ids(pred: Prediction, vocab: Vocab) -> None:
    """No special token inside a row's generated text, every id in the vocabulary, PAD after the end."""
    ids, lengths = pred.ids, pred.lengths
    expect(
        ids.shape[1] >= int(lengths.max()),
        f"ids have {ids.shape[1]} columns but lengths reach {int(lengths.max())}",
    )
    inside = torch.arange(ids.shape[1])[None, :] < lengths[:, None]
    special = torch.zeros_like(ids, dtype=torch.bool)
    for token in vocab.special_ids:
        special |= ids == token
    expect(
        not bool((special & inside).any()),
        f"special tokens (PAD/MASK/BOS/EOS/CLS = {list(vocab.special_ids)}) inside the generated text: "
        f"{pred.sequences()}",
    )
    expect(
        bool(((ids >= 0) & (ids < vocab.size)).all()),
        f"ids outside [0, {vocab.size}): {_outside(ids, vocab.size)}",
    )
    expect(bool((ids[~inside] == vocab.pad_id).all()), "ids after lengths[b] must be PAD")


def _assert_per_example(extras: Mapping[str, Any], label: str, n: int) -> None:
    """Every value of ``extras`` is a tensor with one row per example."""
    for key, value in extras.items():
        expect(isinstance(value, Tensor), f"{label}[{key!r}] is {type(value).__name__}, not a tensor")
        expect(
            value.dim() >= 1 and value.shape[0] == n,
            f"{label}[{key!r}] has shape {tuple(value.shape)}; its first dimension must be B={n}",
        )


def _outside(t: Tensor, size: int) -> list[int]:
    return sorted({int(v) for v in t.flatten().tolist() if not 0 <= v < size})[:5]
