"""Hugging Face import/export: save_pretrained loads in transformers, from_pretrained variants, clean errors."""
import json

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import gptx
from gpt2_reference import ODD, TINY, close, random_batch, random_hf_model, reference, torch, transformers
from gptx.model import GPT, GPTConfig

CFG = GPTConfig(n_layer=2, n_head=3, n_embd=48, block_size=64, vocab_size=101)


@pytest.fixture(autouse=True)
def two_threads():
    before = gptx.get_num_threads()
    gptx.set_num_threads(2)
    yield
    gptx.set_num_threads(before)


def hf_dir(tmp_path, shape=TINY, seed=0):
    d = tmp_path / "hf"
    random_hf_model(shape, seed).save_pretrained(d)
    return d


def rewrite_weights(d, edit):
    """Apply edit(dict of arrays) to d/model.safetensors."""
    tensors = load_file(str(d / "model.safetensors"))
    edit(tensors)
    save_file(tensors, str(d / "model.safetensors"), metadata={"format": "pt"})


def rewrite_config(d, **changes):
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(changes)
    for k, v in changes.items():
        if v is None:
            cfg.pop(k)
    (d / "config.json").write_text(json.dumps(cfg))


def test_save_pretrained_loads_in_transformers(tmp_path, rng):
    model = GPT(CFG, seed=int(rng.integers(2**31)))
    model.save_pretrained(tmp_path)
    hf, info = transformers.GPT2LMHeadModel.from_pretrained(tmp_path, output_loading_info=True,
                                                            attn_implementation="eager")
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    assert hf.dtype == torch.float32
    idx, _ = random_batch(rng, 2, 37, CFG.vocab_size)
    logits, _ = model.forward(idx)
    with torch.no_grad():
        ref = hf.eval()(torch.as_tensor(idx)).logits.numpy()
    close(logits, ref, "logits after the round trip through transformers (float32)")
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["model_type"] == "gpt2" and cfg["architectures"] == ["GPT2LMHeadModel"]
    assert cfg["n_positions"] == cfg["n_ctx"] == 64 and cfg["tie_word_embeddings"] is True
    assert cfg["activation_function"] == "gelu_new" and cfg["bos_token_id"] is None  # no <|endoftext|> in 101 tokens


def test_save_then_from_pretrained_is_exact(tmp_path, rng):
    model = GPT(CFG, seed=3)
    model.save_pretrained(tmp_path)
    back = GPT.from_pretrained(tmp_path)
    assert back.config == CFG
    for (n, a), (m, b) in zip(model.named_parameters(), back.named_parameters()):
        assert n == m
        np.testing.assert_array_equal(a, b, err_msg=n)
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("lm_head", ["absent", "present"])
def test_from_pretrained_with_and_without_lm_head(tmp_path, rng, lm_head):
    hf = random_hf_model(ODD, seed=5)
    d = tmp_path / "hf"
    hf.save_pretrained(d)
    if lm_head == "present":
        rewrite_weights(d, lambda t: t.__setitem__("lm_head.weight", t["transformer.wte.weight"].copy()))
    model = GPT.from_pretrained(d)
    idx, _ = random_batch(rng, 1, 20, ODD[4])
    close(model.forward(idx)[0], reference(hf, idx)[0], "logits")


def test_old_style_names_and_mask_buffers(tmp_path, rng):
    """The original GPT-2 files: no 'transformer.' prefix, attn.bias / attn.masked_bias buffers stored."""
    hf = random_hf_model(TINY, seed=7)
    d = tmp_path / "hf"
    hf.save_pretrained(d)

    def old_style(t):
        for k in list(t):
            t[k.removeprefix("transformer.")] = t.pop(k)
        t["h.0.attn.bias"] = np.tril(np.ones((1, 1, 16, 16), np.float32))
        t["h.0.attn.masked_bias"] = np.array(-1e4, np.float32)

    rewrite_weights(d, old_style)
    model = GPT.from_pretrained(d)
    idx, _ = random_batch(rng, 2, 9, TINY[4])
    close(model.forward(idx)[0], reference(hf, idx)[0], "logits")


def test_sharded_checkpoint(tmp_path, rng):
    hf = random_hf_model(ODD, seed=9)
    d = tmp_path / "hf"
    hf.save_pretrained(d, max_shard_size="40KB")
    assert (d / "model.safetensors.index.json").is_file() and len(list(d.glob("model-*.safetensors"))) > 1
    model = GPT.from_pretrained(d)
    idx, _ = random_batch(rng, 1, 11, ODD[4])
    close(model.forward(idx)[0], reference(hf, idx)[0], "logits")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_weights_are_widened(tmp_path, dtype):
    from safetensors.torch import save_file as save_torch

    hf = random_hf_model(TINY, seed=2)
    d = tmp_path / "hf"
    hf.save_pretrained(d)
    half = {n: p.detach().to(dtype).contiguous() for n, p in hf.named_parameters()}
    save_torch(half, str(d / "model.safetensors"), metadata={"format": "pt"})
    model = GPT.from_pretrained(d)
    for name, a in model.named_parameters():
        assert a.dtype == "float32"
        np.testing.assert_array_equal(a, half[name].float().numpy(), err_msg=name)


