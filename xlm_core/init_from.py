"""``--init-from CHECKPOINT``: start a new run's model from another checkpoint's weights.

Any family into any family whose model shares the backbone (the same tensor names and
shapes): an ARLM into a BDLM or an MDLM, a stage-1 model into a stage-2 model that
holds it (``prefix`` names where the checkpoint's tensors go). Tensors are matched by
name: one in both with the same shape is **loaded**, one only in the new model is
**new** (its own initialisation stays), one only in the checkpoint is **skipped**. A
shared tensor whose shapes differ means another backbone: refused, in one line; so is a
checkpoint that shares no tensor at all (nothing would be loaded). So is a
tokenizer other than the checkpoint's: the new run tokenizes its data with the
checkpoint's tokenizer (the runner builds the task with it), and a task that insists on
another one (a text task's ``tokenizer`` setting, a plugin task that brings its own) is
refused. Everything is read and checked before the run writes a file.

It is a flag, not a config key: where the first weights came from is provenance, not a
hyper-parameter, so it is recorded in ``run.json`` (and every checkpoint's ``config.json``)
as ``init_from``, and ``--resume`` never applies it again.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import nn

from xlm_core.checkpoint import WEIGHTS_FILE, CheckpointRecord, find_checkpoint
from xlm_core.data.tokenizers import TOKENIZER_FILE, Tokenizer
from xlm_core.errors import XLMUserError

Shape = tuple[int, ...]
#: The settings that decide the backbone's tensors (``FamilyConfig``), named when shapes differ.
BACKBONE_KEYS = ("d_model", "n_layers", "n_heads", "d_ff", "tie_embeddings", "learned_positions", "token_shift")


@attrs.frozen
class InitSource:
    """A checkpoint to start from: its directory and record, checked to hold weights and a tokenizer."""

    directory: Path
    record: CheckpointRecord

    @classmethod
    def find(cls, path: str | Path, *, resume: bool = False) -> InitSource:
        if resume:
            raise XLMUserError(
                "--init-from starts a new run; a resumed run continues from its own state (drop --init-from)"
            )
        directory = find_checkpoint(path)  # a run directory means its final/ checkpoint
        record = CheckpointRecord.read(directory)
        for name in (WEIGHTS_FILE, TOKENIZER_FILE):
            if not (directory / name).is_file():
                raise XLMUserError(f"--init-from {directory}: the checkpoint has no {name}")
        return cls(directory, record)

    @property
    def tokenizer_file(self) -> Path:
        return self.directory / TOKENIZER_FILE

    def build_task(self, task_config: Any) -> Any:
        """The run's task, its data tokenized with the checkpoint's tokenizer; a task that brings
        another one (a plugin task that ignores it) or names another (a text task's ``tokenizer``)
        is refused."""
        from xlm_core.data.tasks import build_task

        task = build_task(task_config, tokenizer_path=self.tokenizer_file)
        self.check_tokenizer(task.tokenizer, getattr(task_config, "tokenizer", None))
        return task

    def check_tokenizer(self, tokenizer: Tokenizer, asked_for: Any = None) -> None:
        """Refuse a run whose tokenizer (or the one its task config names, ``asked_for``) is not
        the checkpoint's: the same ids must mean the same tokens for the weights to mean anything."""
        mine = Tokenizer.from_file(self.tokenizer_file)
        theirs = [("the task's tokenizer", tokenizer)]
        if asked_for is not None:
            theirs.append((f"the tokenizer the task names ({asked_for})", Tokenizer.from_setting(asked_for)))
        for what, other in theirs:
            if _vocab(other) != _vocab(mine):
                raise XLMUserError(
                    f"--init-from {self.directory}: {what} is not the checkpoint's (its vocabulary has "
                    f"{len(_vocab(other))} tokens, the checkpoint's {len(_vocab(mine))}, or other ids); a run "
                    "started from a checkpoint tokenizes its data with the checkpoint's tokenizer"
                )


def check_init_from(family: Any, model_config: Any, source: InitSource | None) -> None:
    """Let the family's model refuse how a new run starts (plugin API 1.2): an optional class method
    ``Model.check_init_from(config, record)``, given the ``--init-from`` checkpoint's
    :class:`CheckpointRecord` or None, raises ``ValueError`` saying why (a second training stage
    that needs the first stage's checkpoint, say). Its message becomes the one-line error."""
    check = getattr(family.component("model"), "check_init_from", None)
    if check is None:
        return
    try:
        check(model_config, None if source is None else source.record)
    except ValueError as exc:
        where = f"--init-from {source.directory}: " if source is not None else ""
        raise XLMUserError(f"{where}{exc}") from None


@attrs.frozen
class InitReport:
    """What ``initialise`` did: tensors loaded, new and skipped, each with its shape."""

    source: Path
    plugin: str
    step: int | None
    loaded: list[tuple[str, Shape]]
    new: list[tuple[str, Shape]]
    skipped: list[tuple[str, Shape]]
    parameters: int  # the numbers loaded, a tied tensor once

    def describe(self) -> str:
        step = f", step {self.step}" if self.step is not None else ""
        lines = [f"init from {self.source} ({self.plugin}{step}):"]
        lines.append(f"  loaded  {len(self.loaded)} tensors, {self.parameters:,} parameters")
        lines += [f"    {line}" for line in grouped(self.loaded)]
        for word, items in (("new", self.new), ("skipped", self.skipped)):
            lines.append(f"  {word:<7} {len(items)} tensors" + (":" if items else ""))
            lines += [f"    {line}" for line in grouped(items)]
        return "\n".join(lines)

    def record(self) -> dict[str, Any]:
        """What run.json keeps of it."""
        return {
            "checkpoint": str(self.source),
            "plugin": self.plugin,
            "step": self.step,
            "loaded": len(self.loaded),
            "new": [name for name, _ in self.new],
            "skipped": [name for name, _ in self.skipped],
        }


def initialise(model: nn.Module, source: InitSource, model_config: Any = None, prefix: str = "") -> InitReport:
    """Load ``source``'s tensors into ``model`` (under ``prefix``) where names and shapes match.

    A shared tensor of another shape is refused (``XLMUserError``), naming the backbone
    settings that differ when ``model_config`` is given.
    """
    from safetensors import safe_open

    path = source.directory / WEIGHTS_FILE
    state = model.state_dict()
    with safe_open(str(path), framework="pt", device="cpu") as file:
        shapes = {prefix + name: tuple(file.get_slice(name).get_shape()) for name in file.keys()}  # noqa: SIM118
        for name, tensor in state.items():  # in the model's order: the embedding first
            if name in shapes and tuple(tensor.shape) != shapes[name]:
                raise XLMUserError(_mismatch(source, name, shapes[name], tuple(tensor.shape), model_config))
        tensors = {name: file.get_tensor(name[len(prefix) :]) for name in shapes if name in state}
    if not tensors:  # e.g. a CALM checkpoint, whose backbone sits under generator.: nothing to start from
        raise XLMUserError(_disjoint(source, shapes, state))
    loaded = _covered(state, tensors)
    _refuse_merged_tensors(source, state, tensors)
    model.load_state_dict(tensors, strict=False)
    return InitReport(
        source=source.directory,
        plugin=source.record.plugin.name,
        step=source.record.step,
        loaded=[(name, tuple(state[name].shape)) for name in state if name in loaded],
        new=[(name, tuple(state[name].shape)) for name in state if name not in loaded],
        skipped=[(name, shape) for name, shape in shapes.items() if name not in state],
        parameters=sum(t.numel() for t in tensors.values()),
    )


def _covered(state: dict[str, torch.Tensor], tensors: dict[str, torch.Tensor]) -> set[str]:
    """Names of ``state`` that loading ``tensors`` sets: those loaded, and those tied to one
    (a head that shares the embedding's storage is saved once, under one name)."""
    loaded = set(tensors)
    for names in _tied_groups(state):
        if loaded & set(names):
            loaded |= set(names)
    return loaded


def _refuse_merged_tensors(source: InitSource, state: dict[str, torch.Tensor], tensors: dict[str, torch.Tensor]) -> None:
    """Two different checkpoint tensors cannot both become one tied tensor (untied into tied)."""
    for names in _tied_groups(state):
        present = [n for n in names if n in tensors]
        if len(present) > 1 and not all(torch.equal(tensors[present[0]], tensors[n]) for n in present[1:]):
            raise XLMUserError(
                f"--init-from {source.directory}: the checkpoint holds {' and '.join(present)} as separate "
                "tensors, which this model ties into one; set model.tie_embeddings=false"
            )


def _tied_groups(state: dict[str, torch.Tensor]) -> list[list[str]]:
    groups: dict[tuple[int, int, Shape], list[str]] = defaultdict(list)
    for name, tensor in state.items():
        groups[(tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))].append(name)
    return [names for names in groups.values() if len(names) > 1]


