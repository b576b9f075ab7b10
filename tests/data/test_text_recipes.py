"""Hugging Face tokenizers by name and the LM1B / OpenWebText recipes, offline.

The Hub is not reachable here, so the tests build tokenizers with the special tokens of
bert-base-uncased (``[PAD]`` 0, ``[UNK]`` 100, ``[CLS]`` 101, ``[SEP]`` 102, ``[MASK]`` 103)
and of GPT-2 (only ``<|endoftext|>``, the last id), put them where ``huggingface_hub``'s
cache would hold the real ones, and switch the Hub to offline mode; datasets of LM1B's
shape (``train``/``test`` parquet files with a ``text`` column) are local folders.
"""

from __future__ import annotations

import json
import random

import huggingface_hub.constants
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, normalizers, pre_tokenizers, trainers

from xlm_core.config import TaskConfig, resolve_run_config
from xlm_core.data.tasks import build_task
from xlm_core.data.tokenizers import TOKENIZER_FILE, Tokenizer
from xlm_core.errors import XLMUserError
from xlm_core.plugins.presets import LM1B_DATASET, OWT_DATASET

WORDS = "the cat sat on a mat while dog ran far from home and then it rained".split()
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def sentences(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=rng.randint(3, 30))) + " ." for _ in range(n)]


