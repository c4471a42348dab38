"""The arguments generate/stream share with transformers' generate: translated to gptx's own, or refused by name.

Where a name overlaps, it means what it means in transformers (do_sample, max_length, eos_token_id, min_new_tokens,
num_return_sequences, bad_words_ids, no_repeat_ngram_size, and beam search's num_beams, length_penalty,
early_stopping); a transformers argument gptx does not have is a TypeError that says what to
use instead, never a silent no-op.
"""
from __future__ import annotations

import difflib

import numpy as np

# What to use instead of a transformers (or OpenAI-style) argument gptx does not take.
INSTEAD = {
    "num_beam_groups": "diverse (group) beam search is not supported; use num_beams",
    "diversity_penalty": "diverse (group) beam search is not supported; use num_beams",
    "constraints": "constrained beam search is not supported; use bad_words_ids or a logits_processor",
    "force_words_ids": "constrained beam search is not supported; use bad_words_ids or a logits_processor",
    "penalty_alpha": "contrastive search is not supported",
    "assistant_model": "assisted (speculative) decoding is not supported",
    "prompt_lookup_num_tokens": "prompt-lookup decoding is not supported",
    "input_ids": "pass the prompt as the first argument (a list of ids, a list of such lists, or text)",
    "inputs": "pass the prompt as the first argument (a list of ids, a list of such lists, or text)",
    "attention_mask": "not needed: give prompts of different lengths as a list of lists, without padding",
    "pad_token_id": "not needed: each sequence comes back as a list of its own length, without padding",
    "min_length": "use min_new_tokens (min_length counts the prompt too)",
    "stop_strings": "use stop= (token ids and/or strings; strings need tokenizer=)",
    "suppress_tokens": "use bad_words_ids=[[id], ...]",
    "begin_suppress_tokens": "use a logits_processor",
    "typical_p": "not supported; use top_p or min_p",
    "epsilon_cutoff": "not supported; use min_p",
    "eta_cutoff": "not supported; use min_p",
    "max_time": "use a stopping_criteria callable that checks the clock",
    "streamer": "use model.stream(...), which yields tokens or text as they are made",
    "output_scores": "use return_logprobs=True",
    "output_logits": "use return_logprobs=True",
    "return_dict_in_generate": "generate returns token lists; return_logprobs=True adds their log-probabilities "
                               "(return_scores=True: beam scores)",
    "generation_config": "pass the settings as keyword arguments",
    "use_cache": "the KV cache is always used (use_cache=True is accepted)",
    "generator": "use seed= (an int, or one per sequence)",
    "random_seed": "use seed=",
    "max_tokens": "use max_new_tokens",
    "n": "use num_return_sequences",
    "best_of": "not supported; use num_return_sequences",
}
# Arguments accepted at the one value that changes nothing (transformers' defaults).
HARMLESS = {"num_beams": 1, "use_cache": True, "length_penalty": 1.0, "early_stopping": False}
STREAM_ONLY = {"text"}
_BEAMS = "beam search knows its best beams only at the end: use generate(num_beams=...)"
GENERATE_ONLY = {"return_logprobs": "stream yields tokens as they are made; use generate for log-probabilities",
                 "return_full_text": "stream yields only the new tokens; print the prompt first",
                 "return_scores": _BEAMS, "num_beams": _BEAMS, "length_penalty": _BEAMS, "early_stopping": _BEAMS}
KNOWN = {"max_new_tokens", "temperature", "top_k", "top_p", "min_p", "repetition_penalty", "presence_penalty",
         "frequency_penalty", "stop", "seed", "tokenizer", "sliding_window", "do_sample", "max_length",
         "eos_token_id", "stop_at_eos", "min_new_tokens", "num_return_sequences", "bad_words_ids",
         "logits_processor", "stopping_criteria", "no_repeat_ngram_size"} | STREAM_ONLY | set(GENERATE_ONLY)


def is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def reject_unknown(unknown: dict, where: str) -> None:
    """TypeError naming every argument `where` (generate or stream) does not take, with what to use instead."""
    names = [k for k in unknown if not (k in HARMLESS and unknown[k] == HARMLESS[k])]
    if not names:
        return
    parts = []
    for k in names:
        hint = INSTEAD.get(k) or (GENERATE_ONLY.get(k) if where == "stream" else None)
        if where == "generate" and k in STREAM_ONLY:
            hint = f"{k}= is an argument of stream(); generate returns token ids"
        if hint is None:
            close = difflib.get_close_matches(k, sorted(KNOWN), n=1)
            hint = f"did you mean {close[0]}?" if close else "not an argument of gptx generation"
        parts.append(f"{k} ({hint})")
    raise TypeError(f"{where}() got unexpected keyword argument{'s' if len(parts) > 1 else ''}: " + "; ".join(parts))


