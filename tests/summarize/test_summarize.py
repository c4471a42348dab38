"""model.summarize and `gptx summarize` / `gptx eval --rouge` end to end on a tiny random model: the prompt is the
fine-tuning template, predictions keep the input's ids and references, errors are clean; beam search where generate
has it."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import gptx
from gptx.__main__ import main
from gptx.data_pairs import Template
from gptx.model import GPT, GPTConfig
from gptx.tokenizer import Tokenizer

BLOCK = 96


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(folder, model, tokenizer): a random byte-level GPT saved as a Hugging Face folder with its tokenizer."""
    tok = Tokenizer.bytes()
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=32, block_size=BLOCK, vocab_size=tok.vocab_size), seed=3)
    folder = tmp_path_factory.mktemp("tiny")
    model.save_pretrained(folder, tokenizer=tok)
    return str(folder), model, tok


def beams_supported(model) -> bool:
    """False while generate refuses num_beams (before beam search exists), True once it takes it."""
    try:
        model.generate([1, 2], 1, num_beams=2, temperature=0)
    except TypeError as e:
        if "beam search is not supported yet" in str(e):
            return False
        raise
    return True


needs_beams = pytest.mark.skipif(not beams_supported(GPT(GPTConfig(n_layer=1, n_head=1, n_embd=8, block_size=8,
                                                                   vocab_size=16), seed=0)),
                                 reason="generate() does not take num_beams yet (beam search is not supported yet)")

DOCS = ["The server reads its configuration file at start-up. Unknown keys are ignored.",
        "Return the list of names in the archive, in the order they were added. Directories end with a slash." * 3,
        "Short."]


