"""Text generation with a KV cache: batches of prompts of different lengths, sampling controls, stops, streaming.

Batching: each prompt is prefilled on its own into its slot of one KVCache (one pass over the prompt); then every
unfinished sequence advances one token per step together. The matmuls of a step cover all of them at once; attention
runs per sequence with that sequence's own kv_len, so no padding or masking is needed and a sequence's logits do not
depend on what else is in the batch.

Context: prompt + max_new_tokens must fit in block_size (ValueError otherwise), unless sliding_window=True: then a
longer prompt is cut to its last block_size tokens (with a warning that counts what was dropped) and, once a sequence
fills the context, every further token is predicted from the last block_size tokens (its cache slot is rebuilt by a
fresh prefill of that window each step: exact, the same as running the model on the cropped context, at the cost of
one prefill per token past the limit).

End of text: a sequence stops at the end-of-text id (eos_token_id=, else the tokenizer's eot_token, else one the
model carries) unless stop_at_eos=False. Names shared with transformers' generate mean what they mean there; see
generate_hf.py for them and for the TypeError that names an argument gptx does not take.

Beam search (generate(num_beams=K > 1), beam_search.py) shares the argument checks (_plan) and the logits hooks; each
prompt's K beams hold K cache slots, reordered after each step by KVCache.copy_slots. It does not stream.

Randomness: token t of sequence i is drawn with uniform(seed_i, stream_i, position) (see sampling.uniform), where an
int seed gives sequence i the stream (seed, i) and a list of seeds gives sequence i the stream (seeds[i], 0) (or
(a, b) for an entry given as a pair (a, b)). The same seed therefore gives the same tokens whatever the batch size or thread count.
"""
from __future__ import annotations

import codecs
import warnings
from typing import NamedTuple

import numpy as np

from gptx.beam_search import beam_search, beam_settings, check_beam_sampling
from gptx.generate_hf import (eos_ids, is_int as _is_int, new_tokens, reject_unknown, repeat_per_prompt,
                              temperature_for)
from gptx.inference import decode, prefill
from gptx.kv_cache import KVCache
from gptx.logits_hooks import LogitsHooks
from gptx.sampling import SamplingParams, apply_penalties, choose


def _prompts(model, prompt_ids, tokenizer):
    """(list of prompt id lists, batched?) from one prompt or a list of them (ids, or text with a tokenizer)."""
    def one(p, where):
        if isinstance(p, str):
            if tokenizer is None:
                raise ValueError(f"{where} is text: pass tokenizer= to encode it (or give token ids)")
            p = tokenizer.encode(p)
        if isinstance(p, np.ndarray):
            p = p.tolist()
        if not isinstance(p, (list, tuple)) or not all(_is_int(t) for t in p):
            raise ValueError(f"{where} must be a list of token ids (ints)")
        if len(p) == 0:
            raise ValueError(f"{where} is empty: give at least one token")
        V = model.config.vocab_size
        bad = [int(t) for t in p if not 0 <= int(t) < V]
        if bad:
            raise ValueError(f"{where} has token ids outside [0, {V}): {bad[:5]}")
        return [int(t) for t in p]

    if isinstance(prompt_ids, np.ndarray):
        prompt_ids = prompt_ids.tolist()
    if isinstance(prompt_ids, str) or (isinstance(prompt_ids, (list, tuple)) and prompt_ids
                                       and all(_is_int(t) for t in prompt_ids)):
        return [one(prompt_ids, "prompt")], False
    if not isinstance(prompt_ids, (list, tuple)) or not prompt_ids:
        raise ValueError("prompt_ids must be a non-empty list of token ids, or a non-empty list of such lists")
    return [one(p, f"prompt {i}") for i, p in enumerate(prompt_ids)], True


