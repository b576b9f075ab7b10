"""Sequence-level knowledge distillation (Kim & Rush 2016): a teacher's outputs written as a dataset.

:func:`distill` samples a teacher (a :class:`~xlm_core.pipeline.Pipeline`) on the
training prompts of its own task (prompted tasks: one target per prompt) or
unconditionally (text: as many samples as the task has training blocks, or
``limit``), and writes the directory the ``distilled`` task reads
(``xlm_core/data/distilled.py``): provenance, the teacher's tokenizer, the examples.
Students of any family then train on it with ``--task distilled --set task.path=DIR``.

Samples are drawn :data:`CHUNK` at a time through ``Pipeline.generate``; chunk ``c`` is
seeded with ``derived_seed(seed, c)``, so the data depends on ``seed`` and ``limit``
only, never on ``eval.batch_size``, and a chunk's samples never share a seed with
another chunk's. An empty output (the teacher stopped at once) is not an example;
the record counts them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import xlm_core
from xlm_core.checkpoint import CheckpointRecord
from xlm_core.config import DISTILLED_TASK
from xlm_core.config.task import DEFAULT_TASK
from xlm_core.data.datamodule import derived_seed
from xlm_core.data.distilled import RECORD_FILE, TRAIN_FILE, DistilledRecord
from xlm_core.errors import XLMUserError
from xlm_core.files import staging_dir, write_json_atomic
from xlm_core.progress import progress_bar

#: Samples per ``generate`` call: bounds the memory the kept results take, and fixes the seeding.
CHUNK = 512


def check_out(out: Path) -> None:
    """Refuse an ``--out`` that holds anything: distilled data is never overwritten."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise XLMUserError(f"--out {out} already exists and is not empty; choose a new directory")


def check_teacher_task(record: CheckpointRecord, task: str) -> None:
    """Refuse a teacher trained on another task than ``task`` (it would answer other prompts)."""
    trained_on = (record.run_config.get("task") or {}).get("name", DEFAULT_TASK)
    if trained_on != task:
        raise XLMUserError(
            f"--task {task}: the teacher {record.directory} was trained on {trained_on!r}; "
            f"use --task {trained_on}"
        )


def distill(
    pipeline: Any,
    teacher: CheckpointRecord,
    out: Path,
    *,
    seed: int = 0,
    limit: int | None = None,
    overrides: dict[str, Any] | None = None,
    progress: bool = True,
) -> DistilledRecord:
    """Write the teacher's outputs for its task's training prompts (or its samples) to ``out``."""
    check_out(out)
    overrides = overrides or {}
    settings = pipeline.settings(**overrides)
    task = pipeline.task
    prompts = _prompts(task, limit)
    with staging_dir(out) as tmp:
        pipeline.tokenizer.save(tmp)
        counts = _write_examples(pipeline, prompts, tmp / TRAIN_FILE, seed, overrides, progress)
        record = DistilledRecord(
            kind=task.kind,
            original_task=_original_task(task, pipeline.run_config.task),
            prompt_length=max(task.shape.prompt_length, counts["longest_prompt"]),
            target_length=max(task.shape.target_length, counts["longest_target"]),
            examples=counts["examples"],
            empty_outputs=counts["empty"],
            teacher=_provenance(teacher, pipeline),
            settings=settings.model_dump(mode="json"),
            overrides=overrides,
            seed=seed,
            limit=limit,
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            xlm_core_version=xlm_core.__version__,
        )
        write_json_atomic(tmp / RECORD_FILE, record.model_dump(mode="json"))
    return record


def _prompts(task: Any, limit: int | None) -> list[tuple[int, ...]]:
    """The first ``limit`` training prompts; for text, ``limit`` empty prompts (unconditional
    samples), by default as many as the task has training blocks."""
    if task.kind != "prompted":
        return [()] * (len(task.examples("train")) if limit is None else limit)
    train = task.examples("train")
    n = len(train) if limit is None else min(limit, len(train))
    return [tuple(train[i].prompt_ids) for i in range(n)]


def _write_examples(
    pipeline: Any,
    prompts: Sequence[tuple[int, ...]],
    file: Path,
    seed: int,
    overrides: dict[str, Any],
    progress: bool,
) -> dict[str, int]:
    """Generate in chunks and write one JSON line per non-empty output; returns the counts."""
    prompted = pipeline.task_kind == "prompted"
    counts = {"examples": 0, "empty": 0, "longest_prompt": 0, "longest_target": 0}
    with (
        open(file, "w", encoding="utf-8") as lines,
        progress_bar(len(prompts), "distilling", progress) as bar,
    ):
        for c, start in enumerate(range(0, len(prompts), CHUNK)):
            chunk = prompts[start : start + CHUNK]
            results = pipeline.generate(
                _prompt_texts(pipeline.tokenizer, chunk) if prompted else None,
                num_samples=1 if prompted else len(chunk),
                seed=derived_seed(seed, c),
                **overrides,
            )
            for prompt, result in zip(chunk, results, strict=True):
                if not result.ids:
                    counts["empty"] += 1
                    continue
                lines.write(
                    json.dumps({"prompt_ids": list(prompt), "target_ids": result.ids}) + "\n"
                )
                counts["examples"] += 1
                counts["longest_prompt"] = max(counts["longest_prompt"], len(prompt))
                counts["longest_target"] = max(counts["longest_target"], len(result.ids))
            bar.update(len(chunk))
    return counts


def _prompt_texts(tokenizer: Any, prompts: Sequence[tuple[int, ...]]) -> list[str]:
    """The prompts as text (``generate`` takes text); refuses a tokenizer that would not give the
    same ids back, since the teacher would then answer a different prompt than the one stored."""
    texts = [tokenizer.decode(p) for p in prompts]
    for text, ids, again in zip(texts, prompts, tokenizer.encode_batch(texts), strict=True):
        if tuple(again) != ids:
            raise XLMUserError(
                f"the task's prompt {text[:60]!r} does not survive decoding and encoding with the "
                "teacher's tokenizer, so the teacher cannot be given it exactly"
            )
    return texts


def _original_task(task: Any, config: Any) -> dict[str, Any]:
    """The task whose validation and test splits the students are measured on: the teacher's own,
    or, for a teacher that was itself trained on distilled data, that data's original task."""
    if config.name == DISTILLED_TASK:
        return dict(task.record.original_task)
    return config.model_dump(mode="json")


def _provenance(teacher: CheckpointRecord, pipeline: Any) -> dict[str, Any]:
    installed = pipeline.family.record
    return {
        "checkpoint": str(teacher.directory.resolve()),
        "plugin": teacher.plugin.model_dump(mode="json"),
        "step": teacher.step,
        "xlm_core_version": teacher.xlm_core_version,
        "task": pipeline.run_config.task.name,
        "sampled_with": {"plugin_version": installed.version, "device": str(pipeline.device)},
    }
