"""A row's sample does not depend on the batch it is decoded in, whatever padding the batch adds."""

from __future__ import annotations

import pytest
import torch

from xlm_core.plugins.registry import get_registry
from xlm_core.testing import TINY_SHAPE, TinySetup

# token shift and learned positions are the two inputs that could read padding; ARLM is causal,
# and BDLM's blocks and CALM's chunks are causal across, which rules token shift out
BACKBONE = {
    "arlm": {"learned_positions": 32},
    "bdlm": {"learned_positions": 32},
    "calm": {"learned_positions": 32, "stage": "generator", "latent_size": 8},
    "mdlm": {"learned_positions": 32, "token_shift": True},
    "mlm": {"learned_positions": 32, "token_shift": True},
    "ilm": {"learned_positions": 32, "token_shift": True},
}
# sampled, not greedy, so every step draws from the logits; ILM never stops early, so every row
# decodes to its full length alongside rows of other lengths
SETTINGS = {
    "arlm": {"temperature": 1.0},
    "bdlm": {"temperature": 1.0},
    "calm": {"temperature": 0.5, "temperature_samples": 8},  # the pool algorithm: more draws per row
    "mdlm": {"temperature": 1.0},
    "mlm": {"temperature": 1.0, "strategy": "confidence"},
    "ilm": {"temperature": 1.0, "stop_threshold": 1.0},
}
# different lengths force padding on every row; the last is longer than the task's prompt budget,
# so a window family has to widen its fixed prompt width for this batch
LENGTHS = [[], [5, 6], [7, 8, 9, 10, 11, 12], [13, 14, 15, 16, 17, 18, 19, 20]]
assert len(LENGTHS[-1]) > TINY_SHAPE.prompt_length
# each prompt several times, with its own seed each time: more draws that could give padding away
PROMPTS = [prompt for prompt in LENGTHS for _ in range(4)]
SEEDS = list(range(100, 100 + len(PROMPTS)))


@pytest.mark.parametrize("name", sorted(BACKBONE))
def test_a_rows_sample_is_the_same_alone_and_in_a_padded_batch(name):
    setup = TinySetup.build(
        get_registry().get(name),
        config_overrides=BACKBONE[name],
        settings_overrides=SETTINGS[name],
    )
    model = _decisive(setup.model(seed=0)).eval()
    predictor = setup.predictor()

    def decode(rows: list[int]):
        with torch.no_grad():
            return predictor.predict(
                model,
                [PROMPTS[i] for i in rows],
                settings=setup.settings,
                seeds=[SEEDS[i] for i in rows],
                record_steps=True,
            )

    together = decode(list(range(len(PROMPTS))))
    for i in range(len(PROMPTS)):
        alone = decode([i])
        assert alone.sequences()[0] == together.sequences()[i], f"row {i}"
        assert alone.history[0] == together.history[i], f"row {i}"


def _decisive(model: torch.nn.Module) -> torch.nn.Module:
    """Weights at unit scale instead of the default 0.02: an untrained model whose every input
    visibly moves its samples, so that reading padding cannot go unnoticed."""
    torch.manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Embedding):
                torch.nn.init.normal_(module.weight)
            elif isinstance(module, torch.nn.Linear):
                torch.nn.init.normal_(module.weight, std=module.in_features**-0.5)
    return model
