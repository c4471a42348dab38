"""gptx export: GGUF files (re-read with the gguf library; loaded by llama.cpp through llama-cpp-python when it is
installed: the same greedy tokens as gptx) and Hugging Face folders (transformers: the same logits and token ids)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import gptx
from gptx import GPT, GPTConfig

gguf = pytest.importorskip("gguf")  # in the test extra; the package itself runs without it

CFG = GPTConfig(n_layer=2, n_head=2, n_embd=64, block_size=48, vocab_size=257)


def spread_model(cfg=CFG, seed=0):
    """Random weights with spread-out logits, so greedy tokens are decided by the weights, not by rounding."""
    m = GPT(cfg, seed=seed)
    rng = np.random.default_rng(seed)
    m.load_state_dict({k: (rng.standard_normal(v.shape) * (1.0 if ".wte" in k or ".wpe" in k else 0.3))
                       .astype(np.float32) for k, v in m.state_dict().items()})
    return m


@pytest.fixture
def run_dir(tmp_path):
    tok = gptx.Tokenizer.bytes()
    step = gptx.save_checkpoint(tmp_path / "run", spread_model(), tokenizer=tok)
    return tmp_path / "run", step


def cli(*args):
    return subprocess.run([sys.executable, "-m", "gptx", *map(str, args)], capture_output=True, text=True, timeout=300)


# ------------------------------------------------------------------------------------------------ GGUF contents
@pytest.mark.parametrize("dtype", ["f32", "f16", "q8_0"])
def test_gguf_tensors_and_metadata(run_dir, tmp_path, dtype):
    run, _ = run_dir
    out = tmp_path / f"m-{dtype}.gguf"
    r = cli("export", run, "--format", "gguf", "--out", out, "--dtype", dtype)
    assert r.returncode == 0, r.stderr
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")], "the temporary file was left behind"
    model, tok = gptx.load(run)
    sd = {k.removeprefix("transformer."): v for k, v in model.state_dict().items()}
    reader = gguf.GGUFReader(str(out))
    field = lambda k: reader.fields[k].contents()  # noqa: E731
    assert field("general.architecture") == "gpt2"
    assert field("gpt2.block_count") == CFG.n_layer and field("gpt2.embedding_length") == CFG.n_embd
    assert field("gpt2.context_length") == CFG.block_size and field("gpt2.attention.head_count") == CFG.n_head
    assert field("gpt2.feed_forward_length") == 4 * CFG.n_embd
    assert field("tokenizer.ggml.model") == "gpt2"
    tokens = field("tokenizer.ggml.tokens")
    assert len(tokens) == CFG.vocab_size and tokens[256] == "<|endoftext|>"
    assert field("tokenizer.ggml.eos_token_id") == 256
    tensors = {t.name: t for t in reader.tensors}
    assert len(tensors) == 2 + 12 * CFG.n_layer + 3
    want_type = {"f32": gguf.GGMLQuantizationType.F32, "f16": gguf.GGMLQuantizationType.F16,
                 "q8_0": gguf.GGMLQuantizationType.Q8_0}[dtype]

    def check(name, ref, matrix):
        t = tensors[name]
        assert tuple(int(x) for x in reversed(t.shape)) == ref.shape, name  # ggml lists ne0 (columns) first
        typ = want_type if matrix and not (dtype == "q8_0" and name == "position_embd.weight") else (
            gguf.GGMLQuantizationType.F32 if not matrix or dtype != "f16" else want_type)
        assert t.tensor_type == typ, (name, t.tensor_type)
        got = gguf.quants.dequantize(t.data, t.tensor_type).reshape(ref.shape)
        bound = {"f32": 0.0, "f16": 1e-3, "q8_0": 1.0 / 127}[dtype] if matrix else 0.0
        if typ == gguf.GGMLQuantizationType.F32:
            bound = 0.0
        # per row: q8_0's error is at most half a step of the block's scale, <= max|w| / 254 (+ float16 rounding)
        err = np.abs(got - ref).max(axis=-1) if ref.ndim == 2 else np.abs(got - ref)
        lim = bound * np.abs(ref).max(axis=-1) + 1e-7 if ref.ndim == 2 else bound * np.abs(ref) + 1e-7
        assert (err <= lim).all(), (name, float(err.max()))

    check("token_embd.weight", sd["wte.weight"], True)
    check("output.weight", sd["wte.weight"], True)
    check("position_embd.weight", sd["wpe.weight"], True)
    check("output_norm.bias", sd["ln_f.bias"], False)
    check("blk.1.attn_qkv.weight", sd["h.1.attn.c_attn.weight"].T, True)
    check("blk.0.ffn_down.weight", sd["h.0.mlp.c_proj.weight"].T, True)
    check("blk.0.ffn_up.bias", sd["h.0.mlp.c_fc.bias"], False)


def test_gguf_gpt2_vocabulary():
    """GPT-2's BPE: 50257 tokens in byte-level form, merges recovered from the ranks, end-of-text last."""
    from gptx.export_gguf import gguf_vocab

    tokens, types, merges, eot = gguf_vocab(gptx.Tokenizer.gpt2(), 50304)
    assert len(tokens) == 50304 and tokens[50256] == "<|endoftext|>" and eot == 50256
    assert tokens[464] == "The" and tokens[11] == "," and tokens[220] == "\u0120"  # "Ġ" is the space byte
    assert len(merges) == 50000 and merges[0] == "\u0120 t"
    assert types[50256] == 3 and types[50300] == 5


