"""GPT internals: config, parameter layout and names, GPT-2 init statistics, buffer reuse, call order, bad input."""
import copy
import math
import pickle

import numpy as np
import pytest

import gptx
from gptx.model import GPT, GPTConfig, parameter_shapes

SMALL = GPTConfig(n_layer=2, n_head=3, n_embd=48, block_size=64, vocab_size=101)


@pytest.fixture(autouse=True)
def two_threads():
    before = gptx.get_num_threads()
    gptx.set_num_threads(2)
    yield
    gptx.set_num_threads(before)


def batch(rng, B, T, V=SMALL.vocab_size):
    return rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T))


# --------------------------------------------------------------------------------------------- config
def test_config_derived_values_and_dict_round_trip():
    c = GPTConfig()
    assert (c.padded_vocab_size, c.head_size) == (50304, 64)
    assert GPTConfig(vocab_size=64).padded_vocab_size == 64 and GPTConfig(vocab_size=65).padded_vocab_size == 128
    assert GPTConfig.from_dict(SMALL.to_dict()) == SMALL
    assert set(SMALL.to_dict()) == {"n_layer", "n_head", "n_embd", "block_size", "vocab_size", "layer_norm_epsilon",
                                    "dropout"}


@pytest.mark.parametrize("kwargs, fragment", [
    ({"n_embd": 50, "n_head": 3}, "multiple of n_head"),
    ({"n_layer": 0}, "n_layer must be a positive integer"),
    ({"vocab_size": 2.5}, "vocab_size must be a positive integer"),
    ({"layer_norm_epsilon": 0.0}, "layer_norm_epsilon"),
])
def test_config_rejects_bad_values(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        GPTConfig(**kwargs)


def test_config_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown key .n_ctx."):
        GPTConfig.from_dict({**SMALL.to_dict(), "n_ctx": 64})


# --------------------------------------------------------------------------------------------- parameters
def test_names_shapes_and_the_padded_table():
    model = GPT(SMALL)
    named = model.named_parameters()
    assert [(n, a.shape) for n, a in named] == parameter_shapes(SMALL)
    assert named[0][0] == "transformer.wte.weight" and named[-1][0] == "transformer.ln_f.bias"
    assert model.grads.keys() == dict(named).keys()
    for n, a in named:
        assert isinstance(a, gptx.Tensor) and a.dtype == "float32" and a.device == "cpu", n
        assert isinstance(model.grads[n], gptx.Tensor) and model.grads[n].shape == a.shape, n
        assert np.shares_memory(a, model._p.flat) and np.shares_memory(model.grads[n], model._g.flat), n
    wte = dict(named)["transformer.wte.weight"]
    assert np.shares_memory(wte, model._p.wte) and model._p.wte.shape == (128, 48)
    assert not np.asarray(model._p.wte)[SMALL.vocab_size:].any()
    C, L, V, BS = 48, 2, 101, 64
    assert model.num_parameters() == V * C + BS * C + L * (12 * C * C + 13 * C) + 2 * C


def test_gpt2_small_parameter_count():
    """124,439,808: GPT-2 small's published count (tied LM head counted once), from the layout alone."""
    assert sum(math.prod(s) for _, s in parameter_shapes(GPTConfig())) == 124_439_808


def test_init_statistics():
    cfg = GPTConfig(n_layer=4, n_head=4, n_embd=256, block_size=256, vocab_size=1000)
    model = GPT(cfg, seed=0)
    proj_std = 0.02 / math.sqrt(2 * cfg.n_layer)
    for name, a in model.named_parameters():
        a = np.asarray(a)  # a view of the CPU tensor
        if name.endswith(".bias"):
            assert not a.any(), name
        elif ".ln_" in name:
            assert (a == 1).all(), name
        else:
            want = proj_std if name.endswith("c_proj.weight") else 0.02
            # std of n >= 65536 normal samples: relative standard error 1/sqrt(2n) < 0.3%; allow 3%
            assert abs(a.std() / want - 1) < 0.03, (name, a.std(), want)
            assert abs(a.mean()) < 4 * want / math.sqrt(a.size), name
    same, other = GPT(cfg, seed=0), GPT(cfg, seed=1)
    np.testing.assert_array_equal(same._p.flat, model._p.flat)
    assert not np.array_equal(other._p.flat, model._p.flat)
    assert not np.asarray(model._g.flat).any()


# --------------------------------------------------------------------------------------------- buffers
def test_buffers_are_allocated_once_per_shape(rng):
    model = GPT(SMALL)
    params = model.parameters()
    idx, tg = batch(rng, 2, 37)
    model.forward(idx, tg)
    acts = model._acts
    logits_buffer = acts.logits
    for _ in range(2):
        logits, loss = model.forward(idx, tg)
        model.backward()
        assert model._acts is acts and acts.logits is logits_buffer
        # vocab 101 is padded to 128: the logits the user gets are a (B, T, 101) copy, the loss a new tensor
        assert logits.shape == (2, 37, 101) and not np.shares_memory(logits, logits_buffer)
        assert loss.shape == () and loss.dtype == "float32" and not np.shares_memory(loss, acts.losses)
    model.forward(*batch(rng, 1, 20))
    assert model._acts is not acts and model._acts.shape == (1, 20)
    assert all(a is b for a, b in zip(params, model.parameters()))


def test_unpadded_vocabulary_logits_are_the_buffer(rng):
    """vocab_size a multiple of 64: no padded columns to drop, so the logits are the model's buffer (no copy)."""
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=16, vocab_size=64))
    idx, tg = batch(rng, 2, 5, V=64)
    logits, loss = model.forward(idx, tg)
    assert logits.shape == (2, 5, 64) and np.shares_memory(logits, model._acts.logits)
    assert loss.shape == () and np.isfinite(float(loss))


