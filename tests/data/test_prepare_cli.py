"""`python -m gptx prepare` end to end in a subprocess: shards, summary, tokenizer choice, and error exit codes."""
import os
import subprocess
import sys

import numpy as np

import gptx
from gptx.data import load_shards, train_val_split
from gptx.tokenizer import Tokenizer


def run_cli(*args):
    env = dict(os.environ)
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(gptx.__file__)))
    env["PYTHONPATH"] = pkg_parent + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "gptx", "prepare", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=120)


def test_prepare_gpt2(tmp_path):
    text = "First Citizen:\nBefore we proceed any further, hear me speak.\n" * 50
    (tmp_path / "in.txt").write_text(text, encoding="utf-8")
    out = tmp_path / "shards"
    r = run_cli("--input", tmp_path / "in.txt", "--out", out, "--tokenizer", "gpt2", "--shard-tokens", "256",
                "--val-fraction", "0.25")
    assert r.returncode == 0, r.stderr
    ids = np.array(Tokenizer.gpt2().encode(text))
    assert f"{len(ids):,} tokens" in r.stdout
    train, val = train_val_split(ids, 0.25)
    np.testing.assert_array_equal(np.asarray(load_shards(out, "train")), train)
    np.testing.assert_array_equal(np.asarray(load_shards(out, "val")), val)
    assert len(load_shards(out, "train").shards) == -(-len(train) // 256)


def test_prepare_with_saved_tokenizer(tmp_path):
    text = "to be or not to be\n" * 200
    (tmp_path / "in.txt").write_text(text, encoding="utf-8")
    tok = Tokenizer.train([text], vocab_size=280)
    tok.save(tmp_path / "tok")
    out = tmp_path / "shards"
    r = run_cli("-i", tmp_path / "in.txt", "-o", out, "--tokenizer", tmp_path / "tok", "--val-fraction", "0", "-q")
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""
    np.testing.assert_array_equal(np.asarray(load_shards(out)), tok.encode(text))
    assert Tokenizer.load(out).vocab_size == tok.vocab_size  # fewer than 280 when the text has few pairs


def test_prepare_errors(tmp_path):
    r = run_cli("--input", tmp_path / "missing.txt", "--out", tmp_path / "o")
    assert r.returncode == 1 and "missing.txt does not exist" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "in.txt").write_text("x")
    r = run_cli("--input", tmp_path / "in.txt", "--out", tmp_path / "o", "--tokenizer", "nonsense")
    assert r.returncode == 1 and "neither" in r.stderr
    r = run_cli("--out", tmp_path / "o")
    assert r.returncode == 2 and "--input" in r.stderr