def test_gguf_errors(run_dir, tmp_path):
    run, _ = run_dir
    out = tmp_path / "m.gguf"
    out.write_bytes(b"old")
    r = cli("export", run, "--format", "gguf", "--out", out)
    assert r.returncode == 1 and "exists; pass --force" in r.stderr
    assert out.read_bytes() == b"old"
    r = cli("export", run, "--format", "gguf", "--out", tmp_path)
    assert r.returncode == 1 and "is a folder" in r.stderr
    r = cli("export", run, "--format", "gguf", "--out", out, "--dtype", "q4")
    assert r.returncode == 2 and "invalid choice" in r.stderr
    r = cli("export", tmp_path / "nothing", "--format", "gguf", "--out", tmp_path / "x.gguf")
    assert r.returncode == 1 and "gptx export: error" in r.stderr


def test_package_works_without_gguf(run_dir, tmp_path):
    """gguf is optional: gptx imports and samples without it, and export says how to install it."""
    run, _ = run_dir
    code = ("import sys; sys.modules['gguf'] = None\n"
            "import gptx\n"
            "from gptx.cli.export import run\n"
            "import argparse\n"
            f"a = argparse.Namespace(checkpoint={str(run)!r}, format='gguf', out={str(tmp_path / 'x.gguf')!r}, "
            "dtype=None, force=False, tokenizer=None)\n"
            "sys.exit(run(a))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "pip install 'gptx-engine[gguf]'" in r.stderr, r.stderr


# ------------------------------------------------------------------------------------------------ llama.cpp
def llama(path, n_ctx):
    llama_cpp = pytest.importorskip("llama_cpp")
    import llama_cpp.llama_cpp as C

    # llama.cpp's AMX repacking of q8_0 crashes on some Xeons (BUILD-NOTES): load without the extra buffer types.
    default = C.llama_model_default_params

    def params():
        p = default()
        p.use_extra_bufts = False
        return p

    C.llama_model_default_params = params
    try:
        return llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_threads=2, n_threads_batch=2, verbose=False)
    finally:
        C.llama_model_default_params = default


def llama_greedy(llm, prompt, n):
    out = []
    for t in llm.generate(prompt, temp=0.0, top_k=1, reset=True):
        out.append(int(t))
        if len(out) == n:
            return out