def _disjoint(source: InitSource, shapes: dict[str, Shape], state: dict[str, torch.Tensor]) -> str:
    def names(keys: Any) -> str:
        keys = list(keys)
        return ", ".join(keys[:2]) + (", ..." if len(keys) > 2 else "")

    return (
        f"--init-from {source.directory}: the checkpoint ({source.record.plugin.name}) shares no tensor "
        f"with this run's model, so there is nothing to start from (its tensors: {names(shapes)}; "
        f"this model's: {names(state)})"
    )


def _mismatch(source: InitSource, name: str, theirs: Shape, mine: Shape, model_config: Any) -> str:
    message = (
        f"--init-from {source.directory}: tensor {name!r} is {theirs} there but {mine} in this run's "
        "model: another backbone"
    )
    saved = source.record.run_config.get("model", {})
    if model_config is not None and isinstance(saved, dict):
        differ = [
            f"model.{key}={saved[key]} there, {getattr(model_config, key)} here"
            for key in BACKBONE_KEYS
            if key in saved and saved[key] != getattr(model_config, key, saved[key])
        ]
        if differ:
            message += f" ({'; '.join(differ)})"
    return message


def grouped(items: list[tuple[str, Shape]]) -> list[str]:
    """``name (shape)`` lines with the layers of a stack folded into one: ``blocks.{0-3}.qkv.weight (96, 32)``."""
    layers: dict[tuple[str, Shape], list[int]] = {}
    for name, shape in items:
        match = re.search(r"\.(\d+)\.", name)
        pattern = name[: match.start()] + ".#." + name[match.end() :] if match else name
        layers.setdefault((pattern, shape), []).append(int(match.group(1)) if match else 0)
    lines = []
    for (pattern, shape), numbers in layers.items():
        contiguous = numbers == list(range(numbers[0], numbers[0] + len(numbers)))
        span = (
            str(numbers[0])
            if len(numbers) == 1
            else f"{{{numbers[0]}-{numbers[-1]}}}"
            if contiguous
            else "{" + ",".join(map(str, numbers)) + "}"
        )
        lines.append(f"{pattern.replace('#', span, 1)} {shape}")
    return lines


def _vocab(tokenizer: Tokenizer) -> dict[str, int]:
    return tokenizer.backend.get_vocab(with_added_tokens=True)
