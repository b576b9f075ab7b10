"""token_nll: F.cross_entropy's numbers a block of rows at a time, float32 whatever the logits' dtype."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from xlm_core.components import IGNORE_INDEX
from xlm_core.nn import cross_entropy
from xlm_core.nn.cross_entropy import token_nll


def _case(rows: int = 300, vocab: int = 50, dtype: torch.dtype = torch.float32):
    torch.manual_seed(0)
    logits = (torch.randn(rows, vocab) * 3).to(dtype).requires_grad_()
    targets = torch.randint(0, vocab, (rows,))
    targets[::5] = IGNORE_INDEX
    return logits, targets


@pytest.fixture(params=[cross_entropy.BLOCK_ELEMENTS, 7 * 50], ids=["one-block", "many-blocks"])
def block_elements(request, monkeypatch):
    monkeypatch.setattr(cross_entropy, "BLOCK_ELEMENTS", request.param)
    return request.param


def test_values_and_gradient_match_cross_entropy(block_elements):
    logits, targets = _case()
    nll = token_nll(logits, targets)
    assert nll.dtype == torch.float32 and nll.shape == targets.shape
    assert torch.all(nll[targets == IGNORE_INDEX] == 0)
    expected = F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX, reduction="none")
    torch.testing.assert_close(nll, expected, rtol=1e-6, atol=1e-6)

    weights = torch.rand(len(targets))  # any incoming gradient, not only that of a plain sum
    (grad,) = torch.autograd.grad((nll * weights).sum(), logits)
    (expected_grad,) = torch.autograd.grad((expected * weights).sum(), logits)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-5, atol=1e-7)


def test_bf16_logits_give_float32_values_and_a_bf16_gradient(block_elements):
    logits, targets = _case(dtype=torch.bfloat16)
    nll = token_nll(logits, targets)
    assert nll.dtype == torch.float32
    # exactly what the float32 copy of the same logits gives: nothing lost beyond their rounding
    expected = F.cross_entropy(logits.float(), targets, ignore_index=IGNORE_INDEX, reduction="none")
    torch.testing.assert_close(nll, expected, rtol=1e-6, atol=1e-6)
    nll.sum().backward()
    assert logits.grad.dtype == torch.bfloat16


def test_leading_dimensions_are_kept_and_a_sum_is_the_summed_cross_entropy():
    torch.manual_seed(1)
    logits = torch.randn(4, 9, 30)
    targets = torch.randint(0, 30, (4, 9))
    targets[:, :3] = IGNORE_INDEX
    nll = token_nll(logits, targets)
    assert nll.shape == (4, 9)
    expected = F.cross_entropy(
        logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
    )
    torch.testing.assert_close(nll.sum(), expected)


def test_a_non_contiguous_slice_works():
    logits = torch.randn(3, 10, 20, requires_grad=True)
    targets = torch.randint(0, 20, (3, 10))
    window = token_nll(logits[:, -4:], targets[:, -4:])
    expected = F.cross_entropy(logits[:, -4:].flatten(0, 1), targets[:, -4:].flatten(), reduction="none")
    torch.testing.assert_close(window.flatten(), expected)
    window.sum().backward()
    assert logits.grad[:, :-4].abs().sum() == 0