def test_forward_loss_is_forward_without_the_logits(rng):
    model = GPT(SMALL, seed=2)
    idx, tg = batch(rng, 2, 9)
    tg[0, :4] = -100
    _, loss = model.forward(idx, tg)
    model.backward()
    grads = np.array(model._g.flat)
    model.zero_grad()
    out = gptx.Tensor.zeros([3])
    got = model.forward_loss(idx, tg, out=out[1])  # written where it is asked to be, e.g. a slot of a stats tensor
    model.backward()
    assert got.shape == () and np.shares_memory(got, out)
    assert np.asarray(out).tolist() == [0.0, float(loss), 0.0]
    np.testing.assert_array_equal(model._g.flat, grads)
    fresh = model.forward_loss(idx, tg)
    assert not np.shares_memory(fresh, out) and float(fresh) == float(loss)
    with pytest.raises(ValueError, match="targets are required"):
        model.forward_loss(idx, None)


def test_forward_is_deterministic_and_leaves_parameters_alone(rng):
    model = GPT(SMALL, seed=4)
    before = np.array(model._p.flat)
    idx, tg = batch(rng, 2, 37)
    l1, loss1 = model.forward(idx, tg)
    l1 = np.array(l1)
    model.backward()
    g1 = np.array(model._g.flat)
    model.zero_grad()
    l2, loss2 = model.forward(idx, tg)
    np.testing.assert_array_equal(l1, l2)
    model.backward()
    assert float(loss1) == float(loss2)
    np.testing.assert_array_equal(g1, model._g.flat)
    np.testing.assert_array_equal(before, model._p.flat)
    assert not np.asarray(model._g.wte)[SMALL.vocab_size:].any()


def test_initial_loss_is_near_log_vocab(rng):
    """Small random init gives near-uniform predictions: the loss starts at ~ln(V)."""
    model = GPT(SMALL)
    _, loss = model.forward(*batch(rng, 4, 64))
    assert abs(float(loss) - math.log(SMALL.vocab_size)) < 0.1


