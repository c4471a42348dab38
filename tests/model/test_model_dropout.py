"""GPT with dropout: a training-mode pass equals transformers' GPT-2 in float64 with the same masks (logits, loss, every
gradient), eval mode equals dropout 0 bit for bit, masks are a function of (dropout_seed, dropout_step)."""
import copy
import pickle

import numpy as np
import pytest

import dropout_reference as dref
import gptx
from gpt2_reference import REL_SCALE, close, random_batch, random_hf_model, reference
from gptx.model import DROPOUT_ATTN, DROPOUT_ATTN_RESID, DROPOUT_EMBED, DROPOUT_MLP_RESID, GPT, GPTConfig
from tolerances import assert_close

torch = pytest.importorskip("torch")
modeling_gpt2 = pytest.importorskip("transformers.models.gpt2.modeling_gpt2")


@pytest.fixture(autouse=True)
def two_threads():
    before = gptx.get_num_threads()
    gptx.set_num_threads(2)
    yield
    gptx.set_num_threads(before)


class FixedMask(torch.nn.Module):
    """Multiplies by a fixed factor tensor (the generator's mask times 1/(1-p)): transformers' dropout, made
    deterministic so the float64 reference applies exactly gptx's masks."""

    def __init__(self, factors):
        super().__init__()
        self.factors = torch.as_tensor(factors)

    def forward(self, x):
        return x * self.factors.to(x.dtype)


def masked_hf(hf, p, seed, step, B, T):
    """A float64-ready copy of `hf` whose four dropout places multiply by gptx's masks for (seed, step)."""
    m = copy.deepcopy(hf).eval()
    cfg = m.config
    C, NH, L = cfg.n_embd, cfg.n_head, cfg.n_layer
    m.transformer.drop = FixedMask(dref.factors(p, seed, step, 0, DROPOUT_EMBED, B * T, C).reshape(B, T, C))
    attn = {}
    for l, block in enumerate(m.transformer.h):
        block.attn.resid_dropout = FixedMask(
            dref.factors(p, seed, step, l, DROPOUT_ATTN_RESID, B * T, C).reshape(B, T, C))
        block.mlp.dropout = FixedMask(dref.factors(p, seed, step, l, DROPOUT_MLP_RESID, B * T, C).reshape(B, T, C))
        attn[l] = torch.as_tensor(dref.factors(p, seed, step, l, DROPOUT_ATTN, B * NH * T, T).reshape(B, NH, T, T))
    return m, attn


