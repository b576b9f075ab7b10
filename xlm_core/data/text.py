"""The ``text`` task: language modelling on local files or a Hugging Face dataset.

Reading the source (``task.path`` or ``task.dataset``) is ``text_sources``'s
concern. Splits missing from the source (``validation``, ``test``) are each
held out of ``train`` (``validation_fraction`` of its documents, deterministic).

Preparation runs once: tokenize (``datasets.map``, with a progress bar), then
either pack documents into blocks of ``block_size`` tokens separated by EOS, or
(``pack=False``) truncate each document to ``block_size`` tokens. The result is
cached as one Arrow file per split under ``cache_dir/text/data-<key>``, the key
hashing the source's identity (file paths, sizes and mtimes, or dataset
name/config), the tokenizer's content, ``block_size``, ``pack`` and the hold-out.
Reading examples memory-maps the Arrow files, so corpora larger than RAM work.

Tokenizer: ``tokenizer_path`` (a saved run's tokenizer) if given, else
``TextTaskConfig.tokenizer`` (a file, or a Hugging Face Hub name such as
``bert-base-uncased``), else a byte-level BPE trained on the training split
(cached under ``cache_dir/text/tokenizer-<key>``).
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import json
import operator
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

from xlm_core.components import SPLITS, DataShape, Example, Split
from xlm_core.config import TextTaskConfig
from xlm_core.data.text_sources import BUILDERS as BUILDERS  # re-exported: its old home
from xlm_core.data.text_sources import TextSource
from xlm_core.data.tokenizers import TOKENIZER_FILE, Tokenizer
from xlm_core.errors import XLMUserError

if TYPE_CHECKING:  # datasets takes ~1 s to import: only when text is actually prepared
    from datasets import Dataset

#: Bump when the prepared layout or the packing rule changes: old caches are then ignored.
FORMAT_VERSION = 1
_HOLDOUT_SEED = 0
_MAP_BATCH = 1000  # documents per map batch; with packing, each batch may end in one short block


def default_cache_dir() -> Path:
    return Path(os.environ.get("XLM_CACHE", Path.home() / ".cache" / "xlm"))


class TextTask:
    """Unconditional text: every example has an empty prompt and a block of text as target."""

    kind: Literal["text"] = "text"

    def __init__(self, config: TextTaskConfig, *, tokenizer_path: str | Path | None = None):
        if (config.path is None) == (config.dataset is None):
            raise XLMUserError(
                "task 'text' needs exactly one of task.path (a local file or folder) "
                "and task.dataset (a Hugging Face dataset name)"
            )
        self.config, self.name = config, "text"
        self.shape = DataShape(prompt_length=0, target_length=config.block_size)
        cache_dir = Path(config.cache_dir).expanduser() if config.cache_dir else default_cache_dir()
        self.cache_root = cache_dir / "text"
        self.source = TextSource(config, hf_cache=self.cache_root / "hf")
        if tokenizer_path is not None:
            self.tokenizer = Tokenizer.from_file(tokenizer_path)
        elif config.tokenizer is not None:
            self.tokenizer = Tokenizer.from_setting(config.tokenizer)
        else:
            self.tokenizer = self._trained_tokenizer()
        self._examples: dict[str, TokenBlocks] = {}

    # -- public -----------------------------------------------------------------------------

    def examples(self, split: Split) -> Sequence[Example]:
        """The split's token blocks (prepared and cached on first use)."""
        if split not in SPLITS:
            raise XLMUserError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
        if not self._examples:
            directory = self.prepare()
            self._examples = {s: TokenBlocks(directory / f"{s}.arrow") for s in SPLITS}
        return self._examples[split]

    @cached_property
    def cache_path(self) -> Path:
        """Where the prepared splits of this source + tokenizer + block settings live."""
        c = self.config
        key = _hash(
            {
                "format": FORMAT_VERSION,
                "source": self.source.identity,
                "tokenizer": self.tokenizer.fingerprint(),
                "block_size": c.block_size,
                "pack": c.pack,
                "holdout": c.validation_fraction,
            }
        )
        return self.cache_root / f"data-{key}"

    def prepare(self) -> Path:
        """Tokenize and pack every split into ``cache_path`` unless it is there already."""
        final = self.cache_path
        if (final / "meta.json").is_file():
            return final
        raw = self._raw_splits
        self.cache_root.mkdir(parents=True, exist_ok=True)
        # Build in a private directory and rename it into place, so an interrupted run
        # or a second process (DDP ranks) never sees a half-written cache.
        staging = self.cache_root / f".staging-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        staging.mkdir()
        try:
            counts = {
                split: self._tokenize(raw[split], staging / f"{split}.arrow", split)
                for split in SPLITS
            }
            meta = {
                "source": self.source.identity,
                "tokenizer": self.tokenizer.fingerprint(),
                "examples": counts,
                "block_size": self.config.block_size,
                "pack": self.config.pack,
            }
            (staging / "meta.json").write_text(json.dumps(meta, indent=2))
            try:
                staging.rename(final)
            except OSError:  # another process finished first: keep theirs
                if not (final / "meta.json").is_file():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return final

    # -- tokenizer ----------------------------------------------------------------------------

    def _trained_tokenizer(self) -> Tokenizer:
        key = _hash(
            {
                "source": self.source.identity,
                "vocab_size": self.config.vocab_size,
                "holdout": self.config.validation_fraction,
                "format": FORMAT_VERSION,
            }
        )
        directory = self.cache_root / f"tokenizer-{key}"
        if (directory / TOKENIZER_FILE).is_file():
            return Tokenizer.from_file(directory)
        train = self._raw_splits["train"]

        def batches() -> Iterator[list[str]]:
            for batch in train.iter(batch_size=_MAP_BATCH):
                yield batch["text"]

        tokenizer = Tokenizer.train_bpe(batches(), self.config.vocab_size)
        tokenizer.save(directory)
        return tokenizer

    # -- splits -------------------------------------------------------------------------------

    @cached_property
    def _raw_splits(self) -> dict[str, Dataset]:
        """train/validation/test with one column ``text``: the source's, missing ones held out."""
        return _hold_out(self.source.splits(), self.config.validation_fraction, self.source.label)

    # -- tokenization --------------------------------------------------------------------------

    def _tokenize(self, ds: Dataset, out: Path, split: str) -> int:
        """Tokenize one split into the Arrow file ``out``; returns the number of examples."""
        import datasets

        encode, eos = self.tokenizer.encode_batch, self.tokenizer.vocab.eos_id
        block, pack = self.config.block_size, self.config.pack

        def to_blocks(batch: dict[str, list[str]]) -> dict[str, list[list[int]]]:
            docs = encode(batch["text"])
            if not pack:
                return {"ids": [doc[:block] for doc in docs if doc]}
            stream = [t for doc in docs for t in (*doc, eos)]
            # The last block of a batch may be short; keeping it loses no text.
            return {"ids": [stream[i : i + block] for i in range(0, len(stream), block)]}

        result = ds.map(
            to_blocks,
            batched=True,
            batch_size=_MAP_BATCH,
            remove_columns=ds.column_names,
            features=datasets.Features({"ids": datasets.Sequence(datasets.Value("int32"))}),
            cache_file_name=str(out),
            new_fingerprint=_hash(str(out)),  # a fresh name; spares `datasets` hashing the closure
            desc=f"Tokenizing {split}",
        )
        return len(result)

    def __repr__(self) -> str:
        return f"TextTask({self.source.label!r}, block_size={self.config.block_size}, pack={self.config.pack})"


