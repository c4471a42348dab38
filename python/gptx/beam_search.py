"""Beam search: transformers' generate(num_beams=K, do_sample=False), step for step, over gptx's KV cache.

Each prompt keeps K running beams in K cache slots. A step scores every continuation of every running beam (its
log-probability after the logits hooks, plus the beam's running sum), keeps the best M = max(2, 1 + number of
end-of-text ids) * K candidates, and then:
- the best K candidates that do not end a sequence become the running beams; each takes its parent's cache slot
  (KVCache.copy_slots: a device copy of the rows after the shared prompt; nothing is recomputed);
- among the best K candidates (not the other M - K, which only make sure K running beams survive), those that end
  (an end-of-text id, the last allowed token, or a stopping_criteria callable) are finished hypotheses scored
  sum / (new tokens, end-of-text included) ** length_penalty; each prompt keeps its best K of them.
A prompt is done when its best running beam can no longer beat its worst kept hypothesis (early_stopping False: that
beam's score divided by its current length ** length_penalty; "never": by max_new_tokens ** length_penalty when
length_penalty > 0, the exact bound), when it holds K hypotheses and early_stopping is True, or when every candidate
ended. Until a prompt holds K hypotheses nothing stops it early; at max_new_tokens the best K candidates all end, so
there are always K to return (best first).

Transformers marks dead entries by adding -1e9 instead of removing them (and so may pick them when nothing better is
left); this module does the same with the same constant, so the two agree in those corners too. Sums are float64
(transformers': float32), which only matters where two candidates tie to float32 rounding.

Each prompt runs on its own (prompts of different lengths need no padding; a prompt that is done drops out of the
batch); transformers runs a padded batch until every prompt is done, which gives the same tokens, except that a prompt
whose candidates all end through a stopping_criteria callable stops here (it would carry on with dead beams there).

Logits hooks run on log-probabilities, as transformers' processors do in beam search: repetition_penalty divides or
multiplies a log-probability, no_repeat_ngram_size / bad_words_ids / min_new_tokens / processors set -inf.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from gptx.generate_hf import is_int
from gptx.inference import decode, prefill
from gptx.kv_cache import KVCache
from gptx.sampling import apply_penalties, log_softmax

DEAD = -1.0e9  # transformers' additive mark for a candidate that may not be picked


class BeamResult(NamedTuple):
    tokens: list    # the new tokens (an end-of-text id that ended the beam included)
    logprobs: list  # each token's log-probability along the beam (after the logits hooks)
    score: float    # sum(logprobs) / len(tokens) ** length_penalty: transformers' sequences_scores


def beam_settings(num_beams, length_penalty, early_stopping, return_scores) -> int:
    """The beam count, with the beam-only arguments checked (they must keep their defaults when num_beams is 1)."""
    if not is_int(num_beams) or num_beams < 1:
        raise ValueError(f"num_beams must be an integer >= 1 (1: no beam search), got {num_beams!r}")
    if isinstance(length_penalty, bool) or not isinstance(length_penalty, (int, float)) \
            or not np.isfinite(length_penalty):
        raise ValueError(f"length_penalty must be a finite number, got {length_penalty!r}")
    if early_stopping not in (False, True, "never") or not isinstance(early_stopping, (bool, str)):
        raise ValueError(f"early_stopping must be False, True or \"never\", got {early_stopping!r}")
    if not isinstance(return_scores, bool):
        raise TypeError(f"return_scores must be True or False, got {return_scores!r}")
    if num_beams == 1:
        given = [f"{k}={v!r}" for k, v, default in (("length_penalty", length_penalty, 1.0),
                                                    ("early_stopping", early_stopping, False),
                                                    ("return_scores", return_scores, False)) if v != default]
        if given:
            raise ValueError(f"{', '.join(given)} appl{'ies' if len(given) == 1 else 'y'} to beam search only: pass "
                             f"num_beams > 1 (for greedy and sampling, return_logprobs=True gives each token's "
                             f"log-probability)")
    return int(num_beams)


def check_beam_sampling(K: int, kw: dict) -> None:
    """Refuse, by name, what beam search does not do: sampling beams, sampling filters, stop=, sliding_window."""
    do_sample = kw.get("do_sample")
    if do_sample is True:
        raise ValueError(f"num_beams={K} with do_sample=True: beam sampling is not supported; pass do_sample=False "
                         f"(beam search) or num_beams=1 (sampling)")
    if do_sample is None:  # temperature decides, as without beams: only greedy (0, or not given) goes with beams
        t = kw.get("temperature")
        if t is not None and t != 0:
            raise ValueError(f"num_beams={K} with temperature={t!r}: beam search does not sample; leave temperature "
                             f"unset (or 0), pass do_sample=False, or use num_beams=1 to sample")
        given = [k for k in ("top_k", "top_p", "min_p") if kw.get(k) is not None]
        if given:
            raise ValueError(f"num_beams={K} with {', '.join(given)}: sampling filters do not apply to beam search "
                             f"(do_sample=False ignores them, as transformers does)")
    if kw.get("stop") is not None:
        raise ValueError(f"num_beams={K} with stop=: beam search ends beams at eos_token_id (ids) or through "
                         f"stopping_criteria callables; stop= is for sampling and greedy")
    if kw.get("sliding_window"):
        raise ValueError(f"num_beams={K} with sliding_window=True: beam search needs prompt + new tokens to fit the "
                         f"context; lower max_new_tokens or shorten the prompt")


def _top(x: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest entries of x (1-D), largest first; equal values in index order."""
    k = min(k, x.size)
    idx = np.argpartition(x, x.size - k)[x.size - k:] if k < x.size else np.arange(x.size)
    return idx[np.lexsort((idx, -x[idx]))]


