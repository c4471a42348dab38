"""What happens to one sequence's logits between the model and the draw, and the stop checks after it.

Order (transformers' order): penalties (sampling.apply_penalties), repeated n-grams (no_repeat_ngram_size), bad
words, end-of-text suppressed before min_new_tokens, the user's logits_processor callables, then temperature and the
filters (sampling.choose); the bans are all -inf, so their order among themselves does not matter. Beam search runs
the same hooks on log-probabilities instead of logits, as transformers does. Each
callable sees one sequence at a time, as numpy arrays with a batch dimension of 1: input_ids (1, L) int64 (prompt and
tokens so far) and scores (1, V) float64; so what it does cannot depend on what else is in the batch.
"""
from __future__ import annotations

import numpy as np

from gptx.generate_hf import bad_words, callables


def _counts(z: np.ndarray) -> str:
    return f"{int(np.isnan(z).sum())} NaN, {int(np.isposinf(z).sum())} +inf, {int(np.isneginf(z).sum())} -inf"


def repeated_ngram_ends(history, n: int) -> np.ndarray:
    """The tokens that would complete an n-gram already in `history` (prompt and tokens so far): the last token of
    every n-token window whose first n - 1 tokens equal the history's last n - 1 (transformers'
    NoRepeatNGramLogitsProcessor; n = 1 bans every token seen)."""
    h = np.asarray(history, dtype=np.int64)
    if h.size < n:
        return h[:0]
    windows = np.lib.stride_tricks.sliding_window_view(h, n)  # (len - n + 1, n)
    if n == 1:
        return windows[:, 0]
    hit = (windows[:, :-1] == h[h.size - n + 1:]).all(axis=1)
    return windows[hit, -1]


class LogitsHooks:
    def __init__(self, vocab_size, eos, min_new_tokens, bad_words_ids, logits_processor, stopping_criteria,
                 no_repeat_ngram_size=0):
        if isinstance(min_new_tokens, bool) or not isinstance(min_new_tokens, (int, np.integer)) or min_new_tokens < 0:
            raise ValueError(f"min_new_tokens must be an integer >= 0, got {min_new_tokens!r}")
        if min_new_tokens and not eos:
            raise ValueError("min_new_tokens needs an end-of-text id to hold back: pass eos_token_id= or a "
                             "tokenizer with one")
        n = no_repeat_ngram_size
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"no_repeat_ngram_size must be an integer >= 0 (0 = off), got {n!r}")
        self.ngram = int(n)
        self.V = vocab_size
        self.eos = np.asarray(eos, dtype=np.int64)
        self.min_new = int(min_new_tokens)
        self.single, self.multi = bad_words(bad_words_ids, vocab_size)
        self.processors = callables(logits_processor, "logits_processor")
        self.criteria = callables(stopping_criteria, "stopping_criteria")

    def process(self, z: np.ndarray, history: list, made: int, where: str, all_banned_ok: bool = False) -> np.ndarray:
        """z: float64 (V,) penalized logits of a sequence about to draw its token number `made` (0-based).

        all_banned_ok: a sequence with every token banned is no error (beam search: that beam's candidates all score
        -inf and other beams go on, as in transformers)."""
        if not np.isfinite(z).all():  # the model's own logits: -inf is as wrong as NaN here
            raise ValueError(f"{where}: the model's logits are not finite ({_counts(z)}); the weights or an "
                             f"activation have overflowed")
        if self.ngram:
            z[repeated_ngram_ends(history, self.ngram)] = -np.inf
        if self.single:
            z[self.single] = -np.inf
        for prefix, last in self.multi:
            if len(history) >= len(prefix) and tuple(history[len(history) - len(prefix):]) == prefix:
                z[last] = -np.inf
        if made < self.min_new and self.eos.size:
            z[self.eos] = -np.inf
        if self.processors:
            ids = np.asarray(history, dtype=np.int64)[None]
            for k, f in enumerate(self.processors):
                out = f(ids, z[None])
                if out is None:
                    raise TypeError(f"{where}: logits_processor[{k}] returned None; return the scores (changed in "
                                    f"place or new), as transformers' processors do")
                try:
                    out = np.asarray(out, dtype=np.float64)
                except (TypeError, ValueError):
                    raise TypeError(f"{where}: logits_processor[{k}] returned {type(out).__name__}, not an array "
                                    f"of scores") from None
                if out.size != self.V:
                    raise ValueError(f"{where}: logits_processor[{k}] returned {out.shape} scores, expected "
                                     f"(1, {self.V})")
                z = out.reshape(-1).copy()
                if np.isnan(z).any() or np.isposinf(z).any():
                    raise ValueError(f"{where}: logits_processor[{k}] returned non-finite scores ({_counts(z)}); "
                                     f"use -inf to ban a token")
        if not all_banned_ok and not np.isfinite(z).any():
            raise ValueError(f"{where}: every token is banned (-inf) by bad_words_ids, no_repeat_ngram_size, "
                             f"min_new_tokens or a logits_processor")
        return z

    def stops(self, history: list, scores: np.ndarray, where: str) -> bool:
        """Whether a stopping_criteria callable ends the sequence after its newest token (history includes it)."""
        if not self.criteria:
            return False
        ids = np.asarray(history, dtype=np.int64)[None]
        for k, f in enumerate(self.criteria):
            r = np.asarray(f(ids, scores[None])).reshape(-1)
            if r.size != 1:
                raise ValueError(f"{where}: stopping_criteria[{k}] returned {r.size} values for one sequence "
                                 f"(expected a bool, or one bool per row of input_ids)")
            if bool(r[0]):
                return True
        return False
