"""Sample quality in ``xlm eval``: whole packed blocks, generative perplexity with a judge, BrierLM,
for every family; and the one-line refusals of bad input."""

from __future__ import annotations

import json
import random

import pytest
import torch

from xlm_core import evaluation
from xlm_core.brier import cuts
from xlm_core.checkpoint import make_meta, task_info, write_checkpoint
from xlm_core.components import contract_violation
from xlm_core.config import resolve_run_config
from xlm_core.errors import XLMUserError
from xlm_core.judge import Judge
from xlm_core.pipeline import Pipeline

BLOCK = 16
FAMILIES = ["arlm", "mdlm", "mlm", "ilm"]
SMALL = [
    "training.precision=32",  # exact comparisons across batch shapes: bf16 rounding differs
    "model.d_model=32",
    "model.n_layers=2",
    "model.n_heads=2",
    "eval.batch_size=16",
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Short, predictable documents: a tiny model learns them in a few hundred steps."""
    root = tmp_path_factory.mktemp("sample-quality")
    rng = random.Random(0)
    animals, places = "cat dog fox owl".split(), "mat rug bed box".split()
    docs = [
        f"the {rng.choice(animals)} sat on the {rng.choice(places)}"
        + (" and slept" if rng.random() < 0.5 else "")
        for _ in range(1500)
    ]
    (root / "corpus.txt").write_text("\n".join(docs))
    return root


@pytest.fixture(scope="module")
def text_pipeline(corpus, untrained_pipeline):
    """``make(name, vocab=300, sets=())``: an untrained ``name`` model on the corpus, packed into
    blocks of ``BLOCK`` tokens."""

    def make(name: str, *, vocab: int = 300, sets: tuple[str, ...] = ()) -> Pipeline:
        config = resolve_run_config(
            name,
            sets=[
                *SMALL,
                "task.name=text",
                f"task.path={corpus / 'corpus.txt'}",
                f"task.block_size={BLOCK}",
                f"task.vocab_size={vocab}",
                f"task.cache_dir={corpus / 'cache'}",
                *sets,
            ],
        )
        return untrained_pipeline(name, config)

    return make


def train(pipe: Pipeline, steps: int = 150) -> Pipeline:
    """A few hundred plain optimiser steps (no Lightning): enough for peaked predictions."""
    examples = list(pipe.task.examples("train"))
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.AdamW(pipe.model.parameters(), lr=3e-3)
    pipe.model.train()
    for _ in range(steps):
        rows = torch.randint(len(examples), (16,), generator=generator).tolist()
        batch = pipe.collator([examples[i] for i in rows], generator=generator)
        loss = pipe.loss(pipe.model, batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    pipe.model.eval()
    return pipe


def save(pipe: Pipeline, directory):
    meta = make_meta(pipe.run_config, pipe.family, task_info(pipe.task))
    return write_checkpoint(directory, model=pipe.model, tokenizer=pipe.tokenizer, meta=meta)


@pytest.fixture(scope="module")
def arlm(text_pipeline) -> Pipeline:
    return train(text_pipeline("arlm"))


# -- the unit: a whole packed block ------------------------------------------------------------


def test_unconditional_samples_are_whole_packed_blocks(arlm):
    figures = arlm.evaluate("test", 10, progress=False)
    assert figures["sample_unit"] == "block" and figures["n_samples"] == 10
    assert figures["mean_length"] == BLOCK  # not "up to the first EOS"
    assert figures["data_mean_length"] == pytest.approx(BLOCK, abs=0.5)
    # EOS separates documents inside a sample, as in the data
    assert 2 < figures["mean_doc_length"] < BLOCK / 2
    assert figures["data_mean_doc_length"] == pytest.approx(figures["mean_doc_length"], rel=0.5)
    assert figures["samples_per_s"] > 0 and figures["tokens_per_s"] > figures["samples_per_s"]
    assert figures["batch_size"] == 16
    for n in (1, 2, 3, 4):
        assert 0 < figures[f"distinct_{n}"] <= 1 and 0 < figures[f"data_distinct_{n}"] <= 1
    assert "notes" not in figures  # ARLM samples at temperature 1


def test_samples_do_not_depend_on_the_batch_size(arlm):
    examples = evaluation.split_examples(arlm, "test", 9)
    settings = arlm.settings()
    plan = evaluation.plan_units(arlm, examples, settings, None)
    drawn = []
    for size in (16, 2):
        arlm.run_config.eval.batch_size = size
        drawn.append(evaluation.draw(arlm, plan, settings, progress=False).samples)
    arlm.run_config.eval.batch_size = 16
    assert drawn[0] == drawn[1]


def test_prefix_len_samples_the_rest_of_each_block(arlm):
    figures = arlm.evaluate("test", 10, prefix_len=6, progress=False)
    assert figures["sample_unit"] == "continuation" and figures["prefix_len"] == 6
    assert figures["mean_length"] == BLOCK - 6
    assert figures["data_mean_length"] <= BLOCK - 6


# -- generative perplexity ---------------------------------------------------------------------


def test_a_model_judging_itself_reads_the_data_at_its_own_perplexity(arlm):
    figures = arlm.evaluate("test", 10, judge=arlm, progress=False)
    assert figures["retokenized"] is False and figures["judge_nll_kind"] == "exact"
    assert figures["data_gen_ppl"] == pytest.approx(figures["ppl"], rel=1e-5)
    assert figures["gen_ppl"] > 1 and figures["gen_ppl_tokens"] == 10 * (BLOCK + 1)
    alone = arlm.generative_perplexity(arlm, "test", 10)
    assert alone["gen_ppl"] == figures["gen_ppl"] and "nll" not in alone


def test_a_judge_with_another_tokenizer_reads_the_decoded_documents(arlm, text_pipeline):
    judge = Judge(text_pipeline("arlm", vocab=280), "other")
    assert judge.describe(arlm.tokenizer)["retokenized"] is True
    eos = arlm.vocab.eos_id
    block = list(evaluation.split_examples(arlm, "test", 2)[1].target_ids)
    ids = judge._ids(arlm.tokenizer, block)
    other = judge.pipeline.tokenizer
    assert ids.count(other.vocab.eos_id) == block.count(eos)  # documents stay apart
    assert other.decode(ids) == arlm.tokenizer.decode(block)
    figures = arlm.generative_perplexity(judge.pipeline, "test", 4)
    assert figures["retokenized"] is True and figures["gen_ppl"] > 1


# -- BrierLM ------------------------------------------------------------------------------------


def test_brier_1_of_an_arlm_agrees_with_its_exact_value(arlm):
    """Sampled Brier-1 vs E[2 p(y) - sum p^2] from the model's own next-token probabilities."""
    figures = arlm.brier("test", None, prefixes=8)
    chosen = cuts(arlm, evaluation.split_examples(arlm, "test", None), 8, BLOCK)
    assert figures["brier_prefixes"] == len(chosen) > 100
    v = arlm.vocab
    exact = []
    with torch.no_grad():
        for cut in chosen:
            logits = arlm.model(torch.tensor([[v.bos_id, *cut.prompt]])).logits[0, -1].float()
            logits[[v.pad_id, v.mask_id, v.bos_id, v.cls_id]] = float("-inf")  # as the predictor
            p = logits.softmax(-1)
            exact.append(float(2 * p[cut.truth[0]] - (p * p).sum()))
    expected = sum(exact) / len(exact)
    assert expected > 0.3  # the model has learnt something: not a comparison of two zeros
    assert abs(figures["brier_1"] - expected) < 4 * figures["brier_1_stderr"]
    assert figures["brier_1"] > figures["brier_2"] > figures["brier_4"]
    assert 0 < figures["brier_lm"] < 100
    assert figures["brier_samples_per_s"] > 0 and figures["brier_batch_size"] == 16


@pytest.mark.parametrize("name", FAMILIES)
def test_every_family_samples_whole_blocks_and_gets_brier(name, text_pipeline):
    pipe = text_pipeline(name, sets=("predictor.temperature=1.0",))
    figures = pipe.evaluate("test", 3, progress=False)
    assert figures["mean_length"] == BLOCK and figures["n_samples"] == 3
    brier = pipe.brier("test", 3, prefixes=2)
    assert brier["brier_prefixes"] == 6
    for n in (1, 2, 3, 4):
        assert -1 <= brier[f"brier_{n}"] <= 2
    assert 0 <= brier["brier_lm"] <= 100


def test_a_third_party_family_gets_them_too(reference_family, text_pipeline):
    pipe = text_pipeline(reference_family.name, sets=("predictor.temperature=1.0",))
    assert pipe.evaluate("test", 2, progress=False)["mean_length"] == BLOCK
    assert pipe.brier("test", 2, prefixes=2)["brier_lm"] is not None


def test_greedy_sampling_is_noted(text_pipeline):
    pipe = text_pipeline("arlm", sets=("predictor.temperature=0",))
    assert "predictor.temperature" in pipe.brier("test", 2, prefixes=1)["notes"]


def test_a_family_that_cannot_continue_prompts(text_pipeline, monkeypatch):
    pipe = text_pipeline("arlm")
    monkeypatch.setattr(type(pipe.predictor), "continues_prompts", False, raising=False)
    # whole blocks still: each document starts afresh from an empty prompt
    assert pipe.evaluate("test", 2, progress=False)["mean_length"] == BLOCK
    with pytest.raises(XLMUserError, match="continues_prompts = False"):
        pipe.brier("test", 2)
    with pytest.raises(XLMUserError, match="continues_prompts = False"):
        pipe.evaluate("test", 2, prefix_len=4, progress=False)


def test_the_optional_flags_are_checked_when_a_predictor_is_resolved():
    class Predictor:
        continues_prompts = "yes"

        def __init__(self, config, vocab, shape): ...
        def predict(self, model, prompts, *, settings, seeds, record_steps=False): ...
        def step_budget(self, settings): ...

    assert "continues_prompts must be a bool" in contract_violation("predictor", Predictor)
    Predictor.continues_prompts = False
    assert contract_violation("predictor", Predictor) is None
    Predictor.left_to_right = 1
    assert "left_to_right must be a bool" in contract_violation("predictor", Predictor)
    Predictor.left_to_right = True
    Predictor.positions_per_pass = 1
    assert "positions_per_pass" in contract_violation("predictor", Predictor)
    Predictor.positions_per_pass = lambda self, settings: 1
    assert contract_violation("predictor", Predictor) is None


# -- the command line -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoints(arlm, corpus, text_pipeline, untrained_pipeline):
    """The trained ARLM, a judge with another tokenizer, an MDLM, and a star-task ARLM."""
    star = untrained_pipeline("arlm", resolve_run_config("arlm", sets=SMALL))
    return {
        "arlm": save(arlm, corpus / "ckpt-arlm"),
        "other": save(text_pipeline("arlm", vocab=280), corpus / "ckpt-other"),
        "mdlm": save(text_pipeline("mdlm"), corpus / "ckpt-mdlm"),
        "star": save(star, corpus / "ckpt-star"),
    }


def test_eval_json_carries_every_figure(checkpoints, cli):
    args = ["eval", "--checkpoint", str(checkpoints["arlm"]), "--limit", "4", "--json"]
    result = cli(*args, "--judge", str(checkpoints["other"]), "--metric", "brier")
    assert result.code == 0, result.err
    assert "NaN" not in result.out and "Infinity" not in result.out
    figures = json.loads(result.out)
    for key in ("nll", "ppl", "gen_ppl", "data_gen_ppl", "entropy", "distinct_4", "brier_lm"):
        assert isinstance(figures[key], float), key
    assert figures["nll_kind"] == "exact" and figures["judge_plugin"] == "arlm"
    assert figures["retokenized"] is True and figures["sample_unit"] == "block"
    only = json.loads(cli(*args, "--metric", "brier").out)
    assert "brier_lm" in only and "nll" not in only and "gen_ppl" not in only
    text = cli(
        "eval", "--checkpoint", str(checkpoints["mdlm"]), "--limit", "2", "--metric", "brier"
    )
    assert text.code == 0 and "BrierLM" in text.out and "nan" not in text.out.lower()
    assert "note: predictor.temperature 0 (greedy)" in text.out  # MDLM decodes greedily by default


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--judge", "mdlm"], "nll_kind 'bound'"),
        (["--judge", "star"], "its tokenizer cannot encode the samples"),
        (["--judge", "missing"], "checkpoint not found"),
        (["--prefix-len", str(BLOCK)], "leaves nothing to sample"),
    ],
)
def test_bad_judges_and_prefixes_are_one_line_errors(checkpoints, cli, extra, message):
    if extra[0] == "--judge":
        extra = ["--judge", str(checkpoints.get(extra[1], checkpoints["arlm"].parent / "nope"))]
    result = cli("eval", "--checkpoint", str(checkpoints["arlm"]), "--limit", "2", *extra)
    assert result.code == 2
    assert result.err.startswith("error: ") and result.err.count("\n") == 1
    assert message in result.err


def test_brier_and_prefixes_need_a_family_that_continues_prompts(checkpoints, cli, monkeypatch):
    from xlm_arlm.predictor import ARLMPredictor

    monkeypatch.setattr(ARLMPredictor, "continues_prompts", False, raising=False)
    result = cli("eval", "--checkpoint", str(checkpoints["arlm"]), "--metric", "brier")
    assert result.code == 2 and result.err.count("\n") == 1
    assert "--metric brier needs a predictor that continues a prompt" in result.err


def test_prefix_len_needs_a_text_task(checkpoints, cli):
    result = cli("eval", "--checkpoint", str(checkpoints["star"]), "--prefix-len", "2")
    assert result.code == 2 and "is prompted" in result.err and result.err.count("\n") == 1