# --------------------------------------------------------------------------------------------- errors
def expect_error(d, *fragments):
    with pytest.raises(ValueError) as e:
        GPT.from_pretrained(d)
    for f in fragments:
        assert f in str(e.value), str(e.value)


def test_missing_files(tmp_path):
    expect_error(tmp_path / "nowhere", "config.json", "not found")
    d = hf_dir(tmp_path)
    (d / "model.safetensors").unlink()
    expect_error(d, "model.safetensors", "not found")


def test_truncated_and_garbage_safetensors(tmp_path):
    d = hf_dir(tmp_path)
    f = d / "model.safetensors"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) - 100])
    expect_error(d, "model.safetensors", "not a readable safetensors file")
    f.write_bytes(b"not a safetensors file at all")
    expect_error(d, "model.safetensors", "not a readable safetensors file")


def test_missing_extra_and_misshapen_keys(tmp_path):
    d = hf_dir(tmp_path)
    rewrite_weights(d, lambda t: t.pop("transformer.h.0.mlp.c_fc.bias"))
    expect_error(d, "missing key", "transformer.h.0.mlp.c_fc.bias")

    d = hf_dir(tmp_path / "b")
    rewrite_weights(d, lambda t: t.__setitem__("transformer.h.0.attn.extra", np.zeros(3, np.float32)))
    expect_error(d, "model.safetensors", "unexpected key", "transformer.h.0.attn.extra")

    d = hf_dir(tmp_path / "c")
    rewrite_weights(d, lambda t: t.__setitem__("transformer.wpe.weight", np.zeros((15, 8), np.float32)))
    expect_error(d, "model.safetensors", "transformer.wpe.weight", "(15, 8)", "(16, 8)")

    d = hf_dir(tmp_path / "d")
    rewrite_weights(d, lambda t: t.__setitem__("transformer.ln_f.bias", np.zeros(8, np.int32)))
    expect_error(d, "transformer.ln_f.bias", "dtype int32")

    d = hf_dir(tmp_path / "e")
    rewrite_weights(d, lambda t: t.__setitem__("lm_head.weight", t["transformer.wte.weight"] + 1))
    expect_error(d, "lm_head.weight", "untied")


@pytest.mark.parametrize("change, fragment", [
    ({"activation_function": "gelu"}, "activation_function 'gelu'"),
    ({"activation_function": "relu"}, "activation_function 'relu'"),
    ({"model_type": "llama", "architectures": ["LlamaForCausalLM"]}, "is not GPT-2"),
    ({"n_inner": 100}, "n_inner=100"),
    ({"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx"),
    ({"tie_word_embeddings": False}, "tie_word_embeddings"),
    ({"n_head": 3}, "multiple of n_head"),
    ({"n_embd": None}, "missing key 'n_embd'"),
])
def test_refused_configs(tmp_path, change, fragment):
    d = hf_dir(tmp_path)
    rewrite_config(d, **change)
    expect_error(d, "config.json", fragment)


def test_gelu_pytorch_tanh_is_accepted(tmp_path):
    d = hf_dir(tmp_path)
    rewrite_config(d, activation_function="gelu_pytorch_tanh")
    assert GPT.from_pretrained(d).config.n_embd == 8


def test_bad_config_json(tmp_path):
    d = hf_dir(tmp_path)
    (d / "config.json").write_text("{ not json")
    expect_error(d, "config.json", "JSON")


# --------------------------------------------------------------------------------------------- state dicts
def test_state_dict_round_trip_keeps_the_same_arrays():
    a, b = GPT(CFG, seed=1), GPT(CFG, seed=2)
    arrays = [p for p in b.parameters()]
    sd = a.state_dict()
    sd["transformer.wpe.weight"][:] = 0  # a copy: does not touch a
    assert np.asarray(a.named_parameters()[1][1]).any()
    b.load_state_dict(a.state_dict())
    assert all(x is y for x, y in zip(arrays, b.parameters())), "the optimizer's arrays must stay the model's"
    for (_, x), (_, y) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(x, y)


def test_load_state_dict_errors():
    model = GPT(CFG)
    sd = model.state_dict()
    with pytest.raises(ValueError, match="missing keys.*transformer.ln_f.bias"):
        model.load_state_dict({k: v for k, v in sd.items() if k != "transformer.ln_f.bias"})
    with pytest.raises(ValueError, match="unexpected keys.*bogus"):
        model.load_state_dict({**sd, "bogus": np.zeros(1, np.float32)})
    with pytest.raises(ValueError, match=r"transformer.wte.weight has shape \(100, 48\)"):
        model.load_state_dict({**sd, "transformer.wte.weight": np.zeros((100, 48), np.float32)})
    before = model.state_dict()
    model.load_state_dict({"transformer.ln_f.bias": np.ones(48, np.float32)}, strict=False)
    after = model.state_dict()
    assert (after["transformer.ln_f.bias"] == 1).all()
    np.testing.assert_array_equal(after["transformer.wte.weight"], before["transformer.wte.weight"])