def _stops(stop, n, tokenizer):
    """Per sequence: (set of stop token ids, list of stop strings as UTF-8 bytes)."""
    def items(s):
        if s is None:
            return []
        return [s] if isinstance(s, str) or _is_int(s) else list(s)

    per_seq = (isinstance(stop, (list, tuple)) and len(stop) == n and n > 1
               and all(x is None or isinstance(x, (list, tuple)) for x in stop))
    specs = [items(s) for s in stop] if per_seq else [items(stop)] * n
    out = []
    for spec in specs:
        ids, strings = set(), []
        for s in spec:
            if _is_int(s):
                ids.add(int(s))
            elif isinstance(s, str) and s:
                if tokenizer is None:
                    raise ValueError(f"stop string {s!r} needs tokenizer= (to turn tokens into text)")
                strings.append(s.encode("utf-8"))
            else:
                raise ValueError(f"stop must be token ids and/or non-empty strings, got {s!r}")
        out.append((ids, strings))
    return out


def _seeds(seed, n, copies=1):
    """(seed, stream) per returned sequence, n prompts x `copies` (num_return_sequences) of each, in that order.

    An int seed numbers the returned sequences (seed, 0), (seed, 1), ...: the same streams as the prompts repeated
    by hand. A list of n ints gives copy r of prompt i the stream (seeds[i], r); a list of n * copies gives each
    sequence its own entry."""
    total = n * copies
    if seed is None:
        return [(int(np.random.SeedSequence().entropy) & ((1 << 63) - 1), i) for i in range(total)]
    if _is_int(seed):
        return [(int(seed), i) for i in range(total)]
    if isinstance(seed, (list, tuple)) and len(seed) == n and copies > 1 and all(_is_int(s) for s in seed):
        return [(int(s), r) for s in seed for r in range(copies)]
    if isinstance(seed, (list, tuple)) and len(seed) == total:
        out = []
        for s in seed:
            if _is_int(s):
                out.append((int(s), 0))
            elif isinstance(s, tuple) and len(s) == 2 and all(_is_int(x) for x in s):
                out.append((int(s[0]), int(s[1])))  # an explicit (seed, stream) pair
            else:
                break
        else:
            return out
    per = f"{total} ints or (seed, stream) pairs (one per sequence)" + (f", or {n} ints (one per prompt)"
                                                                         if copies > 1 else "")
    raise ValueError(f"seed must be an int, None, or a list of {per}, got {seed!r}")


class _Header(NamedTuple):
    prompts: list      # the prompts as given (before any sliding-window cut), one per returned sequence
    batched: bool      # results are a list per sequence (a batch of prompts, or num_return_sequences > 1)
    hidden: frozenset  # end-of-text ids that end a sequence: no text of their own in a text stream


def _fit_context(prompts, batched, max_new, given, max_length, block, sliding_window):
    """The prompts the model sees: checked against the context, or cut to it with a warning (sliding_window)."""
    name = (lambda i: f"prompt {i}") if batched else (lambda i: "the prompt")
    if sliding_window:
        cut = [(i, len(p) - block) for i, p in enumerate(prompts) if len(p) > block]
        if cut:
            which = ", ".join(f"{k} token{'s' * (k > 1)} of {name(i)}" for i, k in cut)
            warnings.warn(f"sliding_window=True: a prompt longer than the context ({block} = block_size) keeps its "
                          f"last {block} tokens; dropped from the left: {which}", UserWarning, stacklevel=4)
        return [p[-block:] for p in prompts]
    for i, p in enumerate(prompts):
        if len(p) > block:
            raise ValueError(f"{name(i)} has {len(p)} tokens, longer than the context ({block} = block_size); "
                             f"shorten it or pass sliding_window=True (keeps its last {block} tokens)")
    if max_length is not None and max_length > block:
        raise ValueError(f"{given} exceeds the context ({block} = block_size); lower it or pass "
                         f"sliding_window=True")
    for i, p in enumerate(prompts):
        if len(p) + max_new > block:
            raise ValueError(f"{name(i)} ({len(p)} tokens) + {given} exceeds the context "
                             f"({block} = block_size); lower it or pass sliding_window=True")
    return prompts


