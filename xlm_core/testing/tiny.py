"""The kit's tiny set-up: a family's components at ``d_model=32, n_layers=2, n_heads=2`` on a
24-token vocabulary, prompts of at most 6 and targets of at most 8 tokens, on CPU."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import pydantic
import torch
from torch import nn

from xlm_core.components import Batch, DataShape, Example, Prediction, Vocab
from xlm_core.plugins.isolation import describe_exception
from xlm_core.plugins.registry import Family
from xlm_core.testing.contracts import expect

#: The backbone every check builds: small enough that the whole kit takes about a second on CPU.
TINY_BACKBONE: dict[str, Any] = {"d_model": 32, "n_layers": 2, "n_heads": 2}
TINY_VOCAB = Vocab(size=24, pad_id=0, mask_id=1, bos_id=2, eos_id=3, cls_id=4)
TINY_SHAPE = DataShape(prompt_length=6, target_length=8)
PREDICT_SEEDS = (11, 12, 13, 14)


def sharpen(model: nn.Module, scale: float = 1.0) -> nn.Module:
    """``model`` with every weight matrix redrawn at ``scale`` times unit scale (std ``scale /
    sqrt(fan_in)``, from torch's current random state) and put in eval mode: an untrained model
    whose predictions are sharp and depend on its input, so that a difference in what a position
    sees shows in its samples and losses (the default 0.02 init predicts nearly uniformly)."""
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, p.shape[1] ** -0.5 * scale)
    return model.eval()


def tiny_examples(
    vocab: Vocab = TINY_VOCAB, shape: DataShape = TINY_SHAPE, seed: int = 0
) -> list[Example]:
    """Four examples whose (prompt, target) lengths cover the edges: empty prompt, full prompt,
    a one-token target and a full-length target."""
    rng = random.Random(seed)
    content = [i for i in range(vocab.size) if i not in vocab.special_ids]
    lengths = [
        (0, shape.target_length),
        (shape.prompt_length, max(1, shape.target_length // 2 - 1)),
        (shape.prompt_length // 2, 1),
        (max(1, shape.prompt_length // 3), shape.target_length - 3),
    ]
    return [
        Example(
            prompt_ids=tuple(rng.choice(content) for _ in range(p)),
            target_ids=tuple(rng.choice(content) for _ in range(t)),
        )
        for p, t in lengths
    ]


@attrs.define
class TinySetup:
    """A family's components, configs and data at the kit's tiny size."""

    family: Family
    config: Any
    settings: Any
    vocab: Vocab = TINY_VOCAB
    shape: DataShape = TINY_SHAPE
    examples: list[Example] = attrs.field(factory=tiny_examples)

    @classmethod
    def build(
        cls,
        family: Family,
        *,
        config_overrides: Mapping[str, Any] | None = None,
        settings_overrides: Mapping[str, Any] | None = None,
    ) -> TinySetup:
        tiny = family.manifest.presets.get("tiny", {})
        model_fields = {**tiny.get("model", {}), **TINY_BACKBONE, **(config_overrides or {})}
        settings_fields = {**tiny.get("predictor", {}), **(settings_overrides or {})}
        try:
            config = family.make_config(**model_fields)
            settings = family.manifest.predictor_settings(**settings_fields)
        except pydantic.ValidationError as exc:
            raise AssertionError(f"the tiny config is invalid: {describe_exception(exc)}") from exc
        family.resolve_all()  # a PluginError here names the component that cannot be used
        return cls(family, config, settings)

    def component(self, kind: str) -> Any:
        return self.family.component(kind)  # type: ignore[arg-type]

    def model(self, seed: int = 0) -> nn.Module:
        torch.manual_seed(seed)
        model = self.component("model")(self.config, self.vocab)
        expect(isinstance(model, nn.Module), f"the model is {type(model).__name__}, not an nn.Module")
        return model

    def collator(self) -> Any:
        return self.component("collator")(self.config, self.vocab, self.shape)

    def loss(self) -> Any:
        return self.component("loss")(self.config, self.vocab)

    def predictor(self) -> Any:
        return self.component("predictor")(self.config, self.vocab, self.shape)

    def batch(self, seed: int = 0) -> Batch:
        return self.collator()(self.examples, generator=torch.Generator().manual_seed(seed))

    @property
    def prompts(self) -> list[list[int]]:
        return [list(e.prompt_ids) for e in self.examples]

    def predict(
        self,
        model: nn.Module,
        *,
        settings: Any = None,
        record_steps: bool = False,
        rows: Sequence[int] | None = None,
    ) -> Prediction:
        """Decode the examples' prompts (only ``rows`` of them, if given), each with its own seed."""
        rows = range(len(self.examples)) if rows is None else rows
        model.eval()
        with torch.no_grad():
            return self.predictor().predict(
                model,
                [self.prompts[i] for i in rows],
                settings=self.settings if settings is None else settings,
                seeds=[PREDICT_SEEDS[i] for i in rows],
                record_steps=record_steps,
            )
