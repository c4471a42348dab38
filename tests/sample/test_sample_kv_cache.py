"""The cached inference pass (one-pass prefill, then one token per step) gives the logits of the full forward."""
import numpy as np
import pytest

import gptx
from gptx.inference import decode, prefill
from gptx.kv_cache import KVCache
from gptx.model import GPT, GPTConfig
from tolerances import assert_close


@pytest.fixture
def model():
    return GPT(GPTConfig(n_layer=3, n_head=3, n_embd=48, block_size=40, vocab_size=101), seed=3)


def test_cache_layout(model):
    cache = KVCache.for_model(model, batch=2, max_len=16)
    assert cache.k.shape == cache.v.shape == (3, 2, 16, 3, 16)
    assert isinstance(cache.k, gptx.Tensor) and cache.lengths.dtype == "int64"
    assert cache.k[1][1:2].shape == (1, 16, 3, 16)  # the slot view attention_forward reads without a copy
    with pytest.raises(ValueError, match="max_len"):
        KVCache.for_model(model, batch=1, max_len=41)


def test_cached_logits_equal_full_forward_at_every_position(model, rng):
    lengths = [40, 17, 5]  # different lengths in one cache; the first fills the whole context
    seqs = [rng.integers(0, 101, size=n) for n in lengths]
    full = [np.array(model.forward(s[None])[0][0]) for s in seqs]
    scale = 4 * max(float(np.abs(f).max()) for f in full)
    cache = KVCache.for_model(model, batch=3)
    split = [9, 1, 3]  # prompt lengths: the rest is fed one token per step, all active sequences together
    for b, s in enumerate(seqs):
        got = prefill(model, cache, b, s[:split[b]], all_logits=True)
        assert_close(got, full[b][:split[b]], scale=scale, what=f"prefill {b}")
    assert np.asarray(cache.lengths).tolist() == split
    for t in range(1, max(lengths)):
        slots = [b for b in range(3) if split[b] <= t < lengths[b]]
        if not slots:
            continue
        out = decode(model, cache, slots, [seqs[b][t] for b in slots])
        assert out.shape == (len(slots), 101)
        for j, b in enumerate(slots):
            assert_close(out[j], full[b][t], scale=scale, what=f"seq {b} position {t}")
    assert np.asarray(cache.lengths).tolist() == lengths


def test_chunked_prefill_and_last_position_logits(model, rng):
    s = rng.integers(0, 101, size=30)
    full = np.array(model.forward(s[None])[0][0])
    cache = KVCache.for_model(model, batch=1, max_len=30)
    last = prefill(model, cache, 0, s[:12])
    assert last.shape == (101,)  # only the last position goes through the LM head
    assert_close(last, full[11], scale=4 * float(np.abs(full).max()))
    rest = model.forward_cached(s[12:], cache, slot=0, all_logits=True)  # a second chunk at positions 12..29
    assert_close(rest, full[12:], scale=4 * float(np.abs(full).max()))
    with pytest.raises(ValueError, match="exceed the cache"):
        prefill(model, cache, 0, s[:1])