class _Plan(NamedTuple):
    """What generation runs on, checked: one entry per sequence (prompts repeated num_return_sequences times)."""
    head: _Header
    seen: list         # the prompts the model sees (cut to the context under sliding_window)
    max_new: int
    eos: list          # end-of-text ids (those min_new_tokens holds back)
    hooks: LogitsHooks
    params: SamplingParams
    stops: list        # per sequence: (stop ids, stop strings as bytes)
    seeds: list        # per sequence: (seed, stream)
    tokenizer: object  # for stop strings (token bytes); None without one


def _plan(model, prompt_ids, max_new_tokens=None, temperature=None, top_k=None, top_p=None, min_p=None,
          repetition_penalty=1.0, presence_penalty=0.0, frequency_penalty=0.0, stop=None, seed=None, tokenizer=None,
          sliding_window=False, *, do_sample=None, max_length=None, eos_token_id=None, stop_at_eos=True,
          min_new_tokens=0, num_return_sequences=1, bad_words_ids=None, logits_processor=None,
          stopping_criteria=None, no_repeat_ngram_size=0, where="generate", **unknown) -> _Plan:
    """Every argument of generate / stream checked (those of sampling and of beam search alike) -> a _Plan."""
    reject_unknown(unknown, where)
    params = SamplingParams(temperature_for(do_sample, temperature), top_k, top_p, min_p, repetition_penalty,
                            presence_penalty, frequency_penalty)
    prompts, batched = _prompts(model, prompt_ids, tokenizer)
    if not isinstance(stop_at_eos, bool):
        raise TypeError(f"stop_at_eos must be True or False, got {stop_at_eos!r}")
    copies = num_return_sequences
    if not _is_int(copies) or copies < 1:
        raise ValueError(f"num_return_sequences must be an integer >= 1, got {copies!r}")
    max_new, given = new_tokens(max_new_tokens, max_length, prompts)
    block = model.config.block_size
    seen = _fit_context(prompts, batched, max_new, given, max_length, block, sliding_window)
    eos = eos_ids(model, tokenizer, eos_token_id)
    hooks = LogitsHooks(model.config.vocab_size, eos, min_new_tokens, bad_words_ids, logits_processor,
                        stopping_criteria, no_repeat_ngram_size)
    ends = frozenset(eos) if stop_at_eos else frozenset()
    stops = repeat_per_prompt(_stops(stop, len(prompts), tokenizer), copies)
    seeds = _seeds(seed, len(prompts), copies)
    prompts, seen = repeat_per_prompt(prompts, copies), repeat_per_prompt(seen, copies)
    return _Plan(_Header(prompts, batched or copies > 1, ends), seen, max_new, eos, hooks, params, stops, seeds,
                 tokenizer)


