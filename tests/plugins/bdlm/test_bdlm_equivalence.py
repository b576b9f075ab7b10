"""The two ends of block diffusion on the same weights: B = 1 is ARLM, one block is MDLM."""

from __future__ import annotations

import pytest
import torch

# compares with two other families: skipped where only xlm-bdlm is installed (nox -s tests_isolated)
pytest.importorskip("xlm_arlm", reason="needs the arlm family")
pytest.importorskip("xlm_mdlm", reason="needs the mdlm family")

from xlm_arlm.collator import ARLMCollator  # noqa: E402
from xlm_arlm.config import ARLMConfig  # noqa: E402
from xlm_arlm.loss import ARLMLoss  # noqa: E402
from xlm_arlm.model import ARLMModel  # noqa: E402
from xlm_bdlm.collator import BDLMCollator  # noqa: E402
from xlm_bdlm.config import BDLMConfig  # noqa: E402
from xlm_bdlm.loss import BDLMLoss  # noqa: E402
from xlm_bdlm.model import BDLMModel  # noqa: E402
from xlm_mdlm.collator import MDLMCollator  # noqa: E402
from xlm_mdlm.config import MDLMConfig  # noqa: E402
from xlm_mdlm.loss import MDLMLoss  # noqa: E402
from xlm_mdlm.model import MDLMModel  # noqa: E402

from xlm_core.components import Example  # noqa: E402
from xlm_core.testing import TINY_SHAPE, TINY_VOCAB, sharpen, tiny_examples  # noqa: E402

BACKBONE = {"d_model": 32, "n_layers": 2, "n_heads": 2, "learned_positions": 24}


def _trained_looking(model: torch.nn.Module) -> torch.nn.Module:
    """Weights at unit scale: sharp predictions, so that a difference in what a position sees shows."""
    torch.manual_seed(0)
    return sharpen(model)


def _bdlm_with(weights: torch.nn.Module, **config) -> tuple[BDLMConfig, BDLMModel]:
    bdlm_config = BDLMConfig(**BACKBONE, **config)
    model = BDLMModel(bdlm_config, TINY_VOCAB).eval()
    model.load_state_dict(weights.state_dict())  # the same tensor names: nothing new, nothing left over
    return bdlm_config, model


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train-clipped"])
def test_block_size_one_is_the_arlm_nll_on_the_same_weights(training):
    arlm_config = ARLMConfig(**BACKBONE)
    arlm = _trained_looking(ARLMModel(arlm_config, TINY_VOCAB))
    examples = tiny_examples()  # prompts of 0 to 6 tokens, so rows are padded differently
    expected = ARLMLoss(arlm_config, TINY_VOCAB)(arlm, ARLMCollator(arlm_config, TINY_VOCAB, TINY_SHAPE)(examples))

    # the clip cannot change a block of one token: it is always masked, with weight 1
    config, bdlm = _bdlm_with(arlm, block_size=1, nelbo_estimator="count", clip_min=0.3, clip_max=0.8)
    bdlm.train(training)
    batch = BDLMCollator(config, TINY_VOCAB, TINY_SHAPE)(examples, torch.Generator().manual_seed(0))
    out = BDLMLoss(config, TINY_VOCAB)(bdlm, batch)

    assert int(out.n_tokens) == int(expected.n_tokens)
    assert out.nll_sum.item() == pytest.approx(expected.nll_sum.item(), rel=1e-5)
    assert out.loss.item() == pytest.approx(expected.loss.item(), rel=1e-5)


def test_block_size_one_stream_logits_are_the_arlm_logits():
    arlm_config = ARLMConfig(**BACKBONE)
    arlm = _trained_looking(ARLMModel(arlm_config, TINY_VOCAB))
    _, bdlm = _bdlm_with(arlm, block_size=1)
    ids = torch.tensor([[2, 7, 8, 9, 10, 11]])
    with torch.no_grad():
        assert torch.allclose(bdlm(ids).logits, arlm(ids).logits, atol=1e-5)


@pytest.mark.parametrize("estimator", ["count", "time"])
@pytest.mark.parametrize("schedule", ["log-linear", "cosine"])
def test_one_block_without_shift_is_the_mdlm_nelbo_on_the_same_weights(estimator, schedule):
    mdlm_config = MDLMConfig(**BACKBONE, nelbo_estimator=estimator, schedule=schedule)
    mdlm = _trained_looking(MDLMModel(mdlm_config, TINY_VOCAB))
    window = TINY_SHAPE.target_length + 1
    config, bdlm = _bdlm_with(
        mdlm, block_size=window, shift=False, nelbo_estimator=estimator, schedule=schedule
    )
    # unconditional text: MDLM's prompt would see the noisy window, BDLM's is clean context
    examples = [Example((), e.target_ids) for e in tiny_examples()] * 8
    for seed in range(3):  # the same generator seed: the same corruption draws
        mdlm_batch = MDLMCollator(mdlm_config, TINY_VOCAB, TINY_SHAPE)(examples, torch.Generator().manual_seed(seed))
        bdlm_batch = BDLMCollator(config, TINY_VOCAB, TINY_SHAPE)(examples, torch.Generator().manual_seed(seed))
        expected = MDLMLoss(mdlm_config, TINY_VOCAB)(mdlm, mdlm_batch)
        out = BDLMLoss(config, TINY_VOCAB)(bdlm, bdlm_batch)
        assert int(out.n_tokens) == int(expected.n_tokens)
        assert out.nll_sum.item() == pytest.approx(expected.nll_sum.item(), rel=1e-5)
        assert out.metrics["masked_ce"].item() == pytest.approx(expected.metrics["masked_ce"].item(), rel=1e-5)
