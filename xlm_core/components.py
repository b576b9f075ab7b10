"""The typed runtime contracts every family implements: Model, Loss, Predictor, Collator.

Configs are pydantic (``xlm_core.plugins``); the records that carry tensors at
run time are attrs classes with slots. A family builds each component from its
config, the vocabulary (:class:`Vocab`) and, for collators and predictors, the
task's :class:`DataShape`:

=========  ===========================================  ===============================================
kind       constructed as                               called as
=========  ===========================================  ===============================================
model      ``Model(config, vocab)`` (an ``nn.Module``)  ``model(input_ids, attention_mask) -> ModelOutput``
loss       ``Loss(config, vocab)``                      ``loss(model, batch) -> LossOutput``
collator   ``Collator(config, vocab, shape)``           ``collator(examples, generator=None) -> Batch``
predictor  ``Predictor(config, vocab, shape)``          ``predictor.predict(model, prompts, *, settings,
                                                        seeds, record_steps=False) -> Prediction``
=========  ===========================================  ===============================================
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable

import attrs

if TYPE_CHECKING:  # this module stays importable without torch (tasks and configs use its records)
    import torch
    from torch import Tensor, nn

NLLKind = Literal["exact", "bound", "none"]
#: The splits every task provides; ``xlm eval --split`` chooses among the last two.
Split = Literal["train", "validation", "test"]
SPLITS: tuple[Split, ...] = ("train", "validation", "test")
IGNORE_INDEX = -100


@attrs.frozen(slots=True)
class Vocab:
    """Vocabulary size and the special token ids every tokenizer provides."""

    size: int
    pad_id: int
    mask_id: int
    bos_id: int
    eos_id: int
    cls_id: int

    @property
    def special_ids(self) -> tuple[int, ...]:
        return (self.pad_id, self.mask_id, self.bos_id, self.eos_id, self.cls_id)


@attrs.frozen(slots=True)
class DataShape:
    """Length budgets of a task: longest prompt and longest target (content tokens, no EOS)."""

    prompt_length: int
    target_length: int


@attrs.frozen(slots=True)
class Example:
    """One training or evaluation example. Unconditional text has an empty prompt.

    ``target_ids`` holds content tokens only; each family adds EOS, padding or
    masks as its corruption requires.
    """

    prompt_ids: tuple[int, ...]
    target_ids: tuple[int, ...]


@attrs.define(slots=True)
class Batch:
    """What a collator produces and a loss consumes.

    Shapes: ``input_ids``, ``attention_mask`` and ``targets`` are ``(B, L)``;
    ``attention_mask`` is bool (True = a real position the model attends to);
    ``targets`` holds token ids where the loss applies and ``IGNORE_INDEX``
    elsewhere. ``extras`` carries family-specific tensors whose first dimension
    is ``B`` (noise levels, gap counts, stop targets, ...).

    Two facts about the layout travel as plain Python values, set by the collator,
    which knows them on the CPU for free; read from the tensors on a GPU, each would
    make the host wait for the device at every step (plugin API 1.1):

    ``needs_mask``
        False when the model computes the same outputs at every position the loss
        reads without ``attention_mask``: no padding at all, or only padding that the
        model's own structure already hides (right padding under causal attention).
        The loss then passes :attr:`model_mask` (None) and attention takes its fused
        kernel. Default True: the mask is always passed.
    ``window``
        For fixed-window layouts: every target lies in the last ``window`` columns,
        so a loss can slice them without looking. None: not known.
    """

    input_ids: Tensor
    attention_mask: Tensor
    targets: Tensor
    extras: dict[str, Tensor] = attrs.field(factory=dict)
    needs_mask: bool = True
    window: int | None = None

    @property
    def size(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def model_mask(self) -> Tensor | None:
        """What a loss passes the model as ``attention_mask``: None when it hides nothing."""
        return self.attention_mask if self.needs_mask else None

    def to(self, device: torch.device | str, non_blocking: bool | None = None) -> Batch:
        """The batch on ``device``; Lightning moves batches with this. Copies to a GPU do not
        wait (``non_blocking``): from pinned memory (``pin_memory``) they overlap with compute."""
        if non_blocking is None:
            non_blocking = _device_type(device) == "cuda"
        return attrs.evolve(
            self,
            input_ids=self.input_ids.to(device, non_blocking=non_blocking),
            attention_mask=self.attention_mask.to(device, non_blocking=non_blocking),
            targets=self.targets.to(device, non_blocking=non_blocking),
            extras={k: v.to(device, non_blocking=non_blocking) for k, v in self.extras.items()},
        )

    def pin_memory(self) -> Batch:
        """The batch in page-locked memory (a DataLoader with ``pin_memory=True`` calls this)."""
        return attrs.evolve(
            self,
            input_ids=self.input_ids.pin_memory(),
            attention_mask=self.attention_mask.pin_memory(),
            targets=self.targets.pin_memory(),
            extras={k: v.pin_memory() for k, v in self.extras.items()},
        )


def _device_type(device: torch.device | str) -> str:
    return device.type if hasattr(device, "type") else str(device).split(":")[0]


@attrs.define(slots=True, init=False)
class ModelOutput:
    """``logits``: ``(B, L, vocab_size)``. ``extras``: family heads such as a stop logit ``(B,)``."""

    logits: Tensor
    extras: dict[str, Tensor]

    # Written out rather than generated by attrs: torch.compile traces a model's forward, which
    # builds this record, and cannot resolve the globals of attrs' generated __init__.
    def __init__(self, logits: Tensor, extras: dict[str, Tensor] | None = None):
        self.logits = logits
        self.extras = {} if extras is None else extras


@attrs.define(slots=True)
class LossOutput:
    """What a loss returns.

    ``loss`` is the scalar the optimiser sees. ``nll_sum / n_tokens`` is a per-token
    NLL (``nll_kind == "exact"``) or an upper bound on it (``"bound"``), counted over
    the same target tokens (content + EOS) in every family so numbers compare;
    ``nll_sum`` is None when the family has no likelihood (``"none"``). ``metrics``
    are scalars averaged over batches and logged under their names.

    ``loss_weight`` is the count ``loss`` is a mean over (target tokens, masked
    positions, ...). Evaluation reports sum(loss · loss_weight) / sum(loss_weight)
    over a split, so the number does not depend on how the split is batched; None
    means the batch size (``loss`` is a mean over examples).
    """

    loss: Tensor
    n_tokens: Tensor
    nll_sum: Tensor | None = None
    metrics: dict[str, Tensor] = attrs.field(factory=dict)
    loss_weight: Tensor | None = None

    @classmethod
    def per_token(
        cls, nll_sum: Tensor, n_tokens: Tensor, metrics: dict[str, Tensor] | None = None
    ) -> LossOutput:
        """The output of a likelihood loss: ``loss`` is ``nll_sum`` (still on the graph) per target
        token, a mean over ``n_tokens``, which is also its weight in a split's mean."""
        return cls(
            loss=nll_sum / n_tokens.clamp_min(1),
            n_tokens=n_tokens,
            nll_sum=nll_sum.detach(),
            metrics=metrics or {},
            loss_weight=n_tokens,
        )

    def eval_weight(self, batch_size: int) -> Tensor | int:
        """This batch's weight in a split's mean loss: ``loss_weight``, else ``batch_size``."""
        return batch_size if self.loss_weight is None else self.loss_weight


