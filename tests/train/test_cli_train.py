"""`gptx train` (text, shards, JSONL, --init from gptx and Hugging Face, refusals) and `gptx demo`, in process."""
import json

import pytest

from gptx.__main__ import main
from gptx.checkpoint import load_checkpoint
from gptx.data import prepare, shakespeare_text
from gptx.model import GPT, GPTConfig

TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16", "--batch-size", "2",
        "--eval-every", "2", "--eval-batches", "1", "--threads", "1", "--no-progress", "--log-every", "1"]
FT = ["--batch-size", "2", "--block-size", "16", "--eval-every", "0", "--eval-batches", "1", "--threads", "1",
      "--no-progress"]


def train(*args):
    return main(["train", *args])


@pytest.fixture
def text_file(tmp_path):
    p = tmp_path / "corpus.txt"
    p.write_text(shakespeare_text()[:20_000], encoding="utf-8")
    return p


def test_train_text_file(tmp_path, text_file, capsys):
    assert train(*TINY, "--data", str(text_file), "--steps", "3", "--out", str(tmp_path / "run")) == 0
    out = capsys.readouterr().out
    assert "18,000 train / 2,000 val tokens" in out and "done: step 3" in out
    ck = load_checkpoint(tmp_path / "run")
    assert ck.step == 3 and ck.config["n_embd"] == 16 and ck.state["tokenizer"] == "bytes"
    assert ck.state["extra"]["data"] == {"kind": "text", "path": str(text_file), "val_fraction": 0.1}
    for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines():
        json.loads(line)
    # the same --out again is refused (it would mix two runs); --overwrite starts over
    assert train(*TINY, "--data", str(text_file), "--steps", "2", "--out", str(tmp_path / "run")) == 1
    assert "already holds a run" in capsys.readouterr().err
    assert train(*TINY, "--data", str(text_file), "--steps", "2", "--out", str(tmp_path / "run"),
                 "--overwrite") == 0
    assert load_checkpoint(tmp_path / "run").step == 2
    assert train("--resume", str(tmp_path / "run"), "--steps", "2") == 0
    assert "nothing to do" in capsys.readouterr().out


def test_train_shards(tmp_path, text_file, capsys):
    prepare([str(text_file)], tmp_path / "shards", tokenizer="bytes", shard_tokens=5000)
    assert train(*TINY, "--data", str(tmp_path / "shards"), "--steps", "2", "--out", str(tmp_path / "run")) == 0
    assert "18,000 train / 2,000 val tokens" in capsys.readouterr().out
    assert load_checkpoint(tmp_path / "run").state["extra"]["data"]["kind"] == "shards"
    assert train("--resume", str(tmp_path / "run"), "--steps", "3", "--no-progress") == 0
    assert load_checkpoint(tmp_path / "run").step == 3


def test_finetune_jsonl_from_gptx_checkpoint(tmp_path, text_file):
    assert train(*TINY, "--data", str(text_file), "--steps", "2", "--out", str(tmp_path / "base")) == 0
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": f"Q{i}:", "completion": f" A{i}"}) + "\n" for i in range(10)))
    assert train(*FT, "--init", str(tmp_path / "base"), "--jsonl", str(pairs), "--steps", "2",
                 "--out", str(tmp_path / "ft")) == 0
    base, ft = load_checkpoint(tmp_path / "base"), load_checkpoint(tmp_path / "ft")
    assert ft.config == base.config and ft.step == 2 and ft.optimizer["step"] == 2
    assert ft.state["extra"]["init"] == str(tmp_path / "base")
    assert ft.state["train_config"]["lr"] == pytest.approx(1e-4)  # fine-tuning defaults
    # model-shape flags make no sense with --init
    assert train(*FT, "--init", str(tmp_path / "base"), "--n-layer", "2", "--out", str(tmp_path / "x")) == 1


def test_finetune_from_hugging_face_dir(tmp_path, capsys):
    hf = tmp_path / "hf"
    GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=32), seed=0).save_pretrained(hf)  # GPT-2 vocab
    text = tmp_path / "t.txt"
    text.write_text(shakespeare_text()[:5000], encoding="utf-8")
    assert train(*FT, "--init", str(hf), "--data", str(text), "--steps", "1", "--out", str(tmp_path / "ft")) == 0
    assert "tokenizer gpt2" in capsys.readouterr().out
    ck = load_checkpoint(tmp_path / "ft")
    assert ck.state["tokenizer"] == "gpt2" and ck.config["vocab_size"] == 50257


def test_errors_are_one_line(tmp_path, capsys):
    assert train(*TINY, "--data", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "r")) == 1
    assert "missing.txt" in capsys.readouterr().err
    assert train("--resume", str(tmp_path / "nothing-here")) == 1
    assert "does not exist" in capsys.readouterr().err
    assert train(*FT, "--init", str(tmp_path), "--out", str(tmp_path / "r")) == 1
    assert "neither a gptx checkpoint nor a Hugging Face" in capsys.readouterr().err


def test_demo_tiny_budget(tmp_path, capsys):
    assert main(["demo", "--steps", "3", "--chars", "40", "--threads", "1", "--no-progress",
                 "--out", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "trained 3 steps" in out and "val loss" in out
    sample = out.split("--- sample")[1].split("\n", 1)[1].rsplit("\n---", 1)[0]
    assert sample.startswith("ROMEO:") and len(sample.encode("utf-8", "replace")) >= 40
    assert load_checkpoint(tmp_path / "demo").step == 3


def test_demo_sampling_runs_past_the_context():
    # The demo samples more bytes than its context holds: generate's sliding window crops the context.
    model = GPT(GPTConfig(n_layer=1, n_head=1, n_embd=8, block_size=4, vocab_size=11))
    a = model.generate([1, 2], 10, temperature=0, sliding_window=True)
    b = model.generate([1, 2], 10, temperature=0, sliding_window=True)
    assert a == b and len(a) == 10 and all(0 <= t < 11 for t in a)
    top1 = model.generate([1, 2], 10, temperature=1.0, top_k=1, seed=0, sliding_window=True)
    assert top1 == a  # top-k 1 is greedy

def test_device_flags_give_one_line_errors_where_unusable(tmp_path, text_file, capsys):
    import gptx

    assert train(*TINY, "--data", str(text_file), "--steps", "1", "--out", str(tmp_path / "a"),
                 "--dtype", "bfloat16") == 1
    assert "CUDA only" in capsys.readouterr().err
    if not gptx.cuda.is_available():
        assert train(*TINY, "--data", str(text_file), "--steps", "1", "--out", str(tmp_path / "b"),
                     "--device", "cuda") == 1
        assert "cuda" in capsys.readouterr().err.lower()
    assert train(*TINY, "--data", str(text_file), "--steps", "1", "--out", str(tmp_path / "c"),
                 "--device", "tpu") == 1
    assert "unknown device" in capsys.readouterr().err