def llama_logits(llm, prompt):
    import llama_cpp

    llm.reset()
    llm.eval(list(prompt))
    ptr = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
    return np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),)).astype(np.float64)


@pytest.mark.parametrize("kind", ["bytes", "gpt2"])
def test_llama_cpp_greedy_tokens_equal_gptx(tmp_path, kind):
    """The exported f32 GGUF in llama.cpp: the same token ids for a text and the same greedy continuation."""
    pytest.importorskip("llama_cpp")
    tok = gptx.Tokenizer.bytes() if kind == "bytes" else gptx.Tokenizer.gpt2()
    cfg = GPTConfig(n_layer=2, n_head=2, n_embd=64, block_size=48, vocab_size=tok.vocab_size)
    model = spread_model(cfg, seed=3)
    from gptx.export_gguf import write_gguf

    path = write_gguf(model, tok, tmp_path / "m.gguf", "f32")
    llm = llama(path, cfg.block_size)
    text = "ROMEO: Is the day so young? wörld"
    prompt = tok.encode(text)
    assert llm.tokenize(text.encode(), add_bos=False, special=False) == prompt
    want = model.generate(prompt, 12, temperature=0, stop_at_eos=False)
    assert llama_greedy(llm, prompt, 12) == want


def test_llama_cpp_q8_0_matches_gptx_int8(tmp_path):
    """q8_0 in llama.cpp vs gptx's int8 weights (the same blocks and scales): next-token logits agree closely."""
    pytest.importorskip("llama_cpp")
    tok = gptx.Tokenizer.bytes()
    model = spread_model(seed=4)
    from gptx.export_gguf import write_gguf

    path = write_gguf(model, tok, tmp_path / "m.gguf", "q8_0")
    llm = llama(path, CFG.block_size)
    prompt = tok.encode("First Citizen: Before we proceed")
    f32 = model.forward_cached(prompt, __import__("gptx.kv_cache", fromlist=["KVCache"]).KVCache.for_model(model, 1))
    model.quantize("int8")
    int8 = model.forward_cached(prompt, __import__("gptx.kv_cache", fromlist=["KVCache"]).KVCache.for_model(model, 1))
    ll = llama_logits(llm, prompt)
    rel = lambda a, b: np.linalg.norm(a - b) / np.linalg.norm(b)  # noqa: E731
    assert rel(ll, int8) < 0.5 * max(rel(int8, f32), 1e-3) + 5e-3, (rel(ll, int8), rel(int8, f32))
    assert int(np.argmax(ll)) == int(np.argmax(int8))


# ------------------------------------------------------------------------------------------------ Hugging Face
def test_hf_export_loads_in_transformers(run_dir, tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    run, step = run_dir
    out = tmp_path / "hf"
    r = cli("export", step, "--format", "hf", "--out", out)
    assert r.returncode == 0, r.stderr
    model, tok = gptx.load(run)
    hf = transformers.GPT2LMHeadModel.from_pretrained(out).eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(out)
    text = "ROMEO: what light"
    ids = tok.encode(text)
    assert hf_tok(text)["input_ids"] == ids
    with torch.no_grad():
        want = hf(torch.tensor([ids])).logits[0].double().numpy()
    got = np.array(model.forward(np.array([ids]))[0])[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    # an existing folder needs --force; --dtype is for GGUF only
    r = cli("export", step, "--format", "hf", "--out", out)
    assert r.returncode == 1 and "exists; pass --force" in r.stderr
    r = cli("export", step, "--format", "hf", "--out", out, "--force")
    assert r.returncode == 0 and json.loads((out / "config.json").read_text())["n_layer"] == CFG.n_layer
    assert not [p for p in os.listdir(tmp_path) if p.endswith((".tmp", ".old"))]
    r = cli("export", step, "--format", "hf", "--out", tmp_path / "hf2", "--dtype", "q8_0")
    assert r.returncode == 1 and "--dtype applies to --format gguf" in r.stderr