@attrs.define(slots=True)
class Prediction:
    """What a predictor returns for ``B`` prompts.

    ``ids`` ``(B, L_max)``: the generated target tokens only (no prompt, no EOS),
    padded with PAD after ``lengths[b]``. ``steps`` ``(B,)``: decoding steps each
    row took. ``nfe`` ``(B,)``: model forward passes each row took part in.
    ``history[b]`` (when ``record_steps``) lists the row's target after every step,
    MASK standing for a position not yet decided.

    ``counters`` (plugin API 1.2, optional) are further per-row counts ``(B,)`` a family
    reports beside ``nfe``, each under its name: work that is not a forward pass of the
    model as ``nfe`` counts it (CALM: its decoder's passes). ``xlm generate`` shows them.
    """

    ids: Tensor
    lengths: Tensor
    steps: Tensor
    nfe: Tensor
    history: list[list[list[int]]] | None = None
    counters: dict[str, Tensor] = attrs.field(factory=dict)

    def sequences(self) -> list[list[int]]:
        return [row[:n].tolist() for row, n in zip(self.ids, self.lengths.tolist(), strict=True)]


@runtime_checkable
class Collator(Protocol):
    def __call__(self, examples: Sequence[Example], generator: torch.Generator | None = None) -> Batch: ...


