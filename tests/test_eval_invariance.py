"""How data is divided: evaluation figures that do not depend on the eval batch size or on how
processes share a split, and training batches that a resumed run draws anew."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.strategies import FSDPStrategy

from xlm_core.config import resolve_run_config
from xlm_core.data.datamodule import EvalCollate, IndexedExamples, XLMDataModule
from xlm_core.data.tasks import build_task
from xlm_core.pipeline import Pipeline
from xlm_core.plugins import get_registry
from xlm_core.training import XLMModule

# fp32: these compare numbers across batch sizes, where bf16 rounding would differ
TINY = ["model.d_model=32", "model.n_layers=2", "model.n_heads=2", "training.precision=32"]


@pytest.fixture
def pipeline_of(untrained_pipeline):
    """``make(name, task="star-medium")``: an untrained tiny pipeline."""

    def make(name: str, task: str = "star-medium") -> Pipeline:
        return untrained_pipeline(name, resolve_run_config(name, sets=[*TINY, f"task.name={task}"]))

    return make


@pytest.mark.parametrize("name", ["mdlm", "mlm", "ilm", "bdlm"])
def test_score_does_not_depend_on_eval_batch_size(name, pipeline_of):
    # each example's corruption is drawn from its own seed, whatever batch it is collated in
    # (star-medium's examples differ in length, so ILM's rows come in several layouts)
    pipeline = pipeline_of(name)
    examples = list(pipeline.task.examples("test")[:9])
    scores = []
    for size in (1, 4, 64):
        pipeline.run_config.eval.batch_size = size
        scores.append(pipeline.score(examples))
    for score in scores[1:]:
        assert score["loss"] == pytest.approx(scores[0]["loss"], rel=1e-5)
        if name in ("mdlm", "bdlm"):  # the others report no likelihood
            assert score["nll"] == pytest.approx(scores[0]["nll"], rel=1e-5)


def _rows(parts) -> set[tuple]:
    return {
        (tuple(part.input_ids[b].tolist()), tuple(part.extras["gap_token"][b].tolist()))
        for part in parts
        for b in range(part.size)
    }


def test_an_examples_evaluation_row_is_the_same_in_any_batch(pipeline_of):
    pipeline = pipeline_of("ilm", task="star-easy")  # one prompt width, so layouts repeat
    items = list(enumerate(pipeline.task.examples("validation")[:24]))
    collate = EvalCollate(pipeline.collator, seed=3)
    together = collate(items).parts
    assert 1 < len(together) < len(items)  # rows of one layout are stacked, others kept apart
    assert _rows(together) == set().union(*(_rows(collate([item]).parts) for item in items))


def test_processes_share_an_evaluation_split_without_repeats():
    for parts in (1, 2, 3):
        shares = [IndexedExamples(range(10), None, parts, part) for part in range(parts)]
        seen = [i for share in shares for i, _ in share]
        assert sorted(seen) == list(range(10))
    assert [i for i, _ in IndexedExamples(range(10), 5, 2, 1)] == [1, 3]


def _datamodule(world_size: int, global_rank: int, **trainer: object) -> XLMDataModule:
    config = resolve_run_config("mdlm", sets=TINY)
    task = build_task(config.task)
    collator_class = get_registry().get("mdlm").component("collator")
    collator = collator_class(config.model, task.tokenizer.vocab, task.shape)
    module = XLMDataModule(task, collator, batch_size=4, eval_batch_size=4, seed=0, eval_seed=0)
    # what the data module reads from Lightning
    fields = {"global_step": 0, "world_size": world_size, "global_rank": global_rank}
    module.trainer = SimpleNamespace(**{**fields, "strategy": None, **trainer})
    return module


def test_a_sharded_model_or_a_tiny_split_is_evaluated_whole_by_every_process():
    assert _datamodule(3, 1)._eval_share(100) == (3, 1, True)
    for rank in range(3):  # counted once, by the first process
        assert _datamodule(3, rank)._eval_share(2) == (1, 0, rank == 0)
        sharded = _datamodule(3, rank, strategy=FSDPStrategy())
        assert sharded._eval_share(100) == (1, 0, rank == 0)


def test_validation_counts_a_replicated_batch_once(pipeline_of):
    pipeline = pipeline_of("arlm", task="star-easy")
    config, shape = pipeline.run_config, pipeline.shape
    module = XLMModule(config, pipeline.family, pipeline.vocab, shape, "prompted")
    module.on_validation_epoch_start()
    items = list(enumerate(pipeline.task.examples("validation")[:4]))
    with torch.no_grad():
        module.validation_step(EvalCollate(pipeline.collator, 0, counted=False)(items), 0)
    # nothing is counted, but every metric is named (processes sum the same layout)
    totals = module._val_totals
    assert (totals.examples, totals.tokens, totals.loss_weight, totals.nll_sum) == (0, 0, 0.0, 0.0)
    assert all(v == 0 for v in totals.metric_sums.values())


def _order(module: XLMDataModule, count: int) -> list[int]:
    return list(module.train_dataloader().sampler)[:count]


def test_one_process_and_two_draw_the_same_global_batches():
    alone = _datamodule(1, 0)
    alone.batch_size = 8
    halves = _order(_datamodule(2, 0), 4) + _order(_datamodule(2, 1), 4)
    assert sorted(halves) == sorted(_order(alone, 8))


def test_a_resumed_run_draws_a_new_order_and_new_corruption():
    fresh, resumed = _datamodule(2, 1), _datamodule(2, 1)
    resumed.trainer.global_step = 6
    assert _order(fresh, 8) != _order(resumed, 8)
    # the same examples at a later start step are corrupted differently too
    items = [fresh.train_dataloader().dataset[i] for i in range(4)]
    first = fresh.train_dataloader().collate_fn(items)
    again = resumed.train_dataloader().collate_fn(items)
    assert not torch.equal(first.input_ids, again.input_ids)
