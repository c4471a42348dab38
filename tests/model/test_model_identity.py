"""Models carry their identity: save_pretrained and checkpoints write the tokenizer and generation config that
transformers reads, and gptx.load / GPT.from_pretrained / `gptx sample` read them back from any kind of folder."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import gptx
from gptx.checkpoint import save_checkpoint
from gptx.data import shakespeare_text
from gptx.model import GPT, GPTConfig
from gptx.tokenizer import EOT, Tokenizer

transformers = pytest.importorskip("transformers")
TEXT = "Hi  there,\n\tcafé 中文 😀 " + EOT + " end"
PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(gptx.__file__)))


@pytest.fixture(scope="module")
def tokenizers():
    return {"bytes": Tokenizer.bytes(), "gpt2": Tokenizer.gpt2(),
            "bpe": Tokenizer.train([shakespeare_text()[:100_000]], vocab_size=300)}


def tiny(vocab_size, seed=0):
    return GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=32, vocab_size=vocab_size), seed=seed)


def same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(np.array_equal(sa[k], sb[k]) for k in sa)


def cli(*args):
    env = dict(os.environ, PYTHONPATH=PYTHON_DIR + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-m", "gptx", *map(str, args)], capture_output=True, text=True, env=env,
                       timeout=120)
    return r.returncode, r.stdout, r.stderr


@pytest.mark.parametrize("kind", ["bytes", "gpt2", "bpe"])
def test_save_pretrained_with_tokenizer_loads_everywhere(kind, tokenizers, tmp_path):
    tok = tokenizers[kind]
    model = tiny(tok.vocab_size)
    model.save_pretrained(tmp_path, tokenizer=tok)
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path, local_files_only=True)
    assert hf_tok(TEXT)["input_ids"] == tok.encode(TEXT, allow_special=True)
    gen = transformers.GenerationConfig.from_pretrained(tmp_path, local_files_only=True)
    assert gen.eos_token_id == gen.bos_token_id == gen.pad_token_id == tok.eot_token
    assert gen.do_sample is True and gen.temperature == 1.0 and gen.top_k == 0 and gen.max_length == 32
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["eos_token_id"] == tok.eot_token
    hf_model = transformers.GPT2LMHeadModel.from_pretrained(tmp_path, local_files_only=True)
    assert hf_model.generation_config.eos_token_id == tok.eot_token
    back, back_tok = gptx.load(tmp_path)
    assert same_weights(back, model)
    assert (back_tok.kind, back_tok.vocab_size, back_tok.eot_token) == (tok.kind, tok.vocab_size, tok.eot_token)
    assert back_tok.encode(TEXT) == tok.encode(TEXT)


@pytest.mark.parametrize("kind", ["bytes", "gpt2"])
def test_checkpoint_folder_carries_the_tokenizer(kind, tokenizers, tmp_path):
    tok = tokenizers[kind]
    model = tiny(tok.vocab_size, seed=3)
    step = save_checkpoint(tmp_path / "run", model, tokenizer=tok, state={"step": 7})
    hf_tok = transformers.AutoTokenizer.from_pretrained(step / "tokenizer", local_files_only=True)
    assert hf_tok(TEXT)["input_ids"] == tok.encode(TEXT, allow_special=True)
    gen = transformers.GenerationConfig.from_pretrained(step, local_files_only=True)
    assert gen.eos_token_id == tok.eot_token
    manifest = json.loads((step / "manifest.json").read_text())["files"]
    assert {"generation_config.json", "tokenizer/tokenizer.json", "tokenizer/gptx_tokenizer.json"} <= set(manifest)
    for where in (tmp_path / "run", step):  # the run folder follows latest.json
        back, back_tok = gptx.load(where)
        assert same_weights(back, model) and back_tok.vocab_size == tok.vocab_size
        assert same_weights(GPT.from_pretrained(where), model)
    (step / "model.safetensors").write_bytes(b"x" * 10)  # from_pretrained checks the manifest too
    with pytest.raises(ValueError, match="model.safetensors"):
        GPT.from_pretrained(step)


def test_old_byte_checkpoints_load_and_sample(tmp_path):
    """A vocab-256 byte model saved before the end-of-text id, with or without its tokenizer/ folder."""
    model = tiny(256, seed=1)
    step = save_checkpoint(tmp_path / "run", model, tokenizer=Tokenizer.bytes(end_of_text=False), state={"step": 1})
    shutil.rmtree(step / "tokenizer")
    manifest = json.loads((step / "manifest.json").read_text())
    manifest["files"] = {k: v for k, v in manifest["files"].items() if not k.startswith("tokenizer/")}
    (step / "manifest.json").write_text(json.dumps(manifest))
    back, tok = gptx.load(tmp_path / "run")
    assert (tok.vocab_size, tok.eot_token) == (256, None)
    ids = back.generate(tok.encode("ab"), 5, temperature=0)
    assert ids == model.generate([97, 98], 5, temperature=0) and max(ids) < 256
    _, tok = gptx.load(tmp_path / "run", tokenizer="bytes")  # "bytes" on a 256-id model: the older form
    assert tok.vocab_size == 256
    rc, out, err = cli("sample", tmp_path / "run", "--prompt", "ab", "--max-new-tokens", 5, "--temperature", 0)
    assert rc == 0, err
    assert out == "ab" + tok.decode(ids) + "\n"


def test_hf_folder_without_tokenizer_files(tmp_path, tokenizers):
    gpt2_sized = tiny(50257)
    gpt2_sized.save_pretrained(tmp_path / "gpt2")
    assert gptx.load(tmp_path / "gpt2")[1].kind == "gpt2"  # the GPT-2 fallback
    tiny(300).save_pretrained(tmp_path / "small")
    with pytest.raises(ValueError, match="no tokenizer files"):
        gptx.load(tmp_path / "small")
    model, tok = gptx.load(tmp_path / "small", tokenizer="bytes")
    assert tok.eot_token == 256
    # vocab.json + merges.txt only (what older GPT-2 folders hold): a byte-level BPE with the same ids.
    tokenizers["gpt2"].save(tmp_path / "tok")
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(tmp_path / "tok" / name, tmp_path / "gpt2" / name)
    tok = gptx.load(tmp_path / "gpt2")[1]
    text = TEXT + shakespeare_text()[:2000]
    assert tok.encode(text, allow_special=True) == tokenizers["gpt2"].encode(text, allow_special=True)
    assert tok.eot_token == 50256


def test_tokenizer_must_fit_the_model(tmp_path, tokenizers):
    with pytest.raises(ValueError, match="50257 ids"):
        tiny(300).save_pretrained(tmp_path, tokenizer=tokenizers["gpt2"])
    tiny(300).save_pretrained(tmp_path, tokenizer=tokenizers["bpe"])
    with pytest.raises(ValueError, match="50257 ids"):
        gptx.load(tmp_path, tokenizer="gpt2")


@pytest.mark.parametrize("hub_id", ["gpt2", "openai-community/gpt2"])
def test_hub_ids_are_not_downloaded(hub_id, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for load in (gptx.load, GPT.from_pretrained):
        with pytest.raises(ValueError, match="not downloaded: pass a local folder"):
            load(hub_id)
    rc, out, err = cli("sample", hub_id)
    assert rc == 1 and "not downloaded: pass a local folder" in err
    with pytest.raises(ValueError, match="no such folder"):
        gptx.load(tmp_path / "missing")


def test_sample_and_eval_take_tokenizer_override(tmp_path, tokenizers):
    tok = tokenizers["bpe"]
    model = tiny(tok.vocab_size, seed=5)
    model.save_pretrained(tmp_path / "m", tokenizer=tok)
    args = ("--prompt", "To be", "--max-new-tokens", 6, "--temperature", 0, "--no-stream")
    rc, out, err = cli("sample", tmp_path / "m", *args)
    assert rc == 0, err
    ids = model.generate(tok.encode("To be"), 6, temperature=0, stop=[tok.eot_token])
    assert out == "To be" + tok.decode([t for t in ids if t != tok.eot_token]) + "\n"
    rc, out2, err = cli("sample", tmp_path / "m", *args, "--tokenizer", "bytes")
    assert rc == 0, err
    ids = model.generate(Tokenizer.bytes().encode("To be"), 6, temperature=0, stop=[256])
    assert out2 == "To be" + Tokenizer.bytes().decode([t for t in ids if t != 256]) + "\n"
    rc, out, err = cli("sample", tmp_path / "m", *args, "--tokenizer", "gpt2")
    assert rc == 1 and "50257 ids" in err
    (tmp_path / "t.txt").write_text("To be, or not to be", encoding="utf-8")
    counts = {}
    for spec in ("bytes", tmp_path / "m"):
        rc, out, err = cli("eval", tmp_path / "m", "--data", tmp_path / "t.txt", "--tokenizer", spec)
        assert rc == 0, err
        counts[str(spec)] = out.split("tokens scored: ")[1].split()[0]
    assert counts["bytes"] == "18" and counts[str(tmp_path / "m")] == str(len(tok.encode("To be, or not to be")) - 1)


def test_finetune_init_from_a_byte_level_hf_folder_keeps_its_tokenizer(tmp_path, capsys):
    from gptx.__main__ import main
    from gptx.checkpoint import load_checkpoint

    tiny(257).save_pretrained(tmp_path / "hf", tokenizer=Tokenizer.bytes())
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": f"Q{i}:", "completion": f" A{i}"}) + "\n" for i in range(6)))
    assert main(["train", "--init", str(tmp_path / "hf"), "--jsonl", str(pairs), "--steps", "1", "--batch-size",
                 "2", "--block-size", "16", "--eval-every", "0", "--threads", "1", "--no-progress",
                 "--out", str(tmp_path / "ft")]) == 0, capsys.readouterr().err
    ck = load_checkpoint(tmp_path / "ft")
    assert ck.state["tokenizer"] == "bytes"
    assert Tokenizer.load(ck.tokenizer_dir).eot_token == 256  # the pairs end with the byte tokenizer's end-of-text


@pytest.mark.parametrize("kind", ["bytes", "gpt2"])
def test_tokenizer_saved_by_transformers_is_read_back(kind, tokenizers, tmp_path):
    """A folder whose tokenizer files transformers wrote (no gptx_tokenizer.json), as downloaded models have."""
    tok = tokenizers[kind]
    tok.save(tmp_path / "ours")
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "ours", local_files_only=True)
    tiny(tok.vocab_size).save_pretrained(tmp_path / "hf")
    hf_tok.save_pretrained(tmp_path / "hf")
    assert not (tmp_path / "hf" / "gptx_tokenizer.json").exists()
    back = gptx.load(tmp_path / "hf")[1]
    assert back.eot_token == tok.eot_token and back.vocab_size == tok.vocab_size
    text = TEXT + shakespeare_text()[:2000]
    assert back.encode(text, allow_special=True) == tok.encode(text, allow_special=True)
    assert back.encode(text) == tok.encode(text)
    assert back.decode(tok.encode(text, allow_special=True)) == text
