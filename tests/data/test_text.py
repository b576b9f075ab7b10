"""The text task on files the tests write: formats, packing, truncation, caching, splits, errors."""

from __future__ import annotations

import json
import pickle
import random
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from xlm_core.config import TaskConfig
from xlm_core.data import text as text_module
from xlm_core.data.tasks import build_task
from xlm_core.data.text import TextTask
from xlm_core.data.tokenizers import Tokenizer
from xlm_core.errors import XLMUserError

WORDS = "the cat sat on a mat while dog ran far from home über café".split()
SPLITS = ("train", "validation", "test")


def documents(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=rng.randint(2, 25))) for _ in range(n)]


def config(tmp_path, **overrides) -> TaskConfig:
    settings = {
        "name": "text",
        "vocab_size": 300,
        "block_size": 16,
        "cache_dir": str(tmp_path / "cache"),
    }
    return TaskConfig(**{**settings, **overrides})


def write_txt(path, docs):
    # Blank lines between some documents: they are not documents.
    path.write_text(
        "".join(d + ("\n\n" if i % 5 == 0 else "\n") for i, d in enumerate(docs)), encoding="utf-8"
    )
    return path


def unpack(task) -> list[str]:
    """Every document recovered from the packed blocks of all splits."""
    eos, docs = task.tokenizer.vocab.eos_id, []
    for split in SPLITS:
        stream = [t for ex in task.examples(split) for t in ex.target_ids]
        assert stream[-1] == eos  # every document, the last included, ends with EOS
        current: list[int] = []
        for t in stream:
            if t == eos:
                docs.append(task.tokenizer.decode(current))
                current = []
            else:
                current.append(t)
    return docs


def test_txt_packs_documents_with_eos_separators(tmp_path):
    docs = documents(120)
    task = build_task(config(tmp_path, path=str(write_txt(tmp_path / "corpus.txt", docs))))
    assert task.kind == "text" and task.name == "text"
    assert (task.shape.prompt_length, task.shape.target_length) == (0, 16)
    assert [t for t in task.tokenizer.vocab.special_ids] == [0, 1, 2, 3, 4]
    sizes = {s: len(task.examples(s)) for s in SPLITS}
    assert all(n > 0 for n in sizes.values())
    for split in SPLITS:
        blocks = task.examples(split)
        assert all(ex.prompt_ids == () for ex in blocks)
        assert (
            all(len(ex.target_ids) == 16 for ex in blocks[:-1])
            and 0 < len(blocks[-1].target_ids) <= 16
        )
        assert blocks[-1] == blocks[len(blocks) - 1]
    # Nothing lost, nothing duplicated: the splits hold exactly the corpus' documents.
    assert Counter(unpack(task)) == Counter(docs)
    # validation and test each hold out validation_fraction (5%) of the 120 documents.
    eos = task.tokenizer.vocab.eos_id
    held = [
        sum(t == eos for ex in task.examples(s) for t in ex.target_ids)
        for s in ("validation", "test")
    ]
    assert held == [6, 6]


def test_unpacked_documents_are_truncated_to_the_block(tmp_path):
    docs = documents(60, seed=1)
    task = build_task(
        config(tmp_path, path=str(write_txt(tmp_path / "c.txt", docs)), pack=False, block_size=8)
    )
    examples = [ex for s in SPLITS for ex in task.examples(s)]
    assert len(examples) == len(docs)
    tok = task.tokenizer
    assert sorted(ex.target_ids for ex in examples) == sorted(
        tuple(tok.encode(d)[:8]) for d in docs
    )
    assert any(len(tok.encode(d)) > 8 for d in docs)  # truncation did happen
    assert all(tok.vocab.eos_id not in ex.target_ids for ex in examples)


def test_jsonl_parquet_and_mixed_folder(tmp_path):
    docs = documents(90, seed=2)
    folder = tmp_path / "corpus"
    (folder / "nested").mkdir(parents=True)
    with open(folder / "a.jsonl", "w", encoding="utf-8") as f:
        for i, d in enumerate(docs[:30]):
            f.write(json.dumps({"body": d, "id": i}) + "\n")
    pq.write_table(
        pa.table({"body": docs[30:60], "n": list(range(30))}), folder / "nested" / "b.parquet"
    )
    (folder / "README.md").write_text("not part of the corpus")
    jsonl = build_task(config(tmp_path, path=str(folder / "a.jsonl"), text_field="body"))
    assert Counter(unpack(jsonl)) == Counter(docs[:30])
    parquet = build_task(
        config(tmp_path, path=str(folder / "nested" / "b.parquet"), text_field="body")
    )
    assert Counter(unpack(parquet)) == Counter(docs[30:60])
    write_txt(folder / "c.txt", docs[60:])
    mixed = build_task(config(tmp_path, path=str(folder), text_field="body"))
    assert Counter(unpack(mixed)) == Counter(docs)


