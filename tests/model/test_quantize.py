"""GPT.quantize: bf16 / int8 decoding weights at the model level — logits close to float32 (MODEL_TOLERANCES), the
inference pass and the Python forward agree, generation runs and stays batch-invariant, training refuses, "f32"
undoes it, and a briefly trained Tiny Shakespeare model keeps its evaluation loss (the perplexity bound, cheaply)."""
import math
import pickle

import numpy as np
import pytest

import gptx
from gptx import GPT, GPTConfig, _core
from gptx.cli.eval import evaluate
from tolerances import model_tolerance

# vocab 257 (the byte tokenizer with end-of-text): padded to 320 rows for the LM head; n_embd 96 is not a multiple of
# the int8 block of 32 times 4 but is of 32 (GPT-2 sizes all are).
CFG = GPTConfig(n_layer=2, n_head=3, n_embd=96, block_size=40, vocab_size=257)


@pytest.fixture
def model():
    return GPT(CFG, seed=1)


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.linalg.norm(a - b) / np.linalg.norm(b)


@pytest.mark.parametrize("weights", ["bf16", "int8"])
def test_logits_close_to_float32(model, rng, weights):
    idx = rng.integers(0, CFG.vocab_size, (2, 31))
    want = np.array(model.forward(idx)[0])
    assert model.quantize(weights) is model and model.weights == weights
    got = np.array(model.forward(idx)[0])
    err = rel(got, want)
    assert 0 < err <= model_tolerance("cpu", f"{weights}-weights", "logits"), err
    # the KV-cache pass (C++ prefill) runs the same packed weights: the same logits as the Python forward
    from gptx.inference import prefill
    from gptx.kv_cache import KVCache

    cache = KVCache.for_model(model, 1)
    full = prefill(model, cache, 0, idx[0], all_logits=True)
    np.testing.assert_allclose(full, got[0], rtol=0, atol=1e-5 * np.abs(got).max())
    model.quantize("f32")
    np.testing.assert_array_equal(np.array(model.forward(idx)[0]), want)


@pytest.mark.parametrize("weights", ["bf16", "int8"])
def test_generate_runs_and_is_batch_invariant(model, weights):
    model.quantize(weights)
    alone = model.generate([1, 2, 3], 12, temperature=0.8, seed=5)
    batch = model.generate([[7], [1, 2, 3], [9, 9, 9, 9]], 12, temperature=0.8, seed=[(6, 0), 5, (7, 0)])
    assert len(alone) == 12 and batch[1] == alone
    greedy = model.generate([4, 5], 10, temperature=0)
    assert greedy == list(_core.model_generate_greedy(
        __import__("gptx.inference", fromlist=["_native_model"])._native_model(model), np.array([4, 5]), 10))


def test_training_refuses_until_undone(model, rng):
    x = rng.integers(0, CFG.vocab_size, (2, 8))
    model.quantize("int8")
    loss = model.forward_loss(x, x)  # evaluation works
    assert math.isfinite(float(loss))
    with pytest.raises(RuntimeError, match=r"GPT.backward: the model runs int8 weights .*quantize\('f32'\)"):
        model.backward()
    model.quantize("f32")
    model.forward(x, x)
    model.backward()


def test_bad_names_and_devices(model):
    with pytest.raises(ValueError, match=r"weights must be one of f32, bf16, int8, got 'q8_0'"):
        model.quantize("q8_0")
    with pytest.raises(ValueError, match="weights must be one of"):
        model.quantize(None)
    assert model.weights == "f32"


def test_native_model_errors(model):
    from gptx.inference import _native_model

    native = _native_model(model)
    with pytest.raises(ValueError, match=r"GPTModel.quantize: argument 'weights' must be 'f32', 'bf16' or 'int8'"):
        native.quantize("fp8")
    with pytest.raises(ValueError, match="not quantized"):
        native.packed("transformer.wte.weight")
    native.quantize("bf16")
    assert native.weights == "bf16"
    assert native.packed("transformer.h.1.mlp.c_fc.weight").N == 4 * CFG.n_embd
    assert native.packed("transformer.wte.weight").N == CFG.padded_vocab_size
    with pytest.raises(ValueError, match="no packed weight named 'transformer.h.2.mlp.c_fc.weight'"):
        native.packed("transformer.h.2.mlp.c_fc.weight")
    native.quantize("f32")