@runtime_checkable
class Loss(Protocol):
    nll_kind: ClassVar[NLLKind]

    def __call__(self, model: nn.Module, batch: Batch) -> LossOutput: ...


@runtime_checkable
class Predictor(Protocol):
    """Decodes prompts. Two optional class attributes (plugin API 1.1) tell evaluation more:

    ``continues_prompts: bool`` (absent: True): False says the predictor samples unconditionally
    only, so evaluation that continues prompts (BrierLM, ``--prefix-len``) refuses the family.
    ``left_to_right: bool`` (absent: False): True promises that ``max_new_tokens`` only stops a
    row (its first k tokens are the same under any budget of at least k), so rows that need
    different budgets may share a call (the conformance kit checks the promise).

    One optional method (plugin API 1.3) tells the precision policy more:
    ``positions_per_pass(settings) -> int | None`` (absent or None: the whole row, prompt and
    length budget): how many positions of one row a forward pass computes when decoding with
    ``settings``. ``precision: auto`` on a CPU decodes in fp32 when rows x this x d_model x d_ff
    is small (a cached left-to-right step at batch 1), where bf16 would be slower.
    """

    def step_budget(self, settings: Any) -> int:
        """The most decoding steps ``predict`` may take for one row under ``settings``."""
        ...

    def predict(
        self,
        model: nn.Module,
        prompts: Sequence[Sequence[int]],
        *,
        settings: Any,
        seeds: Sequence[int],
        record_steps: bool = False,
    ) -> Prediction: ...


_CONSTRUCTOR_ARITY = {"model": 2, "loss": 2, "collator": 3, "predictor": 3}


def contract_violation(kind: str, obj: Any) -> str | None:
    """Why a resolved component class does not satisfy its contract, or None when it does."""
    if not isinstance(obj, type):
        return f"is {type(obj).__name__}, expected a class"
    from torch import nn

    if kind == "model" and not issubclass(obj, nn.Module):
        return "must subclass torch.nn.Module"
    if kind == "model" and not callable(getattr(obj, "check_init_from", _absent)):
        return "check_init_from must be a class method check_init_from(config, record)"
    if kind == "loss":
        if getattr(obj, "nll_kind", None) not in ("exact", "bound", "none"):
            return "must declare nll_kind = 'exact' | 'bound' | 'none'"
        if "__call__" not in _own_attrs(obj):
            return "must define __call__(model, batch) -> LossOutput"
    if kind == "collator" and "__call__" not in _own_attrs(obj):
        return "must define __call__(examples, generator=None) -> Batch"
    if kind == "predictor":
        if not callable(getattr(obj, "predict", None)):
            return "must define predict(model, prompts, *, settings, seeds, record_steps=False)"
        if not callable(getattr(obj, "step_budget", None)):
            return "must define step_budget(settings) -> int"
        for flag, default in (("continues_prompts", True), ("left_to_right", False)):
            if not isinstance(getattr(obj, flag, default), bool):
                return f"{flag} must be a bool (True or False)"
        if hasattr(obj, "positions_per_pass") and not callable(obj.positions_per_pass):
            return "positions_per_pass, where defined, must be a method positions_per_pass(settings) -> int"
    try:
        params = [
            p
            for p in inspect.signature(obj.__init__).parameters.values()
            if p.name != "self" and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        return None
    arity = _CONSTRUCTOR_ARITY[kind]
    required = [p for p in params if p.default is p.empty]
    if len(required) > arity or len(params) < arity:
        names = "config, vocab" + (", shape" if arity == 3 else "")
        return f"constructor must accept ({names})"
    return None


def _absent(*args: Any) -> None:
    """Stands in for an optional method a component does not define."""


def _own_attrs(cls: type) -> set[str]:
    return {name for klass in cls.__mro__ if klass is not object for name in vars(klass)}
