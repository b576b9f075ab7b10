"""The pluggy hook specifications of the ``xlm`` project.

A plugin is a module named by an entry point in the ``xlm.plugins`` group. It
implements the hooks below with ``@hookimpl``. Every hook takes no arguments and
returns a pydantic record; component hooks return a :class:`ComponentRef` so that
the component's module (and torch) is imported only when the component is used.

Example (the whole entry module of a family called ``toy``)::

    from xlm_core.plugins import ComponentRef, FamilyManifest, hookimpl
    from xlm_toy.config import ToyConfig, ToySettings

    @hookimpl
    def xlm_family() -> FamilyManifest:
        return FamilyManifest(name="toy", api_version="1.0", config=ToyConfig,
                              predictor_settings=ToySettings)

    @hookimpl
    def xlm_model() -> ComponentRef:
        return ComponentRef(path="xlm_toy.model:ToyModel")

    # ... xlm_loss, xlm_predictor, xlm_collator likewise
"""

from __future__ import annotations

import pluggy

from xlm_core.plugins.manifest import ComponentRef, FamilyManifest, TaskRef

PROJECT_NAME = "xlm"
hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def xlm_family() -> FamilyManifest:  # type: ignore[empty-body]
    """Describe the family: name, targeted API version, config class, predictor settings, presets.

    Example::

        @hookimpl
        def xlm_family():
            return FamilyManifest(name="mdlm", api_version="1.0", config=MDLMConfig,
                                  predictor_settings=MDLMSettings)
    """


@hookspec
def xlm_model() -> ComponentRef:  # type: ignore[empty-body]
    """Name the model class: an ``nn.Module`` built as ``Model(config, vocab)``.

    ``forward(input_ids, attention_mask)`` returns a ``ModelOutput`` whose
    ``logits`` are ``(batch, length, vocab_size)``.

    Example: ``return ComponentRef(path="xlm_mdlm.model:MDLMModel")``
    """


@hookspec
def xlm_loss() -> ComponentRef:  # type: ignore[empty-body]
    """Name the loss class, built as ``Loss(config, vocab)``; ``loss(model, batch) -> LossOutput``.

    The class declares ``nll_kind`` (``"exact"``, ``"bound"`` or ``"none"``).

    Example: ``return ComponentRef(path="xlm_mdlm.loss:MDLMLoss")``
    """


@hookspec
def xlm_predictor() -> ComponentRef:  # type: ignore[empty-body]
    """Name the predictor class, built as ``Predictor(config, vocab, shape)``.

    ``predict(model, prompts, *, settings, seeds, record_steps=False) -> Prediction``.

    Example: ``return ComponentRef(path="xlm_mdlm.predictor:MDLMPredictor")``
    """


@hookspec
def xlm_collator() -> ComponentRef:  # type: ignore[empty-body]
    """Name the collator class, built as ``Collator(config, vocab, shape)``.

    ``collator(examples, generator=None) -> Batch``.

    Example: ``return ComponentRef(path="xlm_mdlm.collator:MDLMCollator")``
    """


@hookspec
def xlm_tasks() -> list[TaskRef]:  # type: ignore[empty-body]
    """Optional: contribute named tasks that appear in ``xlm tasks list``.

    Example::

        @hookimpl
        def xlm_tasks():
            return [TaskRef(name="sudoku", description="9x9 sudoku completion",
                            factory=ComponentRef(path="xlm_toy.tasks:make_sudoku"))]
    """


COMPONENT_HOOKS = {
    "model": "xlm_model",
    "loss": "xlm_loss",
    "predictor": "xlm_predictor",
    "collator": "xlm_collator",
}