def eager_with_masks(attn_masks):
    """transformers' eager attention with the probabilities multiplied by layer l's mask (module.layer_idx)."""

    def forward(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
        w = torch.matmul(query, key.transpose(-1, -2)) * scaling
        if attention_mask is not None:
            w = w + attention_mask
        w = torch.nn.functional.softmax(w, dim=-1).type(value.dtype)
        w = w * attn_masks[module.layer_idx].to(w.dtype)
        return torch.matmul(w, value).transpose(1, 2), w

    return forward


@pytest.mark.parametrize("shape,B,T,p", [((2, 3, 48, 64, 101), 2, 29, 0.2), ((1, 2, 16, 32, 53), 3, 32, 0.5)],
                         ids=["L2-T29-p0.2", "L1-T32-p0.5"])
def test_training_pass_matches_transformers_with_the_same_masks(tmp_path, rng, monkeypatch, shape, B, T, p):
    hf = random_hf_model(shape, seed=int(rng.integers(2**31)))
    hf.config.resid_pdrop = hf.config.embd_pdrop = hf.config.attn_pdrop = p
    hf.save_pretrained(tmp_path)
    model = GPT.from_pretrained(tmp_path)
    assert model.config.dropout == pytest.approx(p) and not model.training  # read from the config, eval mode
    model.train()
    seed, step = int(rng.integers(2**40)), int(rng.integers(10**6))
    model.dropout_seed, model.dropout_step = seed, step
    idx, targets = random_batch(rng, B, T, shape[4], 0.1)
    logits, loss = model.forward(idx, targets)
    assert model.dropout_step == step + 1
    model.backward()

    ref_model, attn_masks = masked_hf(hf, p, seed, step, B, T)
    monkeypatch.setattr(modeling_gpt2, "eager_attention_forward", eager_with_masks(attn_masks))
    ref_logits, ref_loss, ref_grads = reference(ref_model, idx, targets)
    close(logits, ref_logits, "logits")
    assert_close(float(loss), ref_loss, scale=REL_SCALE * ref_loss, what="loss")
    for name, g in ref_grads.items():
        close(model.grads[name], g, name)
    # and the masks matter: without them the reference is another function
    plain_logits = reference(hf, idx)[0]
    assert np.abs(plain_logits - ref_logits).max() > 1e-2


def test_eval_mode_equals_dropout_zero(rng):
    shape = dict(n_layer=2, n_head=2, n_embd=32, block_size=24, vocab_size=67)
    with_drop = GPT(GPTConfig(**shape, dropout=0.3), seed=4)
    without = GPT(GPTConfig(**shape), seed=4)
    assert with_drop.training and with_drop.dropout_seed == 4
    idx, targets = random_batch(rng, 3, 24, 67)
    ref_logits, ref_loss = (np.asarray(t).copy() for t in without.forward(idx, targets))
    without.backward()
    with_drop.eval()
    logits, loss = with_drop.forward(idx, targets)
    np.testing.assert_array_equal(np.asarray(logits), ref_logits)
    np.testing.assert_array_equal(np.asarray(loss), ref_loss)
    with_drop.backward()
    for name, g in without.grads.items():
        np.testing.assert_array_equal(np.asarray(with_drop.grads[name]), np.asarray(g), err_msg=name)
    assert with_drop.dropout_step == 0  # eval passes draw no masks
    with_drop.train()
    assert float(with_drop.forward(idx, targets)[1]) != float(ref_loss)


def test_masks_are_a_function_of_seed_and_step(rng):
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=16, vocab_size=40, dropout=0.25), seed=1)
    idx, targets = random_batch(rng, 2, 16, 40)

    def loss_and_grads(seed, step):
        model.zero_grad()
        model.dropout_seed, model.dropout_step = seed, step
        loss = float(model.forward_loss(idx, targets))
        model.backward()
        return loss, np.asarray(model.flat_buffers()[1]).copy()

    a, b = loss_and_grads(3, 10), loss_and_grads(3, 10)
    assert a[0] == b[0] and np.array_equal(a[1], b[1])
    assert loss_and_grads(3, 11)[0] != a[0] and loss_and_grads(4, 10)[0] != a[0]
    model.dropout_step = 10
    model.forward_loss(idx, targets)
    model.forward_loss(idx, targets)
    assert model.dropout_step == 12  # each training pass draws new masks
    model.dropout_step = -1
    with pytest.raises(ValueError, match="dropout_step"):
        model.forward_loss(idx, targets)


def test_generation_never_drops(rng):
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=32, vocab_size=50, dropout=0.5), seed=2)
    assert model.training
    tokens = model.generate([[1, 2, 3]], 10, temperature=0)
    assert model.dropout_step == 0
    assert model.eval().generate([[1, 2, 3]], 10, temperature=0) == tokens


def test_mode_and_dropout_state_travel_with_copies():
    model = GPT(GPTConfig(n_layer=1, n_head=1, n_embd=8, block_size=8, vocab_size=11, dropout=0.1), seed=3)
    model.dropout_step = 7
    model.eval()
    for other in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model), model.to("cpu")):
        assert (other.training, other.dropout_seed, other.dropout_step) == (False, 3, 7)
        assert other.config.dropout == 0.1
    assert "dropout=0.1" in repr(model)
    with pytest.raises(TypeError, match="mode must be a bool"):
        model.train("yes")