def bert_like() -> HFTokenizer:
    """A WordPiece tokenizer with bert-base-uncased's special tokens at bert-base-uncased's ids."""
    tokens = ["[PAD]", *(f"[unused{i}]" for i in range(99)), "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens += [".", *WORDS, *(f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz")]
    backend = HFTokenizer(models.WordPiece({t: i for i, t in enumerate(tokens)}, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece()
    backend.add_special_tokens(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    return backend


def gpt2_like() -> HFTokenizer:
    """A byte-level BPE whose only special token is ``<|endoftext|>``, after the vocabulary."""
    backend = HFTokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    backend.train_from_iterator(sentences(200), trainer=trainer)
    backend.add_special_tokens(["<|endoftext|>"])
    return backend


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """``bert-base-uncased`` and ``gpt2`` in an offline ``huggingface_hub`` cache."""
    cache = tmp_path / "hf-hub"
    for name, backend in (("bert-base-uncased", bert_like()), ("gpt2", gpt2_like())):
        repo = cache / f"models--{name}"
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text(COMMIT)
        (repo / "snapshots" / COMMIT).mkdir(parents=True)
        (repo / "snapshots" / COMMIT / TOKENIZER_FILE).write_text(backend.to_str())
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return cache


def test_bert_specials_fill_the_roles_and_bos_is_added(hub_cache):
    tok = Tokenizer.from_setting("bert-base-uncased")
    v = tok.vocab
    assert (v.pad_id, v.cls_id, v.eos_id, v.mask_id) == (0, 101, 102, 103)
    assert tok.special_tokens["[EOS]"] == "[SEP]"
    assert tok.token_to_id("[BOS]") == v.bos_id == v.size - 1  # the one role BERT lacks
    ids = tok.encode("The cat sat.")
    assert tok.decode([v.bos_id, *ids, v.eos_id, v.pad_id]) == "the cat sat."


def test_gpt2_endoftext_is_eos_and_the_other_roles_are_appended(hub_cache):
    tok = Tokenizer.from_setting("gpt2")
    v = tok.vocab
    end = tok.token_to_id("<|endoftext|>")
    assert v.eos_id == end and tok.special_tokens["[EOS]"] == "<|endoftext|>"
    # Appended after the vocabulary in xlm's order; BOS is its own token, never EOS.
    assert (v.pad_id, v.mask_id, v.bos_id, v.cls_id) == (end + 1, end + 2, end + 3, end + 4)
    text = "the dog ran far from home"
    assert tok.decode(tok.encode(text)) == text


def test_a_saved_mapped_tokenizer_reads_back_the_same(hub_cache, tmp_path):
    for name in ("bert-base-uncased", "gpt2"):
        tok = Tokenizer.from_setting(name)
        again = Tokenizer.from_file(tok.save(tmp_path / name))
        assert again.vocab == tok.vocab and again.fingerprint() == tok.fingerprint()


def test_an_alias_that_is_not_special_is_not_taken(tmp_path):
    plain = HFTokenizer(models.WordLevel({"[PAD]": 0, "</s>": 1, "x": 2}, unk_token=None))
    file = tmp_path / TOKENIZER_FILE
    file.write_text(plain.to_str())
    tok = Tokenizer.from_file(file, add_special_tokens=True)
    assert tok.vocab.eos_id == tok.token_to_id("[EOS]") != 1  # "</s>" is a word here


def test_unknown_names_and_missing_paths_are_one_line(hub_cache):
    with pytest.raises(XLMUserError, match=r"^tokenizer 'nobody/nothing' is neither a local file nor loadable") as info:
        Tokenizer.from_setting("nobody/nothing")
    assert "\n" not in str(info.value)
    for path in ("./missing", "tok.json", "~/no/such/dir"):
        with pytest.raises(XLMUserError, match="tokenizer file not found"):
            Tokenizer.from_setting(path)


@pytest.mark.parametrize("plugin", ["arlm", "mdlm", "mlm", "ilm"])
def test_recipes_carry_the_published_settings(plugin):
    lm1b = resolve_run_config(plugin, preset="lm1b")
    owt = resolve_run_config(plugin, preset="owt")
    for config in (lm1b, owt):
        m, t = config.model, config.training
        assert (m.d_model, m.n_layers, m.n_heads, m.dropout, m.tie_embeddings) == (768, 12, 12, 0.1, False)
        assert (t.lr, t.warmup_steps, t.schedule, t.weight_decay, t.ema) == (3e-4, 2500, "constant", 0.0, 0.9999)
        assert t.betas == (0.9, 0.999) and t.max_steps == 1_000_000
    assert (lm1b.task.dataset, lm1b.task.tokenizer, lm1b.task.block_size, lm1b.task.pack) == (
        LM1B_DATASET, "bert-base-uncased", 128, False,
    )
    assert (owt.task.dataset, owt.task.tokenizer, owt.task.block_size, owt.task.pack) == (
        OWT_DATASET, "gpt2", 1024, True,
    )


def lm1b_copy(root, train: int = 120, test: int = 12):
    """A local dataset of LM1B's shape: train and test parquet files with a ``text`` column."""
    root.mkdir()
    for split, n, seed in (("train", train, 0), ("test", test, 1)):
        pq.write_table(pa.table({"text": sentences(n, seed)}), root / f"{split}.parquet")
    return root


def test_lm1b_recipe_trains_offline_on_a_local_copy(hub_cache, tmp_path, monkeypatch, cli):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-datasets")
    data = lm1b_copy(tmp_path / "lm1b")
    tiny = ["model.d_model=32", "model.n_layers=2", "model.n_heads=2", "training.batch_size=4",
            "training.precision=32", "eval.limit=2", "eval.val_predict_limit=2", "eval.batch_size=2",
            "predictor.max_new_tokens=8", f"task.dataset={data}", f"task.cache_dir={tmp_path / 'cache'}",
            "task.validation_fraction=0.05"]
    out = tmp_path / "run"
    sets = [arg for item in tiny for arg in ("--set", item)]
    result = cli("train", "--plugin", "mdlm", "--preset", "lm1b", "--max-steps", "2", "--out", str(out), *sets)
    assert result.code == 0, result.err
    saved = Tokenizer.from_file(out / "final")
    assert saved.vocab.eos_id == 102 and saved.special_tokens["[EOS]"] == "[SEP]"
    config = json.loads((out / "final" / "config.json").read_text())["run_config"]
    assert config["task"]["tokenizer"] == "bert-base-uncased" and config["preset"] == "lm1b"
    task = build_task(TaskConfig(**config["task"]), tokenizer_path=out / "final")
    # One sentence per example (no packing), and LM1B's own test split, not a held-out one.
    assert len(task.examples("test")) == 12 and len(task.examples("train")) == 114


def test_owt_recipe_packs_gpt2_tokens_with_endoftext(hub_cache, tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-datasets")
    root = tmp_path / "owt"
    root.mkdir()
    docs = [" ".join(sentences(20, seed)) for seed in range(80)]
    (root / "train.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    preset = resolve_run_config("mdlm", preset="owt").task.model_dump()
    task = build_task(TaskConfig(**{**preset, "dataset": str(root), "cache_dir": str(tmp_path / "c")}))
    end = task.tokenizer.token_to_id("<|endoftext|>")
    blocks = task.examples("train")
    assert task.tokenizer.vocab.eos_id == end and len(blocks[0].target_ids) == 1024
    stream = [t for b in blocks for t in b.target_ids]
    assert stream.count(end) == 78  # 80 documents, one held out for each of validation and test
    assert len(task.examples("validation")) == len(task.examples("test")) == 1
