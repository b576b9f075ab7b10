"""Tokenizers: a thin wrapper over Hugging Face ``tokenizers`` that guarantees the special tokens.

Every tokenizer xlm creates puts ``[PAD] [MASK] [BOS] [EOS] [CLS]`` at ids 0..4;
a tokenizer loaded from a file may hold them at other ids, so code reads the ids
from :attr:`Tokenizer.vocab` and never hard-codes them. A file that lacks xlm's
name for a role may fill it with a special token of its own (:data:`ROLE_ALIASES`:
BERT's ``[SEP]`` or GPT-2's ``<|endoftext|>`` ends a sequence). A tokenizer is
stored as one ``tokenizer.json`` file, the format ``tokenizers`` reads everywhere;
one can also come from the Hugging Face Hub by name (:meth:`Tokenizer.from_pretrained`).
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from xlm_core.components import Vocab
from xlm_core.errors import XLMUserError

TOKENIZER_FILE = "tokenizer.json"
SPECIAL_TOKENS = ("[PAD]", "[MASK]", "[BOS]", "[EOS]", "[CLS]")
#: Byte-level BPE starts from all 256 bytes so that any text round-trips exactly.
_BYTE_ALPHABET = pre_tokenizers.ByteLevel.alphabet()
#: Other names a tokenizer may give a role, tried in order when it lacks xlm's own name. Only
#: tokens the file marks *special* count, so a vocabulary word that reads "</s>" never becomes EOS.
#: BOS and EOS stay distinct even where a tokenizer uses one token for both (GPT-2): families ban
#: BOS from generated text and stop at EOS, so one id cannot be both.
ROLE_ALIASES: dict[str, tuple[str, ...]] = {
    "[PAD]": ("<pad>", "<|pad|>"),
    "[MASK]": ("<mask>",),
    "[BOS]": ("<s>", "<bos>", "<|begin_of_text|>"),
    "[EOS]": ("[SEP]", "</s>", "<eos>", "<|endoftext|>", "<|end_of_text|>"),
    "[CLS]": ("<cls>",),
}


class Tokenizer:
    """Text <-> token ids, with the special token ids exposed as a :class:`Vocab`."""

    def __init__(self, backend: HFTokenizer, *, origin: str = "tokenizer"):
        roles = special_tokens_of(backend)
        missing = [role for role, token in roles.items() if token is None]
        if missing:
            raise XLMUserError(
                f"{origin}: tokenizer lacks the special tokens {', '.join(missing)} "
                f"(xlm needs all of {' '.join(SPECIAL_TOKENS)}; see docs/tasks.md)"
            )
        self.backend = backend
        #: xlm's name of each role -> the token that fills it in this tokenizer (e.g. [EOS] -> [SEP]).
        self.special_tokens: dict[str, str] = roles  # type: ignore[assignment]
        pad, mask, bos, eos, cls = (backend.token_to_id(roles[t]) for t in SPECIAL_TOKENS)
        if len({pad, mask, bos, eos, cls}) < len(SPECIAL_TOKENS):
            raise XLMUserError(f"{origin}: two special tokens share an id ({roles})")
        # The largest id, not get_vocab_size(): a file may leave holes or add tokens past the model vocab.
        size = max(backend.get_vocab(with_added_tokens=True).values()) + 1
        self.vocab = Vocab(size=size, pad_id=pad, mask_id=mask, bos_id=bos, eos_id=eos, cls_id=cls)

    # -- construction ----------------------------------------------------------------------

    @classmethod
    def word_level(cls, symbols: Sequence[str]) -> Tokenizer:
        """A whitespace-split vocabulary: the special tokens at 0..4, then ``symbols`` in order."""
        clashes = sorted(set(symbols) & set(SPECIAL_TOKENS))
        if (
            clashes
            or len(set(symbols)) != len(symbols)
            or any(not s or s.split() != [s] for s in symbols)
        ):
            raise ValueError(
                "word-level symbols must be unique, non-empty, whitespace-free and not special tokens"
            )
        vocab = {token: i for i, token in enumerate((*SPECIAL_TOKENS, *symbols))}
        backend = HFTokenizer(models.WordLevel(vocab))
        backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        backend.add_special_tokens(list(SPECIAL_TOKENS))
        return cls(backend)

    @classmethod
    def train_bpe(cls, texts: Iterable[str], vocab_size: int) -> Tokenizer:
        """Train a byte-level BPE tokenizer (GPT-2 style) on ``texts``; any text round-trips exactly."""
        smallest = len(_BYTE_ALPHABET) + len(SPECIAL_TOKENS) + 1
        if vocab_size < smallest:
            raise XLMUserError(
                f"vocab_size {vocab_size} is too small for a byte-level BPE tokenizer "
                f"(256 bytes + {len(SPECIAL_TOKENS)} special tokens); use at least {smallest}"
            )
        backend = HFTokenizer(models.BPE())
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=list(SPECIAL_TOKENS),  # the trainer assigns them ids 0..4 in this order
            initial_alphabet=_BYTE_ALPHABET,
            show_progress=True,
        )
        backend.train_from_iterator(texts, trainer=trainer)
        return cls(backend)

    @classmethod
    def from_file(
        cls, path: str | os.PathLike[str], *, add_special_tokens: bool = False
    ) -> Tokenizer:
        """Load ``tokenizer.json`` (a file, or a directory holding one).

        A missing or unreadable file, or one without the special tokens, is a one-line
        :class:`XLMUserError` naming the file. ``add_special_tokens=True`` appends xlm's
        token for every role the file fills neither by name nor by an alias
        (:data:`ROLE_ALIASES`), for bringing an existing tokenizer (e.g. GPT-2's).
        """
        file = Path(path)
        if file.is_dir():
            file = file / TOKENIZER_FILE
        if not file.is_file():
            raise XLMUserError(f"tokenizer file not found: {file}")
        try:
            backend = HFTokenizer.from_file(str(file))
        except Exception as exc:  # tokenizers raises a bare Exception for any parse error
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise XLMUserError(f"{file}: not a valid tokenizers JSON file ({reason})") from None
        if add_special_tokens:
            roles = special_tokens_of(backend)
            backend.add_special_tokens([role for role, token in roles.items() if token is None])
        return cls(backend, origin=str(file))

    @classmethod
    def from_pretrained(cls, name: str) -> Tokenizer:
        """The ``tokenizer.json`` of the Hugging Face Hub repository ``name`` (``bert-base-uncased``,
        ``gpt2``), through ``huggingface_hub``'s cache (``HF_HUB_OFFLINE=1`` reads only the cache),
        with missing roles appended as in :meth:`from_file`."""
        from huggingface_hub import hf_hub_download

        try:
            file = hf_hub_download(repo_id=name, filename=TOKENIZER_FILE)
        except Exception as exc:  # offline, unknown repository, no tokenizer.json, bad name
            raise XLMUserError(
                f"tokenizer {name!r} is neither a local file nor loadable from the Hugging Face Hub "
                f"({_first_line(exc)})"
            ) from None
        return cls.from_file(file, add_special_tokens=True)

    @classmethod
    def from_setting(cls, value: str | os.PathLike[str]) -> Tokenizer:
        """``task.tokenizer``: a tokenizers JSON file (or a folder holding one) when it exists or
        reads as a path (``.json``, or starting with ``.``, ``/`` or ``~``, which no Hub name
        does), else the name of a tokenizer on the Hugging Face Hub."""
        path = Path(value).expanduser()
        if path.exists() or path.suffix == ".json" or str(value).startswith((".", "/", "~")):
            return cls.from_file(path, add_special_tokens=True)
        return cls.from_pretrained(str(value))

    # -- use -------------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no BOS/EOS added). Unknown words are a :class:`XLMUserError`."""
        try:
            return self.backend.encode(text, add_special_tokens=False).ids
        except Exception as exc:  # a word-level vocabulary has no [UNK]: say which word is unknown
            unknown = [w for w in text.split() if self.backend.token_to_id(w) is None]
            detail = f"unknown tokens {unknown[:5]}" if unknown else str(exc)
            raise XLMUserError(f"cannot tokenize {text[:60]!r}: {detail}") from None

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of many texts at once (parallel in the Rust backend)."""
        return [e.ids for e in self.backend.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Iterable[int], skip_special: bool = True) -> str:
        return self.backend.decode([int(i) for i in ids], skip_special_tokens=skip_special)

    def token_to_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)

    def to_str(self) -> str:
        """The tokenizer as its JSON text (what :meth:`save` writes)."""
        return self.backend.to_str()

    def fingerprint(self) -> str:
        """A short hash of the tokenizer's content (cache keys)."""
        return hashlib.sha256(self.to_str().encode()).hexdigest()[:16]

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``directory/tokenizer.json`` atomically (temp file + rename); returns the path."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / TOKENIZER_FILE
        # A private temp name, created normally so that the file gets the usual (umask) permissions.
        tmp = directory / f".{TOKENIZER_FILE}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            tmp.write_text(self.to_str(), encoding="utf-8")
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return target

    def __repr__(self) -> str:
        return f"Tokenizer(size={self.vocab.size}, model={type(self.backend.model).__name__})"


def special_tokens_of(backend: HFTokenizer) -> dict[str, str | None]:
    """xlm's name of each role -> the token of ``backend`` that fills it: the same name, else the
    first of its :data:`ROLE_ALIASES` that ``backend`` holds as a special token; None if neither."""
    special = {t.content for t in backend.get_added_tokens_decoder().values() if t.special}
    roles: dict[str, str | None] = {}
    for role in SPECIAL_TOKENS:
        if backend.token_to_id(role) is not None:
            roles[role] = role
        else:
            roles[role] = next((a for a in ROLE_ALIASES[role] if a in special), None)
    return roles


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__
