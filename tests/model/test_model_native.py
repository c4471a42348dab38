"""The C++ model (gptx/model.h through gptx._core): loader, parameter checks, logits and greedy tokens = Python's."""
import hashlib
import json
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import gptx
from gptx import _core
from gptx.inference import _native_model
from gptx.model import GPT, GPTConfig

CFG = GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=24, vocab_size=70)


@pytest.fixture
def model():
    m = GPT(CFG, seed=0)
    rng = np.random.default_rng(0)  # spread-out logits: argmax is not decided by rounding
    m.load_state_dict({k: (rng.standard_normal(v.shape) * (1.0 if ".wte" in k or ".wpe" in k else 0.3))
                       .astype(np.float32) for k, v in m.state_dict().items()})
    return m


def greedy(native, prompt, n):
    return list(_core.model_generate_greedy(native, np.array(prompt), n))


@pytest.mark.parametrize("fmt", ["checkpoint", "run_dir", "pretrained"])
def test_loaded_model_generates_like_python(model, tmp_path, fmt):
    if fmt == "pretrained":
        model.save_pretrained(tmp_path / "hf")
        path = tmp_path / "hf"
    else:
        step = gptx.save_checkpoint(tmp_path / "run", model)
        path = step if fmt == "checkpoint" else tmp_path / "run"
    native = _core.load_model(str(path))
    assert native.config.vocab_size == 70 and native.config.block_size == 24
    prompt = [5, 9, 1]
    # 30 new tokens: past block_size 24, both slide over the last 24 tokens.
    want = model.generate(prompt, 30, temperature=0, sliding_window=True)
    assert greedy(native, prompt, 30) == want
    assert greedy(_native_model(model), prompt, 30) == want


def test_prefill_logits_equal_the_python_forward_bitwise(model):
    """The C++ pass and GPT.forward run the same kernels at the same shapes: identical logits, not merely close."""
    from gptx.inference import prefill
    from gptx.kv_cache import KVCache

    ids = np.random.default_rng(1).integers(0, CFG.vocab_size, (1, 17))
    ref, _ = model.forward(ids)
    logits = prefill(model, KVCache.for_model(model, 1), 0, ids[0], all_logits=True)
    np.testing.assert_array_equal(logits, ref[0])


def test_native_model_sees_in_place_updates(model):
    native = _native_model(model)
    assert _native_model(model) is native  # built once
    before = greedy(native, [1, 2], 5)
    model.load_state_dict({k: v[::-1].copy() if v.ndim == 2 else v for k, v in model.state_dict().items()})
    assert _native_model(model) is native
    assert greedy(native, [1, 2], 5) == model.generate([1, 2], 5, temperature=0) != before


def test_parameter_checks_name_the_parameter(model):
    c = _core.GPTConfig(2, 2, 32, 24, 70)
    params = dict(model._p.named)
    missing = {k: v for k, v in params.items() if k != "transformer.h.1.ln_2.bias"}
    with pytest.raises(ValueError, match=r"missing parameter transformer\.h\.1\.ln_2\.bias"):
        _core.GPTModel(c, missing)
    with pytest.raises(ValueError, match="unexpected parameter extra"):
        _core.GPTModel(c, {**params, "extra": params["transformer.ln_f.bias"]})
    bad = {**params, "transformer.h.0.attn.c_attn.weight": np.zeros((32, 32), np.float32)}
    with pytest.raises(ValueError, match=r"transformer\.h\.0\.attn\.c_attn\.weight has shape \(32, 32\), expected "
                                         r"\(32, 96\)"):
        _core.GPTModel(c, bad)
    with pytest.raises(TypeError, match="transformer.wpe.weight"):
        _core.GPTModel(c, {**params, "transformer.wpe.weight": np.zeros((24, 32), np.int32)})
    # wte unpadded (70 rows): copied once into a padded table; same tokens as the padded original.
    native = _core.GPTModel(c, params)
    assert greedy(native, [3, 4], 6) == model.generate([3, 4], 6, temperature=0)


