"""The backbone's explicit attention patterns and the KV cache's read-only passes over some of its rows."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from xlm_core.nn.kv_cache import pattern_mask
from xlm_core.nn.transformer import Transformer


def _model() -> Transformer:
    torch.manual_seed(0)
    return Transformer(40, d_model=32, n_layers=2, n_heads=4, causal=True, learned_positions=16).eval()


def _left_padded() -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.tensor([[0, 0, 7, 8, 9, 10], [5, 6, 7, 8, 9, 10]])
    return ids, ids != 0


def test_a_causal_pattern_is_the_causal_flag():
    model, (ids, mask) = _model(), _left_padded()
    causal = torch.ones(6, 6, dtype=torch.bool).tril()
    with torch.no_grad():
        assert torch.allclose(model(ids, mask, attend=causal), model(ids, mask), atol=1e-6)
        assert torch.allclose(model(ids, attend=causal), model(ids), atol=1e-6)


def test_pattern_mask_hides_padding_keys_and_lets_every_query_see_itself():
    keys = torch.tensor([[False, True, True]])
    attend = torch.tensor([[False, False, False], [True, True, False], [False, False, False]])
    assert pattern_mask(keys, attend)[0, 0].tolist() == [
        [True, False, False],  # sees only itself
        [False, True, False],  # the padding key stays hidden
        [False, False, True],
    ]


def test_a_read_only_pass_sees_the_cache_and_leaves_it_as_it_was():
    model, (ids, mask) = _model(), _left_padded()
    block = torch.tensor([[11, 12], [13, 14]])
    # the reference: prefix and block in one pass, the block seeing all of itself
    full = torch.ones(8, 8, dtype=torch.bool).tril()
    full[6:, 6:] = True
    with torch.no_grad():
        expected = model(torch.cat([ids, block], 1), torch.cat([mask, torch.ones_like(block, dtype=torch.bool)], 1), attend=full)
        cache = model.new_cache(2, 8, "cpu")
        model(ids, mask, cache=cache)
        first = model(torch.tensor([[1, 1], [1, 1]]), cache=cache, causal=False, append=False)
        assert cache.length == 6  # the block did not join the cache
        again = model(block, cache=cache, causal=False, append=False)  # overwrites the scratch slots
    assert torch.allclose(again, expected[:, 6:], atol=1e-5)
    assert not torch.allclose(first, again)


def test_append_n_caches_the_first_n_columns_and_reads_the_rest():
    model, (ids, mask) = _model(), _left_padded()
    block = torch.tensor([[11, 12], [13, 14]])
    pattern = torch.ones(8, 8, dtype=torch.bool).tril()  # the prefix causal, the block all of itself
    pattern[6:, 6:] = True
    stream, stream_mask = torch.cat([ids, block], 1), F.pad(mask, (0, 2), value=True)
    with torch.no_grad():
        cache = model.new_cache(2, 8, "cpu")
        both = model(stream, stream_mask, cache=cache, attend=pattern, causal=False, append=6)
        assert cache.length == 6  # the block stayed in scratch slots
        separate = model.new_cache(2, 8, "cpu")
        prefix = model(ids, mask, cache=separate)
        read = model(block, cache=separate, causal=False, append=False)
        after = model(block, cache=cache, causal=False, append=False)  # the cache holds the prefix
    assert torch.allclose(both, torch.cat([prefix, read], 1), atol=1e-5)
    assert torch.allclose(after, read, atol=1e-5)


def test_a_pass_over_some_rows_reads_their_cache_only():
    model, (ids, mask) = _model(), _left_padded()
    block = torch.tensor([[11, 12], [13, 14]])
    with torch.no_grad():
        cache = model.new_cache(2, 8, "cpu")
        model(ids, mask, cache=cache)
        both = model(block, cache=cache, causal=False, append=False)
        view = cache.subset(torch.tensor([1]))
        second = model(block[1:], cache=view, causal=False, append=False)
        with pytest.raises(RuntimeError, match="cannot append"):
            model(block[1:], cache=view, causal=False)
    assert torch.allclose(second, both[1:], atol=1e-5)


def test_positions_of_unmasked_new_tokens_count_the_real_cached_ones():
    model, (ids, mask) = _model(), _left_padded()
    cache = model.new_cache(2, 8, "cpu")
    with torch.no_grad():
        model(ids, mask, cache=cache)
    assert cache.positions(None, 2).tolist() == [[4, 5], [6, 7]]