class _Prompt:
    """One prompt's search: K running beams (cache slots slot0 .. slot0 + K - 1) and its K best finished ones."""

    def __init__(self, index: int, prompt: list, slot0: int, K: int):
        self.index, self.prompt, self.slot0 = index, prompt, slot0
        self.run_score = np.full(K, DEAD)  # only beam 0 is real at first: the others are its copies
        self.run_score[0] = 0.0
        self.run = [([], []) for _ in range(K)]  # (tokens, log-probabilities) of each running beam
        self.fin_score = np.full(K, DEAD)
        self.fin = [([], []) for _ in range(K)]
        self.fin_real = np.zeros(K, dtype=bool)  # transformers' is_sent_finished
        self.improvable = True  # transformers' is_early_stop_heuristic_unsatisfied
        self.active = True


def beam_search(model, prompts, max_new, ends, hooks, params, K, length_penalty, early_stopping, R):
    """The best R of K beams for each prompt, prompt by prompt, best first: a list of len(prompts) * R BeamResults.

    ends: the end-of-text ids that finish a beam (empty under stop_at_eos=False); hooks: LogitsHooks; params: the
    penalties (SamplingParams). The arguments are checked by generate."""
    if max_new == 0:
        return [BeamResult([], [], 0.0) for _ in prompts for _ in range(R)]
    V = model.config.vocab_size
    M = max(2, 1 + len(ends)) * K
    end_ids = np.asarray(sorted(ends), dtype=np.int64)
    # The last token is never fed back, so a slot holds at most prompt + max_new - 1 positions.
    cache = KVCache.for_model(model, len(prompts) * K, max_len=max(len(p) for p in prompts) + max_new - 1)
    searches = [_Prompt(i, list(p), i * K, K) for i, p in enumerate(prompts)]
    logits = {s.index: prefill(model, cache, s.slot0, s.prompt)[None] for s in searches}  # (1, V) at step 0
    for t in range(max_new):
        live = [s for s in searches if s.active]
        feed = []
        for s in live:
            parents, toks = _step(s, logits[s.index], t, V, M, K, max_new, end_ids, hooks, params, length_penalty,
                                  early_stopping)
            if not s.active:
                continue
            # Each beam takes its parent's slot. Step 0 copies the prefilled slot (all beams are alike then: only
            # slot0 holds the prompt) to every slot; later steps skip the prompt rows, alike in every slot since.
            if t == 0:
                cache.copy_slots(range(s.slot0, s.slot0 + K), [s.slot0] * K)
            else:
                cache.copy_slots(range(s.slot0, s.slot0 + K), [s.slot0 + p for p in parents], len(s.prompt))
            feed.append((s, toks))
        if not feed:
            break
        slots = [s.slot0 + j for s, _ in feed for j in range(K)]
        out = decode(model, cache, slots, [tok for _, toks in feed for tok in toks])
        for n, (s, _) in enumerate(feed):
            logits[s.index] = out[n * K:(n + 1) * K]
    return [BeamResult(list(s.fin[j][0]), list(s.fin[j][1]), float(s.fin_score[j])) for s in searches
            for j in range(R)]


