"""Star-graph path finding (Bachmann & Nagarajan 2024; the ILM paper, Patel et al. 2025).

A star graph is ``degree`` directed chains ("arms") that all pass through one
centre node. Arm 0 runs from the *source* to the *goal*; the model sees the
edges in random order plus the source and goal and must write the path. Near
the centre every arm looks alike, so a left-to-right model has to plan ahead:
the decisive step is which arm to follow out of the centre.

- An arm of length ``L`` has ``L`` nodes and ``L - 1`` edges, and holds the
  centre at position ``J``. In the centred task (easy) ``J = 0`` on every arm,
  so the source is the centre. Otherwise ``J`` is drawn uniformly from
  ``[0, L - min_plan)``, so at least ``min_plan`` edges follow the centre on
  every arm and arms differ in length (asymmetric).
- Every node gets a distinct label drawn at random per example from
  ``num_labels`` symbols ``"0" .. "num_labels-1"``; edges are shuffled per example.
- Prompt tokens: ``u1 v1 u2 v2 ... uE vE source goal``. Target tokens: the path
  written as its edges, ``source n1 n1 n2 ... nk goal``. See docs/tasks.md.

Generation is vectorised over a whole split with numpy (50,000 examples in well
under a second) and deterministic in ``(seed, split)``: each split draws from
its own stream of ``numpy.random.SeedSequence([seed, split])``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import attrs
import numpy as np

from xlm_core.components import DataShape, Example, Split
from xlm_core.config import STAR_TASKS
from xlm_core.data.tokenizers import Tokenizer
from xlm_core.errors import XLMUserError

SPLIT_SIZES: dict[str, int] = {"train": 50_000, "validation": 100, "test": 5_000}
#: Which stream of the seed each split draws from; never renumber (it would change every dataset).
_SPLIT_STREAM = {"train": 0, "validation": 1, "test": 2}


@attrs.frozen
class StarSpec:
    """The parameters of one star-graph task."""

    name: str
    degree: int
    min_arm: int  # nodes per arm, including the centre
    max_arm: int
    min_plan: int  # edges after the centre on every arm (asymmetric graphs only)
    num_labels: int
    centred: bool = False  # source at the centre (every arm starts there)

    def __attrs_post_init__(self) -> None:
        if self.num_labels < self.degree * (self.max_arm - 1) + 1:
            raise ValueError(f"{self.name}: {self.num_labels} labels cannot name every node")
        if not self.centred and not 0 < self.min_plan < self.min_arm:
            raise ValueError(f"{self.name}: need 0 < min_plan < min_arm")

    @property
    def shape(self) -> DataShape:
        longest_edges = self.degree * (self.max_arm - 1)
        return DataShape(prompt_length=2 * longest_edges + 2, target_length=2 * (self.max_arm - 1))

    @property
    def description(self) -> str:
        if self.centred:
            arms = f"arms of {self.max_arm} nodes, source at the centre"
        else:
            arms = f"arms of {self.min_arm}-{self.max_arm} nodes, {self.min_plan}+ edges after the centre"
        return f"star-graph path finding: degree {self.degree}, {arms}, {self.num_labels} labels"

    def symbols(self) -> list[str]:
        return [str(k) for k in range(self.num_labels)]


_SPECS = (
    StarSpec("star-easy", degree=3, min_arm=5, max_arm=5, min_plan=4, num_labels=20, centred=True),
    StarSpec("star-medium", degree=3, min_arm=3, max_arm=6, min_plan=2, num_labels=20),
    StarSpec("star-hard", degree=5, min_arm=6, max_arm=12, min_plan=5, num_labels=56),
)
STAR_SPECS: dict[str, StarSpec] = {spec.name: spec for spec in _SPECS}
# The run config routes exactly these names to the star task record (xlm_core.config.task).
assert tuple(STAR_SPECS) == STAR_TASKS, "STAR_SPECS and xlm_core.config.STAR_TASKS must name the same tasks"


@attrs.frozen
class StarArrays:
    """One split as label arrays (-1 = padding): what the generator draws, before tokenisation."""

    prompt: np.ndarray  # (N, 2 * max_edges + 2): edges, then source and goal
    prompt_lengths: np.ndarray  # (N,)
    target: np.ndarray  # (N, 2 * (max_arm - 1)): the path's edges
    target_lengths: np.ndarray  # (N,)


def generate(spec: StarSpec, count: int, rng: np.random.Generator) -> StarArrays:
    """Draw ``count`` star graphs at once. Labels are ints in ``[0, num_labels)``."""
    n, d, m = count, spec.degree, spec.max_arm
    arm_len = rng.integers(spec.min_arm, spec.max_arm + 1, size=(n, d))
    if spec.centred:
        centre_at = np.zeros((n, d), dtype=np.int64)
    else:
        centre_at = rng.integers(0, arm_len - spec.min_plan)

    # Give every node a slot: 0 for the shared centre, 1.. for the others (row-major over arms).
    pos = np.arange(m)
    real = pos < arm_len[..., None]  # (n, d, m)
    centre = pos == centre_at[..., None]
    others = (real & ~centre).reshape(n, d * m)
    slot = np.where(centre.reshape(n, d * m), 0, np.where(others, np.cumsum(others, axis=1), -1))

    # Labels are a fresh random permutation per example; slot k gets the permutation's k-th label.
    labels = rng.permuted(
        np.broadcast_to(np.arange(spec.num_labels, dtype=np.int32), (n, spec.num_labels)), axis=1
    )
    nodes = np.where(slot >= 0, np.take_along_axis(labels, slot.clip(0), axis=1), -1).reshape(
        n, d, m
    )

    # Edges follow each arm: (node[p], node[p + 1]) for p < L - 1.
    heads, tails = nodes[:, :, :-1].reshape(n, -1), nodes[:, :, 1:].reshape(n, -1)
    is_edge = (pos[:-1] < arm_len[..., None] - 1).reshape(n, -1)
    n_edges = is_edge.sum(axis=1)
    # Shuffle the real edges to the front in random order: padding keys sort last.
    order = np.argsort(np.where(is_edge, rng.random(is_edge.shape), 2.0), axis=1)
    heads, tails = (
        np.take_along_axis(heads, order, axis=1),
        np.take_along_axis(tails, order, axis=1),
    )
    prompt = np.full((n, 2 * heads.shape[1] + 2), -1, dtype=np.int32)
    prompt[:, 0:-2:2], prompt[:, 1:-2:2] = heads, tails
    prompt[:, :-2][np.arange(2 * heads.shape[1]) >= 2 * n_edges[:, None]] = -1
    rows = np.arange(n)
    source, goal = nodes[:, 0, 0], nodes[rows, 0, arm_len[:, 0] - 1]
    prompt[rows, 2 * n_edges], prompt[rows, 2 * n_edges + 1] = source, goal

    # The path is arm 0 from its first node to its last, written as its edges.
    path_edges = arm_len[:, 0] - 1
    target = np.stack([nodes[:, 0, :-1], nodes[:, 0, 1:]], axis=2).reshape(n, -1)
    target[np.arange(target.shape[1]) >= 2 * path_edges[:, None]] = -1
    return StarArrays(prompt, 2 * n_edges + 2, target, 2 * path_edges)


class StarTask:
    """A star-graph task: a word-level tokenizer over the node labels and three generated splits."""

    kind: Literal["prompted"] = "prompted"

    def __init__(self, spec: StarSpec, seed: int = 0, *, tokenizer_path: str | Path | None = None):
        self.spec, self.seed, self.name = spec, seed, spec.name
        self.shape = spec.shape
        self.tokenizer = (
            Tokenizer.from_file(tokenizer_path)
            if tokenizer_path is not None
            else Tokenizer.word_level(spec.symbols())
        )
        ids = [self.tokenizer.token_to_id(s) for s in spec.symbols()]
        if any(i is None for i in ids):
            raise XLMUserError(
                f"{tokenizer_path}: tokenizer does not hold the node labels of {spec.name}"
            )
        self._label_ids = np.array(ids, dtype=np.int64)
        self._splits: dict[str, tuple[Example, ...]] = {}

    def examples(self, split: Split) -> Sequence[Example]:
        """The split's examples, generated on first use and kept in memory."""
        if split not in SPLIT_SIZES:
            raise XLMUserError(f"unknown split {split!r}; use one of {', '.join(SPLIT_SIZES)}")
        if split not in self._splits:
            self._splits[split] = self._build(split)
        return self._splits[split]

    def arrays(self, split: Split) -> StarArrays:
        """The split's raw label arrays (for analysis); same draws as :meth:`examples`."""
        stream = np.random.SeedSequence([self.seed & 0xFFFF_FFFF_FFFF_FFFF, _SPLIT_STREAM[split]])
        return generate(self.spec, SPLIT_SIZES[split], np.random.default_rng(stream))

    def _build(self, split: Split) -> tuple[Example, ...]:
        a = self.arrays(split)
        prompts = np.where(a.prompt >= 0, self._label_ids[a.prompt.clip(0)], -1).tolist()
        targets = np.where(a.target >= 0, self._label_ids[a.target.clip(0)], -1).tolist()
        return tuple(
            Example(tuple(p[:lp]), tuple(t[:lt]))
            for p, lp, t, lt in zip(
                prompts, a.prompt_lengths.tolist(), targets, a.target_lengths.tolist(), strict=True
            )
        )

    def __repr__(self) -> str:
        return f"StarTask({self.name!r}, seed={self.seed})"