def test_state_follows(model, rng):
    """load_state_dict repacks; pickling keeps the format."""
    idx = rng.integers(0, CFG.vocab_size, (1, 9))
    other = GPT(CFG, seed=2)
    model.quantize("int8")
    model.load_state_dict(other.state_dict())
    other.quantize("int8")
    np.testing.assert_array_equal(np.array(model.forward(idx)[0]), np.array(other.forward(idx)[0]))
    copy = pickle.loads(pickle.dumps(model))
    assert copy.weights == "int8"
    np.testing.assert_array_equal(np.array(copy.forward(idx)[0]), np.array(model.forward(idx)[0]))
    assert "weights='int8'" in repr(copy)


@pytest.fixture(scope="module")
def shakespeare():
    """A byte-level model trained for a few seconds on Tiny Shakespeare, and held-out tokens."""
    tok = gptx.Tokenizer.bytes()
    tokens = tok.encode_array(gptx.shakespeare_text())
    train, val = gptx.train_val_split(tokens, 0.1)
    cfg = GPTConfig(n_layer=2, n_head=2, n_embd=64, block_size=64, vocab_size=tok.vocab_size)
    model = GPT(cfg, seed=0)
    tc = gptx.TrainConfig(steps=200, batch_size=16, block_size=64, lr=3e-3, warmup=20, weight_decay=0.0, eval_every=0,
                          progress=False, log_every=10**9)
    gptx.Trainer(model, tc, gptx.TokenDataset(train), gptx.TokenDataset(val), tokenizer=tok).fit()
    return model, np.asarray(val[:20 * 64 + 1], dtype=np.int64)


@pytest.mark.parametrize("weights", ["bf16", "int8"])
def test_trained_model_perplexity(shakespeare, weights):
    """Perplexity exp(loss) within the issue's bound of float32: bf16 0.5%, int8 1% (on 1,280 held-out bytes)."""
    model, val = shakespeare
    model.quantize("f32")
    nats, n = evaluate(model, val, 64, 4)
    f32 = nats / n
    assert f32 < 2.7, f"the model did not train ({f32:.3f} nats/byte)"
    model.quantize(weights)
    nats, n = evaluate(model, val, 64, 4)
    ratio = math.exp(nats / n - f32)
    model.quantize("f32")
    assert abs(ratio - 1) <= model_tolerance("cpu", f"{weights}-weights", "ppl"), (weights, ratio)


def test_cli_weights_flag(tmp_path):
    """`gptx sample --weights int8` prints what the quantized model generates; a bad choice is refused."""
    import subprocess
    import sys

    tok = gptx.Tokenizer.bytes()
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=64, block_size=32, vocab_size=tok.vocab_size), seed=3)
    run = gptx.save_checkpoint(tmp_path / "run", model, tokenizer=tok)
    want = tok.decode([t for t in model.quantize("int8").generate(tok.encode("ab"), 12, temperature=0)
                       if t != tok.eot_token])
    r = subprocess.run([sys.executable, "-m", "gptx", "sample", str(run), "--prompt", "ab", "--max-new-tokens", "12",
                        "--temperature", "0", "--weights", "int8", "--no-stream"], capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode("utf-8", "replace") == "ab" + want + "\n"
    r = subprocess.run([sys.executable, "-m", "gptx", "sample", str(run), "--weights", "q4"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2 and "--weights" in r.stderr and "invalid choice" in r.stderr


def test_check_weights():
    from gptx.weights import WEIGHT_FORMATS, check_weights

    assert WEIGHT_FORMATS == ("f32", "bf16", "int8")
    assert check_weights("bf16") == "bf16"
    with pytest.raises(ValueError, match="--weights must be one of f32, bf16, int8, got 'fp8'"):
        check_weights("fp8", "--weights")
