"""The reported loss pools sums over a split, like the NLL: eval batch size does not change it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from xlm_core.components import Batch, Example
from xlm_core.config import resolve_run_config
from xlm_core.data.datamodule import EvalCollate
from xlm_core.metrics import Totals
from xlm_core.pipeline import Pipeline
from xlm_core.plugins import get_registry
from xlm_core.testing import TinySetup
from xlm_core.training import XLMModule

FAMILIES = ["arlm", "mdlm", "mlm", "ilm", "bdlm"]
# fp32: these compare numbers across batch sizes, where bf16 rounding would differ
TINY = ["model.d_model=32", "model.n_layers=2", "model.n_heads=2", "training.precision=32"]
BATCH_SIZES = [1, 3, 64]


def _row(batch: Batch, i: int) -> Batch:
    pick = slice(i, i + 1)
    extras = {name: value[pick] for name, value in batch.extras.items()}
    return Batch(batch.input_ids[pick], batch.attention_mask[pick], batch.targets[pick], extras)


@pytest.mark.parametrize("name", FAMILIES)
def test_a_batch_loss_is_the_weighted_mean_of_its_rows_losses(name):
    # the same corrupted rows scored together and one by one: each family's loss_weight must be
    # the count its loss is a mean over, or the pooled loss would depend on how rows are grouped
    setup = TinySetup.build(get_registry().get(name))
    model, loss_fn, batch = setup.model().eval(), setup.loss(), setup.batch()
    with torch.no_grad():
        whole = float(loss_fn(model, batch).loss)
        totals = Totals()
        for i in range(batch.size):
            out = loss_fn(model, _row(batch, i))
            weight = float(out.eval_weight(1))
            totals.add_loss(1, float(out.loss), int(out.n_tokens), None, {}, loss_weight=weight)
    assert totals.summary("none")["loss"] == pytest.approx(whole, rel=1e-5)


def _arlm_examples(task) -> list[Example]:
    # targets of different lengths, so a per-token mean differs from a mean of batch means
    return [
        Example(e.prompt_ids, e.target_ids[: 1 + i % len(e.target_ids)])
        for i, e in enumerate(task.examples("test")[:7])
    ]


@pytest.fixture
def arlm_pipeline(untrained_pipeline) -> Pipeline:
    return untrained_pipeline("arlm", resolve_run_config("arlm", sets=TINY))


def test_pipeline_score_loss_does_not_depend_on_eval_batch_size(arlm_pipeline):
    # ARLM's loss draws no corruption, so only the pooling could make batch sizes disagree
    pipeline = arlm_pipeline
    examples = _arlm_examples(pipeline.task)
    scores = []
    for size in BATCH_SIZES:
        pipeline.run_config.eval.batch_size = size
        scores.append(pipeline.score(examples))
    for score in scores[1:]:
        assert score["loss"] == pytest.approx(scores[0]["loss"], rel=1e-5)
        assert score["nll"] == pytest.approx(scores[0]["nll"], rel=1e-5)
    # ARLM's loss is its per-token NLL
    assert scores[0]["loss"] == pytest.approx(scores[0]["nll"], rel=1e-5)


def test_validation_loss_does_not_depend_on_eval_batch_size(arlm_pipeline):
    pipeline = arlm_pipeline
    examples = list(enumerate(_arlm_examples(pipeline.task)))
    family, config = pipeline.family, pipeline.run_config
    module = XLMModule(config, family, pipeline.vocab, pipeline.shape, "prompted")
    module.model.load_state_dict(pipeline.model.state_dict())
    module.trainer = SimpleNamespace(  # the two things the epoch end reads from Lightning
        global_rank=0,
        strategy=SimpleNamespace(reduce=lambda tensor, reduce_op: tensor),
        datamodule=SimpleNamespace(predicts_in_validation=False),
    )
    logged: dict[str, float] = {}
    module.log_dict = lambda values, **_: logged.update(values)

    losses = []
    for size in BATCH_SIZES:
        collate = EvalCollate(pipeline.collator, config.eval.seed)
        module.on_validation_epoch_start()
        with torch.no_grad():
            for start in range(0, len(examples), size):
                module.validation_step(collate(examples[start : start + size]), start // size)
        module.on_validation_epoch_end()
        losses.append(logged["val/loss"])
    assert losses == pytest.approx([pipeline.score([e for _, e in examples])["loss"]] * 3, rel=1e-5)
