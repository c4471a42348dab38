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


def test_copy_slots_gathers_slots_as_beam_search_reorders_them(model, rng):
    """copy_slots is a gather of whole slots (sources read before any write), and the moved cache decodes as if its
    new sequence had been prefilled there."""
    seqs = [rng.integers(0, 101, size=n) for n in (7, 12, 3, 9)]
    cache = KVCache.for_model(model, batch=4, max_len=20)
    for b, s in enumerate(seqs):
        prefill(model, cache, b, s)
    k0, v0 = np.array(cache.k), np.array(cache.v)
    src = [2, 2, 0, 1]  # slot 0 is read by slot 2 and overwritten by slot 2's old contents: a swap with a copy
    cache.copy_slots(range(4), src)
    k, v, lengths = np.asarray(cache.k), np.asarray(cache.v), np.asarray(cache.lengths)
    assert lengths.tolist() == [len(seqs[s]) for s in src]
    for d, s in enumerate(src):
        n = len(seqs[s])
        assert np.array_equal(k[:, d, :n], k0[:, s, :n]) and np.array_equal(v[:, d, :n], v0[:, s, :n])
    nxt = rng.integers(0, 101, size=4)
    got = decode(model, cache, range(4), nxt)
    for d, s in enumerate(src):
        full = np.array(model.forward(np.concatenate([seqs[s], nxt[d:d + 1]])[None])[0][0])[-1]
        assert_close(got[d], full, scale=4 * float(np.abs(full).max()), what=f"slot {d} after the copy")


def test_copy_slots_first_row_skips_the_shared_prompt(model, rng):
    prompt = rng.integers(0, 101, size=5)
    cache = KVCache.for_model(model, batch=3, max_len=12)
    for b in range(3):
        prefill(model, cache, b, np.concatenate([prompt, rng.integers(0, 101, size=b + 1)]))
    k0 = np.array(cache.k)
    np.asarray(cache.k)[:, 1, 0] = 7.0  # a row below first_row: copy_slots must leave it alone
    cache.copy_slots([0, 1, 2], [1, 2, 2], first_row=5)
    k = np.asarray(cache.k)
    assert np.asarray(cache.lengths).tolist() == [7, 8, 8]
    assert np.array_equal(k[:, 0, 5:7], k0[:, 1, 5:7]) and np.array_equal(k[:, 1, 5:8], k0[:, 2, 5:8])
    assert (k[:, 1, 0] == 7.0).all() and np.array_equal(k[:, 0, :5], k0[:, 0, :5])
    cache.copy_slots([0, 1, 2], [0, 1, 2])  # the identity copies nothing
    assert np.array_equal(np.asarray(cache.k)[:, 2], k0[:, 2])


@pytest.mark.parametrize("dst, src, first_row, message", [
    ([0, 1], [0], 0, "dst has 2 slots but src has 1"),
    ([0, 3], [1, 0], 0, r"slot 3 out of range \[0, 3\)"),
    ([0, 1], [-1, 0], 0, r"slot -1 out of range"),
    ([1, 1], [0, 2], 0, "slot 1 appears twice in dst"),
    ([0], [1], -1, "first_row must be >= 0"),
])
def test_copy_slots_refuses_bad_slots(model, dst, src, first_row, message):
    cache = KVCache.for_model(model, batch=3, max_len=4)
    with pytest.raises(ValueError, match="KVCache.copy_slots: " + message):
        cache.copy_slots(dst, src, first_row)