def iter_tokens(model, *args, _where="generate", **kwargs):
    """The engine behind generate and stream (sampling and greedy; the arguments are _plan's): yields (sequence index,
    token id, log-probability) as tokens are made.

    The first item is not a token but a _Header, so callers know the shape of what follows.
    """
    plan = _plan(model, *args, where=_where, **kwargs)
    yield plan.head
    seen, max_new, hooks, params = plan.seen, plan.max_new, plan.hooks, plan.params
    stops, seeds, ends, tokenizer = plan.stops, plan.seeds, plan.head.hidden, plan.tokenizer
    if max_new == 0:
        return
    n = len(seen)
    block = model.config.block_size
    need = max(len(p) for p in seen) + max_new - 1
    cache = KVCache.for_model(model, n, max_len=max(1, min(block, need)))
    lengths = np.asarray(cache.lengths)  # a view: prefill and decode advance it
    logits = [prefill(model, cache, i, p) for i, p in enumerate(seen)]
    history = [list(p) for p in seen]
    made = [0] * n
    text = [b""] * n
    active = list(range(n))
    while active:
        still = []
        for i in active:
            s, stream = seeds[i]
            pos = len(history[i])
            where = f"sequence {i}, step {made[i]} (new token {made[i] + 1}, position {pos})"
            z = hooks.process(apply_penalties(logits[i], history[i], params), history[i], made[i], where)
            tok, lp = choose(z, params, s, stream, pos)
            history[i].append(tok)
            made[i] += 1
            yield i, tok, lp
            ids, strings = stops[i]
            done = made[i] >= max_new or tok in ids or tok in ends or hooks.stops(history[i], z, where)
            if strings and not done:
                piece = tokenizer.token_bytes(tok)
                text[i] += piece
                longest = max(len(x) for x in strings)
                tail = text[i][-(longest + len(piece)):]
                done = any(x in tail for x in strings)
                # A match completed by a later token starts at most longest - 1 bytes before that token's bytes.
                text[i] = text[i][-longest:]
            if not done:
                still.append(i)
        active = still
        if not active:
            break
        full = [i for i in active if lengths[i] >= cache.max_len]
        for i in full:  # sliding window: predict from the last max_len tokens, re-prefilled
            cache.reset(i)
            logits[i] = prefill(model, cache, i, history[i][-cache.max_len:])
        rest = [i for i in active if i not in full]
        if rest:
            out = decode(model, cache, rest, [history[i][-1] for i in rest])
            for j, i in enumerate(rest):
                logits[i] = out[j]


def generate(model, prompt_ids, max_new_tokens=None, temperature=None, top_k=None, top_p=None, min_p=None,
             repetition_penalty=1.0, presence_penalty=0.0, frequency_penalty=0.0, stop=None, seed=None,
             tokenizer=None, return_logprobs=False, sliding_window=False, *, return_full_text=False, num_beams=1,
             length_penalty=1.0, early_stopping=False, return_scores=False, **kwargs):
    """New token ids for one prompt (a list) or a batch (a list of lists); see the module docstring.

    temperature 0 is greedy (None, the default: 1, or greedy under do_sample=False). A sequence stops after
    max_new_tokens, at its end-of-text id (unless stop_at_eos=False), at a stop token / stop string (`stop`: ids and
    strings for every sequence, or one such list per prompt), or when a stopping_criteria callable says so; the token
    that ends it is included. The penalties count every token of the sequence so far, prompt included (as Hugging
    Face's repetition_penalty does). return_logprobs: also the log-probability of each token under the distribution
    it was drawn from (after penalties, processors, temperature and filters; greedy: the log-softmax of the processed
    logits).

    Transformers' names: do_sample (False: greedy; True: sample at `temperature`), max_length (prompt + new tokens;
    for a batch, the longest prompt + new tokens, as a padded batch counts it), eos_token_id (an id or a list),
    min_new_tokens (end-of-text held back until then), num_return_sequences (that many sequences per prompt, each
    its own seed stream, returned prompt by prompt: [p0, p0, p1, p1] for 2), bad_words_ids (token sequences never
    produced: a sequence's last id is banned whenever the tokens before it match; unlike transformers, an end-of-text
    id listed alone is banned, not dropped), no_repeat_ngram_size (n > 0: a token that would complete an n-gram
    already in the sequence, prompt included, is banned), logits_processor and stopping_criteria (callables
    f(input_ids, scores), see logits_hooks.py). return_full_text: each result is the prompt followed by the new
    tokens (what transformers returns); log-probabilities stay those of the new tokens.

    Beam search (num_beams > 1; see beam_search.py): transformers' generate(num_beams=K, do_sample=False) with
    length_penalty, early_stopping (False, True or "never") and num_return_sequences <= num_beams (the best beams of
    each prompt, best first, prompt by prompt). The same return shapes; return_logprobs gives each token's
    log-probability along its beam, and return_scores=True adds each returned beam's score (the sum of its
    log-probabilities divided by its length ** length_penalty; transformers' sequences_scores) as the last item.
    """
    K = beam_settings(num_beams, length_penalty, early_stopping, return_scores)
    if K > 1:
        head, results = _beam_generate(model, prompt_ids, max_new_tokens, K, length_penalty, early_stopping,
                                       dict(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                                            repetition_penalty=repetition_penalty, presence_penalty=presence_penalty,
                                            frequency_penalty=frequency_penalty, stop=stop, seed=seed,
                                            tokenizer=tokenizer, sliding_window=sliding_window, **kwargs))
        toks = [r.tokens for r in results]
        lps = [r.logprobs for r in results]
        scores = [r.score for r in results]
    else:
        it = iter_tokens(model, prompt_ids, max_new_tokens, temperature, top_k, top_p, min_p, repetition_penalty,
                         presence_penalty, frequency_penalty, stop, seed, tokenizer, sliding_window, **kwargs)
        head = next(it)
        toks = [[] for _ in head.prompts]
        lps = [[] for _ in head.prompts]
        for i, tok, lp in it:
            toks[i].append(tok)
            lps[i].append(lp)
        scores = None
    if return_full_text:
        toks = [list(p) + t for p, t in zip(head.prompts, toks)]
    if not head.batched:
        toks, lps, scores = toks[0], lps[0], scores and scores[0]
    out = (toks,) + ((lps,) if return_logprobs else ()) + ((scores,) if return_scores else ())
    return out if len(out) > 1 else toks


