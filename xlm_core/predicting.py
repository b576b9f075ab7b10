"""The preamble every ``Predictor.predict`` runs, written once: ``@predict_preamble(Settings)``.

::

    class ToyPredictor:
        @predict_preamble(ToySettings)
        def predict(self, model, prompts, *, settings, seeds, record_steps=False) -> Prediction:
            ...  # settings is a ToySettings, one seed per prompt, no autograd, model in eval mode

        def step_budget(self, settings) -> int:
            settings = as_settings(ToySettings, settings)
            ...

Before the body runs, the decorator

1. turns ``settings`` into the family's settings class (:func:`as_settings`);
2. checks there is one seed per prompt, raising ``ValueError`` (a caller's bug);
   where the ``xlm`` command's thread policy adapts, lets it look at the machine
   (``xlm_core.threads.adapt_threads``);
3. enters ``torch.inference_mode()``: decoding never needs gradients;
4. puts the model in eval mode, so dropout cannot make a sample depend on more than
   its seed, and restores the model's previous mode afterwards, even on error;

and afterwards hands back the ``Prediction``'s tensors as ordinary tensors (inference
tensors refuse in-place changes outside inference mode, which a caller may make).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import attrs
import torch
from pydantic import BaseModel
from torch import nn

from xlm_core.components import Prediction
from xlm_core.threads import adapt_threads

S = TypeVar("S", bound=BaseModel)
PredictMethod = Callable[..., Prediction]


def as_settings(settings_class: type[S], settings: Any) -> S:
    """``settings`` as an instance of ``settings_class``.

    Accepts an instance (returned as it is), ``None`` (the defaults), a mapping of fields,
    or another settings object (the fields its caller set, validated again, so a field
    the family does not know is an error). Renamed keys keep working with a warning.
    """
    if isinstance(settings, settings_class):
        return settings
    if settings is None:
        return settings_class()
    if isinstance(settings, BaseModel):
        settings = settings.model_dump(exclude_unset=True)
    if not isinstance(settings, Mapping):
        raise TypeError(
            f"settings must be a {settings_class.__name__}, a mapping or None, not {type(settings).__name__}"
        )
    return settings_class.model_validate(dict(settings))


def check_seeds(prompts: Sequence[Any], seeds: Sequence[int]) -> None:
    """One seed per prompt, or ``ValueError``: a mismatch is a bug of the caller, not bad user input."""
    if len(seeds) != len(prompts):
        raise ValueError(
            f"got {len(prompts)} prompts but {len(seeds)} seeds; pass one seed per prompt"
        )


@contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """``model`` in eval mode inside the block, its previous mode restored after it."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _ordinary_tensors(prediction: Prediction) -> Prediction:
    """``prediction`` with each inference tensor replaced by an ordinary copy (a few ints per row)."""
    for field in attrs.fields(Prediction):
        value = getattr(prediction, field.name)
        if isinstance(value, torch.Tensor) and value.is_inference():
            setattr(prediction, field.name, value.clone())
    prediction.counters = {
        name: value.clone() if value.is_inference() else value
        for name, value in prediction.counters.items()
    }
    return prediction


def predict_preamble(settings_class: type[BaseModel]) -> Callable[[PredictMethod], PredictMethod]:
    """Decorate a ``predict(self, model, prompts, *, settings, seeds, record_steps=False)`` method
    so that it runs the steps listed in this module's docstring first."""

    def decorate(predict: PredictMethod) -> PredictMethod:
        @functools.wraps(predict)  # the signature shown is predict's own
        def wrapper(self, model, prompts, *, settings, seeds, record_steps=False):
            settings = as_settings(settings_class, settings)
            check_seeds(prompts, seeds)
            adapt_threads()  # run on the cores other processes leave free (xlm_core/threads.py)
            with torch.inference_mode(), evaluating(model):
                prediction = predict(
                    self, model, prompts, settings=settings, seeds=seeds, record_steps=record_steps
                )
            return _ordinary_tensors(prediction)

        return wrapper

    return decorate
