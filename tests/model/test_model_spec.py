"""The one GPT definition (gptx/gpt_spec.h): Python and the C++ loader apply the same config rules, the parameter
table matches an independently computed layout, and the KV cache has one size order everywhere."""
import json
import math

import numpy as np
import pytest

import gptx
from gptx import _core
from gptx.config import native_config, parameter_table
from gptx.kv_cache import KVCache
from gptx.model import GPT, GPTConfig

GOOD = dict(n_layer=2, n_head=3, n_embd=48, block_size=64, vocab_size=101, layer_norm_epsilon=1e-5)

# One change each to GOOD; every one must be refused by both sides with the same message.
BAD = [
    dict(n_layer=0), dict(n_head=-1), dict(n_embd=0), dict(block_size=0), dict(vocab_size=0),
    dict(vocab_size=2.5),
    dict(n_layer=2.0),  # an integral float: the C++ loader used to accept it, Python did not
    dict(n_layer=True), dict(n_head="3"), dict(n_embd=None), dict(block_size=[64]),
    dict(vocab_size=2**31),  # beyond int32 (token ids): Python used to accept any size
    dict(n_layer=10**16),  # beyond the C++ loader's old 1e15 bound
    dict(n_embd=50, n_head=3),
    dict(n_embd=2**31 - 1, n_head=1),  # every size fits, the parameter count does not
    dict(layer_norm_epsilon=0.0), dict(layer_norm_epsilon=-1e-5), dict(layer_norm_epsilon=float("nan")),
    dict(layer_norm_epsilon=float("inf")),
    dict(layer_norm_epsilon=1e-50),  # > 0 as a double, 0 in float32: Python used to accept it
    dict(layer_norm_epsilon=1e31),  # finite: Python used to accept it, the C++ rule (<= 1e30) did not
    dict(layer_norm_epsilon=True), dict(layer_norm_epsilon="1e-5"),  # Python used to take float() of these
    dict(layer_norm_epsilon=None),  # the C++ loader used to ignore it (default 1e-5)
]
EDGES = [dict(layer_norm_epsilon=1e30), dict(layer_norm_epsilon=1), dict(vocab_size=1), dict(n_head=48),
         dict(block_size=2**31 - 1), dict(n_layer=1, n_head=1, n_embd=1)]


def field(change) -> str:
    return "n_embd" if "n_head" in change and "n_embd" in change else next(iter(change))


def write_config(tmp_path, cfg, hf=False):
    d = tmp_path / ("hf" if hf else "gptx")
    d.mkdir(exist_ok=True)
    if hf:  # the same values under Hugging Face GPT-2 keys
        cfg = {("n_positions" if k == "block_size" else k): v for k, v in cfg.items()}
        cfg.update(model_type="gpt2", activation_function="gelu_new")
    (d / "config.json").write_text(json.dumps(cfg))  # NaN / Infinity as Python's json writes them
    return d


def native_error(d) -> str:
    with pytest.raises(ValueError) as e:
        _core.load_config(str(d))
    return str(e.value)


@pytest.mark.parametrize("change", BAD, ids=[repr(c) for c in BAD])
def test_python_and_the_cpp_loader_refuse_the_same_configs(tmp_path, change):
    cfg = {**GOOD, **change}
    with pytest.raises(ValueError) as py:
        GPTConfig(**cfg)
    message = str(py.value)
    assert message.startswith(f"GPTConfig.{field(change)} ") or message.startswith("GPTConfig: "), message
    with pytest.raises(ValueError) as from_dict:
        GPTConfig.from_dict(cfg)
    assert str(from_dict.value) == message
    file = str(tmp_path / "gptx" / "config.json")
    native = native_error(write_config(tmp_path, cfg))
    value = next(iter(change.values()))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        assert native == f"{file}: {message}"  # the same message, the file in front
    else:  # the value as each source writes it: True / true, '3' / "3", None / null
        assert native.split(", got")[0] == f"{file}: {message.split(', got')[0]}"
    hf = native_error(write_config(tmp_path, cfg, hf=True))
    assert hf.split(", got")[0] == f"{tmp_path / 'hf' / 'config.json'}: {message.split(', got')[0]}"


