"""What ``Pipeline.generate`` returns, and which prompts it samples when none are given."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:  # pragma: no cover
    from xlm_core.pipeline import Pipeline

#: Shown in place of a position the model has not decided yet (``--show-steps``).
MASK_GLYPH = "_"


@attrs.frozen
class GenerationResult:
    """One sample. ``ids`` are the generated target tokens (no prompt, no EOS).

    ``history`` (with ``record_steps``) is the target after every decoding step,
    MASK ids marking undecided positions; :meth:`Pipeline.render` draws them.
    ``reference`` is the task's target when the prompt came from the test split.
    """

    prompt: str
    text: str
    ids: list[int]
    steps: int
    nfe: int
    history: list[list[int]] | None = None
    reference: str | None = None
    counters: dict[str, int] = attrs.field(factory=dict)  # Prediction.counters of the row (API 1.2)

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def resolve_prompts(
    pipe: Pipeline, prompts: Sequence[str] | None, num_samples: int | None
) -> tuple[list[list[int]], list[str], list[str | None]]:
    """(prompt ids, prompt texts, references) of every sample ``generate`` draws.

    ``num_samples`` per prompt (default 1); without prompts, ``num_samples`` (default 4)
    unconditional samples for a text task, or the first ``num_samples`` test prompts of a
    prompted task with their targets as references.
    """
    per_prompt = 1 if num_samples is None else num_samples
    if prompts is not None:
        texts = [p for p in prompts for _ in range(per_prompt)]
        return [pipe.tokenizer.encode(p) for p in texts], texts, [None] * len(texts)
    count = 4 if num_samples is None else num_samples
    if pipe.task_kind == "prompted":
        examples = list(pipe.task.examples("test")[:count])
        prompt_ids = [list(e.prompt_ids) for e in examples]
        texts = [pipe.tokenizer.decode(p) for p in prompt_ids]
        return prompt_ids, texts, [pipe.tokenizer.decode(e.target_ids) for e in examples]
    return [[] for _ in range(count)], [""] * count, [None] * count
