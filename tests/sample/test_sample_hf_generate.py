"""Arguments shared with transformers' generate give transformers' tokens, on a local random-weight GPT2LMHeadModel
loaded into gptx with the same weights (greedy, so every case is deterministic)."""
import pytest

from gptx.generate import generate, stream
from hf_models import wide_random_pair

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

# (n_layer, n_head, n_embd, block_size, vocab_size): a vocabulary small enough that greedy paths revisit tokens
# (multi-token bad words get matched) and large enough that they are not one repeated token.
SHAPE = (2, 4, 64, 64, 331)
PROMPTS = [[5, 17, 200, 3], [44], [9, 8, 7, 6, 5, 4, 3]]
NEW = 16


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return wide_random_pair(tmp_path_factory.mktemp("hf"), SHAPE)


def hf_generate(hf, ids, **kw):
    """transformers' greedy output for one prompt: prompt + new tokens, ending at an end-of-text id if it stopped."""
    x = torch.tensor([ids], dtype=torch.long)
    kw.setdefault("max_new_tokens", NEW) if "max_length" not in kw else None
    with torch.no_grad():
        return hf.generate(x, attention_mask=torch.ones_like(x), do_sample=False, **kw)[0].tolist()


def hf_new(hf, ids, **kw):
    return hf_generate(hf, ids, **kw)[len(ids):]


@pytest.fixture(scope="module")
def greedy(models):
    hf, model = models
    paths = [hf_new(hf, p) for p in PROMPTS]
    assert all(len(set(g)) > 6 for g in paths), "degenerate reference: the tests would prove little"
    return paths


def test_do_sample_false_is_greedy(models, greedy):
    hf, model = models
    assert generate(model, PROMPTS, NEW, do_sample=False) == greedy
    # the sampling settings do not move the argmax: do_sample=False ignores them, as transformers does
    assert generate(model, PROMPTS, NEW, do_sample=False, temperature=0.7, top_k=5, top_p=0.9, seed=1) == greedy
    sampled = generate(model, PROMPTS, NEW, do_sample=True, temperature=1.5, seed=1)
    assert sampled != greedy and sampled == generate(model, PROMPTS, NEW, temperature=1.5, seed=1)
    with pytest.raises(ValueError, match="do_sample=True with temperature=0"):
        generate(model, PROMPTS[0], NEW, do_sample=True, temperature=0)


def test_max_length_and_full_text(models, greedy):
    hf, model = models
    p = PROMPTS[0]
    for L in (len(p) + 1, len(p) + 9):
        assert generate(model, p, max_length=L, do_sample=False) == hf_new(hf, p, max_length=L)
        assert generate(model, p, max_length=L, do_sample=False, return_full_text=True) == \
            hf_generate(hf, p, max_length=L)
    assert generate(model, PROMPTS, NEW, do_sample=False, return_full_text=True) == \
        [hf_generate(hf, q) for q in PROMPTS]
    # a batch counts max_length from its longest prompt, as a left-padded transformers batch does
    longest = max(map(len, PROMPTS))
    x = torch.tensor([[0] * (longest - len(q)) + q for q in PROMPTS])
    mask = torch.tensor([[0] * (longest - len(q)) + [1] * len(q) for q in PROMPTS])
    with torch.no_grad():
        padded = hf.generate(x, attention_mask=mask, max_length=longest + 6, do_sample=False)
    assert generate(model, PROMPTS, max_length=longest + 6, do_sample=False) == padded[:, longest:].tolist()
    with pytest.raises(ValueError, match="both given"):
        generate(model, p, 5, max_length=20)
    with pytest.raises(ValueError, match=r"max_length \(4\) leaves no room after the prompt \(4 tokens\)"):
        generate(model, p, max_length=4)
    with pytest.raises(ValueError, match=r"max_length \(65\) exceeds the context \(64 = block_size\)"):
        generate(model, p, max_length=65)
    with pytest.raises(TypeError, match="max_new_tokens .* or max_length"):
        generate(model, p)


def first_new(path, start=2):
    """A token of the greedy path at index >= start that did not occur before it: (token, its first index)."""
    k = next(k for k in range(start, len(path)) if path[k] not in path[:k])
    return path[k], k


class Tok:
    """Just what generation reads from a tokenizer: its end-of-text id and the bytes of a token."""

    def __init__(self, eot):
        self.eot_token = eot

    def token_bytes(self, t):
        return f"<{t}>".encode()


