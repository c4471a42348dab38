"""The docstring corpus, built from the running Python's own source: splits disjoint by module unit and
deterministic, the filters, the pretraining text without test modules, the files `gptx prepare --summaries`
writes."""
import json

import pytest

from gptx import corpus_docstrings as cd
from gptx.__main__ import main

SMALL = ("json", "logging", "email", "queue", "configparser")  # a few stdlib packages: seconds, not the whole library


@pytest.fixture(scope="module")
def stdlib():
    return cd.build_corpus(["stdlib"])


def test_standard_library_corpus(stdlib):
    n = stdlib.stats["pairs"]
    assert 1000 <= sum(n.values()) <= 5000, n  # about 2,000 on Python 3.11
    assert all(n[s] > 0 for s in cd.SPLITS)
    assert n["train"] > n["val"] and n["train"] > n["test"]
    units = {s: {cd.unit_of(p.module) for p in stdlib.splits[s]} for s in cd.SPLITS}
    assert not units["train"] & units["test"] and not units["train"] & units["val"] and not units["val"] & units["test"]
    for s in cd.SPLITS:
        assert all(cd.split_of(cd.unit_of(p.module)) == s for p in stdlib.splits[s])
    pairs = [p for s in cd.SPLITS for p in stdlib.splits[s]]
    summaries = [p.summary.lower() for p in pairs]
    assert len(set(summaries)) == len(summaries)  # duplicated summaries are all dropped
    assert len({p.id for p in pairs}) == len(pairs)
    for p in pairs:
        assert cd.MIN_SUMMARY_WORDS <= len(p.summary.split()) <= cd.MAX_SUMMARY_WORDS and "\n" not in p.summary
        assert cd.prose_words(p.document) >= cd.MIN_DOC_WORDS and len(p.document) <= cd.MAX_DOC_CHARS
    # the pretraining text holds train modules' docstrings and none of the test split's
    text = stdlib.pretrain_text
    assert sum(p.document in text for p in stdlib.splits["train"][:50]) == 50
    assert not any(p.document in text for p in stdlib.splits["test"])


def test_deterministic_and_split_by_hash():
    a, b = cd.build_corpus(SMALL), cd.build_corpus(SMALL)
    assert a.splits == b.splits and a.pretrain_text == b.pretrain_text and a.stats == b.stats
    assert cd.split_of("email.mime") == cd.split_of("email.mime")
    shares = [cd.split_of(f"pkg{i}.mod") for i in range(4000)]
    assert abs(shares.count("test") / 4000 - cd.TEST_FRACTION) < 0.03
    assert abs(shares.count("val") / 4000 - cd.VAL_FRACTION) < 0.03
    assert cd.unit_of("email.mime.text") == "email.mime" and cd.unit_of("os") == "os"


def test_docstring_filters():
    counts = dict.fromkeys(["no_summary_line", "signature_summary", "short_summary", "long_summary", "doctest_only",
                            "short_body", "long_body"], 0)
    body = "This explains at some length what the function does and why anyone would call it at all."
    ok = cd._pair("m", "f", "Return the parsed value.\n\n" + body, counts)
    assert ok is not None and (ok.summary, ok.document, ok.id) == ("Return the parsed value.", body, "m:f")
    cases = {
        "no_summary_line": "A summary that goes on\nover two lines.\n\n" + body,
        "signature_summary": "foo(a, b) -> int\n\n" + body,
        "short_summary": "Constructor.\n\n" + body,
        "long_summary": " ".join(["word"] * 41) + "\n\n" + body,
        "doctest_only": "Return the parsed value.\n\n>>> parse('1')\n1\n>>> parse('2')\n2",
        "short_body": "Return the parsed value.\n\nSee above for details.",
        "long_body": "Return the parsed value.\n\n" + (body + "\n") * 40,
    }
    for reason, doc in cases.items():
        assert cd._pair("m", "f", doc, counts) is None, reason
        assert counts[reason] == 1, reason
    assert cd.prose_words("One two three.\n\n>>> x = 1\n>>> x\n1\n\nFour five.") == 5
    assert cd.split_docstring("One line only.") is None


def test_prepare_summaries_cli(tmp_path, capsys):
    out = tmp_path / "corpus"
    assert main(["prepare", "--summaries", "docstrings", "--packages", ",".join(SMALL), "--out", str(out),
                 "--tokenizer-vocab", "300"]) == 0
    printed = capsys.readouterr().out
    stats = json.loads((out / "stats.json").read_text())
    assert f"{sum(stats['pairs'].values()):,} pairs" in printed and "test modules excluded" in printed
    ids = {}
    for s in cd.SPLITS:
        rows = [json.loads(x) for x in (out / f"{s}.jsonl").read_text(encoding="utf-8").splitlines()]
        assert len(rows) == stats["pairs"][s] and all(set(r) == {"id", "document", "summary"} for r in rows)
        ids[s] = {r["id"].split(":")[0] for r in rows}
    assert not ids["train"] & ids["test"]
    assert (out / "pretrain.txt").stat().st_size == stats["pretrain_chars"] or stats["pretrain_chars"] > 0
    from gptx.tokenizer import Tokenizer
    assert Tokenizer.load(out / "tokenizer").vocab_size == 300
    assert sorted(p.name for p in out.iterdir()) == ["pretrain.txt", "stats.json", "test.jsonl", "tokenizer",
                                                    "train.jsonl", "val.jsonl"]  # no temporaries left


def test_prepare_summaries_errors(tmp_path, capsys):
    assert main(["prepare", "--summaries", "docstrings", "--packages", "no_such_pkg_xyz", "--out",
                 str(tmp_path / "o")]) == 1
    assert "'no_such_pkg_xyz' is not installed" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["prepare", "--summaries", "docstrings", "--input", "x.txt", "--out", str(tmp_path / "o")])
    assert main(["prepare", "--input", "x.txt", "--out", str(tmp_path / "o"), "--packages", "json"]) == 1
    assert "go with --summaries" in capsys.readouterr().err