def test_loader_errors_name_the_file(model, tmp_path):
    step = gptx.save_checkpoint(tmp_path / "run", model)
    (step / "manifest.json").unlink()  # the file checks themselves, as for a folder without a manifest
    with pytest.raises(ValueError, match="config.json: not found"):
        _core.load_model(str(tmp_path / "nowhere"))
    weights = step / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) - 100])
    with pytest.raises(ValueError, match="model.safetensors.*truncated"):
        _core.load_model(str(step))
    weights.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    with pytest.raises(ValueError, match="model.safetensors: safetensors header: invalid JSON"):
        _core.load_model(str(step))
    weights.write_bytes(data)
    tensors = load_file(str(weights))
    del tensors["transformer.h.0.mlp.c_fc.bias"]
    save_file(tensors, str(weights))
    with pytest.raises(ValueError, match=r"missing tensor transformer\.h\.0\.mlp\.c_fc\.bias"):
        _core.load_model(str(step))
    tensors["transformer.h.0.mlp.c_fc.bias"] = np.zeros(5, np.float32)
    save_file(tensors, str(weights))
    with pytest.raises(ValueError, match=r"c_fc\.bias has shape \(5,\), expected \(128,\)"):
        _core.load_model(str(step))
    (step / "config.json").write_text(json.dumps({"n_layer": 2}))
    with pytest.raises(ValueError, match="config.json: missing key 'n_positions'"):
        _core.load_model(str(step))
    (step / "config.json").write_text("{")
    with pytest.raises(ValueError, match="config.json: invalid JSON"):
        _core.load_model(str(step))


def test_prefill_decode_argument_errors(model):
    from gptx.inference import decode, prefill
    from gptx.kv_cache import KVCache

    cache = KVCache.for_model(model, batch=2, max_len=4)
    with pytest.raises(ValueError, match=r"cache slot 2 out of range \[0, 2\)"):
        prefill(model, cache, 2, [1])
    with pytest.raises(ValueError, match=r"token id 70 out of range \[0, 70\)"):
        prefill(model, cache, 0, [1, 70])
    with pytest.raises(ValueError, match="no tokens"):
        prefill(model, cache, 0, [])
    prefill(model, cache, 0, [1, 2, 3, 4])
    with pytest.raises(ValueError, match="a slot is full"):
        decode(model, cache, [0], [1])
    with pytest.raises(ValueError, match="one token per distinct slot"):
        decode(model, cache, [1, 1], [1, 2])
    assert np.asarray(cache.lengths).tolist() == [4, 0]  # nothing changed by the rejected calls
    other = KVCache(n_layer=3, batch=1, n_head=2, max_len=4, head_size=16)
    with pytest.raises(ValueError, match="does not fit the model"):
        prefill(model, other, 0, [1])


