"""Task and likelihood metrics shared by validation and ``xlm eval``. Plain Python, no torch.

Sums are accumulated and divided once at the end (``Totals``), so a metric over
a split never depends on how the split was batched: a per-token NLL is the
summed NLL over the summed token count, not a mean of batch means.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs


def exact_match(predicted: Sequence[int], target: Sequence[int]) -> bool:
    """The generated target equals the reference, token for token and in length."""
    return list(predicted) == list(target)


def token_matches(predicted: Sequence[int], target: Sequence[int]) -> int:
    """Positions of ``target`` that ``predicted`` gets right (a missing position counts as wrong)."""
    return sum(p == t for p, t in zip(predicted, target, strict=False))


def perplexity(nll: float | None) -> float | None:
    """``exp(nll)``; None when there is no likelihood, infinity when it overflows."""
    if nll is None:
        return None
    try:
        return math.exp(nll)
    except OverflowError:
        return math.inf


def unigram_entropy(ids: Sequence[int]) -> float:
    """Entropy (nats) of the token distribution within one sequence: low values flag repetitive samples."""
    if not ids:
        return 0.0
    counts = Counter(ids)
    n = len(ids)
    return -sum(c / n * math.log(c / n) for c in counts.values())


@attrs.define(slots=True)
class Totals:
    """Running sums of everything evaluation reports; ``summary()`` turns them into means."""

    examples: int = 0  # examples scored by the loss (times the number of corruption draws)
    tokens: int = 0  # target tokens scored by the loss (likewise)
    loss_sum: float = 0.0  # batch loss times its weight (LossOutput.loss_weight)
    loss_weight: float = 0.0
    nll_sum: float = 0.0
    nll_tokens: int = 0
    metric_sums: dict[str, float] = attrs.field(factory=dict)
    predicted: int = 0  # examples decoded
    exact: int = 0
    token_correct: int = 0
    target_tokens: int = 0  # reference target tokens of the decoded examples
    generated_tokens: int = 0
    nfe: int = 0
    steps: int = 0
    entropy_sum: float = 0.0
    has_targets: bool = False  # prompted tasks: compare the generated target with the reference

    def add_loss(
        self,
        batch_size: int,
        loss: float,
        n_tokens: int,
        nll_sum: float | None,
        metrics: dict[str, float],
        *,
        loss_weight: float,
    ) -> None:
        self.examples += batch_size
        self.tokens += n_tokens
        self.loss_sum += loss * loss_weight
        self.loss_weight += loss_weight
        if nll_sum is not None:
            self.nll_sum += nll_sum
            self.nll_tokens += n_tokens
        for name, value in metrics.items():
            self.metric_sums[name] = self.metric_sums.get(name, 0.0) + value * batch_size

    def add_loss_output(self, out: Any, batch_size: int, *, counted: bool = True) -> None:
        """Add what a family's loss returned (a ``LossOutput``) for a batch of ``batch_size`` examples.

        ``counted=False`` adds zeros: a process that only repeats a replicated
        evaluation still names every metric, so :meth:`reduced` lines up across processes.
        """
        scale = 1 if counted else 0
        nll_sum = None if out.nll_sum is None else float(out.nll_sum) * scale
        self.add_loss(
            batch_size * scale,
            float(out.loss),
            int(out.n_tokens) * scale,
            nll_sum,
            {name: float(value) * scale for name, value in out.metrics.items()},
            loss_weight=float(out.eval_weight(batch_size)) * scale,
        )

    def add_prediction(
        self, generated: Sequence[int], nfe: int, steps: int, target: Sequence[int] | None
    ) -> None:
        self.predicted += 1
        self.generated_tokens += len(generated)
        self.nfe += nfe
        self.steps += steps
        self.entropy_sum += unigram_entropy(generated)
        if target is not None:
            self.has_targets = True
            self.exact += exact_match(generated, target)
            self.token_correct += token_matches(generated, target)
            self.target_tokens += len(target)

    def reduced(self, sum_across: Callable[[list[float]], list[float]]) -> Totals:
        """These totals summed over processes.

        ``sum_across`` sums a list of numbers element-wise across processes (every
        process passes the same layout: the same metric names, in sorted order).
        """
        names = sorted(self.metric_sums)
        numbers = [float(getattr(self, f)) for f in _SUMMED] + [self.metric_sums[n] for n in names]
        summed = sum_across(numbers)
        fields = dict(zip(_SUMMED, summed[: len(_SUMMED)], strict=True))
        out = Totals(**{f: type(getattr(self, f))(v) for f, v in fields.items()})
        out.metric_sums = dict(zip(names, summed[len(_SUMMED) :], strict=True))
        return out

    def summary(self, nll_kind: str) -> dict[str, float | str | None]:
        out: dict[str, float | str | None] = {}
        if self.has_targets:
            out["seq_acc"] = _ratio(self.exact, self.predicted)
            out["token_acc"] = _ratio(self.token_correct, self.target_tokens)
        nll = _ratio(self.nll_sum, self.nll_tokens) if nll_kind != "none" else None
        out.update(nll=nll, nll_kind=nll_kind, ppl=perplexity(nll))
        if self.examples:
            out["loss"] = _ratio(self.loss_sum, self.loss_weight)
            out.update(
                {name: value / self.examples for name, value in sorted(self.metric_sums.items())}
            )
        if self.predicted:
            out["nfe"] = self.nfe / self.predicted
            out["steps"] = self.steps / self.predicted
            out["mean_length"] = self.generated_tokens / self.predicted
            out["entropy"] = self.entropy_sum / self.predicted
        return out


#: The numeric fields of :class:`Totals`, in the order :meth:`Totals.reduced` packs them.
_SUMMED = tuple(f.name for f in attrs.fields(Totals) if f.name != "metric_sums")


def mean_length(sequences: Iterable[Sequence[int]]) -> float | None:
    lengths = [len(s) for s in sequences]
    return sum(lengths) / len(lengths) if lengths else None


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None