def test_eos_token_id_and_the_tokenizer_default(models, greedy):
    hf, model = models
    eos, k = first_new(greedy[0])
    expected = hf_new(hf, PROMPTS[0], eos_token_id=eos, pad_token_id=eos)
    assert expected == greedy[0][:k + 1]  # transformers stops at it, the end-of-text id included
    assert generate(model, PROMPTS[0], NEW, do_sample=False, eos_token_id=eos) == expected
    assert generate(model, PROMPTS[0], NEW, do_sample=False, tokenizer=Tok(eos)) == expected  # the default
    assert generate(model, PROMPTS[0], NEW, do_sample=False, tokenizer=Tok(eos), stop_at_eos=False) == greedy[0]
    other, j = first_new(greedy[1], 1)
    assert generate(model, PROMPTS[:2], NEW, do_sample=False, eos_token_id=[eos, other]) == \
        [hf_new(hf, q, eos_token_id=[eos, other], pad_token_id=eos) for q in PROMPTS[:2]]
    # a text stream ends at it without printing it; an id stream yields it
    assert list(stream(model, PROMPTS[0], NEW, tokenizer=Tok(eos), text=False, do_sample=False)) == expected
    text = "".join(stream(model, PROMPTS[0], NEW, tokenizer=Tok(eos), do_sample=False))
    assert text == "".join(f"<{t}>" for t in expected[:-1])
    with pytest.raises(ValueError, match=r"eos_token_id has ids outside \[0, 331\)"):
        generate(model, PROMPTS[0], NEW, eos_token_id=331)
    # a tokenizer's end-of-text id past the model's vocabulary can never be produced: no stop, no error
    assert generate(model, PROMPTS[0], NEW, do_sample=False, tokenizer=Tok(331)) == greedy[0]
    with pytest.raises(ValueError, match="min_new_tokens needs an end-of-text id"):
        generate(model, PROMPTS[0], NEW, tokenizer=Tok(331), min_new_tokens=2)


def test_min_new_tokens(models, greedy):
    hf, model = models
    eos, k = first_new(greedy[0])
    at_limit = 0  # cases where the end-of-text id comes the first step it is allowed: an off-by-one shows there
    for m in range(k + 1, NEW):
        expected = hf_new(hf, PROMPTS[0], eos_token_id=eos, pad_token_id=eos, min_new_tokens=m)
        assert len(expected) > m and eos not in expected[:m]
        at_limit += len(expected) == m + 1
        assert generate(model, PROMPTS[0], NEW, do_sample=False, eos_token_id=eos, min_new_tokens=m) == expected
    assert at_limit
    with pytest.raises(ValueError, match="min_new_tokens needs an end-of-text id"):
        generate(model, PROMPTS[0], NEW, min_new_tokens=2)


def test_bad_words_ids(models, greedy):
    hf, model = models
    g = greedy[0]
    pairs = [j for j in range(1, len(g)) if g[j] != g[j - 1]]
    for bad in ([[g[3]]], [[g[pairs[2] - 1], g[pairs[2]]]], [[PROMPTS[0][-1], g[0]], [g[5]], [1, 2, 3]]):
        expected = hf_new(hf, PROMPTS[0], bad_words_ids=bad)
        assert expected != g
        assert generate(model, PROMPTS[0], NEW, do_sample=False, bad_words_ids=bad) == expected
    # an end-of-text id listed alone is banned (transformers drops it from the list when it is the eos; without an
    # eos it bans it like any token, which is the reference here)
    eos, k = first_new(g)
    assert generate(model, PROMPTS[0], NEW, do_sample=False, eos_token_id=eos, bad_words_ids=[[eos]]) == \
        hf_new(hf, PROMPTS[0], bad_words_ids=[[eos]]) != g
    with pytest.raises(ValueError, match="bad_words_ids"):
        generate(model, PROMPTS[0], NEW, bad_words_ids=[3])
    with pytest.raises(ValueError, match=r"bad_words_ids has ids outside"):
        generate(model, PROMPTS[0], NEW, bad_words_ids=[[400]])


