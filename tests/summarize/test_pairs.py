"""Document/summary pairs: key detection for the usual datasets, errors that name the line, empty pairs skipped and
counted, the TL;DR template, documents cut at their end (never the summary) and counted, the no-room error."""
import json

import numpy as np
import pytest

from gptx.data_finetune import IGNORE_INDEX, encode_pair_file, encode_pairs
from gptx.data_pairs import DEFAULT_TEMPLATE, Template, read_pairs, unescape
from gptx.tokenizer import Tokenizer


def write(path, objs):
    path.write_text("".join((o if isinstance(o, str) else json.dumps(o)) + "\n" for o in objs), encoding="utf-8")
    return path


@pytest.mark.parametrize("src, tgt", [("document", "summary"), ("article", "highlights"), ("dialogue", "summary"),
                                      ("prompt", "completion")])
def test_usual_keys_are_detected(tmp_path, src, tgt):
    p = write(tmp_path / "d.jsonl", [{src: "the text one", tgt: "sum one", "id": "a"}, {src: "text two", tgt: "s2"}])
    pf = read_pairs(p)
    assert (pf.source_key, pf.target_key) == (src, tgt)
    assert [(x.id, x.source, x.target) for x in pf.pairs] == [("a", "the text one", "sum one"), (2, "text two", "s2")]
    assert pf.raw == (src == "prompt")


def test_explicit_keys_and_missing_target_allowed_when_not_needed(tmp_path):
    p = write(tmp_path / "d.jsonl", [{"body": "x y", "tldr": "z"}, {"body": "u v"}])
    with pytest.raises(ValueError, match=r"d\.jsonl:1: none of the known key pairs .*keys found: \['body', 'tldr'\]"):
        read_pairs(p)
    with pytest.raises(ValueError, match=r"d\.jsonl:2: missing key \"tldr\" \(keys found: \['body'\]\)"):
        read_pairs(p, "body", "tldr")
    pf = read_pairs(p, "body", "tldr", need_target=False)
    assert [x.target for x in pf.pairs] == ["z", None]
    pf = read_pairs(write(tmp_path / "n.jsonl", [{"article": "a b"}]), need_target=False)
    assert (pf.source_key, pf.target_key, pf.has_targets) == ("article", None, False)


@pytest.mark.parametrize("line, message", [
    ('{"document": "a", "summary": "b"', r"d\.jsonl:2: invalid JSON"),
    ('{"document": "a"}', r'd\.jsonl:2: missing key "summary" \(keys found: \[\'document\'\]\)'),
    ('{"summary": "a", "title": "t"}',
     r'd\.jsonl:2: missing key "document" \(keys found: \[\'summary\', \'title\'\]\)'),
    ('{"document": 3, "summary": "b"}', r'd\.jsonl:2: "document" must be a string'),
    ('[1, 2]', r"d\.jsonl:2: expected a JSON object"),
])
def test_bad_lines_name_the_line_and_the_keys(tmp_path, line, message):
    p = write(tmp_path / "d.jsonl", [{"document": "ok", "summary": "ok"}, line])
    with pytest.raises(ValueError, match=message):
        read_pairs(p)


def test_empty_documents_and_summaries_are_skipped_and_counted(tmp_path):
    p = write(tmp_path / "d.jsonl", [{"document": "a b", "summary": "c"}, {"document": "  ", "summary": "c"},
                                     {"document": "d", "summary": "\n"}, "", {"document": "e", "summary": "f"}])
    pf = read_pairs(p)
    assert [x.line for x in pf.pairs] == [1, 5] and pf.skipped_empty == 2
    with pytest.raises(ValueError, match="every one of its 1 examples has an empty"):
        read_pairs(write(tmp_path / "e.jsonl", [{"document": "", "summary": "x"}]))
    with pytest.raises(ValueError, match="holds no examples"):
        read_pairs(write(tmp_path / "z.jsonl", [""]))


