"""Beam search vs transformers' generate(do_sample=False, num_beams=K): the same tokens and scores, on a local
random-weight GPT2LMHeadModel loaded into gptx with the same weights.

Ties: the weights are hf_models' wide random ones (logits spread over several units, so candidates rarely sit within
float32 rounding of each other), and every reference is checked for ties before it is trusted: the scores of the beams
it returns must lie further apart than BEAM_TIE_GAP, far above the ~1e-6 by which gptx's float32 logits and
transformers' differ. A tie found there fails the test with a message (pick another case), never a silent pass.
"""
from collections import Counter

import numpy as np
import pytest

from gptx.generate import generate
from hf_models import wide_random_pair
from tolerances import BEAM_SCORE_ATOL, BEAM_TIE_GAP

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

# (n_layer, n_head, n_embd, block_size, vocab_size): a small vocabulary keeps transformers' beam search quick and
# makes paths revisit tokens (n-grams repeat, so no_repeat_ngram_size has something to ban).
SHAPE = (2, 4, 64, 64, 331)
NEW = 14


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return wide_random_pair(tmp_path_factory.mktemp("hf"), SHAPE)


def prompts_of(n, length, seed):
    return np.random.default_rng(seed).integers(0, SHAPE[4], size=(n, length)).tolist()


def hf_beams(hf, prompts, **kw):
    """transformers' beams for a batch of equal-length prompts: (new tokens per returned beam, their scores).

    Rows come back padded to the longest beam with the pad id (the end-of-text id here); the padding is cut at the
    first end-of-text id, which is where a finished beam ends."""
    x = torch.tensor(prompts, dtype=torch.long)
    eos = kw.get("eos_token_id")
    if eos is not None:
        kw.setdefault("pad_token_id", eos if isinstance(eos, int) else eos[0])
    kw.setdefault("max_new_tokens", NEW) if "max_length" not in kw else None
    with torch.no_grad():
        out = hf.generate(x, attention_mask=torch.ones_like(x), do_sample=False, return_dict_in_generate=True,
                          output_scores=True, **kw)
    ends = set() if eos is None else {eos} if isinstance(eos, int) else set(eos)
    rows = []
    for r in out.sequences[:, x.shape[1]:].tolist():
        cut = next((i + 1 for i, t in enumerate(r) if t in ends), len(r))
        rows.append(r[:cut])
    return rows, out.sequences_scores.tolist()


def check_untied(scores, per_prompt, what):
    for p in range(0, len(scores), per_prompt):
        s = sorted(scores[p:p + per_prompt], reverse=True)
        gaps = np.diff(s)
        assert (np.abs(gaps) > BEAM_TIE_GAP).all(), \
            f"{what}: the reference's beam scores {s} are tied to rounding; choose another case"


def same_as_transformers(hf, model, prompts, R=1, **kw):
    """Assert gptx's beams (tokens and scores) equal transformers'; returns them."""
    ref, ref_scores = hf_beams(hf, prompts, num_return_sequences=R, **kw)
    check_untied(ref_scores, R, kw)
    toks, scores = generate(model, prompts, num_return_sequences=R, return_scores=True, **kw)
    assert toks == ref, kw
    assert np.allclose(scores, ref_scores, rtol=0, atol=BEAM_SCORE_ATOL), (scores, ref_scores, kw)
    return toks


def preferred(hf, prompts, K):
    """Tokens the model likes here, to make end-of-text likely: the most frequent in transformers' own K beams (no
    end-of-text; first tokens left out) and the third token of its best beam. With them as end-of-text, hypotheses
    finish at several lengths and compete with the running beams."""
    ref, _ = hf_beams(hf, prompts, num_beams=K, num_return_sequences=K)
    counts = Counter(t for r in ref for t in r[1:])
    return counts.most_common(1)[0][0], ref[0][2]


# (num_beams, num_return_sequences, length_penalty, early_stopping, no_repeat_ngram_size, prompt length, end of text)
CASES = [
    (2, 1, 1.0, False, 0, 4, None),
    (3, 3, 0.5, True, 0, 1, "frequent"),
    (5, 2, 2.0, False, 2, 7, "frequent"),
    (3, 3, 1.0, "never", 3, 4, "third"),
    (5, 5, 0.5, "never", 0, 7, "both"),
    (2, 2, 2.0, True, 2, 1, "third"),
    (4, 4, 1.0, False, 3, 10, "frequent"),
    (3, 1, 2.0, "never", 0, 4, "frequent"),
    (5, 5, 1.0, True, 3, 4, "both"),
    (2, 2, 0.5, False, 2, 4, "third"),
    (5, 3, 0.5, False, 0, 1, "third"),
    (3, 2, 2.0, True, 0, 10, None),
]