def test_logits_processor_and_stopping_criteria(models, greedy):
    hf, model = models
    g = greedy[0]

    # Written once for both: numpy here, torch in transformers.
    def ban(scores, t):
        scores[:, t] = -float("inf")
        return scores

    def no_repeat(ids, scores):  # depends on input_ids: never the token just made
        scores[list(range(ids.shape[0])), ids[:, -1]] = -float("inf")
        return scores

    procs = [lambda ids, s: ban(s, g[2]), no_repeat]
    expected = hf_new(hf, PROMPTS[0], logits_processor=transformers.LogitsProcessorList(procs))
    assert expected != g
    assert generate(model, PROMPTS[0], NEW, do_sample=False, logits_processor=procs) == expected
    assert generate(model, PROMPTS[0], NEW, do_sample=False, logits_processor=procs[0]) == \
        hf_new(hf, PROMPTS[0], logits_processor=transformers.LogitsProcessorList(procs[:1]))

    L0 = len(PROMPTS[0])
    crits = [lambda ids, s: ids.shape[-1] >= L0 + 5, lambda ids, s: ids[:, -1] == g[3]]
    for c in (crits[:1], crits[1:], crits):
        expected = hf_new(hf, PROMPTS[0], stopping_criteria=transformers.StoppingCriteriaList(c))
        assert len(expected) < NEW
        assert generate(model, PROMPTS[0], NEW, do_sample=False, stopping_criteria=c) == expected


def test_num_return_sequences(models, greedy):
    hf, model = models
    # greedy: identical copies, prompt by prompt (transformers refuses greedy copies; each is its greedy output)
    got = generate(model, PROMPTS[:2], NEW, do_sample=False, num_return_sequences=3)
    assert got == [greedy[0]] * 3 + [greedy[1]] * 3
    assert generate(model, PROMPTS[0], NEW, do_sample=False, num_return_sequences=2) == [greedy[0]] * 2
    # sampling: each copy its own stream, the same as repeating the prompts by hand
    kw = dict(temperature=1.3, top_k=40, seed=11)
    got = generate(model, PROMPTS[:2], NEW, num_return_sequences=2, **kw)
    assert got == generate(model, [PROMPTS[0]] * 2 + [PROMPTS[1]] * 2, NEW, **kw)
    assert got[0] != got[1] and got[2] != got[3]
    per_prompt = generate(model, PROMPTS[:2], NEW, num_return_sequences=2, temperature=1.3, seed=[5, 6])
    assert per_prompt[3] == generate(model, PROMPTS[1], NEW, temperature=1.3, seed=[(6, 1)])
    pieces = [[], []]
    for i, t in stream(model, PROMPTS[0], NEW, num_return_sequences=2, **kw):
        pieces[i].append(t)
    assert pieces == got[:2]
    with pytest.raises(ValueError, match="num_return_sequences"):
        generate(model, PROMPTS[0], NEW, num_return_sequences=0)


def repeated_ngrams(seq, n):
    grams = [tuple(seq[i:i + n]) for i in range(len(seq) - n + 1)]
    return len(grams) - len(set(grams))


def test_no_repeat_ngram_size_greedy_and_sampling(models, greedy):
    hf, model = models
    # greedy: transformers' tokens; the prompt's n-grams count too (PROMPTS[2] is a run 9 8 7 ... 3)
    for n in (1, 2, 3):
        for p, g in zip(PROMPTS, greedy):
            expected = hf_new(hf, p, no_repeat_ngram_size=n)
            assert generate(model, p, NEW, do_sample=False, no_repeat_ngram_size=n) == expected
            assert repeated_ngrams(p + expected, n) == 0
    assert any(repeated_ngrams(p + g, 2) for p, g in zip(PROMPTS, greedy)), "nothing for the ban to change"
    # sampling: the same ban before temperature and filters, so no n-gram repeats whatever is drawn
    kw = dict(temperature=0.8, top_k=3, seed=3)  # close to greedy, which repeats bigrams here
    free = generate(model, PROMPTS, 40, **kw)
    assert sum(repeated_ngrams(p + f, 2) for p, f in zip(PROMPTS, free)) > 0
    for n in (2, 3):
        got = generate(model, PROMPTS, 40, no_repeat_ngram_size=n, **kw)
        assert all(repeated_ngrams(p + g, n) == 0 for p, g in zip(PROMPTS, got))
        streamed = [[], [], []]
        for i, t in stream(model, PROMPTS, 40, no_repeat_ngram_size=n, **kw):
            streamed[i].append(t)
        assert streamed == got
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="no_repeat_ngram_size must be an integer >= 0"):
            generate(model, PROMPTS[0], NEW, no_repeat_ngram_size=bad)
