"""Summaries from a fine-tuned model: each document goes into the training prompt template (cut to leave room for
the summary), generate() decodes (greedy unless told otherwise; beam search with its keyword arguments), and the
text up to the end-of-text token is the summary."""
from __future__ import annotations

import time

from gptx.data_pairs import Template

# New tokens per summary when not given: room for a CNN/DailyMail highlight (about 56 GPT-2 tokens on average) or
# an XSum sentence (about 25), capped at half the context for small models.
DEFAULT_MAX_NEW_TOKENS = 64


def default_max_new_tokens(block_size: int) -> int:
    return max(1, min(DEFAULT_MAX_NEW_TOKENS, block_size // 2))


def _tokenizer_of(model, tokenizer):
    tok = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
    if tok is None:
        raise ValueError("summarize needs tokenizer= (the one the model was trained with; gptx.load returns it)")
    return tok


def summarize_all(model, documents, tokenizer=None, template=None, raw=False, max_new_tokens=None, batch_size=8,
                  on_batch=None, **decode_kwargs):
    """(summaries, cut, seconds): one list of num_return_sequences strings per document, how many documents were cut
    to fit the context, and the generation time. on_batch(done, total) is called after each batch."""
    tok = _tokenizer_of(model, tokenizer)
    if isinstance(documents, str):
        raise TypeError("documents must be a list of strings (wrap one document in a list)")
    documents = list(documents)
    for i, d in enumerate(documents):
        if not isinstance(d, str):
            raise TypeError(f"document {i} must be a string, got {type(d).__name__}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    block = model.config.block_size
    if max_new_tokens is None:
        max_new_tokens = default_max_new_tokens(block)
    if not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
    if max_new_tokens >= block:
        raise ValueError(f"max_new_tokens ({max_new_tokens}) leaves no room for a document in the model's context "
                         f"({block} tokens)")
    tpl = template if isinstance(template, Template) else Template(template, raw=raw)
    copies = decode_kwargs.get("num_return_sequences", 1)
    kw = dict(decode_kwargs)
    kw.setdefault("temperature", 0.0)  # greedy unless asked: a summary is a best guess, not a sample
    eot = tok.eot_token
    out, cut, seconds = [], 0, 0.0
    for start in range(0, len(documents), batch_size):
        prompts = []
        for i, doc in enumerate(documents[start:start + batch_size], start):
            if not doc.strip():
                raise ValueError(f"document {i} is empty")
            ids, was_cut = tpl.prompt_ids(doc, tok, block - max_new_tokens, f"document {i}: ")
            prompts.append(ids)
            cut += was_cut
        t0 = time.perf_counter()
        results = model.generate(prompts, max_new_tokens, tokenizer=tok, **kw)
        seconds += time.perf_counter() - t0
        n = copies if isinstance(copies, int) and copies > 0 else 1
        for j in range(len(prompts)):
            outs = results[j * n:(j + 1) * n]
            out.append([tok.decode([t for t in ids if t != eot]).strip() for ids in outs])
        if on_batch is not None:
            on_batch(len(out), len(documents))
    return out, cut, seconds


def summarize(model, texts, tokenizer=None, template=None, max_new_tokens=None, batch_size=8, **decode_kwargs):
    """A summary (str) per text, or a list of num_return_sequences of them per text when that is > 1.

    texts: one string or a list of them. The prompt is template (default "{document}\\nTL;DR:") with the text cut at
    its end to leave max_new_tokens of room (default min(64, block_size // 2)). decode_kwargs go to model.generate:
    greedy by default (temperature=0); num_beams, length_penalty, no_repeat_ngram_size, early_stopping,
    num_return_sequences, temperature, top_k, ... as generate takes them.
    """
    single = isinstance(texts, str)
    outs, _, _ = summarize_all(model, [texts] if single else texts, tokenizer, template,
                               max_new_tokens=max_new_tokens, batch_size=batch_size, **decode_kwargs)
    many = decode_kwargs.get("num_return_sequences", 1) not in (None, 1)
    res = [o if many else o[0] for o in outs]
    return res[0] if single else res
