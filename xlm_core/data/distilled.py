"""The ``distilled`` task: a teacher's outputs, written by ``xlm distill``, as training data.

Sequence-level knowledge distillation (Kim & Rush 2016) trains a student on what a
teacher generates instead of the references: for a prompted task, the teacher's
target for each training prompt; for text, the teacher's unconditional samples.
The directory ``xlm distill --out DIR`` writes holds:

- ``distilled.json``: :class:`DistilledRecord`, the provenance (teacher checkpoint,
  its plugin and version, sampling settings, seed, date) and the original task;
- ``tokenizer.json``: the teacher's tokenizer, which every student must share;
- ``train.jsonl``: one ``{"prompt_ids": [...], "target_ids": [...]}`` per example.

Only training data is distilled: ``validation`` and ``test`` are the original task's
splits, so accuracy and likelihood are measured against the real references.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from xlm_core.components import SPLITS, DataShape, Example, Split
from xlm_core.config import DistilledTaskConfig, TaskConfig
from xlm_core.data.tokenizers import TOKENIZER_FILE, Tokenizer
from xlm_core.errors import XLMUserError

RECORD_FILE = "distilled.json"
TRAIN_FILE = "train.jsonl"
#: Bump when the directory's layout changes; a reader refuses a newer one.
FORMAT_VERSION = 1


class DistilledRecord(BaseModel):
    """What ``distilled.json`` holds: how the data was made, and what a reader needs."""

    model_config = ConfigDict(extra="allow", frozen=True)

    format_version: int = FORMAT_VERSION
    kind: Literal["prompted", "text"]
    original_task: dict[str, Any] = Field(
        description="The teacher's task config (validation, test)."
    )
    prompt_length: int = Field(ge=0)
    target_length: int = Field(ge=0)
    examples: int = Field(ge=0)
    empty_outputs: int = Field(0, ge=0, description="Outputs left out because they were empty.")
    teacher: dict[str, Any] = Field(description="Checkpoint path, plugin, version and step.")
    settings: dict[str, Any] = Field(description="The predictor settings the teacher sampled with.")
    overrides: dict[str, Any] = Field(
        default_factory=dict, description="The --set predictor.* given."
    )
    seed: int
    limit: int | None = None
    created: str = Field(description="When the data was written (UTC, ISO 8601).")
    xlm_core_version: str | None = None

    @classmethod
    def read(cls, directory: Path) -> DistilledRecord:
        file = directory / RECORD_FILE
        if not directory.is_dir():
            raise XLMUserError(f"task.path: no such directory: {directory}")
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise XLMUserError(
                f"{directory} holds no {RECORD_FILE}; write it with `xlm distill`"
            ) from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise XLMUserError(f"{file} is corrupt or truncated ({exc})") from None
        if isinstance(data, dict) and data.get("format_version", 0) > FORMAT_VERSION:
            raise XLMUserError(
                f"{file} is of a newer format than this xlm-core reads; upgrade xlm-core"
            )
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "record"
            raise XLMUserError(f"{file}: {where}: {first['msg']}") from None

    @property
    def shape(self) -> DataShape:
        return DataShape(self.prompt_length, self.target_length)


class DistilledTask:
    """Training examples from ``task.path``; validation and test from the original task."""

    name = "distilled"

    def __init__(self, config: DistilledTaskConfig, *, tokenizer_path: str | Path | None = None):
        if config.path is None:
            raise XLMUserError(
                "task 'distilled' needs task.path=DIR, a directory written by `xlm distill`"
            )
        self.directory = Path(config.path).expanduser()
        self.record = DistilledRecord.read(self.directory)
        self.kind = self.record.kind
        self.shape = self.record.shape
        self._tokenizer_file = Path(tokenizer_path or self.directory / TOKENIZER_FILE)
        self.tokenizer = Tokenizer.from_file(self._tokenizer_file)

    def examples(self, split: Split) -> Sequence[Example]:
        if split not in SPLITS:
            raise XLMUserError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
        return self._train if split == "train" else self.original.examples(split)

    @cached_property
    def original(self):  # -> Task (a Protocol in tasks.py, which imports this module)
        """The task the teacher was trained on, with the teacher's tokenizer."""
        from xlm_core.data.tasks import build_task

        try:
            config = TaskConfig(**self.record.original_task)
        except ValidationError as exc:
            raise XLMUserError(
                f"{self.directory / RECORD_FILE}: original_task: {exc.errors()[0]['msg']}"
            ) from None
        return build_task(config, tokenizer_path=self._tokenizer_file)

    @cached_property
    def _train(self) -> tuple[Example, ...]:
        return tuple(read_examples(self.directory / TRAIN_FILE))

    def __repr__(self) -> str:
        return f"DistilledTask({str(self.directory)!r}, kind={self.kind!r})"


def read_examples(file: Path) -> list[Example]:
    """The examples of a ``train.jsonl``; a bad line is one error naming the file and line."""
    if not file.is_file():
        raise XLMUserError(
            f"{file} not found; the directory is not a complete `xlm distill` output"
        )
    examples = []
    with open(file, encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            try:
                row = json.loads(line)
                examples.append(Example(_ids(row["prompt_ids"]), _ids(row["target_ids"])))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise XLMUserError(f"{file}: line {number}: not an example ({exc})") from None
    return examples


def _ids(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(isinstance(i, int) for i in value):
        raise ValueError("token ids must be a list of integers")
    return tuple(value)