def _beam_generate(model, prompt_ids, max_new_tokens, K, length_penalty, early_stopping, kw):
    """(header, one BeamResult per returned sequence) for generate(num_beams=K > 1)."""
    check_beam_sampling(K, kw)
    R = kw.pop("num_return_sequences", 1)
    if not _is_int(R) or not 1 <= R <= K:
        raise ValueError(f"num_return_sequences must be an integer in [1, num_beams = {K}] for beam search (the "
                         f"best beams of each prompt), got {R!r}")
    kw.update(temperature=0.0, do_sample=None, top_k=None, top_p=None, min_p=None)
    plan = _plan(model, prompt_ids, max_new_tokens, **kw)
    results = beam_search(model, plan.seen, plan.max_new, plan.head.hidden, plan.hooks, plan.params, K,
                          length_penalty, early_stopping, R)
    head = _Header(repeat_per_prompt(plan.head.prompts, R), plan.head.batched or R > 1, plan.head.hidden)
    return head, results


def stream(model, prompt_ids, max_new_tokens=None, tokenizer=None, text=None, **kwargs):
    """Yield tokens as they are made: for one prompt, token ids, or text pieces when a tokenizer is given (bytes are
    held back until they complete a UTF-8 character, so multi-byte characters split over tokens come out whole);
    for a batch (or num_return_sequences > 1), (sequence index, id or piece) pairs. text=False keeps ids even with a
    tokenizer (which stop strings need). The end-of-text token that ends a sequence is yielded as an id but adds no
    text. Takes generate's keyword arguments except return_logprobs and return_full_text."""
    it = iter_tokens(model, prompt_ids, max_new_tokens, tokenizer=tokenizer, _where="stream", **kwargs)
    head = next(it)
    batched = head.batched
    as_text = tokenizer is not None if text is None else bool(text)
    if as_text and tokenizer is None:
        raise ValueError("stream(text=True) needs tokenizer=")
    decoders = [codecs.getincrementaldecoder("utf-8")(errors="replace") for _ in head.prompts] if as_text else None
    for i, tok, _ in it:
        item = tok
        if decoders is not None:
            if tok in head.hidden:
                continue
            item = decoders[i].decode(tokenizer.token_bytes(tok))
            if not item:
                continue
        yield (i, item) if batched else item
    if decoders is not None:
        for i, d in enumerate(decoders):
            rest = d.decode(b"", final=True)
            if rest:
                yield (i, rest) if batched else rest