def test_ignored_targets_do_not_count(rng):
    model = GPT(SMALL)
    idx, tg = batch(rng, 2, 10)
    logits, _ = model.forward(idx, tg)
    lp = np.asarray(logits).astype(np.float64)
    lp = lp - np.log(np.exp(lp - lp.max(-1, keepdims=True)).sum(-1, keepdims=True)) - lp.max(-1, keepdims=True)
    nll = -np.take_along_axis(lp, tg[..., None], -1)[..., 0]
    masked = tg.copy()
    masked[:, ::3] = -100
    _, loss = model.forward(idx, masked)
    assert abs(float(loss) - nll[masked != -100].mean()) < 1e-5


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_copies_keep_the_views_and_are_independent(rng, how):
    model = GPT(SMALL, seed=6)
    idx, tg = batch(rng, 2, 9)
    ref = np.array(model.forward(idx, tg)[0])
    model.backward()
    twin = copy.deepcopy(model) if how == "deepcopy" else pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(twin._g.flat, model._g.flat)
    np.testing.assert_array_equal(twin.forward(idx)[0], ref)
    wte = dict(twin.named_parameters())["transformer.wte.weight"]
    assert np.shares_memory(wte, twin._p.wte) and not np.shares_memory(wte, model._p.flat)
    np.asarray(wte)[0] += 1  # the copy's table, as its forward sees it
    assert not np.array_equal(twin.forward(idx)[0], ref)
    np.testing.assert_array_equal(model.forward(idx)[0], ref)


# --------------------------------------------------------------------------------------------- call order, input
def test_backward_needs_a_forward_with_targets(rng):
    model = GPT(SMALL)
    with pytest.raises(RuntimeError, match="forward"):
        model.backward()
    idx, tg = batch(rng, 1, 5)
    model.forward(idx)
    with pytest.raises(RuntimeError, match="forward"):
        model.backward()
    model.forward(idx, tg)
    model.backward()
    with pytest.raises(RuntimeError, match="one backward per forward"):
        model.backward()


def test_any_integer_dtype(rng):
    model = GPT(SMALL)
    idx, tg = batch(rng, 2, 7)
    ref, loss = model.forward(idx.astype(np.int64), tg.astype(np.int64))
    ref = np.array(ref)
    for dt in (np.int32, np.uint8, np.int16, np.uint16):
        logits, l2 = model.forward(idx.astype(dt), tg.astype(dt) if dt != np.uint8 else tg.astype(np.int16))
        np.testing.assert_array_equal(logits, ref)
        assert float(l2) == float(loss)
    # a non-contiguous view works too
    big = np.zeros((2, 14), dtype=np.int64)
    big[:, ::2] = idx
    np.testing.assert_array_equal(model.forward(big[:, ::2])[0], ref)


@pytest.mark.parametrize("idx, targets, exc, fragment", [
    (np.zeros((2, 65), np.int64), None, ValueError, r"1 <= T <= 64"),
    (np.zeros(5, np.int64), None, ValueError, r"must be \(B, T\)"),
    (np.zeros((1, 5), np.float32), None, TypeError, "integer array"),
    (np.full((1, 5), 101), None, ValueError, r"in \[0, 101\)"),
    (np.full((1, 5), -1), None, ValueError, r"in \[0, 101\)"),
    (np.full((1, 5), -100), None, ValueError, r"idx values must be in \[0, 101\)"),
    (np.zeros((1, 5), np.int64), np.zeros((1, 4), np.int64), ValueError, "targets shape"),
    (np.zeros((1, 5), np.int64), np.full((1, 5), 101), ValueError, "targets values"),
    (np.zeros((1, 5), np.int64), np.array([[-100, -5, 0, 0, 0]]), ValueError, "targets values"),
    (np.zeros((0, 5), np.int64), None, ValueError, "B >= 1"),
])
def test_bad_input_is_refused(idx, targets, exc, fragment):
    model = GPT(SMALL)
    with pytest.raises(exc, match=fragment):
        model.forward(idx, targets)


def test_gpt_needs_a_config():
    with pytest.raises(TypeError, match="GPTConfig"):
        GPT({"n_layer": 2})
