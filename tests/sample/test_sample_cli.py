"""`gptx sample` and `gptx eval` as subprocesses on a tiny checkpoint made here."""
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gptx as gptx_package
from gptx.checkpoint import save_checkpoint
from gptx.model import GPT, GPTConfig
from gptx.tokenizer import Tokenizer

# The subprocess must import the same gptx as this test (the installed package in CI, python/ in a dev checkout).
PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(gptx_package.__file__)))


def gptx(*args):
    env = dict(os.environ, PYTHONPATH=PYTHON_DIR + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-m", "gptx", *map(str, args)], capture_output=True, text=True, env=env,
                       timeout=120)
    return r.returncode, r.stdout, r.stderr


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("run")
    m = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=32, vocab_size=256), seed=0)
    np.asarray(m._p.wte)[:] *= 10  # a CPU tensor: the numpy view writes into it
    # A vocab-256 model with the byte tokenizer of before its end-of-text id: such checkpoints still load and sample.
    save_checkpoint(d, m, tokenizer=Tokenizer.bytes(end_of_text=False), state={"step": 1})
    return d, m


def test_sample_streams_and_matches_generate(run_dir):
    d, m = run_dir
    rc, out, err = gptx("sample", d, "--prompt", "ab", "--max-new-tokens", 12, "--seed", 3, "--num-samples", 2,
                        "--top-k", 40, "--threads", 1)
    assert rc == 0, err
    rc2, out2, err2 = gptx("sample", next(Path(d).glob("step-*")), "--prompt", "ab", "--max-new-tokens", 12,
                           "--seed", 3, "--num-samples", 2, "--top-k", 40, "--no-stream")
    assert rc2 == 0, err2
    assert out == out2  # streamed one by one == generated as a batch; a run dir == its step dir
    tok = Tokenizer.bytes(end_of_text=False)
    ids = m.generate([[97, 98]] * 2, 12, seed=3, top_k=40)
    assert out == "".join(f"--- sample {i + 1} ---\nab{tok.decode(x)}\n" for i, x in enumerate(ids))
    rc, out, err = gptx("sample", d, "--prompt", "ab", "--max-new-tokens", 40)
    assert rc == 1 and "--sliding-window" in err and not out
    rc, out, err = gptx("sample", d, "--prompt", "ab", "--max-new-tokens", 40, "--sliding-window", "--seed", 1,
                        "--temperature", 0)
    assert rc == 0 and len(out.encode("utf-8", "replace")) >= 40
    rc, out, err = gptx("sample", d, "--top-p", 2)
    assert rc == 1 and "top_p" in err
    rc, out, err = gptx("sample", Path(d) / "nothing")
    assert rc == 1 and "error" in err
    rc, out, err = gptx("sample", d, "--dtype", "bfloat16", "--max-new-tokens", 2)
    assert rc == 1 and "CUDA only" in err and not out
    if gptx_package.cuda.is_available():  # the GPU's greedy text is the CPU's
        args = ("--prompt", "ab", "--max-new-tokens", 12, "--temperature", 0)
        assert gptx("sample", d, *args, "--device", "cuda")[1] == gptx("sample", d, *args)[1]


def test_eval_reports_loss_perplexity_bits_per_byte(run_dir, tmp_path):
    d, m = run_dir
    text = "To be, or not to be: that is the question. " * 3 + "!"  # 130 bytes: 4 windows of 32, a tail of 1
    f = tmp_path / "t.txt"
    f.write_text(text, encoding="utf-8")
    rc, out, err = gptx("eval", d, "--data", f, "--batch-size", 3)
    assert rc == 0, err
    vals = dict(line.split(": ", 1) for line in out.strip().splitlines())
    ids = np.frombuffer(text.encode(), dtype=np.uint8).astype(np.int64)
    nats = 0.0
    for s in range(0, len(ids) - 1, 32):
        x = ids[s:s + 32][: len(ids) - 1 - s]
        y = ids[s + 1:s + 1 + len(x)]
        nats += float(m.forward(x[None], y[None])[1]) * len(x)
    loss = nats / (len(ids) - 1)
    assert float(vals["loss"].split()[0]) == pytest.approx(loss, abs=1e-4)
    assert float(vals["perplexity"]) == pytest.approx(math.exp(loss), rel=1e-3)
    assert float(vals["bits per byte"]) == pytest.approx(loss / math.log(2), abs=1e-4)  # bytes: 1 token = 1 byte
    assert vals["tokens scored"].startswith(f"{len(ids) - 1} ")
    rc, out, err = gptx("eval", d, "--data", tmp_path / "missing.txt")
    assert rc == 1 and "cannot read" in err


def test_sample_from_hugging_face_directory(tmp_path):
    m = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=32, vocab_size=50257), seed=0)
    m.save_pretrained(tmp_path / "hf")
    rc, out, err = gptx("sample", tmp_path / "hf", "--prompt", "Hello", "--max-new-tokens", 6, "--seed", 2,
                        "--no-stream")
    assert rc == 0, err
    tok = Tokenizer.gpt2()
    ids = [t for t in m.generate(tok.encode("Hello"), 6, seed=2, stop=[tok.eot_token]) if t != tok.eot_token]
    assert out == "Hello" + tok.decode(ids) + "\n"


def test_a_prompt_that_fills_the_context_names_the_prompt(run_dir):
    d, _ = run_dir
    rc, out, err = gptx("sample", d, "--prompt", "x" * 40)  # 40 tokens, context 32, --max-new-tokens not given
    assert rc == 1 and not out
    assert "the prompt is 40 tokens" in err and "--max-new-tokens (" not in err and "--sliding-window" in err
    rc, out, err = gptx("sample", d, "--prompt", "x" * 20, "--max-new-tokens", 20)
    assert rc == 1 and "--max-new-tokens (20)" in err
