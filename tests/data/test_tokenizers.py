"""Tokenizer wrapper: special ids, round trips, atomic save, and one-line errors on bad files."""

from __future__ import annotations

import json

import pytest
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import models

from xlm_core.data.tokenizers import SPECIAL_TOKENS, TOKENIZER_FILE, Tokenizer
from xlm_core.errors import XLMUserError

CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "naïve café résumé — ünïcödé and emoji 🙂",
    "numbers 12345 and punctuation!? (yes)",
] * 20


def test_word_level_special_ids_and_round_trip():
    tok = Tokenizer.word_level(["a", "b", "c"])
    v = tok.vocab
    assert (v.pad_id, v.mask_id, v.bos_id, v.eos_id, v.cls_id) == (0, 1, 2, 3, 4)
    assert v.size == 8
    ids = tok.encode("a c  b")
    assert ids == [5, 7, 6]
    assert tok.decode(ids) == "a c b"
    assert tok.decode([v.bos_id, *ids, v.eos_id, v.pad_id]) == "a c b"
    assert tok.decode([v.bos_id, *ids], skip_special=False) == "[BOS] a c b"


def test_word_level_unknown_word_is_a_user_error():
    tok = Tokenizer.word_level(["a", "b"])
    with pytest.raises(XLMUserError, match="unknown tokens.*'zz'"):
        tok.encode("a zz b")


def test_word_level_rejects_bad_symbols():
    for bad in (["a", "a"], ["[PAD]"], ["a b"], [""]):
        with pytest.raises(ValueError):
            Tokenizer.word_level(bad)


def test_bpe_round_trips_any_text_and_keeps_special_ids():
    tok = Tokenizer.train_bpe(CORPUS, vocab_size=300)
    assert [tok.token_to_id(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    assert 262 <= tok.vocab.size <= 300
    for text in [*CORPUS[:3], "unseen ‽ 漢字 text\twith\nnewlines  "]:
        assert tok.decode(tok.encode(text)) == text
    assert tok.encode_batch(CORPUS[:2]) == [tok.encode(CORPUS[0]), tok.encode(CORPUS[1])]
    # Merges were learned: a frequent word is shorter than its bytes.
    assert len(tok.encode("the quick brown fox")) < len("the quick brown fox")


def test_bpe_vocab_too_small_is_a_user_error():
    with pytest.raises(XLMUserError, match="at least 262"):
        Tokenizer.train_bpe(CORPUS, vocab_size=100)


def test_save_and_load_round_trip(tmp_path):
    tok = Tokenizer.train_bpe(CORPUS, vocab_size=280)
    path = tok.save(tmp_path / "run")
    assert path == tmp_path / "run" / TOKENIZER_FILE
    assert sorted(p.name for p in path.parent.iterdir()) == [
        TOKENIZER_FILE
    ]  # no temp file left behind
    for source in (path, path.parent):
        loaded = Tokenizer.from_file(source)
        assert loaded.fingerprint() == tok.fingerprint()
        assert loaded.vocab == tok.vocab
        assert loaded.encode(CORPUS[1]) == tok.encode(CORPUS[1])


def test_from_file_missing(tmp_path):
    with pytest.raises(XLMUserError, match="tokenizer file not found: .*nope"):
        Tokenizer.from_file(tmp_path / "nope.json")
    with pytest.raises(XLMUserError, match=f"not found: .*{TOKENIZER_FILE}"):
        Tokenizer.from_file(tmp_path)  # a directory without tokenizer.json


@pytest.mark.parametrize("content", ["{not json", "", '{"version": "1.0"}'])
def test_from_file_corrupt(tmp_path, content):
    bad = tmp_path / TOKENIZER_FILE
    bad.write_text(content)
    with pytest.raises(XLMUserError, match="not a valid tokenizers JSON file") as info:
        Tokenizer.from_file(bad)
    assert str(bad) in str(info.value) and "\n" not in str(info.value)


def test_from_file_truncated(tmp_path):
    text = Tokenizer.word_level(["a", "b"]).to_str()
    bad = tmp_path / TOKENIZER_FILE
    bad.write_text(text[: len(text) // 2])
    with pytest.raises(XLMUserError, match="not a valid tokenizers JSON file"):
        Tokenizer.from_file(bad)


def test_from_file_without_special_tokens(tmp_path):
    plain = HFTokenizer(
        models.WordLevel({"[PAD]": 0, "x": 1, "y": 2, "[UNK]": 3}, unk_token="[UNK]")
    )
    file = tmp_path / TOKENIZER_FILE
    file.write_text(plain.to_str())
    with pytest.raises(
        XLMUserError, match=r"lacks the special tokens \[MASK\], \[BOS\], \[EOS\], \[CLS\]"
    ) as info:
        Tokenizer.from_file(file)
    assert str(file) in str(info.value)
    # Bringing an existing tokenizer: the missing ones are appended after its vocabulary.
    fixed = Tokenizer.from_file(file, add_special_tokens=True)
    assert fixed.vocab.pad_id == 0 and fixed.vocab.mask_id == 4 and fixed.vocab.cls_id == 7
    assert fixed.vocab.size == 8
    assert json.loads(fixed.to_str())["added_tokens"]