def test_template_masks_all_but_the_summary_and_end_of_text(tmp_path):
    tok = Tokenizer.gpt2()
    p = write(tmp_path / "d.jsonl", [{"document": "The cat sat on the mat.", "summary": "A cat sat."}])
    [(x, y)], counts = encode_pair_file(read_pairs(p), tok, block_size=64)
    prompt = tok.encode("The cat sat on the mat.") + tok.encode("\nTL;DR:")
    summary = tok.encode(" A cat sat.") + [tok.eot_token]
    assert x.tolist() == (prompt + summary)[:-1]
    assert (y[:len(prompt) - 1] == IGNORE_INDEX).all() and y[len(prompt) - 1:].tolist() == summary
    assert counts == {"truncated": 0, "skipped": 0, "skipped_empty": 0, "examples": 1}
    assert DEFAULT_TEMPLATE == "{document}\nTL;DR:"


def test_long_documents_are_cut_at_their_end_never_the_summary(tmp_path):
    tok = Tokenizer.bytes()
    doc = "".join(chr(ord("a") + i % 26) for i in range(200))
    p = write(tmp_path / "d.jsonl", [{"document": doc, "summary": "short one"}, {"document": "fits", "summary": "ok"}])
    block = 64
    examples, counts = encode_pair_file(read_pairs(p), tok, block_size=block)
    assert counts["truncated"] == 1 and counts["examples"] == 2
    x, y = examples[0]
    seq = x.tolist() + [y[-1]]
    summary = list(b" short one") + [256]
    assert len(seq) == block + 1 and seq[-len(summary):] == summary  # the summary is whole
    tail = list(b"\nTL;DR:")
    kept = seq[:-len(summary) - len(tail)]
    assert seq[-len(summary) - len(tail):-len(summary)] == tail  # the template's end is whole
    assert bytes(kept) == doc.encode()[:len(kept)]  # the document lost its end, kept its start
    ex, counts = encode_pair_file(read_pairs(p), tok, block_size=block, too_long="skip")
    assert len(ex) == 1 and counts["skipped"] == 1
    with pytest.raises(ValueError, match=r"d\.jsonl:1: the document does not fit"):
        encode_pair_file(read_pairs(p), tok, block_size=block, too_long="error")


def test_a_summary_that_leaves_no_room_is_an_error(tmp_path):
    p = write(tmp_path / "d.jsonl", [{"document": "doc", "summary": "ok"}, {"document": "doc", "summary": "x" * 70}])
    with pytest.raises(ValueError, match=r"d\.jsonl:2: the summary \(72 tokens with end-of-text\) leaves no room"):
        encode_pair_file(read_pairs(p), Tokenizer.bytes(), block_size=64)
    with pytest.raises(ValueError, match="leaving no room for the document"):
        Template("{document}" + "x" * 40).prompt_ids("doc", Tokenizer.bytes(), 30)


def test_prompt_completion_files_keep_the_fine_tuning_behaviour(tmp_path, ):
    tok = Tokenizer.bytes()
    rows = [{"prompt": "0123456789" * 3, "completion": "abc"}, {"prompt": "Q", "completion": "A"}]
    p = write(tmp_path / "d.jsonl", rows)
    examples, counts = encode_pair_file(read_pairs(p), tok, block_size=16)
    expected = encode_pairs([(r["prompt"], r["completion"]) for r in rows], tok, block_size=16)
    for (x, y), (ex, ey) in zip(examples, expected):
        np.testing.assert_array_equal(x, ex)
        np.testing.assert_array_equal(y, ey)
    assert counts["truncated"] == 1


def test_template_checks_and_unescape():
    with pytest.raises(ValueError, match=r"exactly once"):
        Template("no field")
    with pytest.raises(ValueError, match=r"exactly once"):
        Template("{document} {document}")
    assert unescape("{document}\\nTL;DR:") == DEFAULT_TEMPLATE
    t = Template("Summarise: {document}\nSummary:")
    ids, cut = t.prompt_ids("abcdef", Tokenizer.bytes(), 100)
    assert bytes(ids) == b"Summarise: abcdef\nSummary:" and not cut
    assert t.target_text("x") == " x" and t.target_text(" x") == " x"
    assert Template(raw=True).target_text("x") == "x"