def write_pairs(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def test_summarize_is_greedy_generate_on_the_template_prompt(tiny):
    _, model, tok = tiny
    got = model.summarize(DOCS, tokenizer=tok, max_new_tokens=12)
    tpl = Template()
    for doc, summary in zip(DOCS, got):
        ids, _ = tpl.prompt_ids(doc, tok, BLOCK - 12)
        out = model.generate(ids, 12, temperature=0, tokenizer=tok)
        assert summary == tok.decode([t for t in out if t != tok.eot_token]).strip()
    assert model.summarize(DOCS[0], tokenizer=tok, max_new_tokens=12) == got[0]  # one text -> one string
    assert model.summarize(DOCS, tokenizer=tok, max_new_tokens=12, batch_size=1) == got  # batching changes nothing
    two = model.summarize(DOCS[:2], tokenizer=tok, max_new_tokens=5, num_return_sequences=2, temperature=0.9, seed=1)
    assert len(two) == 2 and all(len(x) == 2 for x in two)


def test_summarize_argument_errors(tiny):
    _, model, tok = tiny
    with pytest.raises(ValueError, match="max_new_tokens .* leaves no room"):
        model.summarize(DOCS, tokenizer=tok, max_new_tokens=BLOCK)
    with pytest.raises(ValueError, match="template .* leaving no room for the document"):
        model.summarize(DOCS, tokenizer=tok, max_new_tokens=40, template="x" * 60 + "{document}")
    with pytest.raises(ValueError, match="document 1 is empty"):
        model.summarize(["a", " "], tokenizer=tok)
    with pytest.raises(TypeError, match="document 0 must be a string"):
        model.summarize([3], tokenizer=tok)
    with pytest.raises(ValueError, match="needs tokenizer="):
        model.summarize(DOCS)
    with pytest.raises((TypeError, ValueError), match="num_beams"):
        model.summarize(DOCS, tokenizer=tok, num_beams=0)


def run_cli(*args):
    """(exit code, stdout, stderr) of `python -m gptx ...` in a subprocess (tracebacks show up in stderr)."""
    p = subprocess.run([sys.executable, "-m", "gptx", *args], capture_output=True, text=True, timeout=300)
    return p.returncode, p.stdout, p.stderr


def test_summarize_cli_end_to_end(tiny, tmp_path, capsys):
    folder, model, tok = tiny
    rows = [{"id": "x1", "document": DOCS[0], "summary": "Reads the config."},
            {"document": DOCS[1], "summary": "Names in the archive."},
            {"document": "", "summary": "skipped"}, {"id": 7, "document": DOCS[2]}]
    src = write_pairs(tmp_path / "in.jsonl", rows)
    out = tmp_path / "preds.jsonl"
    assert main(["summarize", folder, "--input", src, "--output", str(out), "--max-new-tokens", "10"]) == 0
    printed = capsys.readouterr().out
    assert "3 summaries" in printed and "1 empty line(s) skipped" in printed and "1 document(s) cut" in printed
    got = [json.loads(line) for line in out.read_text().splitlines()]
    want = model.summarize([DOCS[0], DOCS[1], DOCS[2]], tokenizer=tok, max_new_tokens=10)
    assert got == [{"id": "x1", "prediction": want[0], "reference": "Reads the config."},
                   {"id": 2, "prediction": want[1], "reference": "Names in the archive."},
                   {"id": 7, "prediction": want[2]}]
    assert sorted(os.listdir(tmp_path)) == ["in.jsonl", "preds.jsonl"]  # written atomically: no temporary left


@pytest.mark.parametrize("flags, message", [
    (["--num-beams", "4", "--temperature", "0.7"], "num_beams|temperature"),
    (["--num-beams", "2", "--num-return-sequences", "3"], "num_beams|num_return_sequences"),
    (["--max-new-tokens", str(BLOCK)], "leaves no room"),
    (["--document-key", "text"], r"missing key \"text\""),
])
def test_summarize_cli_errors_are_clean(tiny, tmp_path, flags, message):
    folder, _, _ = tiny
    src = write_pairs(tmp_path / "in.jsonl", [{"document": DOCS[0], "summary": "s"}])
    code, out, err = run_cli("summarize", folder, "--input", src, "--output", str(tmp_path / "o.jsonl"), *flags)
    assert code == 1 and "Traceback" not in err and err.startswith("gptx summarize: error:"), err
    import re
    assert re.search(message, err), err
    assert not (tmp_path / "o.jsonl").exists()


def test_summarize_cli_usage_errors(tiny, tmp_path):
    folder, _, _ = tiny
    src = write_pairs(tmp_path / "in.jsonl", [{"document": DOCS[0]}])
    code, _, err = run_cli("summarize", folder, "--input", src, "--output", str(tmp_path / "o"), "--num-beams", "0")
    assert code == 2 and "--num-beams: must be an integer >= 1" in err


def test_eval_rouge_json_and_errors(tiny, tmp_path, capsys):
    pytest.importorskip("rouge_score")
    folder, model, tok = tiny
    rows = [{"document": d, "summary": s} for d, s in zip(DOCS, ["Reads config.", "Archive names.", "Short."])]
    src = write_pairs(tmp_path / "pairs.jsonl", rows)
    assert main(["eval", folder, "--jsonl", src, "--rouge", "--json", "--max-new-tokens", "8"]) == 0
    res = json.loads(capsys.readouterr().out)
    for who in ("model", "lead"):
        assert set(res[who]) == {"rouge1", "rouge2", "rougeL", "rougeLsum"}
        for v in res[who].values():
            assert set(v) == {"f1", "low", "high"} and 0 <= v["low"] <= v["f1"] <= v["high"] <= 1
    from gptx import rouge
    preds = model.summarize(DOCS, tokenizer=tok, max_new_tokens=8)
    refs = [r["summary"] for r in rows]
    assert res["model"]["rougeL"]["f1"] == pytest.approx(np.mean(rouge.pair_scores(preds, refs)["rougeL"]))
    lead = rouge.pair_scores([rouge.lead(d) for d in DOCS], refs)
    assert res["lead"]["rouge1"]["f1"] == pytest.approx(np.mean(lead["rouge1"]))
    assert res["lead"]["rouge1"]["f1"] > 0  # "Short." is its own lead
    # the table, the JSON file and the predictions file
    jpath, ppath = tmp_path / "r.json", tmp_path / "p.jsonl"
    assert main(["eval", folder, "--jsonl", src, "--rouge", "--json", str(jpath), "--output", str(ppath),
                 "--max-new-tokens", "8"]) == 0
    table = capsys.readouterr().out
    assert "rougeLsum" in table and "lead-1" in table and "s per summary" in table
    assert json.loads(jpath.read_text())["model"] == res["model"]
    assert [json.loads(x)["prediction"] for x in ppath.read_text().splitlines()] == preds
    # no references
    noref = write_pairs(tmp_path / "noref.jsonl", [{"document": DOCS[0]}])
    assert main(["eval", folder, "--jsonl", noref, "--rouge"]) == 1
    assert "--rouge needs references" in capsys.readouterr().err
    assert main(["eval", folder, "--data", noref, "--rouge"]) == 1
    assert "give the pairs with --jsonl" in capsys.readouterr().err


def test_eval_rouge_without_the_package_says_what_to_install(tiny, tmp_path, capsys, monkeypatch):
    folder, _, _ = tiny
    src = write_pairs(tmp_path / "pairs.jsonl", [{"document": DOCS[0], "summary": "s"}])
    monkeypatch.setitem(sys.modules, "rouge_score", None)
    assert main(["eval", folder, "--jsonl", src, "--rouge"]) == 1
    assert 'pip install "gptx-engine[eval]"' in capsys.readouterr().err


def test_eval_summary_loss(tiny, tmp_path, capsys):
    folder, model, tok = tiny
    src = write_pairs(tmp_path / "pairs.jsonl", [{"document": DOCS[0], "summary": "Reads config."}])
    assert main(["eval", folder, "--jsonl", src]) == 0
    out = capsys.readouterr().out
    from gptx.data_finetune import encode_pair_file
    from gptx.data_pairs import read_pairs
    [(x, y)], _ = encode_pair_file(read_pairs(src), tok, BLOCK)
    loss = float(model.forward_loss(x[None], y[None]))
    assert f"summary loss: {loss:.4f}" in out and f"{int((y != -100).sum())} summary tokens" in out


@needs_beams
def test_summarize_with_beams_is_generate_with_beams(tiny, tmp_path):
    _, model, tok = tiny
    kw = dict(num_beams=3, length_penalty=1.0, no_repeat_ngram_size=3, early_stopping=True)
    got = model.summarize(DOCS, tokenizer=tok, max_new_tokens=10, **kw)
    tpl = Template()
    for doc, summary in zip(DOCS, got):
        ids, _ = tpl.prompt_ids(doc, tok, BLOCK - 10)
        out = model.generate(ids, 10, tokenizer=tok, **kw)
        assert summary == tok.decode([t for t in out if t != tok.eot_token]).strip()
    many = model.summarize(DOCS, tokenizer=tok, max_new_tokens=10, num_beams=3, num_return_sequences=3)
    assert all(len(m) == 3 for m in many) and [m[0] for m in many] == \
        model.summarize(DOCS, tokenizer=tok, max_new_tokens=10, num_beams=3)


@needs_beams
def test_summarize_cli_with_beams(tiny, tmp_path, capsys):
    folder, model, tok = tiny
    src = write_pairs(tmp_path / "in.jsonl", [{"document": d} for d in DOCS])
    out = tmp_path / "p.jsonl"
    assert main(["summarize", folder, "--input", src, "--output", str(out), "--num-beams", "4",
                 "--no-repeat-ngram-size", "3", "--num-return-sequences", "2", "--max-new-tokens", "10"]) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    want = model.summarize(DOCS, tokenizer=tok, max_new_tokens=10, num_beams=4, no_repeat_ngram_size=3,
                           num_return_sequences=2)
    assert [r["predictions"] for r in rows] == want and [r["prediction"] for r in rows] == [w[0] for w in want]