def temperature_for(do_sample, temperature):
    """do_sample=False is greedy whatever the temperature (as in transformers, whose sampling filters all keep the
    argmax anyway); do_sample=True samples at `temperature`, which must then be > 0; None: temperature decides.
    temperature None (not given) is 1."""
    if do_sample is None:
        return 1.0 if temperature is None else temperature
    if not isinstance(do_sample, bool):
        raise TypeError(f"do_sample must be True, False or None, got {do_sample!r}")
    if not do_sample:
        return 0.0
    if isinstance(temperature, (int, float)) and not isinstance(temperature, bool) and temperature == 0:
        raise ValueError("do_sample=True with temperature=0: sampling needs temperature > 0 "
                         "(or pass do_sample=False for greedy)")
    return 1.0 if temperature is None else temperature


def new_tokens(max_new_tokens, max_length, prompts):
    """(number of new tokens, how the user gave it, for messages). max_length counts the prompt as transformers
    does: for a batch, the longest prompt (the length a padded batch would have) + the new tokens."""
    if max_new_tokens is not None and max_length is not None:
        raise ValueError(f"max_new_tokens ({max_new_tokens!r}) and max_length ({max_length!r}) both given: pass one "
                         f"(max_length counts the prompt, max_new_tokens does not)")
    if max_length is not None:
        if not is_int(max_length):
            raise ValueError(f"max_length must be an integer, got {max_length!r}")
        longest = max(len(p) for p in prompts)
        if max_length <= longest:
            raise ValueError(f"max_length ({max_length}) leaves no room after the prompt ({longest} tokens): "
                             f"max_length counts the prompt too; raise it or pass max_new_tokens")
        return int(max_length) - longest, f"max_length ({max_length})"
    if max_new_tokens is None:
        raise TypeError("generation needs max_new_tokens (new tokens) or max_length (prompt + new tokens)")
    if not is_int(max_new_tokens) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    return int(max_new_tokens), f"max_new_tokens ({max_new_tokens})"


def eos_ids(model, tokenizer, eos_token_id) -> list[int]:
    """The end-of-text ids: eos_token_id when given (an int or a list), else the tokenizer's end-of-text token, else
    one the model knows (a tokenizer or an eos_token_id it carries). Empty when none is known."""
    if eos_token_id is not None:
        ids = [eos_token_id] if is_int(eos_token_id) else eos_token_id
        if not isinstance(ids, (list, tuple)) or not ids or not all(is_int(t) for t in ids):
            raise ValueError(f"eos_token_id must be a token id or a non-empty list of them, got {eos_token_id!r}")
        V = model.config.vocab_size
        bad = [int(t) for t in ids if not 0 <= t < V]
        if bad:
            raise ValueError(f"eos_token_id has ids outside [0, {V}): {bad}")
        return [int(t) for t in ids]
    # An id the model cannot produce (a tokenizer's special token past the model's vocabulary) can never end a
    # sequence, so it is left out rather than refused: the model simply has no end-of-text token.
    V = model.config.vocab_size
    for source in (tokenizer, getattr(model, "tokenizer", None)):
        eot = getattr(source, "eot_token", None)
        if is_int(eot):
            return [int(eot)] if 0 <= eot < V else []
    for source in (getattr(model, "generation_config", None), model.config):
        eot = getattr(source, "eos_token_id", None)
        if is_int(eot) or (isinstance(eot, (list, tuple)) and eot and all(is_int(t) for t in eot)):
            return [int(t) for t in ([eot] if is_int(eot) else eot) if 0 <= t < V]
    return []


def bad_words(bad_words_ids, V):
    """bad_words_ids (a list of token-id lists, as transformers takes it) -> (single ids, [(prefix, last id)])."""
    if bad_words_ids is None:
        return [], []
    ok = (isinstance(bad_words_ids, (list, tuple)) and bad_words_ids
          and all(isinstance(w, (list, tuple)) and w and all(is_int(t) for t in w) for w in bad_words_ids))
    if not ok:
        raise ValueError(f"bad_words_ids must be a non-empty list of non-empty lists of token ids, got "
                         f"{bad_words_ids!r}")
    out = [int(t) for w in bad_words_ids for t in w if not 0 <= t < V]
    if out:
        raise ValueError(f"bad_words_ids has ids outside [0, {V}): {out[:5]}")
    single = sorted({int(w[0]) for w in bad_words_ids if len(w) == 1})
    multi = [(tuple(int(t) for t in w[:-1]), int(w[-1])) for w in bad_words_ids if len(w) > 1]
    return single, multi


def callables(fs, name):
    """A list of callables from one callable or a list of them (transformers' LogitsProcessorList and
    StoppingCriteriaList are lists)."""
    if fs is None:
        return []
    fs = [fs] if callable(fs) and not isinstance(fs, (list, tuple)) else fs
    if not isinstance(fs, (list, tuple)) or not all(callable(f) for f in fs):
        raise TypeError(f"{name} must be a callable f(input_ids, scores) or a list of them, got {fs!r}")
    return list(fs)


def repeat_per_prompt(items, n):
    """[a, b] -> [a, a, b, b] for n = 2: the order transformers returns num_return_sequences in."""
    return [x for x in items for _ in range(n)]
