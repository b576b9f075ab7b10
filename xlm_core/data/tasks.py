"""Named tasks: the built-in star graphs and text, plus tasks contributed by plugins.

A task owns its tokenizer, its length budgets (:class:`DataShape`) and its three
splits of :class:`Example`. ``build_task(config)`` is the one way the harness,
the CLI and checkpoint loading get a task.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import attrs

from xlm_core.components import DataShape, Example, Split
from xlm_core.config import (
    DISTILLED_TASK,
    TEXT_TASK,
    DistilledTaskConfig,
    StarTaskConfig,
    TaskConfig,
    TextTaskConfig,
)
from xlm_core.data.star import STAR_SPECS, StarTask
from xlm_core.data.tokenizers import Tokenizer
from xlm_core.errors import PluginError, XLMUserError
from xlm_core.utils import suggest

TaskKind = Literal["prompted", "text"]
BUILT_IN = "built-in"
TEXT_DESCRIPTION = (
    "language modelling on a local .txt/.jsonl/.parquet file or folder, or a Hugging Face dataset"
)
DISTILLED_DESCRIPTION = "a teacher's outputs written by `xlm distill` (task.path=DIR); the original task's validation/test"


@runtime_checkable
class Task(Protocol):
    """What every task provides (built-in or from a plugin)."""

    name: str
    kind: TaskKind  # "prompted": prompt -> target; "text": empty prompts, unconditional text
    tokenizer: Tokenizer
    shape: DataShape  # longest prompt / longest target, content tokens (no EOS)

    def examples(self, split: Split) -> Sequence[Example]:
        """The split's examples: ``len()`` and random access."""
        ...


@attrs.frozen
class TaskInfo:
    """One row of ``xlm tasks list``."""

    name: str
    kind: str | None  # None when a plugin does not declare it
    description: str
    source: str  # "built-in" or the plugin that contributes the task

    def as_row(self) -> dict[str, str | None]:
        return attrs.asdict(self)


def _built_in_infos() -> list[TaskInfo]:
    stars = [TaskInfo(s.name, "prompted", s.description, BUILT_IN) for s in STAR_SPECS.values()]
    return [
        *stars,
        TaskInfo(TEXT_TASK, "text", TEXT_DESCRIPTION, BUILT_IN),
        # prompted or text: the kind of the task the teacher was trained on
        TaskInfo(DISTILLED_TASK, None, DISTILLED_DESCRIPTION, BUILT_IN),
    ]


def _plugin_tasks() -> dict[str, list[tuple[str, object]]]:
    """Task name -> [(plugin name, TaskRef)] over every usable family, built-ins excluded."""
    from xlm_core.plugins.registry import get_registry

    found: dict[str, list[tuple[str, object]]] = {}
    builtin = {info.name for info in _built_in_infos()}
    for family in get_registry().families():
        for ref in family.record.tasks:
            if ref.name not in builtin:  # a built-in name always means the built-in task
                found.setdefault(ref.name, []).append((family.name, ref))
    return found


def list_tasks() -> list[TaskInfo]:
    """Every task that ``build_task`` accepts: built-ins first, then plugin tasks by name."""
    rows = _built_in_infos()
    for name, providers in sorted(_plugin_tasks().items()):
        for plugin, ref in providers:
            rows.append(TaskInfo(name, getattr(ref, "kind", None), ref.description, plugin))  # type: ignore[attr-defined]
    return rows


def build_task(config: TaskConfig, *, tokenizer_path: str | Path | None = None) -> Task:
    """Build the task ``config.name`` names.

    ``tokenizer_path`` (a ``tokenizer.json`` or a directory holding one) reuses a
    saved tokenizer, as checkpoint loading does, instead of building or training one.
    """
    if isinstance(config, StarTaskConfig):
        return StarTask(STAR_SPECS[config.name], config.seed, tokenizer_path=tokenizer_path)
    if isinstance(config, TextTaskConfig):
        from xlm_core.data.text import TextTask

        return TextTask(config, tokenizer_path=tokenizer_path)
    if isinstance(config, DistilledTaskConfig):
        from xlm_core.data.distilled import DistilledTask

        return DistilledTask(config, tokenizer_path=tokenizer_path)
    name = config.name
    providers = _plugin_tasks().get(name)
    if not providers:
        raise XLMUserError(_unknown_task_message(name))
    if len(providers) > 1:
        raise PluginError(
            f"task {name!r} is provided by several plugins: {', '.join(p for p, _ in providers)}"
        )
    plugin, ref = providers[0]
    return _build_plugin_task(plugin, ref, config, tokenizer_path)


def _build_plugin_task(
    plugin: str, ref: object, config: TaskConfig, tokenizer_path: str | Path | None
) -> Task:
    factory_ref = ref.factory  # type: ignore[attr-defined]
    try:
        factory: Callable[..., object] = factory_ref.resolve()
    except Exception as exc:  # a plugin's import error must not escape as a traceback
        raise PluginError(
            f"plugin {plugin!r}: cannot import task factory {factory_ref.path!r}: {exc}"
        ) from exc
    # Factories that can reuse a saved tokenizer say so by accepting ``tokenizer_path``.
    kwargs = (
        {"tokenizer_path": tokenizer_path}
        if tokenizer_path is not None and _accepts(factory, "tokenizer_path")
        else {}
    )
    try:
        task = factory(config, **kwargs)
    except XLMUserError:
        raise
    except Exception as exc:
        raise PluginError(
            f"plugin {plugin!r}: task {config.name!r} failed to build: {type(exc).__name__}: {exc}"
        ) from exc
    missing = [
        attr
        for attr in ("name", "kind", "tokenizer", "shape", "examples")
        if not hasattr(task, attr)
    ]
    if missing:
        raise PluginError(
            f"plugin {plugin!r}: task factory {factory_ref.path!r} returned {type(task).__name__} "
            f"without {', '.join(missing)}"
        )
    return task  # type: ignore[return-value]


def _accepts(func: Callable[..., object], keyword: str) -> bool:
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == keyword or p.kind is p.VAR_KEYWORD for p in params)


def _unknown_task_message(name: str) -> str:
    known = [info.name for info in list_tasks()]
    close = suggest(name, known)
    hint = f"; did you mean {close!r}?" if close else ""
    return f"unknown task {name!r} (known: {', '.join(known)}){hint}"