@pytest.mark.parametrize("K, R, lp, early, ngram, plen, eos", CASES)
def test_beams_equal_transformers(models, K, R, lp, early, ngram, plen, eos):
    hf, model = models
    prompts = prompts_of(2, plen, seed=K * 100 + plen)  # a batch of two prompts of equal length
    kw = dict(num_beams=K, length_penalty=lp, early_stopping=early)
    if ngram:
        kw["no_repeat_ngram_size"] = ngram
    if eos is not None:
        frequent, third = preferred(hf, prompts, K)
        kw["eos_token_id"] = {"frequent": frequent, "third": third, "both": [frequent, third]}[eos]
    got = same_as_transformers(hf, model, prompts, R, max_new_tokens=NEW, **kw)
    if eos is not None:  # the end-of-text id changed the search: a returned beam ends at it, or others won
        ends = {kw["eos_token_id"]} if isinstance(kw["eos_token_id"], int) else set(kw["eos_token_id"])
        free = generate(model, prompts, NEW, num_return_sequences=R, **dict(kw, eos_token_id=None))
        assert any(len(g) < NEW and g[-1] in ends for g in got) or got != free, got
    if ngram:
        for p, g in zip([p for p in prompts for _ in range(R)], got):
            seq = p + g
            grams = [tuple(seq[i:i + ngram]) for i in range(len(seq) - ngram + 1)]
            assert len(grams) == len(set(grams))


def test_each_prompt_is_searched_on_its_own(models):
    """A batch of prompts of different lengths (no padding) gives each prompt's beams alone, as transformers gives
    them for that prompt; and the beams do not depend on what else is in the batch."""
    hf, model = models
    prompts = [prompts_of(1, n, seed=n)[0] for n in (3, 8, 1, 5)]
    eos = preferred(hf, [prompts[0]], 4)[0]
    kw = dict(num_beams=4, eos_token_id=eos, max_new_tokens=NEW, length_penalty=1.5)
    alone = [same_as_transformers(hf, model, [p], 2, **kw) for p in prompts]
    assert generate(model, prompts, num_return_sequences=2, **kw) == [b for a in alone for b in a]
    assert generate(model, prompts[1], **kw) == alone[1][0]  # one prompt: one list


def test_min_new_tokens_max_length_and_stop_at_eos(models):
    hf, model = models
    prompts = prompts_of(2, 5, seed=7)
    eos = preferred(hf, prompts, 3)[0]
    kw = dict(num_beams=3, eos_token_id=eos)
    early = same_as_transformers(hf, model, prompts, 3, max_new_tokens=NEW, **kw)
    assert min(map(len, early)) < 8
    for m in (3, 6):
        got = same_as_transformers(hf, model, prompts, 3, max_new_tokens=NEW, min_new_tokens=m, **kw)
        assert all(eos not in g[:m] for g in got)
    same_as_transformers(hf, model, prompts, 2, max_length=5 + 9, **kw)
    # stop_at_eos=False: the end-of-text id is an ordinary token, as with no eos_token_id in transformers
    assert generate(model, prompts, NEW, num_beams=3, eos_token_id=eos, stop_at_eos=False) == \
        hf_beams(hf, prompts, num_beams=3, max_new_tokens=NEW)[0]


def test_penalties_bad_words_and_callables(models):
    """transformers runs its processors on log-probabilities in beam search; gptx's hooks do the same."""
    hf, model = models
    prompts = prompts_of(2, 4, seed=11)
    plain, _ = hf_beams(hf, prompts, num_beams=3, max_new_tokens=NEW)
    kw = dict(num_beams=3, max_new_tokens=NEW)
    got = same_as_transformers(hf, model, prompts, 1, repetition_penalty=1.3, **kw)
    assert got != plain
    bad = [[plain[0][2]], [plain[1][0], plain[1][1]]]
    assert same_as_transformers(hf, model, prompts, 1, bad_words_ids=bad, **kw) != plain

    def ban(ids, scores):  # never the token just made, written once for numpy (gptx) and torch (transformers)
        scores[list(range(ids.shape[0])), ids[:, -1]] = -float("inf")
        return scores

    ref, _ = hf_beams(hf, prompts, logits_processor=transformers.LogitsProcessorList([ban]), **kw)
    assert generate(model, prompts, logits_processor=[ban], **kw) == ref != plain
    crit = [lambda ids, s: ids[:, -1] == plain[0][4]]  # one bool per row, as transformers calls it
    ref, _ = hf_beams(hf, prompts[:1], stopping_criteria=transformers.StoppingCriteriaList(crit), **kw)
    assert generate(model, prompts[0], stopping_criteria=crit, **kw) == ref[0] != plain[0]


def test_logprobs_scores_and_full_text(models):
    hf, model = models
    prompts = prompts_of(2, 3, seed=5)
    lp = 1.7
    toks, logprobs, scores = generate(model, prompts, NEW, num_beams=4, num_return_sequences=3, length_penalty=lp,
                                      return_logprobs=True, return_scores=True)
    assert len(toks) == len(logprobs) == len(scores) == 6
    for t, l, s in zip(toks, logprobs, scores):
        assert len(t) == len(l) == NEW and all(x < 0 for x in l)
        assert np.isclose(sum(l) / len(t) ** lp, s, rtol=0, atol=1e-9)
    for p in range(2):  # best first within each prompt
        assert scores[3 * p] >= scores[3 * p + 1] >= scores[3 * p + 2]
    full = generate(model, prompts, NEW, num_beams=4, num_return_sequences=3, length_penalty=lp,
                    return_full_text=True)
    assert full == [prompts[i // 3] + t for i, t in enumerate(toks)]
    one, score = generate(model, prompts[0], NEW, num_beams=4, length_penalty=lp, return_scores=True)
    assert one == toks[0] and np.isclose(score, scores[0], rtol=0, atol=BEAM_SCORE_ATOL)
