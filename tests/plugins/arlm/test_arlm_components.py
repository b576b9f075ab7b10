"""ARLM plugin entry, presets, collator layout, model padding and the exact target-only loss."""

from __future__ import annotations

import subprocess
import sys

import torch
from xlm_arlm.collator import ARLMCollator
from xlm_arlm.config import PRESETS, ARLMConfig
from xlm_arlm.loss import ARLMLoss
from xlm_arlm.model import ARLMModel

from xlm_core.components import IGNORE_INDEX, DataShape, Example, ModelOutput, Vocab
from xlm_core.config import TrainingConfig
from xlm_core.plugins import get_registry

VOCAB = Vocab(size=20, pad_id=0, mask_id=1, bos_id=2, eos_id=3, cls_id=4)
SHAPE = DataShape(prompt_length=6, target_length=5)
CONFIG = ARLMConfig(d_model=32, n_layers=2, n_heads=4)


def _model() -> ARLMModel:
    torch.manual_seed(0)
    return ARLMModel(CONFIG, VOCAB).eval()


def test_entry_module_does_not_import_torch():
    code = "import sys, xlm_arlm.plugin; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_registry_loads_the_family_and_its_presets_validate():
    family = get_registry().get("arlm")
    assert family.record.status == "ok"
    assert family.manifest.config is ARLMConfig
    components = family.resolve_all()
    assert components["loss"].nll_kind == "exact"
    for name in ("tiny", "small"):
        ARLMConfig(**PRESETS[name]["model"])
        TrainingConfig(**PRESETS[name]["training"])
    small = PRESETS["small"]["model"]
    assert (small["d_model"], small["n_layers"], small["n_heads"]) == (768, 12, 12)


def test_collator_shifts_and_scores_only_target_and_eos():
    batch = ARLMCollator(CONFIG, VOCAB, SHAPE)(
        [Example((5, 6, 7), (8, 9)), Example((), (10, 11, 12, 13))]
    )
    assert batch.input_ids.tolist() == [[2, 5, 6, 7, 8, 9], [2, 10, 11, 12, 13, 0]]
    assert batch.targets.tolist() == [[-100, -100, -100, 8, 9, 3], [10, 11, 12, 13, 3, -100]]
    assert batch.attention_mask.tolist() == [[True] * 6, [True] * 5 + [False]]


def test_loss_is_the_exact_nll_of_target_and_eos_given_the_prompt():
    model = _model()
    examples = [
        Example((5, 6, 7, 8), (9, 10)),
        Example((11,), (12, 13, 14, 15, 16)),
        Example((), (17,)),
    ]
    out = ARLMLoss(CONFIG, VOCAB)(model, ARLMCollator(CONFIG, VOCAB, SHAPE)(examples))

    # Independently: each example alone, unpadded, scored token by token with the chain rule.
    expected_sum, expected_n = 0.0, 0
    with torch.no_grad():
        for e in examples:
            seq = torch.tensor([VOCAB.bos_id, *e.prompt_ids, *e.target_ids, VOCAB.eos_id])
            logp = model(seq[None, :-1]).logits[0].log_softmax(-1)
            for j in range(len(e.prompt_ids), len(seq) - 1):  # position j predicts seq[j + 1]
                expected_sum -= float(logp[j, seq[j + 1]])
                expected_n += 1

    assert int(out.n_tokens) == expected_n == 3 + 6 + 2
    assert torch.isclose(out.nll_sum, torch.tensor(expected_sum), rtol=1e-5)
    assert torch.isclose(out.loss, torch.tensor(expected_sum / expected_n), rtol=1e-5)


def test_loss_ignores_padding_and_prompt_predictions():
    model = _model()
    batch = ARLMCollator(CONFIG, VOCAB, SHAPE)(
        [Example((5, 6, 7), (8,)), Example((9,), (10, 11, 12, 13))]
    )
    loss = ARLMLoss(CONFIG, VOCAB)
    reference = loss(model, batch).loss

    scrambled = batch.input_ids.clone()
    scrambled[~batch.attention_mask] = 19  # whatever sits in padding must not matter
    batch.input_ids = scrambled
    assert torch.allclose(loss(model, batch).loss, reference)

    # Gradient reaches the logits at target positions only.
    logits = model(batch.input_ids, batch.attention_mask).logits.detach().requires_grad_()
    loss(lambda ids, mask: ModelOutput(logits), batch).loss.backward()
    touched = logits.grad.abs().sum(-1) > 0
    assert torch.equal(touched, batch.targets != IGNORE_INDEX)


def test_model_honours_left_padding_and_drops_a_right_padding_mask():
    model = _model()
    ids = torch.tensor([[2, 5, 6, 7, 8]])
    alone = model(ids).logits
    left = model(
        torch.cat([torch.zeros(1, 2, dtype=torch.long), ids], 1),
        torch.tensor([[False] * 2 + [True] * 5]),
    )
    assert torch.allclose(left.logits[:, 2:], alone, atol=1e-5)
    right = model(
        torch.cat([ids, torch.zeros(1, 2, dtype=torch.long)], 1),
        torch.tensor([[True] * 5 + [False] * 2]),
    )
    assert torch.allclose(right.logits[:, :5], alone, atol=1e-5)