def _rewrite_header(path, edit, length_delta=0):
    """Rewrite a safetensors file's JSON header through `edit(header_dict)`; the data bytes stay where they are."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    edit(header)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (n - len(text)) if len(text) <= n else b""
    assert len(text) == n, "the edited header must keep its length"
    path.write_bytes((n + length_delta).to_bytes(8, "little") + text + raw[8 + n:])


def test_loader_refuses_headers_that_do_not_tile_the_data(model, tmp_path):
    step = gptx.save_checkpoint(tmp_path / "run", model)
    (step / "manifest.json").unlink()  # the file checks themselves, as for a folder without a manifest
    weights = step / "model.safetensors"
    good = weights.read_bytes()

    def alias(h):  # ln_1.bias points at ln_1.weight's bytes (same size): shapes and sizes still look fine
        h["transformer.h.0.ln_1.bias"]["data_offsets"] = h["transformer.h.0.ln_1.weight"]["data_offsets"]

    _rewrite_header(weights, alias)
    with pytest.raises(ValueError, match="overlapping or missing bytes: corrupt header"):
        _core.load_model(str(step))
    weights.write_bytes(good)
    # a header length a few bytes short (padding spaces after the JSON absorb it): every tensor would shift by 3
    _rewrite_header(weights, lambda h: None)  # compact JSON: now padded with spaces
    padded = weights.read_bytes()
    n = int.from_bytes(padded[:8], "little")
    assert padded[8 + n - 3:8 + n] == b"   "
    weights.write_bytes((n - 3).to_bytes(8, "little") + padded[8:])
    with pytest.raises(ValueError, match="data bytes"):
        _core.load_model(str(step))
    weights.write_bytes(good + b"\0" * 8)  # trailing bytes nobody owns
    with pytest.raises(ValueError, match="the tensors cover .* data bytes"):
        _core.load_model(str(step))


def test_loader_bounds_the_config_by_the_file(model, tmp_path):
    step = gptx.save_checkpoint(tmp_path / "run", model)
    (step / "manifest.json").unlink()  # the file checks themselves, as for a folder without a manifest
    cfg = json.loads((step / "config.json").read_text())
    cfg["n_layer"] = 2**31 - 1  # a few bytes of JSON describing ~10^14 parameters
    (step / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="too few for the 2147483647-layer model config.json describes"):
        _core.load_model(str(step))


def test_loader_checks_the_manifest(model, tmp_path):
    step = gptx.save_checkpoint(tmp_path / "run", model)
    manifest = json.loads((step / "manifest.json").read_text())
    # files of every length around SHA-256's 64-byte blocks and its 56-byte padding boundary, hashed by hashlib
    rng = np.random.default_rng(0)
    for n in (0, 1, 55, 56, 63, 64, 65, 119, 120, 1000, 70001):
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        (step / f"extra-{n}.bin").write_bytes(data)
        manifest["files"][f"extra-{n}.bin"] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": n}
    (step / "manifest.json").write_text(json.dumps(manifest))
    _core.load_model(str(step))  # every digest matches
    weights = step / "model.safetensors"
    good = bytearray(weights.read_bytes())
    bad = bytearray(good)
    bad[-5] ^= 0x01  # one bit of one weight
    weights.write_bytes(bytes(bad))
    with pytest.raises(ValueError, match=r"model\.safetensors: corrupt: its sha256 does not match the manifest"):
        _core.load_model(str(step))
    weights.write_bytes(bytes(good[:-4]))
    with pytest.raises(ValueError, match="bytes, the manifest says .* \\(truncated or overwritten\\)"):
        _core.load_model(str(step))
    weights.write_bytes(bytes(good))
    (step / "extra-55.bin").unlink()
    with pytest.raises(ValueError, match="extra-55.bin: missing"):
        _core.load_model(str(step))
    for rel in ("../outside", "/etc/passwd", "a/../../b"):
        m = json.loads((step / "manifest.json").read_text())
        m["files"] = {rel: {"sha256": "0" * 64, "bytes": 0}, **{k: v for k, v in m["files"].items() if k != "extra-55.bin"}}
        (step / "manifest.json").write_text(json.dumps(m))
        with pytest.raises(ValueError, match="manifest.json: bad entry"):
            _core.load_model(str(step))


def test_loader_takes_the_step_folder_python_takes(model, tmp_path):
    # one rule for both loaders: latest.json, a newer complete step than it names, or without it the newest step
    # folder that verifies (a save killed after its rename, before the pointer moved)
    from gptx.checkpoint import resolve_checkpoint

    run = tmp_path / "run"
    for step in (1, 2, 3):
        gptx.save_checkpoint(run, model, state={"step": step}, keep=0)

    def native_dir():
        return (tmp_path / _core.read_config_file(str(run))[0]).resolve()

    def agree(step):
        assert native_dir() == resolve_checkpoint(run).resolve() == (run / f"step-{step:06d}").resolve()
        _core.load_model(str(run))

    agree(3)
    (run / "latest.json").write_text(json.dumps({"checkpoint": "step-000001"}))
    agree(3)  # newer complete steps than the pointer names
    (run / "step-000003" / "manifest.json").unlink()  # an incomplete newer folder is never taken
    agree(2)
    (run / "latest.json").unlink()
    agree(2)
    weights = run / "step-000002" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1])  # the newest is damaged: the older one
    agree(1)
    (run / "latest.json").write_text(json.dumps({"checkpoint": "step-000009"}))
    with pytest.raises(ValueError, match=r"latest\.json: points to .*step-000009, which has no manifest\.json"):
        _core.load_model(str(run))
    (run / "latest.json").write_text("{")
    with pytest.raises(ValueError, match=r"latest\.json: invalid JSON"):
        _core.load_model(str(run))
    (run / "latest.json").unlink()
    for name in ("step-000001", "step-000002"):
        shutil.rmtree(run / name)
    with pytest.raises(ValueError, match=r"config\.json: not found"):
        _core.load_model(str(run))  # no step folder verifies: nothing to fall back to
