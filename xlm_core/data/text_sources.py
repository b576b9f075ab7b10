"""Where the ``text`` task's documents come from, read into ``datasets`` with one column ``text``.

Sources (``TextTaskConfig``): ``path`` - a ``.txt`` (one document per line),
``.jsonl`` or ``.parquet`` file, or a folder of them - or ``dataset`` (+
``dataset_config``), loaded with ``datasets.load_dataset``. Empty documents are
dropped. A file that cannot be read is reported on one line naming the file and,
for text and JSON lines, the line.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xlm_core.config import TextTaskConfig
from xlm_core.errors import XLMUserError

if TYPE_CHECKING:  # datasets takes ~1 s to import: only when text is actually prepared
    from datasets import Dataset

#: Split names other than ours that Hugging Face datasets use.
_SPLIT_ALIASES = {
    "train": ("train",),
    "validation": ("validation", "valid", "dev"),
    "test": ("test",),
}
#: File extension -> the ``datasets`` packaged builder that reads it.
BUILDERS = {".txt": "text", ".jsonl": "json", ".parquet": "parquet"}


class TextSource:
    """The documents of ``task.path`` or ``task.dataset``; nothing is read until asked for."""

    def __init__(self, config: TextTaskConfig, *, hf_cache: Path):
        self.config, self.hf_cache = config, hf_cache

    @cached_property
    def files(self) -> list[Path]:
        """The local files of ``task.path`` (sorted), checked to exist and have a known type."""
        root = Path(self.config.path).expanduser().resolve()  # type: ignore[arg-type]
        if root.is_file():
            if root.suffix.lower() not in BUILDERS:
                raise XLMUserError(
                    f"{root}: unsupported file type {root.suffix or '(none)'!r}; use {_kinds()}"
                )
            return [root]
        if not root.is_dir():
            raise XLMUserError(f"task.path: no such file or folder: {root}")
        files = sorted(
            p
            for p in root.rglob("*")
            if p.is_file()
            and p.suffix.lower() in BUILDERS
            and not any(part.startswith(".") for part in p.relative_to(root).parts)  # .git, caches
        )
        if not files:
            raise XLMUserError(f"{root}: folder holds no {_kinds()} files")
        return files

    @cached_property
    def identity(self) -> dict[str, Any]:
        """What the cache keys hash: changes whenever the source data may have changed."""
        c = self.config
        if c.path is not None:
            files = [[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in self.files]
            return {"files": files, "text_field": c.text_field}
        identity: dict[str, Any] = {
            "dataset": c.dataset,
            "config": c.dataset_config,
            "text_field": c.text_field,
        }
        local = Path(c.dataset).expanduser()  # type: ignore[arg-type]
        if local.exists():  # a local dataset folder or script: its files are part of its identity
            paths = (
                [local] if local.is_file() else sorted(p for p in local.rglob("*") if p.is_file())
            )
            identity["files"] = [
                [str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns] for p in paths
            ]
        return identity

    @property
    def label(self) -> str:
        """How error messages name the source: its path, or ``dataset 'name' (config)``."""
        c = self.config
        return (
            str(c.path)
            if c.path is not None
            else f"dataset {c.dataset!r}" + (f" ({c.dataset_config})" if c.dataset_config else "")
        )

    def splits(self) -> dict[str, Dataset]:
        """The splits the source has (train at least), one column ``text``, empty documents dropped."""
        found = self._load_local() if self.config.path is not None else self._load_hub()
        found = {split: _drop_empty(ds) for split, ds in found.items()}
        if "train" not in found or len(found["train"]) == 0:
            raise XLMUserError(
                f"{self.label}: the corpus is empty (no non-empty documents in train)"
            )
        return found

    def _load_local(self) -> dict[str, Dataset]:
        import datasets

        # `datasets` fails on an empty file with a message about schemas; it holds no documents anyway.
        non_empty = [f for f in self.files if f.stat().st_size]
        if not non_empty:
            what = "the file is" if len(self.files) == 1 else f"all {len(self.files)} files are"
            raise XLMUserError(f"{self.label}: {what} empty")
        parts = []
        by_builder: dict[str, list[str]] = {}
        for f in non_empty:
            by_builder.setdefault(BUILDERS[f.suffix.lower()], []).append(str(f))
        for builder, files in sorted(by_builder.items()):
            try:
                ds = datasets.load_dataset(
                    builder,
                    data_files={"train": files},
                    split="train",
                    cache_dir=str(self.hf_cache),
                )
                # pyarrow's JSON reader (and a careless parquet writer) lets invalid UTF-8 through,
                # to fail later, deep inside `datasets`.
                ds.data.validate(full=True)
            except Exception as exc:  # binary or non-UTF-8 text, malformed JSON, bad parquet, ...
                raise XLMUserError(_read_error(files, builder, exc)) from exc
            field = "text" if builder == "text" else self.config.text_field
            parts.append(_text_column(ds, field, _files_label(files)))
        return {"train": datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]}

    def _load_hub(self) -> dict[str, Dataset]:
        import datasets

        c = self.config
        try:
            # The Hub, or a local dataset folder: whatever `datasets` resolves the name to.
            loaded = datasets.load_dataset(c.dataset, c.dataset_config)
        except Exception as exc:  # offline, unknown name, missing config, ...
            raise XLMUserError(f"cannot load {self.label}: {_first_line(exc)}") from exc
        if not isinstance(loaded, datasets.DatasetDict):
            loaded = datasets.DatasetDict({"train": loaded})
        found = {}
        for split, aliases in _SPLIT_ALIASES.items():
            name = next((a for a in aliases if a in loaded), None)
            if name is not None:
                found[split] = _text_column(
                    loaded[name], c.text_field, f"{self.label} split {name!r}"
                )
        if "train" not in found:
            raise XLMUserError(f"{self.label} has no 'train' split (splits: {', '.join(loaded)})")
        return found


def _drop_empty(ds: Dataset) -> Dataset:
    return ds.filter(
        lambda b: [bool(t and t.strip()) for t in b["text"]],
        batched=True,
        desc="Dropping empty documents",
    )


def _text_column(ds: Dataset, field: str, label: str) -> Dataset:
    if field not in ds.column_names:
        raise XLMUserError(
            f"{label}: no text field {field!r} (columns: {', '.join(ds.column_names)}); set task.text_field"
        )
    dtype = getattr(ds.features[field], "dtype", None)
    if dtype not in ("string", "large_string"):
        kind = dtype or type(ds.features[field]).__name__
        raise XLMUserError(f"{label}: field {field!r} holds {kind} values, not text; set task.text_field")
    ds = ds.select_columns([field])
    return ds.rename_column(field, "text") if field != "text" else ds



def _kinds() -> str:
    return ", ".join(BUILDERS)


def _files_label(files: Sequence[str]) -> str:
    return files[0] if len(files) == 1 else f"{files[0]} (+{len(files) - 1} more files)"



def _read_error(files: Sequence[str], builder: str, exc: BaseException) -> str:
    """Why `datasets` could not read ``files``, on one line naming the file (and line).

    `datasets` wraps the cause in "An error occurred while generating the dataset", and pyarrow's
    JSON errors give byte offsets within a block, so on failure (only then: it costs a pass over
    the files) the files are checked here, line by line.
    """
    for file in files:
        problem = _file_problem(Path(file), builder)
        if problem:
            return f"cannot read {file}: {problem}"
    while exc.__cause__ is not None:  # no problem we know: the innermost cause says the most
        exc = exc.__cause__
    return f"cannot read {_files_label(files)}: {_first_line(exc)}"


def _file_problem(path: Path, builder: str) -> str | None:
    """What makes a .txt or .jsonl file unreadable, with its line number; None if nothing does."""
    if builder == "parquet":
        return None
    with open(path, "rb") as f:
        if b"\0" in f.read(8192):  # git's test: text has no NUL bytes, binary formats nearly always do
            return "it is a binary file, not text"
        f.seek(0)
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                byte = raw[error.start]
                return f"line {number}: not UTF-8 (byte 0x{byte:02x}); save the file as UTF-8"
            if builder != "json" or not line.strip():
                continue
            try:
                record = json.loads(line.rstrip("\r\n"))  # so columns count within this line
            except json.JSONDecodeError as error:
                return f"line {number}: invalid JSON ({error.msg}, column {error.colno})"
            if not isinstance(record, dict):
                return f"line {number}: expected a JSON object, got {type(record).__name__}"
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
