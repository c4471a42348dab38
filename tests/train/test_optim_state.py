"""AdamW.load_state_dict restores moments exactly or refuses: float32 of the parameters' shapes only (a converted
float16/float64/big-endian moment would resume a different run silently), a valid step, the expected layout."""
import numpy as np
import pytest

import gptx
from gptx.model import GPT, GPTConfig
from gptx.optim import AdamW

CONFIG = dict(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=70)


def optimizer():
    model = GPT(GPTConfig(**CONFIG), seed=0)
    return AdamW(model.named_parameters(), model.grads, lr=1e-2, flat=model.flat_buffers())


def state(opt, step=3):
    rng = np.random.default_rng(0)
    return {"step": step, "m": {n: rng.random(a.shape, dtype=np.float32) for n, a in opt.m.items()},
            "v": {n: rng.random(a.shape, dtype=np.float32) for n, a in opt.v.items()}}


def test_float32_round_trip_is_exact():
    opt = optimizer()
    sd = state(opt)
    sd["m"]["transformer.wpe.weight"] = gptx.Tensor(sd["m"]["transformer.wpe.weight"])  # Tensors are taken too
    opt.load_state_dict(sd)
    back = opt.state_dict()
    assert back["step"] == 3
    for key in ("m", "v"):
        for n, a in sd[key].items():
            assert np.array_equal(back[key][n], np.asarray(a)), (key, n)


@pytest.mark.parametrize("dtype", ["float64", "float16", ">f4", "int32"])
def test_other_dtypes_are_refused(dtype):
    opt = optimizer()
    sd = state(opt)
    name = "transformer.h.0.attn.c_attn.weight"
    sd["v"][name] = sd["v"][name].astype(dtype)
    before = opt.state_dict()
    with pytest.raises(TypeError, match=r"v\['transformer.h.0.attn.c_attn.weight'\].*expected float32"):
        opt.load_state_dict(sd)
    after = opt.state_dict()  # nothing was half loaded
    assert after["step"] == before["step"]
    assert all(np.array_equal(after["m"][n], before["m"][n]) for n in before["m"])


@pytest.mark.parametrize("change, error, match", [
    (lambda sd: sd["m"].__setitem__("transformer.wpe.weight", np.zeros((3, 16), np.float32)), ValueError, "shape"),
    (lambda sd: sd.__setitem__("step", -1), ValueError, "step"),
    (lambda sd: sd.__setitem__("step", 2.5), ValueError, "step"),
    (lambda sd: sd.pop("v"), ValueError, "'step', 'm' and 'v'"),
    (lambda sd: sd.__setitem__("m", [1, 2]), ValueError, "m must be a dict"),
    (lambda sd: sd["m"].__setitem__("transformer.wpe.weight", [[0.0] * 16] * 8), TypeError, "must be an array"),
])
def test_bad_state_is_a_clear_error(change, error, match):
    opt = optimizer()
    sd = state(opt)
    change(sd)
    with pytest.raises(error, match=match):
        opt.load_state_dict(sd)