@pytest.mark.parametrize("change", EDGES, ids=[repr(c) for c in EDGES])
def test_python_and_the_cpp_loader_accept_the_same_edge_configs(tmp_path, change):
    cfg = {**GOOD, **change}
    py = GPTConfig(**cfg)
    native = _core.load_config(str(write_config(tmp_path, cfg)))
    for key in ("n_layer", "n_head", "n_embd", "block_size", "vocab_size"):
        assert getattr(native, key) == getattr(py, key) == cfg[key]
    assert native.layer_norm_epsilon == np.float32(py.layer_norm_epsilon)
    assert native.padded_vocab_size == py.padded_vocab_size and native.head_size == py.head_size


def test_keys_unknown_and_missing_are_refused_like_the_loader(tmp_path):
    for cfg, fragment in [({**GOOD, "n_ctx": 64}, "GPTConfig: unknown key 'n_ctx'"),
                          ({k: v for k, v in GOOD.items() if k != "n_head"}, "GPTConfig: missing key 'n_head'")]:
        with pytest.raises(ValueError, match=fragment):
            GPTConfig.from_dict(cfg)
        assert fragment in native_error(write_config(tmp_path, cfg))
    # layer_norm_epsilon may be absent on both sides (checkpoints from before it was a field).
    cfg = {k: v for k, v in GOOD.items() if k != "layer_norm_epsilon"}
    assert GPTConfig.from_dict(cfg).layer_norm_epsilon == 1e-5
    assert _core.load_config(str(write_config(tmp_path, cfg))).layer_norm_epsilon == np.float32(1e-5)


def test_fields_and_defaults_are_the_cpp_ones():
    from dataclasses import fields

    assert [f.name for f in fields(GPTConfig)] == _core.config_fields()
    native = _core.GPTConfig.from_values({}, require_sizes=False)  # GPTConfig{}: the C++ defaults
    py = GPTConfig()
    for name in _core.config_fields():
        assert getattr(native, name) == np.float32(getattr(py, name)), name


def test_padded_vocab_size():
    for v, vp in [(1, 64), (64, 64), (65, 128), (101, 128), (50257, 50304)]:
        assert GPTConfig(vocab_size=v).padded_vocab_size == _core.padded_vocab_size(v) == vp


HF_BAD = [dict(model_type="llama"), dict(architectures=["LlamaForCausalLM"]), dict(activation_function="gelu"),
          dict(activation_function=None), dict(scale_attn_weights=False), dict(scale_attn_by_inverse_layer_idx=True),
          dict(add_cross_attention=True), dict(tie_word_embeddings=0), dict(n_inner=7), dict(n_positions=...),
          dict(n_head=...), dict(vocab_size=10.5)]


@pytest.mark.parametrize("change", HF_BAD, ids=[repr(c) for c in HF_BAD])
def test_hugging_face_refusals_are_the_same_in_python_and_the_cpp_loader(tmp_path, change):
    GPT(GPTConfig(**{**GOOD, "n_head": 2})).save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    for key, value in change.items():
        if value is ...:  # drop the key
            cfg.pop(key)
            if key == "n_positions":
                cfg.pop("n_ctx")  # it would stand in for n_positions
        else:
            cfg[key] = value
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError) as py:
        GPT.from_pretrained(tmp_path)
    assert str(py.value).startswith(str(tmp_path / "config.json") + ": ")
    assert native_error(tmp_path) == str(py.value)


def test_from_pretrained_follows_a_run_directory_like_the_cpp_loader(tmp_path):
    model = GPT(GPTConfig(**GOOD), seed=4)
    gptx.save_checkpoint(tmp_path / "run", model)
    back = GPT.from_pretrained(tmp_path / "run")
    assert back.config == model.config == GPTConfig(**_core.read_config_file(str(tmp_path / "run"))[1])
    for (n, a), (_, b) in zip(model.named_parameters(), back.named_parameters()):
        np.testing.assert_array_equal(a, b, err_msg=n)


