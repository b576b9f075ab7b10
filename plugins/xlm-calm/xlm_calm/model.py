"""The CALM model: the chunk autoencoder, and in stage 2 the generator on top of it, frozen beneath it.

Stage 1 (``stage: autoencoder``) builds the autoencoder alone. Stage 2 (``stage:
generator``) builds both, with the autoencoder's parameters frozen
(``requires_grad=False``: the optimiser and the conformance kit's gradient check leave
them out) and the autoencoder held in eval mode whatever mode the model is put in, so
no dropout touches the targets. The tensor names are the same in both stages, so the
stage-1 checkpoint loads into a stage-2 model with ``--init-from`` (the autoencoder's
tensors loaded, the generator's new), and the stage-2 checkpoint holds both: ``xlm
generate`` needs nothing else. :meth:`CALMModel.check_init_from` (plugin API 1.2)
refuses a stage-2 run without such a checkpoint, or with one whose autoencoder is
another.

Inference state (the KV cache over chunks) belongs to the predictor.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from torch import Tensor, nn

from xlm_calm import layout
from xlm_calm.autoencoder import ChunkAutoencoder
from xlm_calm.config import AUTOENCODER_KEYS, CALMConfig
from xlm_calm.generator import ChunkGenerator
from xlm_core.components import ModelOutput, Vocab


class CALMModel(nn.Module):
    """``model(input_ids, attention_mask=None) -> ModelOutput``: the autoencoder's reconstruction.

    ``input_ids`` ``(B, L)`` is a whole number of chunks (the collator's layout); each chunk
    is encoded to its posterior mean and decoded, and ``logits`` ``(B, L, V)`` are the
    decoder's, the model's token-level view of the text in both stages. The losses and the
    predictor use the parts directly: ``autoencoder`` (``posterior``, ``decode``) and, in
    stage 2, ``generator`` (``hidden``, ``sample``, ``new_cache``).
    """

    def __init__(self, config: CALMConfig, vocab: Vocab):
        super().__init__()
        self.k, self.stage = config.chunk_size, config.stage
        self.autoencoder = ChunkAutoencoder(config, vocab.size)
        self.generator: ChunkGenerator | None = None
        if config.stage == "generator":
            self.generator = ChunkGenerator(config, vocab.size)
            self.autoencoder.requires_grad_(False)

    @property
    def frozen_autoencoder(self) -> bool:
        return self.generator is not None

    def train(self, mode: bool = True) -> CALMModel:
        super().train(mode)
        if (
            self.frozen_autoencoder
        ):  # its dropout never applies: stage 2 reads fixed targets from it
            self.autoencoder.eval()
        return self

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> ModelOutput:
        mean, _ = self.autoencoder.posterior(layout.chunks(input_ids, self.k))
        logits = self.autoencoder.decode(mean)
        return ModelOutput(logits.flatten(1, 2))

    @classmethod
    def check_init_from(cls, config: CALMConfig, source: Any) -> None:
        """Refuse a new run whose start does not fit its stage (plugin API 1.2; the harness calls it
        before building the model, ``source`` the ``--init-from`` checkpoint's record or None).

        A stage-2 run must start from a CALM checkpoint, and its autoencoder must be that
        checkpoint's exactly (chunk size, latent size, widths, depth): the generator learns to
        predict that autoencoder's latent vectors. A stage-1 run may start from a CALM
        checkpoint with the same autoencoder (to train it further), or from nothing.
        """
        if source is None:
            if config.stage == "generator":
                raise ValueError(
                    "model.stage=generator trains the generator on a frozen stage-1 autoencoder: start "
                    "it from one with --init-from RUN (a run trained with model.stage=autoencoder)"
                )
            return
        if source.plugin.name != "calm":
            raise ValueError(
                f"the checkpoint is a {source.plugin.name!r} model, not a CALM one; a CALM run starts "
                "from a CALM checkpoint (stage 2 from a stage-1 run)"
            )
        try:
            saved = CALMConfig.model_validate(source.run_config.get("model", {}))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(map(str, first["loc"]))
            raise ValueError(
                f"the checkpoint's model config is not one this CALM reads (model.{where}: {first['msg']})"
            ) from None
        differ = [
            f"model.{key}={_effective(saved, key)} there, {_effective(config, key)} here"
            for key in AUTOENCODER_KEYS
            if _effective(saved, key) != _effective(config, key)
        ]
        if differ:
            raise ValueError(
                "the checkpoint's autoencoder is not this run's ("
                + "; ".join(differ)
                + "); set them as "
                "the checkpoint has them"
            )


def _effective(config: CALMConfig, key: str) -> int:
    """A setting's value as the model is built with it (a default width resolved)."""
    resolved = {"ae_d_model": config.ae_width, "ae_d_ff": config.ae_hidden}
    return resolved.get(key, getattr(config, key))