def _step(s: _Prompt, logits, t, V, M, K, max_new, end_ids, hooks, params, length_penalty, early_stopping):
    """One step of prompt s from its beams' logits (K, V) (or (1, V) at step 0, when the beams are all alike; t new
    tokens so far) -> (parent beam of each new running beam, the token it appends). Updates s in place."""
    z = np.empty((K, V))
    for j in range(logits.shape[0]):
        history = s.prompt + s.run[j][0]
        where = f"prompt {s.index}, beam {j}, step {t} (new token {t + 1})"
        lp = apply_penalties(log_softmax(np.asarray(logits[j], dtype=np.float64)), history, params)
        z[j] = hooks.process(lp, history, t, where, all_banned_ok=True)
    if logits.shape[0] == 1:
        z[1:] = z[0]
    flat = (z + s.run_score[:, None]).reshape(-1)
    top = _top(flat, M)
    beam, tok, cand = top // V, top % V, flat[top]
    ends_here = np.isin(tok, end_ids) | (t + 1 >= max_new)
    if hooks.criteria:
        for c in np.flatnonzero(~ends_here):
            b = int(beam[c])
            history = s.prompt + s.run[b][0] + [int(tok[c])]
            ends_here[c] = hooks.stops(history, z[b], f"prompt {s.index}, step {t} (new token {t + 1})")

    def path(c):  # the tokens and log-probabilities of candidate c
        b, tk = int(beam[c]), int(tok[c])
        return s.run[b][0] + [tk], s.run[b][1] + [float(z[b, tk])]

    # The next running beams: the best K candidates, those that ended pushed behind the rest.
    running = cand + ends_here * DEAD
    keep = _top(running, K)
    # The finished hypotheses: the best K candidates that ended, length-normalised, merged with those kept so far.
    # (transformers also adds DEAD to them all once the prompt is done; here a done prompt takes no more steps.)
    fresh = ends_here.copy()
    fresh[K:] = False
    scored = cand / float(t + 1) ** length_penalty + (~fresh) * DEAD
    merged = np.concatenate([s.fin_score, scored])
    best = _top(merged, K)
    s.fin = [s.fin[i] if i < K else path(i - K) for i in best]
    s.fin_real = np.concatenate([s.fin_real, fresh])[best]
    s.fin_score = merged[best]
    s.run = [path(c) for c in keep]
    s.run_score = running[keep]
    # Can a running beam still beat the worst kept hypothesis? (transformers' early-stop heuristic, sticky)
    length = max_new if early_stopping == "never" and length_penalty > 0 else t + 1
    bound = s.run_score[0] / float(length) ** length_penalty
    worst = np.where(s.fin_real, s.fin_score.min(), DEAD)
    s.improvable = s.improvable and bool((bound > worst).any())
    s.active = s.improvable and not (early_stopping is True and s.fin_real.all()) and not ends_here.all()
    return [int(beam[c]) for c in keep], [int(tok[c]) for c in keep]
