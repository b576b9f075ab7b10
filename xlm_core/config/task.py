"""The ``task`` section of the run config: one record per kind of task, chosen by the task's name.

``name`` is the one key a user picks a task with, so it also picks the record:
a built-in star task (``star-easy``, ``star-medium``, ``star-hard``) gets
:class:`StarTaskConfig`, ``text`` gets :class:`TextTaskConfig`, ``distilled`` (a
teacher's outputs written by ``xlm distill``) gets :class:`DistilledTaskConfig` and
any other name (a task a plugin contributes) gets :class:`PluginTaskConfig`. :data:`AnyTaskConfig`
is that union as a pydantic field type; ``TaskConfig(name=..., ...)`` builds the
record the name selects.

Configs and checkpoints written before the split hold one flat record with every
kind's fields (``{"name": "star-easy", "seed": 0, "path": null, ..., "vocab_size":
4096, ...}``). Such a record still reads: a field of another kind of task at its old
default is dropped, and any other value is refused in one line naming the key.
"""

from __future__ import annotations

import typing
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Discriminator, Field, Tag, model_validator

from xlm_core.plugins.settings import StrictModel

StarTaskName = Literal["star-easy", "star-medium", "star-hard"]
STAR_TASKS: tuple[str, ...] = typing.get_args(StarTaskName)
TEXT_TASK = "text"
DISTILLED_TASK = "distilled"
DEFAULT_TASK = "star-easy"

#: The fields of the flat task record and their defaults, as saved before the split.
FLAT_RECORD_DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "path": None,
    "dataset": None,
    "dataset_config": None,
    "text_field": "text",
    "tokenizer": None,
    "vocab_size": 4096,
    "block_size": 128,
    "pack": True,
    "validation_fraction": 0.05,
    "cache_dir": None,
}


class TaskConfig(StrictModel):
    """Which data to train and evaluate on; the base of the star, text and plugin task records.

    Calling ``TaskConfig(name=..., ...)`` builds the record ``name`` selects, so
    ``TaskConfig(name="text", path="corpus.txt")`` is a :class:`TextTaskConfig`.
    """

    kind: ClassVar[str] = ""
    name: str = Field(
        DEFAULT_TASK,
        description="Task name: star-easy, star-medium, star-hard, text, distilled, or a plugin task.",
    )

    def __new__(cls, *args: Any, **data: Any) -> TaskConfig:
        if cls is TaskConfig:
            cls = task_config_class(data.get("name", DEFAULT_TASK))
        return super().__new__(cls)

    @model_validator(mode="before")
    @classmethod
    def _accept_flat_record(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        return drop_flat_record_fields(cls, data)


class StarTaskConfig(TaskConfig):
    """A star-graph path-finding task, generated from a seed (docs/tasks.md)."""

    kind: ClassVar[str] = "star"
    name: StarTaskName = Field(DEFAULT_TASK, description="star-easy, star-medium or star-hard.")
    seed: int = Field(0, description="Seed of the generated examples.")


class TextTaskConfig(TaskConfig):
    """Language modelling on a local corpus or a Hugging Face dataset (docs/tasks.md)."""

    kind: ClassVar[str] = "text"
    name: Literal["text"] = Field(TEXT_TASK, description="The text task.")
    path: str | None = Field(None, description="A local .txt/.jsonl/.parquet file or a folder of them.")
    dataset: str | None = Field(None, description="A Hugging Face dataset name, loaded with `datasets`.")
    dataset_config: str | None = Field(None, description="The dataset's configuration name.")
    text_field: str = Field("text", description="The column holding the text.")
    tokenizer: str | None = Field(
        None,
        description="A tokenizers JSON file or a Hugging Face Hub name (bert-base-uncased, gpt2); "
        "default: train a BPE tokenizer on the corpus.",
    )
    vocab_size: int = Field(4096, ge=64, description="Vocabulary size of a locally trained tokenizer.")
    block_size: int = Field(128, ge=8, description="Sequence length after truncation or packing.")
    pack: bool = Field(True, description="Pack documents into blocks with EOS separators.")
    validation_fraction: float = Field(
        0.05, gt=0.0, lt=1.0, description="Share held out when the source has one split only."
    )
    cache_dir: str | None = Field(None, description="Where prepared Arrow data is cached; default ~/.cache/xlm.")


class DistilledTaskConfig(TaskConfig):
    """A teacher's outputs written by ``xlm distill``; validation and test are the original task's."""

    kind: ClassVar[str] = "distilled"
    name: Literal["distilled"] = Field(DISTILLED_TASK, description="The distilled task.")
    path: str | None = Field(None, description="The directory `xlm distill --out DIR` wrote.")


class PluginTaskConfig(TaskConfig):
    """A task a plugin contributes (``xlm tasks list``); its factory is called with this record."""

    kind: ClassVar[str] = "plugin"
    name: str = Field(description="The task's name, as `xlm tasks list` shows it.")
    seed: int = Field(0, description="Seed of tasks that generate their examples.")


TASK_KINDS: dict[str, type[TaskConfig]] = {
    "star": StarTaskConfig,
    "text": TextTaskConfig,
    "distilled": DistilledTaskConfig,
    "plugin": PluginTaskConfig,
}


def task_kind(value: Any) -> str:
    """``star``, ``text``, ``distilled`` or ``plugin``: the kind of task a record or mapping names."""
    if isinstance(value, dict):
        name = value.get("name", DEFAULT_TASK)
    else:
        name = getattr(value, "name", DEFAULT_TASK)
    if name in STAR_TASKS:
        return "star"
    return {TEXT_TASK: "text", DISTILLED_TASK: "distilled"}.get(name, "plugin")


def task_config_class(name: Any) -> type[TaskConfig]:
    """The task record class the task name ``name`` selects."""
    return TASK_KINDS[task_kind({"name": name})]


#: The ``task`` field of a run config: the record its ``name`` selects.
AnyTaskConfig = Annotated[
    Annotated[StarTaskConfig, Tag("star")]
    | Annotated[TextTaskConfig, Tag("text")]
    | Annotated[DistilledTaskConfig, Tag("distilled")]
    | Annotated[PluginTaskConfig, Tag("plugin")],
    Discriminator(task_kind),
]


def foreign_key(cls: type[TaskConfig], key: str, prefix: str = "") -> str | None:
    """Why ``key`` is not a setting of ``cls`` when another kind of task has it; None when none does."""
    owners = [
        kind for kind, other in TASK_KINDS.items() if other is not cls and key in other.model_fields
    ]
    if not owners:
        return None
    return f"{prefix}{key} is a setting of {' and '.join(owners)} tasks, not of {cls.kind} tasks"


def drop_flat_record_fields(cls: type[TaskConfig], data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``data`` without the flat record's fields that ``cls`` lacks, each at its old default;
    raises ValueError naming the first such field set to anything else."""
    stale = [key for key in data if key not in cls.model_fields and key in FLAT_RECORD_DEFAULTS]
    if not stale:
        return data
    kept = dict(data)
    for key in stale:
        if kept.pop(key) != FLAT_RECORD_DEFAULTS[key]:
            raise ValueError(foreign_key(cls, key, prefix) or f"{prefix}{key} is not a task setting")
    return kept
