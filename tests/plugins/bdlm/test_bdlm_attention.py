"""The block-causal patterns on hand-built examples: one stream, and the two copies of training."""

from __future__ import annotations

import torch
from xlm_bdlm.attention import stream_pattern, two_copy_pattern


def _matrix(rows: str) -> torch.Tensor:
    """One line per query, one 0/1 per key; spaces only group the columns."""
    lines = [line.replace(" ", "") for line in rows.strip().splitlines()]
    return torch.tensor([[c == "1" for c in line] for line in lines])


def test_one_stream_is_block_causal_with_blocks_counted_from_the_end():
    # 5 columns, B = 2: the last two blocks are {3, 4} and {1, 2}; column 0 is a block alone
    expected = _matrix(
        """
        10000
        11100
        11100
        11111
        11111
        """
    )
    assert torch.equal(stream_pattern(5, 2, "cpu"), expected)


def test_one_stream_with_blocks_of_one_is_causal():
    assert torch.equal(stream_pattern(6, 1, "cpu"), torch.ones(6, 6, dtype=torch.bool).tril())


def test_two_copies_noisy_blocks_see_themselves_and_the_clean_blocks_before_them():
    # [BOS c0 c1 c2 c3 | n0 n1 n2 n3], B = 2: clean blocks {c0 c1} {c2 c3}, noisy {n0 n1} {n2 n3};
    # BOS is the prefix, a clean block before the window
    expected = _matrix(
        """
        10000 0000
        11100 0000
        11100 0000
        11111 0000
        11111 0000
        10000 1100
        10000 1100
        11100 0011
        11100 0011
        """
    )
    assert torch.equal(two_copy_pattern(5, 4, 2, "cpu"), expected)


def test_two_copies_with_one_block_are_mdlm_beside_a_clean_copy():
    # B = W: the noisy window sees itself and the prefix, as MDLM's window does
    pattern = two_copy_pattern(3, 4, 4, "cpu")
    assert pattern[3:7, 3:7].all() and not pattern[3:7, 7:].any()  # clean window: itself only
    assert pattern[7:, 7:].all() and pattern[7:, :3].all() and not pattern[7:, 3:7].any()
