"""ROUGE-1/2/L/Lsum F1 through the rouge-score package (Porter stemming, as the summarisation literature reports it),
bootstrap confidence intervals, and the lead baseline. Sentences are split here (rouge-score would fetch NLTK's punkt
model for Lsum), so nothing is downloaded at run time.

rouge-score is an optional dependency: `pip install "gptx-engine[eval]"` (or `pip install rouge-score`).
"""
from __future__ import annotations

import re

import numpy as np

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
INSTALL_HINT = 'ROUGE needs the rouge-score package: pip install "gptx-engine[eval]" (or pip install rouge-score)'
BOOTSTRAP_SAMPLES = 1000

# A sentence ends at . ! or ? (optionally closed by a quote or bracket) followed by whitespace and a capital, a digit
# or an opening quote/bracket; "e.g. the" and "3.14" do not end one. Blank lines always do (paragraphs, list items
# in docstrings); a single newline is a hard wrap inside a sentence.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[A-Z0-9\"'(\[`])")
_PARAGRAPH = re.compile(r"\n\s*\n")


def split_sentences(text: str) -> list[str]:
    out = []
    for para in _PARAGRAPH.split(text.strip()):
        para = " ".join(para.split())
        if not para:
            continue
        start = 0
        for m in _SENTENCE_END.finditer(para):
            out.append(para[start:m.end()].strip())
            start = m.end()
        out.append(para[start:].strip())
    return [s for s in out if s]


def lead(text: str, n: int = 1) -> str:
    """The first n sentences of text: the lead baseline's summary."""
    return " ".join(split_sentences(text)[:n])


def _scorer():
    try:
        from rouge_score import rouge_scorer
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True, split_summaries=False)


def for_lsum(text: str) -> str:
    """text with one sentence per line: how rouge-score's rougeLsum reads summary-level sentences."""
    return "\n".join(split_sentences(text))


def pair_scores(predictions, references) -> dict[str, np.ndarray]:
    """F1 per pair for each ROUGE type: {type: float64 array of len(pairs)}."""
    predictions, references = list(predictions), list(references)
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    if not predictions:
        raise ValueError("no pairs to score")
    scorer = _scorer()
    out = {t: np.empty(len(predictions)) for t in ROUGE_TYPES}
    for i, (pred, ref) in enumerate(zip(predictions, references)):
        if not isinstance(pred, str) or not isinstance(ref, str):
            raise TypeError(f"pair {i}: predictions and references must be strings")
        s = scorer.score(for_lsum(ref), for_lsum(pred))  # rouge-score's order: (target, prediction)
        for t in ROUGE_TYPES:
            out[t][i] = s[t].fmeasure
    return out


def bootstrap(values, samples: int = BOOTSTRAP_SAMPLES, confidence: float = 0.95, seed: int = 0):
    """(mean, low, high): the mean of values and the percentile bootstrap interval of the mean (pairs resampled
    with replacement, `samples` times, from a seeded generator so a report is reproducible)."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size == 0:
        raise ValueError("bootstrap needs a non-empty 1-D array of scores")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(samples, v.size))].mean(axis=1)
    a = (1 - confidence) / 2
    return float(v.mean()), float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def rouge(predictions, references, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> dict:
    """{type: {"f1": mean F1, "low": ..., "high": ...}} with 95% bootstrap intervals, for every ROUGE type."""
    per = pair_scores(predictions, references)
    out = {}
    for t in ROUGE_TYPES:
        m, lo, hi = bootstrap(per[t], samples, seed=seed)
        out[t] = {"f1": m, "low": lo, "high": hi}
    return out
