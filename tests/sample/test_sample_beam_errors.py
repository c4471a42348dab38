"""Beam search refuses by name what it cannot do, and keeps its own rules where they differ from sampling."""
import pytest

from gptx.generate import generate, stream
from gptx.model import GPT, GPTConfig


@pytest.fixture(scope="module")
def model():
    return GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=16, vocab_size=50), seed=0)


@pytest.mark.parametrize("kw, message", [
    (dict(num_beams=0), r"num_beams must be an integer >= 1 \(1: no beam search\), got 0"),
    (dict(num_beams=-2), "num_beams must be an integer >= 1"),
    (dict(num_beams=2.0), "num_beams must be an integer >= 1"),
    (dict(num_beams=True), "num_beams must be an integer >= 1"),
    (dict(num_beams=3, num_return_sequences=4), r"num_return_sequences must be an integer in \[1, num_beams = 3\]"),
    (dict(num_beams=3, num_return_sequences=0), r"num_return_sequences must be an integer in \[1, num_beams = 3\]"),
    (dict(num_beams=2, do_sample=True), "num_beams=2 with do_sample=True: beam sampling is not supported"),
    (dict(num_beams=2, temperature=0.7), r"num_beams=2 with temperature=0.7: beam search does not sample"),
    (dict(num_beams=2, top_k=5, top_p=0.9), "num_beams=2 with top_k, top_p: sampling filters do not apply"),
    (dict(num_beams=2, stop=[3]), "num_beams=2 with stop=: beam search ends beams at eos_token_id"),
    (dict(num_beams=2, sliding_window=True), "num_beams=2 with sliding_window=True"),
    (dict(num_beams=2, length_penalty=float("nan")), "length_penalty must be a finite number"),
    (dict(num_beams=2, length_penalty="long"), "length_penalty must be a finite number"),
    (dict(num_beams=2, early_stopping="sometimes"), "early_stopping must be False, True or \"never\""),
    (dict(num_beams=2, early_stopping=1), "early_stopping must be False, True or \"never\""),
    (dict(length_penalty=2.0), r"length_penalty=2.0 applies to beam search only: pass num_beams > 1"),
    (dict(early_stopping=True, return_scores=True), "early_stopping=True, return_scores=True apply to beam search"),
    (dict(num_beams=2, no_repeat_ngram_size=-1), "no_repeat_ngram_size must be an integer >= 0"),
])
def test_bad_beam_arguments_are_named(model, kw, message):
    with pytest.raises(ValueError, match=message):
        generate(model, [1, 2], 4, **kw)


def test_what_beams_accept(model):
    best = generate(model, [1, 2], 4, num_beams=3)
    # greedy settings, and the sampling ones under do_sample=False (ignored, as transformers ignores them)
    assert generate(model, [1, 2], 4, num_beams=3, temperature=0) == best
    assert generate(model, [1, 2], 4, num_beams=3, do_sample=False, temperature=0.7, top_k=5, seed=1) == best
    with pytest.raises(TypeError, match="return_scores must be True or False"):
        generate(model, [1, 2], 4, num_beams=3, return_scores=1)
    with pytest.raises(TypeError, match=r"num_beams .*use generate\(num_beams=...\)"):
        next(iter(stream(model, [1, 2], 4, num_beams=3)))
    # the context check is the one of sampling: prompt + new tokens must fit
    with pytest.raises(ValueError, match=r"exceeds the context \(16 = block_size\)"):
        generate(model, [1, 2], 15, num_beams=2)
    assert generate(model, [1, 2], 14, num_beams=2, num_return_sequences=2, return_full_text=True)[0][:2] == [1, 2]
    assert generate(model, [1, 2], 0, num_beams=2) == []
    # an unknown argument is still named, beams or not
    with pytest.raises(TypeError, match="num_beam_groups"):
        generate(model, [1, 2], 4, num_beams=4, num_beam_groups=2)


def test_every_token_banned_for_a_beam_is_no_error(model):
    """A beam whose every continuation is banned scores -inf and the others go on (transformers does the same);
    without beams it stays an error naming the sequence."""
    first = generate(model, [1, 2], 1, num_beams=4)[0]  # the best beam's first token

    def ban_after(ids, scores):  # every beam that starts with `first` has nowhere to go
        if ids.shape[1] > 2 and ids[0, 2] == first:
            scores[:] = -float("inf")
        return scores

    got = generate(model, [1, 2], 5, num_beams=4, num_return_sequences=4, logits_processor=[ban_after])
    assert all(len(g) == 5 and g[0] != first for g in got)
    with pytest.raises(ValueError, match="every token is banned"):
        generate(model, [1, 2], 3, temperature=0, bad_words_ids=[[t] for t in range(50)])


def test_each_prompt_is_prefilled_once_and_beams_reuse_the_cache(model, monkeypatch):
    """The beams of a prompt share its one prefill: after each step the cache slots are reordered (copy_slots), and
    only the K new tokens run through the model (decode), never the prompt again."""
    import gptx.beam_search as bs
    from gptx.kv_cache import KVCache

    calls = {"prefill": [], "decode": [], "copy": 0}
    real_prefill, real_decode, real_copy = bs.prefill, bs.decode, KVCache.copy_slots

    def prefill(model, cache, slot, ids, *a, **kw):
        calls["prefill"].append(len(ids))
        return real_prefill(model, cache, slot, ids, *a, **kw)

    def decode(model, cache, slots, tokens):
        calls["decode"].append(len(list(slots)))
        return real_decode(model, cache, slots, tokens)

    def copy_slots(self, dst, src, first_row=0):
        calls["copy"] += 1
        return real_copy(self, dst, src, first_row)

    monkeypatch.setattr(bs, "prefill", prefill)
    monkeypatch.setattr(bs, "decode", decode)
    monkeypatch.setattr(KVCache, "copy_slots", copy_slots)
    expected = generate(model, [[1, 2, 3], [4, 5]], 6, num_beams=3, stop_at_eos=False)
    assert calls["prefill"] == [3, 2]
    assert calls["decode"] == [6] * 5 and calls["copy"] == 2 * 5  # 6 tokens: 5 steps feed one back, per beam
    monkeypatch.undo()
    assert generate(model, [[1, 2, 3], [4, 5]], 6, num_beams=3, stop_at_eos=False) == expected