def test_missing_text_field(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"body": "hello"}\n')
    with pytest.raises(
        XLMUserError, match=r"no text field 'text' \(columns: body\); set task.text_field"
    ):
        build_task(config(tmp_path, path=str(tmp_path / "a.jsonl")))


def test_prepared_data_and_tokenizer_are_cached(tmp_path, monkeypatch):
    corpus = write_txt(tmp_path / "c.txt", documents(80, seed=3))
    first = build_task(config(tmp_path, path=str(corpus)))
    blocks = list(first.examples("train"))

    def fail(*args, **kwargs):
        raise AssertionError("prepared again instead of reading the cache")

    monkeypatch.setattr(TextTask, "_tokenize", fail)
    monkeypatch.setattr(Tokenizer, "train_bpe", fail)
    second = build_task(config(tmp_path, path=str(corpus)))
    assert second.cache_path == first.cache_path
    assert second.tokenizer.fingerprint() == first.tokenizer.fingerprint()
    assert list(second.examples("train")) == blocks
    monkeypatch.undo()
    # A changed block size or a changed file is a different cache entry.
    assert (
        build_task(config(tmp_path, path=str(corpus), block_size=32)).cache_path != first.cache_path
    )
    with open(corpus, "a", encoding="utf-8") as f:
        f.write("one more document\n")
    assert build_task(config(tmp_path, path=str(corpus))).cache_path != first.cache_path
    assert not list((tmp_path / "cache" / "text").glob(".staging-*"))


def test_tokenizer_from_path_and_reuse_without_the_corpus(tmp_path):
    corpus = write_txt(tmp_path / "c.txt", documents(40, seed=4))
    trained = build_task(config(tmp_path, path=str(corpus)))
    saved = trained.tokenizer.save(tmp_path / "run")
    given = build_task(config(tmp_path, path=str(corpus), tokenizer=str(saved)))
    assert given.tokenizer.fingerprint() == trained.tokenizer.fingerprint()
    assert given.cache_path == trained.cache_path
    # Loading a checkpoint: the saved tokenizer is enough, the corpus is only read for examples.
    corpus.unlink()
    loaded = build_task(config(tmp_path, path=str(corpus)), tokenizer_path=tmp_path / "run")
    assert (
        loaded.tokenizer.fingerprint() == trained.tokenizer.fingerprint()
        and loaded.shape.target_length == 16
    )
    with pytest.raises(XLMUserError, match="no such file or folder"):
        loaded.examples("train")


def test_hub_dataset_splits(tmp_path, monkeypatch):
    import datasets

    docs = documents(50, seed=5)
    calls = []

    def fake_load_dataset(name, config_name=None, **kwargs):
        calls.append((name, config_name))
        return datasets.DatasetDict(
            {
                "train": datasets.Dataset.from_dict({"content": docs[:40]}),
                "valid": datasets.Dataset.from_dict({"content": docs[40:]}),
            }
        )

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    task = build_task(
        config(tmp_path, dataset="someone/corpus", dataset_config="v1", text_field="content")
    )
    assert calls[0] == ("someone/corpus", "v1")
    eos = task.tokenizer.vocab.eos_id
    count = {s: sum(t == eos for ex in task.examples(s) for t in ex.target_ids) for s in SPLITS}
    assert count == {
        "train": 38,
        "validation": 10,
        "test": 2,
    }  # "valid" used as is; test held out of train
    assert Counter(unpack(task)) == Counter(docs)


