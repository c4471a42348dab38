"""ROUGE through rouge-score: per-pair F1 equal to rouge-score's own scorer, bootstrap intervals, sentence splitting
for Lsum and the lead baseline, and the install hint without the package."""
import sys

import numpy as np
import pytest

rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
scoring = pytest.importorskip("rouge_score.scoring")

from gptx import rouge  # noqa: E402

PAIRS = [  # (prediction, reference)
    ("Return the number of running tasks.", "Return the count of tasks that are running."),
    ("Close the connection. Flush the buffers first.", "Flush buffers and close the connection."),
    ("The quick brown foxes jumped over lazy dogs", "A quick brown fox jumps over the lazy dog"),
    ("completely unrelated words", "Start the server thread on a port."),
    ("Parse a header line. Return its name and value.", "Parse one header line into a name and a value."),
]


def test_pair_scores_equal_rouge_score_with_stemming():
    preds, refs = zip(*PAIRS)
    got = rouge.pair_scores(preds, refs)
    scorer = rouge_scorer.RougeScorer(list(rouge.ROUGE_TYPES), use_stemmer=True)
    for i, (p, r) in enumerate(PAIRS):
        # rouge-score's Lsum reads sentences from newlines: give it the sentences gptx split, one per line
        want = scorer.score("\n".join(rouge.split_sentences(r)), "\n".join(rouge.split_sentences(p)))
        for t in rouge.ROUGE_TYPES:
            assert got[t][i] == pytest.approx(want[t].fmeasure, abs=1e-12), (i, t)
    # Stemming counts "jumped"/"jumps" and "foxes"/"fox" as the same word; unstemmed they differ.
    plain = rouge_scorer.RougeScorer(["rouge1"], use_stemmer=False).score(PAIRS[2][1], PAIRS[2][0])["rouge1"]
    assert got["rouge1"][2] > plain.fmeasure
    # Lsum differs from L when the summaries have several sentences
    assert got["rougeLsum"][1] != got["rougeL"][1]


def test_known_values():
    s = rouge.pair_scores(["the cat sat"], ["the cat sat on the mat"])
    # rouge1: 3 of 3 predicted unigrams match, 3 of 6 reference ones: F1 = 2 * 1 * 0.5 / 1.5
    assert s["rouge1"][0] == pytest.approx(2 / 3) and s["rouge2"][0] == pytest.approx(2 * 1 * 0.4 / 1.4)
    assert rouge.pair_scores(["x"], ["y"])["rougeL"][0] == 0.0


def test_bootstrap_interval():
    rng = np.random.default_rng()
    v = rng.uniform(0, 1, size=400)
    m, lo, hi = rouge.bootstrap(v, seed=1)
    assert m == pytest.approx(v.mean()) and lo < m < hi
    se = v.std() / np.sqrt(v.size)  # the normal approximation's 95% half-width is 1.96 standard errors
    assert (hi - lo) / 2 == pytest.approx(1.96 * se, rel=0.2)
    assert rouge.bootstrap(v, seed=1) == (m, lo, hi)  # seeded: the same report twice
    _, lo4, hi4 = rouge.bootstrap(np.tile(v, 4), seed=1)
    assert (hi4 - lo4) < 0.7 * (hi - lo)  # four times the pairs: about half the width
    assert rouge.bootstrap([0.3] * 5) == (pytest.approx(0.3), pytest.approx(0.3), pytest.approx(0.3))
    with pytest.raises(ValueError, match="non-empty"):
        rouge.bootstrap([])


def test_interval_agrees_with_rouge_score_bootstrap():
    rng = np.random.default_rng()
    words = "return the value of a list string object file name path count parse close open".split()
    preds = [" ".join(rng.choice(words, 6)) for _ in range(200)]
    refs = [" ".join(rng.choice(words, 8)) for _ in range(200)]
    ours = rouge.rouge(preds, refs)
    agg = scoring.BootstrapAggregator(confidence_interval=0.95, n_samples=1000)
    scorer = rouge_scorer.RougeScorer(list(rouge.ROUGE_TYPES), use_stemmer=True)
    per = {t: [] for t in rouge.ROUGE_TYPES}
    for p, r in zip(preds, refs):
        s = scorer.score(r, p)
        agg.add_scores(s)
        for t in rouge.ROUGE_TYPES:
            per[t].append(s[t].fmeasure)
    theirs = agg.aggregate()
    for t in rouge.ROUGE_TYPES:
        o, w = ours[t], theirs[t]
        assert o["f1"] == pytest.approx(np.mean(per[t]), abs=1e-12)  # the mean of rouge-score's pair F1s
        width = w.high.fmeasure - w.low.fmeasure
        assert o["f1"] == pytest.approx(w.mid.fmeasure, abs=0.1 * width)  # its "mid" is the bootstrap median
        assert o["low"] == pytest.approx(w.low.fmeasure, abs=0.15 * width)  # resampling noise only
        assert o["high"] == pytest.approx(w.high.fmeasure, abs=0.15 * width)


def test_sentences_and_lead():
    text = ("Open the file.  It is read in\nbinary mode! Then (maybe) parse it? \"Yes.\" Values such as 3.14 and\n"
            "e.g. names stay in one sentence.\n\nA new paragraph\nwithout a period")
    assert rouge.split_sentences(text) == [
        "Open the file.", "It is read in binary mode!", "Then (maybe) parse it?", "\"Yes.\"",
        "Values such as 3.14 and e.g. names stay in one sentence.", "A new paragraph without a period"]
    assert rouge.lead(text) == "Open the file."
    assert rouge.lead(text, 2) == "Open the file. It is read in binary mode!"
    assert rouge.lead("no end") == "no end" and rouge.lead("  ") == ""


def test_errors_and_install_hint(monkeypatch):
    with pytest.raises(ValueError, match="2 predictions for 1 references"):
        rouge.pair_scores(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="no pairs"):
        rouge.pair_scores([], [])
    monkeypatch.setitem(sys.modules, "rouge_score", None)  # as if it were not installed
    with pytest.raises(ImportError, match=r'pip install "gptx-engine\[eval\]"'):
        rouge.pair_scores(["a"], ["a"])