class TokenBlocks(Sequence[Example]):
    """Examples read from a prepared Arrow file, memory-mapped; ``blocks[i]`` costs microseconds."""

    def __init__(self, path: Path):
        import pyarrow as pa

        self.path = path
        # The table's buffers point into the map, which stays open as long as they live.
        table = pa.ipc.open_stream(pa.memory_map(str(path))).read_all()
        column = table.column("ids")
        # Offsets index into each chunk's whole value buffer, so slicing needs no copy.
        self._chunks = [
            (c.offsets.to_numpy(), c.values.to_numpy()) for c in column.chunks if len(c)
        ]
        self._starts = [0, *itertools.accumulate(len(off) - 1 for off, _ in self._chunks)]

    def __len__(self) -> int:
        return self._starts[-1]

    def __reduce__(self) -> tuple[type, tuple[Path]]:
        # DataLoader workers re-open the map instead of receiving a copy of the corpus.
        return TokenBlocks, (self.path,)

    @overload
    def __getitem__(self, index: int) -> Example: ...
    @overload
    def __getitem__(self, index: slice) -> list[Example]: ...

    def __getitem__(self, index: int | slice) -> Example | list[Example]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        n, index = len(self), operator.index(index)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} examples")
        index %= n
        chunk = bisect.bisect_right(self._starts, index) - 1
        offsets, values = self._chunks[chunk]
        row = index - self._starts[chunk]
        return Example((), tuple(values[offsets[row] : offsets[row + 1]].tolist()))


def _hold_out(found: dict[str, Dataset], fraction: float, label: str) -> dict[str, Dataset]:
    """Carve each missing held-out split out of train: ``fraction`` of its documents, fixed seed."""
    missing = [s for s in ("validation", "test") if s not in found]
    if not missing:
        return found
    train = found["train"]
    n_each = max(1, round(fraction * len(train)))
    if len(train) - n_each * len(missing) < 1:
        raise XLMUserError(
            f"{label}: {len(train)} documents are too few to hold out {' and '.join(missing)}; add documents"
        )
    parts = train.train_test_split(test_size=n_each * len(missing), seed=_HOLDOUT_SEED)
    found = {**found, "train": parts["train"]}
    if len(missing) == 1:
        found[missing[0]] = parts["test"]
    else:
        held = parts["test"]
        found["validation"], found["test"] = (
            held.select(range(n_each)),
            held.select(range(n_each, 2 * n_each)),
        )
    return found


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


