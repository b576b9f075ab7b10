"""Sample-quality arithmetic: distinct-n, per-sample statistics and the BrierLM estimator. No torch.

Everything here works on plain lists of token ids, so the same code measures a
model's samples and the data they are compared with (``data_`` figures).

BrierLM (Shao et al. 2025, "Continuous Autoregressive Language Models", arXiv
2510.27688; the authors' code, shaochenze/calm) scores a model from samples
alone. For a prefix with true next tokens ``y``, the Brier score of the model's
distribution p over the next n-gram is ``2 p(y) - sum_x p(x)^2`` (one minus the
usual squared error, so higher is better, at most 1). Two independent samples
``x1``, ``x2`` of the continuation give an unbiased estimate of it,
``1[x1 = y] + 1[x2 = y] - 1[x1 = x2]`` on the first n tokens (the authors' form;
``2·1[x1 = y] - 1[x1 = x2]`` has the same mean and more variance). Brier-n is
its mean over prefixes, for n = 1..4, and BrierLM is 100 × the geometric mean of
Brier-1..4.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import attrs

from xlm_core.metrics import unigram_entropy

#: The n-gram orders of distinct-n and of BrierLM (the paper's Brier-1..4).
ORDERS = (1, 2, 3, 4)


def distinct_n(ids: Sequence[int], n: int) -> float | None:
    """Share of distinct n-grams among the n-grams of one sequence; None when it has none."""
    grams = [tuple(ids[i : i + n]) for i in range(len(ids) - n + 1)]
    return len(set(grams)) / len(grams) if grams else None


def document_lengths(ids: Sequence[int], eos_id: int) -> list[int]:
    """Lengths of the EOS-separated pieces of a packed sequence (EOS not counted).

    A piece cut by the end of the sequence counts too, in samples and data alike, so
    the mean compares like with like; an empty piece after a final EOS does not exist.
    """
    lengths, current = [], 0
    for token in ids:
        if token == eos_id:
            lengths.append(current)
            current = 0
        else:
            current += 1
    if current:
        lengths.append(current)
    return lengths


@attrs.define(slots=True)
class SampleStats:
    """Running sums of per-sample figures: length, unigram entropy, distinct-n, document length.

    Each figure is a mean over samples (of the per-sample value), so it does not depend
    on how many samples are drawn, and data measured the same way compares with it.
    """

    eos_id: int | None = None  # set for packed text: document lengths are then reported
    count: int = 0
    tokens: int = 0
    entropy_sum: float = 0.0
    distinct_sums: dict[int, float] = attrs.field(factory=lambda: dict.fromkeys(ORDERS, 0.0))
    distinct_counts: dict[int, int] = attrs.field(factory=lambda: dict.fromkeys(ORDERS, 0))
    documents: int = 0
    document_tokens: int = 0

    def add(self, ids: Sequence[int]) -> None:
        self.count += 1
        self.tokens += len(ids)
        self.entropy_sum += unigram_entropy(ids)
        for n in ORDERS:
            value = distinct_n(ids, n)
            if value is not None:
                self.distinct_sums[n] += value
                self.distinct_counts[n] += 1
        if self.eos_id is not None:
            lengths = document_lengths(ids, self.eos_id)
            self.documents += len(lengths)
            self.document_tokens += sum(lengths)

    def summary(self, prefix: str = "") -> dict[str, float | None]:
        """``{prefix}mean_length``, ``entropy``, ``distinct_1..4`` (and ``mean_doc_length``)."""
        out: dict[str, float | None] = {
            f"{prefix}mean_length": _mean(self.tokens, self.count),
            f"{prefix}entropy": _mean(self.entropy_sum, self.count),
        }
        for n in ORDERS:
            out[f"{prefix}distinct_{n}"] = _mean(self.distinct_sums[n], self.distinct_counts[n])
        if self.eos_id is not None:
            out[f"{prefix}mean_doc_length"] = _mean(self.document_tokens, self.documents)
        return out


def ngram_match(a: Sequence[int], b: Sequence[int], n: int) -> bool:
    """The first n tokens of ``a`` and ``b`` exist and are equal."""
    return len(a) >= n and len(b) >= n and list(a[:n]) == list(b[:n])


def brier_estimate(x1: Sequence[int], x2: Sequence[int], y: Sequence[int], n: int) -> int:
    """The unbiased two-sample estimate of Brier-n for one prefix: -1, 0, 1 or 2."""
    return ngram_match(x1, y, n) + ngram_match(x2, y, n) - ngram_match(x1, x2, n)


def brier_lm(briers: Sequence[float | None]) -> float | None:
    """100 × the geometric mean of Brier-1..4, each clipped at 0; None if one is missing.

    The paper clips the product (``max(b1 b2 b3 b4, 0) ** 0.25``). Clipping each factor
    gives the same number whenever an odd number of them is negative, and 0 rather than
    a spurious positive score when an even number is (Monte-Carlo noise of a weak model).
    """
    if not briers or any(b is None for b in briers):
        return None
    product = math.prod(max(b, 0.0) for b in briers)  # type: ignore[type-var]
    return 100.0 * product ** (1.0 / len(briers))


@attrs.define(slots=True)
class BrierTotals:
    """Sums of the per-prefix Brier-n estimates and their squares (for a Monte-Carlo error)."""

    sums: dict[int, float] = attrs.field(factory=lambda: dict.fromkeys(ORDERS, 0.0))
    squares: dict[int, float] = attrs.field(factory=lambda: dict.fromkeys(ORDERS, 0.0))
    counts: dict[int, int] = attrs.field(factory=lambda: dict.fromkeys(ORDERS, 0))

    def add(self, x1: Sequence[int], x2: Sequence[int], y: Sequence[int]) -> None:
        """One prefix: its two sampled continuations and the true one. An order longer than
        ``y`` (a short prompted target) is left out for this prefix."""
        for n in ORDERS:
            if len(y) >= n:
                value = brier_estimate(x1, x2, y, n)
                self.sums[n] += value
                self.squares[n] += value * value
                self.counts[n] += 1

    def summary(self) -> dict[str, float | int | None]:
        """``brier_1..4``, their standard errors ``brier_n_stderr`` and ``brier_lm``."""
        out: dict[str, float | int | None] = {}
        for n in ORDERS:
            out[f"brier_{n}"] = _mean(self.sums[n], self.counts[n])
        for n in ORDERS:
            out[f"brier_{n}_stderr"] = _stderr(self.sums[n], self.squares[n], self.counts[n])
        out["brier_lm"] = brier_lm([out[f"brier_{n}"] for n in ORDERS])  # type: ignore[misc]
        return out


#: Why a figure can be null, by name (``{n}`` stands for each of 1..4).
NULL_REASONS = {
    "distinct_{n}": "no sample has {n} tokens",
    "data_distinct_{n}": "no unit of the data has {n} tokens",
    "brier_{n}": "no prefix has {n} true next tokens",
    "brier_{n}_stderr": "fewer than two prefixes",
    "brier_lm": "a Brier-n is missing",
    "mean_doc_length": "the samples hold no document",
    "data_mean_doc_length": "the data holds no document",
    "samples_per_s": "decoding took no measurable time",
    "tokens_per_s": "decoding took no measurable time",
    "brier_samples_per_s": "decoding took no measurable time",
    "brier_tokens_per_s": "decoding took no measurable time",
}
_REASONS = {
    pattern.format(n=n): why.format(n=n) for pattern, why in NULL_REASONS.items() for n in ORDERS
}


def null_reasons(figures: dict[str, object]) -> dict[str, str]:
    """``{name: why}`` for every null figure whose reason is known (JSON carries it as ``notes``)."""
    return {k: _REASONS[k] for k, v in figures.items() if v is None and k in _REASONS}


def greedy_note(settings: object) -> dict[str, str]:
    """A note when sampling is greedy: the figures then describe a decoder, not the model."""
    if getattr(settings, "temperature", None) != 0:
        return {}
    return {
        "predictor.temperature": "0 (greedy): samples are the decoder's most likely choices, not "
        "draws from the model; entropy and gen_ppl describe that decoder, and BrierLM's two "
        "draws coincide (Brier-n = 2·1[x = y] - 1); set predictor.temperature=1 to score the model"
    }


def _mean(total: float, count: int) -> float | None:
    return total / count if count else None


def _stderr(total: float, squares: float, count: int) -> float | None:
    """Standard error of a mean from its sums (sample variance, n - 1); None below two values."""
    if count < 2:
        return None
    mean = total / count
    variance = max(squares - count * mean * mean, 0.0) / (count - 1)
    return math.sqrt(variance / count)