def test_hub_load_failure_is_one_line(tmp_path, monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError(
            "Couldn't reach 'nobody/nothing' on the Hub (LocalEntryNotFoundError)\ndetails"
        )

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(
        XLMUserError, match=r"^cannot load dataset 'nobody/nothing': Couldn't reach .*Error\)$"
    ):
        build_task(config(tmp_path, dataset="nobody/nothing"))


@pytest.mark.parametrize(
    ("setup", "overrides", "message"),
    [
        (None, {"path": "missing.txt"}, "no such file or folder: .*missing.txt"),
        ("data.csv", {"path": "data.csv"}, "unsupported file type '.csv'"),
        ("blank.txt", {"path": "blank.txt"}, "the corpus is empty"),
        (
            "tiny.txt",
            {"path": "tiny.txt"},
            "2 documents are too few to hold out validation and test",
        ),
        ("folder/", {"path": "folder"}, "folder holds no .txt, .jsonl, .parquet files"),
        (None, {}, "needs exactly one of task.path"),
        (None, {"path": "x.txt", "dataset": "y"}, "needs exactly one of task.path"),
        ("bad.jsonl", {"path": "bad.jsonl"}, "cannot read .*bad.jsonl"),
    ],
)
def test_bad_sources_are_one_line_user_errors(tmp_path, monkeypatch, setup, overrides, message):
    monkeypatch.chdir(tmp_path)
    contents = {
        "data.csv": "a,b\n",
        "blank.txt": "\n  \n\n",
        "tiny.txt": "one\ntwo\n",
        "bad.jsonl": '{"text": \n',
    }
    if setup == "folder/":
        (tmp_path / "folder").mkdir()
        (tmp_path / "folder" / "notes.md").write_text("hi")
    elif setup:
        (tmp_path / setup).write_text(contents[setup])
    with pytest.raises(XLMUserError, match=message) as info:
        build_task(config(tmp_path, **overrides))
    assert "\n" not in str(info.value)


def test_token_blocks_indexing(tmp_path):
    task = build_task(
        config(tmp_path, path=str(write_txt(tmp_path / "c.txt", documents(40, seed=6))))
    )
    blocks = task.examples("train")
    assert blocks[-1] == blocks[len(blocks) - 1] and blocks[0] == list(blocks)[0]
    with pytest.raises(IndexError):
        blocks[len(blocks)]
    assert text_module.TokenBlocks(task.cache_path / "train.arrow")[3] == blocks[3]
    assert blocks[2:5] == [blocks[2], blocks[3], blocks[4]]
    clone = pickle.loads(pickle.dumps(blocks))
    assert len(pickle.dumps(blocks)) < 500 and list(clone) == list(blocks)  # the path, not the tokens


PNG_HEADER = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10"


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"empty.txt": b""}, r"empty.txt: the file is empty$"),
        ({"empty.jsonl": b""}, r"empty.jsonl: the file is empty$"),
        ({"a.txt": b"", "b.jsonl": b""}, r"corpus: all 2 files are empty$"),
        ({"image.txt": PNG_HEADER}, r"^cannot read .*image.txt: it is a binary file, not text$"),
        (
            {"latin1.txt": "first line\nsecond café\n".encode("latin-1")},
            r"^cannot read .*latin1.txt: line 2: not UTF-8 \(byte 0xe9\); save the file as UTF-8$",
        ),
        (
            {"latin1.jsonl": '{"text": "a"}\n{"text": "café"}\n'.encode("latin-1")},
            r"^cannot read .*latin1.jsonl: line 2: not UTF-8 \(byte 0xe9\)",
        ),
        (
            {"bad.jsonl": b'{"text": "a"}\n{"text": "b"}\n{"text": \n{"text": "d"}\n'},
            r"^cannot read .*bad.jsonl: line 3: invalid JSON \(Expecting value, column 10\)$",
        ),
        (
            {"strings.jsonl": b'{"text": "a"}\n"just a string"\n{"text": "c"}\n'},
            r"^cannot read .*strings.jsonl: line 2: expected a JSON object, got str$",
        ),
        (
            {"numbers.jsonl": b'{"text": 1}\n{"text": 2}\n'},
            r"numbers.jsonl: field 'text' holds int64 values, not text; set task.text_field$",
        ),
    ],
)
def test_unreadable_files_name_the_real_cause(tmp_path, files, message):
    """`datasets` reports most of these as "An error occurred while generating the dataset"."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    for name, content in files.items():
        (folder / name).write_bytes(content)
    path = folder if len(files) > 1 else folder / next(iter(files))
    with pytest.raises(XLMUserError, match=message) as info:
        build_task(config(tmp_path, path=str(path))).examples("train")
    assert "\n" not in str(info.value) and "An error occurred" not in str(info.value)
