"""Text generation with a KV cache: batches of prompts of different lengths, sampling controls, stops, streaming.

Batching: each prompt is prefilled on its own into its slot of one KVCache (one pass over the prompt); then every
unfinished sequence advances one token per step together. The matmuls of a step cover all of them at once; attention
runs per sequence with that sequence's own kv_len, so no padding or masking is needed and a sequence's logits do not
depend on what else is in the batch.

Context: prompt + max_new_tokens must fit in block_size (ValueError otherwise), unless sliding_window=True: then the
prompt is cut to its last block_size tokens and, once a sequence fills the context, every further token is predicted
from the last block_size tokens (its cache slot is rebuilt by a fresh prefill of that window each step: exact, the
same as running the model on the cropped context, at the cost of one prefill per token past the limit).

Randomness: token t of sequence i is drawn with uniform(seed_i, stream_i, position) (see sampling.uniform), where an
int seed gives sequence i the stream (seed, i) and a list of seeds gives sequence i the stream (seeds[i], 0) (or
(a, b) for an entry given as a pair (a, b)). The same seed therefore gives the same tokens whatever the batch size or thread count.
"""
from __future__ import annotations

import codecs

import numpy as np

from gptx.inference import decode, prefill
from gptx.kv_cache import KVCache
from gptx.sampling import SamplingParams, sample


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


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


def _seeds(seed, n):
    if seed is None:
        return [(int(np.random.SeedSequence().entropy) & ((1 << 63) - 1), i) for i in range(n)]
    if _is_int(seed):
        return [(int(seed), i) for i in range(n)]
    if isinstance(seed, (list, tuple)) and len(seed) == n:
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
    raise ValueError(f"seed must be an int, None, or a list of {n} ints or (seed, stream) pairs (one per "
                     f"sequence), got {seed!r}")


def iter_tokens(model, prompt_ids, max_new_tokens, temperature=1.0, top_k=None, top_p=None, min_p=None,
                repetition_penalty=1.0, presence_penalty=0.0, frequency_penalty=0.0, stop=None, seed=None,
                tokenizer=None, sliding_window=False):
    """The engine behind generate and stream: yields (sequence index, token id, log-probability) as tokens are made.

    The first item is not a token but (prompts, batched), so callers know the shape of what follows.
    """
    params = SamplingParams(temperature, top_k, top_p, min_p, repetition_penalty, presence_penalty,
                            frequency_penalty)
    if not _is_int(max_new_tokens) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    prompts, batched = _prompts(model, prompt_ids, tokenizer)
    n, block = len(prompts), model.config.block_size
    for i, p in enumerate(prompts):
        name = f"prompt {i}" if batched else "the prompt"
        if sliding_window:
            prompts[i] = p[-block:]
        elif len(p) > block:
            raise ValueError(f"{name} has {len(p)} tokens, longer than the context ({block} = block_size); "
                             f"shorten it or pass sliding_window=True")
        elif len(p) + max_new_tokens > block:
            raise ValueError(f"{name} ({len(p)} tokens) + max_new_tokens ({max_new_tokens}) exceeds the context "
                             f"({block} = block_size); lower max_new_tokens or pass sliding_window=True")
    stops = _stops(stop, n, tokenizer)
    seeds = _seeds(seed, n)
    yield prompts, batched
    if max_new_tokens == 0:
        return
    need = max(len(p) for p in prompts) + max_new_tokens - 1
    cache = KVCache.for_model(model, n, max_len=max(1, min(block, need)))
    lengths = np.asarray(cache.lengths)  # a view: prefill and decode advance it
    logits = [prefill(model, cache, i, p) for i, p in enumerate(prompts)]
    history = [list(p) for p in prompts]
    made = [0] * n
    text = [b""] * n
    active = list(range(n))
    while active:
        still = []
        for i in active:
            s, stream = seeds[i]
            tok, lp = sample(logits[i], history[i], params, s, stream, len(history[i]))
            history[i].append(tok)
            made[i] += 1
            yield i, tok, lp
            ids, strings = stops[i]
            done = made[i] >= max_new_tokens or tok in ids
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


def generate(model, prompt_ids, max_new_tokens, temperature=1.0, top_k=None, top_p=None, min_p=None,
             repetition_penalty=1.0, presence_penalty=0.0, frequency_penalty=0.0, stop=None, seed=None,
             tokenizer=None, return_logprobs=False, sliding_window=False):
    """New token ids for one prompt (a list) or a batch (a list of lists); see the module docstring.

    temperature 0 is greedy. A sequence stops after max_new_tokens, or at a stop token / stop string (`stop`: ids and
    strings for every sequence, or one such list per sequence); the token that completes the stop is included.
    The penalties count every token of the sequence so far, prompt included (as Hugging Face's
    repetition_penalty does). return_logprobs: also the log-probability of each token under the distribution it was drawn from (after
    penalties, temperature and filters; greedy: the log-softmax of the penalized logits).
    """
    it = iter_tokens(model, prompt_ids, max_new_tokens, temperature, top_k, top_p, min_p, repetition_penalty,
                     presence_penalty, frequency_penalty, stop, seed, tokenizer, sliding_window)
    prompts, batched = next(it)
    toks = [[] for _ in prompts]
    lps = [[] for _ in prompts]
    for i, tok, lp in it:
        toks[i].append(tok)
        lps[i].append(lp)
    if not batched:
        toks, lps = toks[0], lps[0]
    return (toks, lps) if return_logprobs else toks


def stream(model, prompt_ids, max_new_tokens, tokenizer=None, text=None, **kwargs):
    """Yield tokens as they are made: for one prompt, token ids, or text pieces when a tokenizer is given (bytes are
    held back until they complete a UTF-8 character, so multi-byte characters split over tokens come out whole);
    for a batch, (sequence index, id or piece) pairs. text=False keeps ids even with a tokenizer (which stop strings
    need). Takes generate's keyword arguments except return_logprobs."""
    it = iter_tokens(model, prompt_ids, max_new_tokens, tokenizer=tokenizer, **kwargs)
    prompts, batched = next(it)
    as_text = tokenizer is not None if text is None else bool(text)
    if as_text and tokenizer is None:
        raise ValueError("stream(text=True) needs tokenizer=")
    decoders = [codecs.getincrementaldecoder("utf-8")(errors="replace") for _ in prompts] if as_text else None
    for i, tok, _ in it:
        item = tok
        if decoders is not None:
            item = decoders[i].decode(tokenizer.token_bytes(tok))
            if not item:
                continue
        yield (i, item) if batched else item
    if decoders is not None:
        for i, d in enumerate(decoders):
            rest = d.decode(b"", final=True)
            if rest:
                yield (i, rest) if batched else rest
