"""The component checks: each builds the family's components at the tiny size (:class:`TinySetup`)
and asserts one part of their contract."""

from __future__ import annotations

import tempfile

import torch

from xlm_core.checkpoint import load_weights, save_weights
from xlm_core.testing.contracts import (
    assert_batch,
    assert_model_output,
    assert_prediction,
    expect,
    loss_and_backward,
    name_list,
    same_prediction,
)
from xlm_core.testing.tiny import TinySetup


def check_collator(setup: TinySetup) -> None:
    """The batch contract: shapes, dtypes, id ranges and per-example extras."""
    batch = setup.batch()
    assert_batch(batch, setup.vocab, len(setup.examples))


def check_model_shapes(setup: TinySetup) -> None:
    """``model(input_ids, attention_mask)`` gives finite logits ``(B, L, vocab.size)``."""
    batch = setup.batch()
    model = setup.model()
    model.eval()
    with torch.no_grad():
        out = model(batch.input_ids, batch.attention_mask)
    assert_model_output(out, batch, setup.vocab)


def check_loss_finite_and_grads(setup: TinySetup) -> None:
    """A finite scalar loss, a consistent NLL, and a gradient for every trainable parameter.

    Some parameters legitimately get an exactly-zero gradient at initialisation
    (behind a zero-initialised adaLN gate, say); those must get a non-zero one after
    one small optimiser step. A parameter with no gradient at all is never used.
    """
    model, loss_fn = setup.model(), setup.loss()
    model.train()
    out = loss_and_backward(loss_fn, model, setup.batch(seed=0), type(loss_fn))
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    expect(bool(params), "the model has no trainable parameters")
    unused = [name for name, p in params.items() if p.grad is None]
    expect(
        not unused,
        f"no gradient reaches {name_list(unused)}: these parameters are not used by the loss",
    )
    bad = [name for name, p in params.items() if not torch.isfinite(p.grad).all()]
    expect(not bad, f"non-finite gradient in {name_list(bad)} (loss {out.loss.item():.4g})")
    zero = [name for name, p in params.items() if not p.grad.any()]
    if zero:
        with torch.no_grad():
            for p in params.values():
                p.sub_(1e-2 * torch.sign(p.grad))
                p.grad = None
        loss_and_backward(loss_fn, model, setup.batch(seed=1), type(loss_fn))
        still = [name for name in zero if params[name].grad is None or not params[name].grad.any()]
        expect(
            not still,
            f"the gradient of {name_list(still)} stays exactly zero, even after an optimiser step",
        )


def check_predictor_terminates(setup: TinySetup) -> None:
    """Within the step budget, within the length budget, no special tokens, PAD after the end;
    ``positions_per_pass``, where the predictor defines it, a positive int or None."""
    model = setup.model()
    pred = setup.predict(model, record_steps=True)
    assert_prediction(pred, setup, setup.settings, history=True)
    declared = getattr(setup.predictor(), "positions_per_pass", None)
    if declared is not None:
        width = declared(setup.settings)
        expect(
            width is None or (isinstance(width, int) and not isinstance(width, bool) and width > 0),
            f"positions_per_pass(settings) returned {width!r}; it must be a positive int or None "
            "(the whole row)",
        )
    # A smaller length budget must be honoured too (unless the caller fixed one).
    if setup.settings.max_new_tokens is None:
        short = setup.settings.model_copy(update={"max_new_tokens": 3})
        cut = setup.predict(model, settings=short)
        assert_prediction(cut, setup, short, history=False)
        if getattr(setup.component("predictor"), "left_to_right", False) is True:
            expect(
                cut.sequences() == [ids[:3] for ids in pred.sequences()],
                "the predictor declares left_to_right = True, so max_new_tokens=3 must give the "
                f"first 3 tokens of each row: {cut.sequences()} vs {pred.sequences()}",
            )


def check_determinism(setup: TinySetup) -> None:
    """Same seeds give the same batch and the same prediction, whatever the global RNG state."""
    torch.manual_seed(1234)
    first = setup.batch(seed=5)
    torch.manual_seed(4321)
    second = setup.batch(seed=5)
    for field in ("input_ids", "attention_mask", "targets"):
        expect(
            torch.equal(getattr(first, field), getattr(second, field)),
            f"the collator gives different {field} for the same generator seed: it must draw its "
            "randomness from the `generator` argument, not the global RNG",
        )
    model = setup.model()
    torch.manual_seed(1234)
    a = setup.predict(model)
    torch.manual_seed(4321)
    b = setup.predict(model)
    expect(
        same_prediction(a, b),
        "two predictions with the same seeds differ: draw all randomness from per-example "
        "streams (xlm_core.nn.sampling.RowNoise(seeds, device)), never the global RNG",
    )
    c = setup.predict(model, record_steps=True)
    expect(
        same_prediction(a, c),
        "record_steps=True changes the prediction; recording must only observe",
    )


def check_batch_invariance(setup: TinySetup) -> None:
    """Each row's sample is the same decoded alone as in the batch, where the prompts' different
    lengths force padding: a row's computation must not read the other rows or the batch's shape."""
    model = setup.model()
    together = setup.predict(model).sequences()
    for row in range(len(setup.examples)):
        alone = setup.predict(model, rows=[row]).sequences()[0]
        expect(
            alone == together[row],
            f"row {row} (a {len(setup.prompts[row])}-token prompt) samples {together[row]} in the "
            f"batch but {alone} alone, with the same seed: its result depends on the batch. Pad "
            "prompts to a width that does not depend on the batch (xlm_core.nn.window: "
            "prompt_width, left_pad), keep padding out of attention, and draw each row's noise "
            "from its own stream (xlm_core.nn.sampling.RowNoise)",
        )


def check_checkpoint_roundtrip(setup: TinySetup) -> None:
    """save_weights then load_weights into a freshly built model: identical logits and predictions."""
    batch = setup.batch()
    original = setup.model(seed=0)
    original.eval()
    with tempfile.TemporaryDirectory(prefix="xlm-kit-") as tmp:
        save_weights(original, tmp)
        reloaded = setup.model(seed=1)  # another init, so a weight that is not saved shows up
        load_weights(reloaded, tmp)
    reloaded.eval()
    with torch.no_grad():
        a = original(batch.input_ids, batch.attention_mask).logits
        b = reloaded(batch.input_ids, batch.attention_mask).logits
    expect(
        torch.equal(a, b),
        f"logits differ after a save/load round-trip (max abs diff {(a - b).abs().max().item():.3g}): "
        "some state that affects the output is not a parameter or persistent buffer",
    )
    expect(
        same_prediction(setup.predict(original), setup.predict(reloaded)),
        "predictions differ after a save/load round-trip",
    )
