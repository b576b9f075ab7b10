"""The judge of generative perplexity: a checkpoint with an exact likelihood that scores samples.

Generative perplexity is the judge's perplexity of a model's samples, so the judge
must give an exact likelihood (``nll_kind: exact``; a bound would make every sample
look worse by the bound's slack). When the judge reads text with another tokenizer,
each sample is decoded and encoded again with the judge's: document by document,
its EOS separators kept in place, so the judge sees the same packed unit the model
wrote. Data scored the same way gives the number to compare with (``data_gen_ppl``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from xlm_core.components import Example
from xlm_core.errors import XLMUserError

if TYPE_CHECKING:  # pragma: no cover
    from typing import TypeAlias

    from xlm_core.data.tokenizers import Tokenizer
    from xlm_core.pipeline import Pipeline

    #: What names a judge: a pipeline, or the path of its checkpoint.
    JudgeLike: TypeAlias = Pipeline | str | os.PathLike[str]


class Judge:
    """A pipeline whose family's likelihood is exact, scoring ``(context, unit)`` pairs of ids."""

    def __init__(self, pipeline: Pipeline, origin: str):
        _check_exact(pipeline.family.name, pipeline.nll_kind, origin)
        self.pipeline, self.origin = pipeline, origin

    @classmethod
    def of(cls, judge: JudgeLike, device: Any) -> Judge:
        """``judge`` itself when it is a pipeline, else the checkpoint it names, loaded on ``device``
        once its family is known to give an exact likelihood."""
        from xlm_core.checkpoint import CheckpointRecord, find_checkpoint
        from xlm_core.pipeline import Pipeline

        if isinstance(judge, Pipeline):
            return cls(judge, str(judge.checkpoint or "in-memory pipeline"))
        try:
            record = CheckpointRecord.read(find_checkpoint(judge))
            family = record.family()
            _check_exact(family.name, family.component("loss").nll_kind, str(judge))
            return cls(Pipeline.from_checkpoint(record, family=family, device=device), str(judge))
        except XLMUserError as exc:
            message = str(exc)
            if message.startswith("judge "):
                raise
            raise type(exc)(f"judge {judge}: {message}") from None

    def describe(self, source: Tokenizer) -> dict[str, Any]:
        """Which judge, and whether it re-tokenized the samples."""
        return {
            "judge": self.origin,
            "judge_plugin": self.pipeline.family.name,
            "judge_nll_kind": self.pipeline.nll_kind,
            "retokenized": not self._same_tokenizer(source),
        }

    def score(
        self,
        source: Tokenizer,
        pairs: Sequence[tuple[Sequence[int], Sequence[int]]],
        *,
        progress: bool = False,
    ) -> dict[str, Any]:
        """The judge's per-token NLL (and ppl) of each unit given its context, over all pairs:
        summed NLL over summed tokens (each unit's tokens plus its end, as the data's NLL counts)."""
        examples = [
            Example(tuple(self._ids(source, context)), tuple(self._ids(source, unit)))
            for context, unit in pairs
        ]
        try:
            scored = self.pipeline.score(examples, progress=progress)
        except ValueError as exc:  # e.g. a fixed-window judge whose task is shorter than a sample
            raise XLMUserError(f"judge {self.origin} cannot score the samples: {exc}") from None
        return {"nll": scored["nll"], "ppl": scored["ppl"], "n_tokens": scored["n_tokens"]}

    # -- re-tokenization -----------------------------------------------------------------------

    def _same_tokenizer(self, source: Tokenizer) -> bool:
        return source.fingerprint() == self.pipeline.tokenizer.fingerprint()

    def _ids(self, source: Tokenizer, ids: Sequence[int]) -> list[int]:
        """``ids`` (in ``source``'s vocabulary) in the judge's, document by document."""
        if self._same_tokenizer(source):
            return list(ids)
        target = self.pipeline.tokenizer
        out: list[int] = []
        for k, document in enumerate(_split(ids, source.vocab.eos_id)):
            if k:
                out.append(target.vocab.eos_id)
            out.extend(self._encode(source.decode(document)))
        return out

    def _encode(self, text: str) -> list[int]:
        """``text`` in the judge's tokens; one line when its tokenizer cannot hold it."""
        tokenizer = self.pipeline.tokenizer
        try:
            ids = tokenizer.encode(text)
        except XLMUserError as exc:  # a vocabulary without an unknown token: the word is named
            raise XLMUserError(
                f"judge {self.origin}: its tokenizer cannot encode the samples ({exc})"
            ) from None
        unknown = _unknown_id(tokenizer)
        if unknown is not None and unknown in ids:  # scoring [UNK] would score a different text
            raise XLMUserError(
                f"judge {self.origin}: its tokenizer cannot encode the samples "
                f"({text[:40]!r} holds text it reads as its unknown token)"
            )
        return ids


def _unknown_id(tokenizer: Tokenizer) -> int | None:
    """The id of the tokenizer's unknown token (WordPiece, BPE with ``unk_token``), if it has one."""
    token = getattr(tokenizer.backend.model, "unk_token", None)
    return tokenizer.token_to_id(token) if token else None


def _check_exact(family: str, nll_kind: str, origin: str) -> None:
    if nll_kind != "exact":
        raise XLMUserError(
            f"judge {origin}: family {family!r} has nll_kind {nll_kind!r}; generative perplexity "
            "needs a judge with nll_kind 'exact' (an autoregressive model such as arlm)"
        )


def _split(ids: Sequence[int], eos_id: int) -> list[list[int]]:
    """The pieces of ``ids`` between EOS tokens (n separators make n + 1 pieces, empty ones kept)."""
    pieces: list[list[int]] = [[]]
    for token in ids:
        if token == eos_id:
            pieces.append([])
        else:
            pieces[-1].append(token)
    return pieces