# --------------------------------------------------------------------------------------------- parameter table
def independent_layout(state_dict_shapes, vocab_size):
    """(name, shape, storage, offset, decay) from GPT2LMHeadModel's state_dict order and shapes, computed here:
    wte padded to a multiple of 64 rows, every parameter at the next multiple of 16 floats."""
    rows, offset = [], 0
    for name, shape in state_dict_shapes:
        storage = ((vocab_size + 63) // 64 * 64, shape[1]) if name == "transformer.wte.weight" else shape
        rows.append((name, shape, storage, offset, len(shape) >= 2))
        offset += (math.prod(storage) + 15) // 16 * 16
    return rows, offset


@pytest.mark.parametrize("shape", [(1, 1, 8, 16, 7), (2, 3, 48, 64, 101), (3, 2, 12, 5, 50257), (1, 4, 36, 9, 64)])
def test_parameter_table_is_the_hugging_face_layout(shape):
    transformers = pytest.importorskip("transformers")
    n_layer, n_head, n_embd, block_size, vocab_size = shape
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        n_layer=n_layer, n_head=n_head, n_embd=n_embd, n_positions=block_size, vocab_size=vocab_size))
    # The tied lm_head and the causal-mask buffers are not parameters of their own.
    sd = [(k, tuple(v.shape)) for k, v in hf.state_dict().items()
          if k != "lm_head.weight" and not k.endswith((".attn.bias", ".attn.masked_bias"))]
    want, size = independent_layout(sd, vocab_size)
    table = parameter_table(GPTConfig(*shape))
    got = [(p.name, p.shape, p.storage, p.offset, p.decay) for p in table.params]
    assert got == want
    assert table.size == size
    assert all(p.offset % gptx.config.PARAM_ALIGN == 0 for p in table.params)


def test_the_model_buffers_follow_the_table():
    cfg = GPTConfig(n_layer=2, n_head=3, n_embd=12, block_size=5, vocab_size=101)  # sizes off the 16-float grid
    model = GPT(cfg)
    table = parameter_table(cfg)
    for store in (model._p, model._g):
        assert store.flat.size == table.size and store.flat.data_ptr % 64 == 0
        for p in table.params:
            a = store.named[p.name]
            assert a.shape == p.shape and store.full[p.name].shape == p.storage, p.name
            assert a.data_ptr - store.flat.data_ptr == 4 * p.offset, p.name


# --------------------------------------------------------------------------------------------- KV cache
def test_one_kv_cache_order_everywhere():
    cfg = GPTConfig(n_layer=3, n_head=2, n_embd=16, block_size=9, vocab_size=20)
    shape = _core.kv_cache_shape(native_config(cfg), 4, 6)
    assert shape == (3, 4, 6, 2, 8)  # (n_layer, batch, max_len, n_head, head_size)
    model = GPT(cfg)
    assert KVCache.for_model(model, 4, max_len=6).k.shape == shape
    assert KVCache(*shape).k.shape == shape  # the constructor takes the sizes in the layout's order
    native = _core.GPTModel(native_config(cfg), {**model._p.named, "transformer.wte.weight": model._p.wte})
    assert _core.KVCache.for_model(native, 4, 6).k.shape == shape
    assert KVCache.for_model(model, 1).max_len == _core.kv_cache_shape(native_config(cfg), 1)[2] == 9
    for bad, message in [((0, 6), "batch must be >= 1"), ((1, 10), r"max_len must be in \[1, 9\]"),
                         ((1, 0), r"max_len must be in \[1, 9\]")]:
        with pytest.raises(ValueError, match=message):
            KVCache.for_model(model, *bad)
        with pytest.raises(ValueError, match=message):
            _core.KVCache.for_model(native, *bad)


# --------------------------------------------------------------------------------------------- modules
def test_hf_io_does_not_import_the_model():
    """gptx.model calls gptx.hf_io; hf_io works on configs and arrays (and the class it is given), so no cycle."""
    import ast
    from pathlib import Path

    import gptx.hf_io

    tree = ast.parse(Path(gptx.hf_io.__file__).read_text(encoding="utf-8"))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert "gptx.model" not in imported and "gptx.config" in imported
