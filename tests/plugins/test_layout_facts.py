"""The layout facts a collator hands the loss (Batch.needs_mask, Batch.window), and a training step that
never asks the device for a number: the same loss with and without the facts, and no host read."""

from __future__ import annotations

import attrs
import pytest
import torch
from torch.overrides import TorchFunctionMode

from xlm_core.components import Batch, Example
from xlm_core.data.datamodule import EvalCollate, join_rows
from xlm_core.plugins.registry import get_registry
from xlm_core.testing import TINY_SHAPE, TinySetup

FAMILIES = ("arlm", "mdlm", "mlm", "ilm")
# every prompt fills the task's prompt budget, every target is as long: nothing to pad
EVEN = [
    Example(prompt_ids=tuple(range(5, 5 + TINY_SHAPE.prompt_length)), target_ids=(7, 8, 9, 10))
    for _ in range(4)
]


def _setup(name: str, examples: list[Example] | None = None) -> TinySetup:
    setup = TinySetup.build(get_registry().get(name))
    return setup if examples is None else attrs.evolve(setup, examples=examples)


def _without_facts(batch: Batch) -> Batch:
    """The batch a collator that knows nothing would make: the mask always passed, no window."""
    return attrs.evolve(batch, needs_mask=True, window=None)


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("even", [False, True], ids=["padded", "even"])
def test_the_loss_and_its_gradient_are_the_same_with_and_without_the_facts(name, even):
    setup = _setup(name, EVEN if even else None)
    batch = setup.batch(seed=3)
    results = []
    for b in (batch, _without_facts(batch)):
        model = setup.model(seed=0).eval()  # eval: no dropout, the two passes see the same weights
        out = setup.loss()(model, b)
        out.loss.backward()
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        results.append((out.loss.detach(), grads))
    (loss, grads), (reference, reference_grads) = results
    torch.testing.assert_close(loss, reference, rtol=1e-6, atol=1e-7)
    for grad, expected in zip(grads, reference_grads, strict=True):
        torch.testing.assert_close(grad, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("name", "padded"),
    [("arlm", False), ("mdlm", True), ("mlm", True), ("ilm", True)],  # ARLM: right padding only,
)  # which causal attention already hides
def test_the_collator_says_when_the_mask_is_needed(name, padded):
    batch = _setup(name).batch()
    assert batch.needs_mask is padded
    assert batch.model_mask is (batch.attention_mask if padded else None)
    if name != "ilm":  # its rows' lengths depend on the deletions drawn: below
        assert _setup(name, EVEN).batch().needs_mask is False


def test_ilm_rows_of_one_length_need_no_mask():
    collator = _setup("ilm").collator()
    same = [torch.tensor([True, False, False, True])] * len(EVEN)
    assert collator.collate(EVEN, same).needs_mask is False
    different = [torch.tensor([True, False, False, True]), *same[1:]]
    different[0] = torch.tensor([True, True, False, True])
    assert collator.collate(EVEN, different).needs_mask is True


@pytest.mark.parametrize("name", ["mdlm", "mlm"])
def test_window_families_say_how_wide_the_target_window_is(name):
    batch = _setup(name).batch()
    assert batch.window == TINY_SHAPE.target_length + 1
    # every target lies in the window, and the window's first column holds one
    assert (batch.targets[:, : -batch.window] == -100).all()


def test_evaluation_batches_keep_the_facts_of_their_rows():
    setup = _setup("mlm")
    collate = EvalCollate(setup.collator(), seed=0)
    padded = collate(list(enumerate(setup.examples)))
    assert all(part.needs_mask and part.window == TINY_SHAPE.target_length + 1 for part in padded.parts)
    even = collate(list(enumerate(EVEN)))
    assert [part.needs_mask for part in even.parts] == [False]
    rows = [_setup("mlm", [e]).batch() for e in (EVEN[0], setup.examples[0])]
    assert join_rows(rows)[0].needs_mask  # one row's padding is the whole batch's


# -- no host reads in a training step -----------------------------------------------------------

#: Operations that hand a tensor's value to Python: on a GPU each waits for the device.
HOST_READS = {"__bool__", "__int__", "__float__", "__index__", "item", "tolist", "nonzero", "masked_select"}


class NoHostReads(TorchFunctionMode):
    """Fails on any read of a tensor's value by the host, and on boolean-mask indexing (whose
    result's size the host must learn from the device). On a CPU nothing waits, but the
    operations are the same as on a GPU, where each would stall every step."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in HOST_READS:
            raise AssertionError(f"the training step reads a tensor on the host ({name})")
        if name == "__getitem__" and _boolean_index(args[1] if len(args) > 1 else None):
            raise AssertionError("the training step indexes with a boolean mask")
        return func(*args, **(kwargs or {}))


def _boolean_index(index) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    return any(isinstance(p, torch.Tensor) and p.dtype == torch.bool for p in parts)


def test_the_guard_catches_host_reads():
    with pytest.raises(AssertionError, match="host"), NoHostReads():
        bool(torch.ones(2, dtype=torch.bool).all())
    with pytest.raises(AssertionError, match="boolean mask"), NoHostReads():
        torch.ones(3)[torch.tensor([True, False, True])]


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("even", [False, True], ids=["padded", "even"])
def test_a_training_step_never_reads_a_tensor_on_the_host(name, even):
    setup = _setup(name, EVEN if even else None)
    batch, model, loss_fn = setup.batch(), setup.model().train(), setup.loss()
    with NoHostReads():
        out = loss_fn(model, batch)
        out.loss.backward()
    assert torch.isfinite(out.loss)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="a GPU shows what a host read costs")
@pytest.mark.parametrize("name", FAMILIES)
def test_a_training_step_on_a_gpu_makes_no_synchronising_call(name):
    setup = _setup(name, EVEN)
    batch, model, loss_fn = setup.batch().to("cuda"), setup.model().cuda().train(), setup.loss()
    loss_fn(model, batch).loss.backward()  # first use: lazily made tensors, kernel caches
    torch.cuda.set_sync_debug_mode("error")
    try:
        loss_fn(model, batch).loss.backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
