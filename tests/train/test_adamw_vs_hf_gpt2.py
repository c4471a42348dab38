"""Five clipped AdamW steps of gptx's GPT vs transformers' GPT2LMHeadModel (float64) from the same weights, the way
gptx.Trainer steps: loss and gradient norm stay in device tensors, one AdamW call over the flat buffers clips."""
import numpy as np
import pytest

import gptx
from gptx.model import GPT, GPTConfig
from gptx.optim import AdamW, clip_coefficient
from tolerances import assert_close

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

SHAPE = dict(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=101)  # 101: exercises the padded vocab
HP = dict(lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
MAX_NORM = 0.5
# Adam's update is lr * g / (|g| + eps): for an element whose gradient is near eps = 1e-8 (e.g. key weights, whose
# gradient mostly cancels because softmax ignores what all keys share) its derivative in g is lr / eps = 1e6, so the
# float32 rounding of such a gradient (~1e-11) moves the update by ~1e-5 (0.1% of lr = 1e-2). Measured: typically
# 1e-7, worst seen 2.5e-5 after 5 steps. Scale 50 on the table's atol (2e-6 -> 1e-4 = 1% of one step) covers that
# with margin; the rtol is unchanged, and the loss and gradient norm are compared at the plain tolerances.
PARAM_SCALE = 50.0


def hf_model(config):
    cfg = transformers.GPT2Config(
        n_layer=config.n_layer, n_head=config.n_head, n_embd=config.n_embd, n_positions=config.block_size,
        vocab_size=config.vocab_size, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        layer_norm_epsilon=config.layer_norm_epsilon, bos_token_id=None, eos_token_id=None,
        attn_implementation="eager",
    )
    return transformers.GPT2LMHeadModel(cfg).double()


def without_key_bias(a, C):
    return np.concatenate([a[:C], a[2 * C:]])


def test_five_clipped_adamw_steps_match_transformers(rng):
    config = GPTConfig(**SHAPE)
    model = GPT(config, seed=1)
    # every parameter random (the default init leaves biases 0 and layernorms 1, which would hide their updates)
    sd = {n: (p + rng.standard_normal(p.shape).astype(np.float32) * 0.05) for n, p in model.state_dict().items()}
    model.load_state_dict(sd)
    ref = hf_model(config)
    missing, unexpected = ref.load_state_dict({n: torch.from_numpy(a.astype(np.float64)) for n, a in sd.items()},
                                              strict=False)
    assert not unexpected and all(k == "lm_head.weight" for k in missing), (missing, unexpected)
    assert ref.lm_head.weight.data_ptr() == ref.transformer.wte.weight.data_ptr()  # tied
    tparams = dict(ref.named_parameters())
    assert sorted(tparams) == sorted(sd)

    opt = AdamW(model.named_parameters(), model.grads, **HP, flat=model.flat_buffers())
    norm_t = gptx.Tensor.empty([], "float32")
    decay = [p for p in tparams.values() if p.ndim >= 2]
    no_decay = [p for p in tparams.values() if p.ndim < 2]
    topt = torch.optim.AdamW([{"params": decay, "weight_decay": HP["weight_decay"]},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=HP["lr"], betas=HP["betas"], eps=HP["eps"], foreach=False)
    clipped, C = 0, config.n_embd
    ever_sensitive = {}
    for step in range(1, 6):
        x = rng.integers(0, config.vocab_size, size=(4, config.block_size))
        y = rng.integers(0, config.vocab_size, size=(4, config.block_size))
        y[0, :5] = -100
        model.zero_grad()
        loss = model.forward_loss(x, y)
        model.backward()
        gptx.ops.global_norm([model.flat_buffers()[1]], out=norm_t)
        opt.step(norm=norm_t, max_norm=MAX_NORM)  # the kernel clips
        loss, norm = float(loss), float(norm_t)
        scale = clip_coefficient(norm, MAX_NORM)

        topt.zero_grad()
        logits = ref(torch.from_numpy(x)).logits
        tloss = torch.nn.functional.cross_entropy(logits.reshape(-1, config.vocab_size),
                                                  torch.from_numpy(y).reshape(-1), ignore_index=-100)
        tloss.backward()
        tnorm = torch.nn.utils.clip_grad_norm_(list(tparams.values()), MAX_NORM, foreach=False)
        topt.step()

        clipped += scale < 1.0
        assert loss == pytest.approx(tloss.item(), rel=2e-5), f"step {step} loss"
        assert norm == pytest.approx(float(tnorm), rel=1e-4), f"step {step} grad norm"
        for name, p in model.named_parameters():
            st = topt.state[tparams[name]]
            mine, theirs = np.asarray(p), tparams[name].detach().numpy()
            m_mine, m_theirs = np.asarray(opt.m[name]), st["exp_avg"].numpy()
            if name.endswith("attn.c_attn.bias"):
                mine, theirs, m_mine, m_theirs = (without_key_bias(a, C) for a in (mine, theirs, m_mine, m_theirs))
                # the key bias only adds q.b to every score of a row, which softmax ignores: its gradient is 0 up
                # to rounding, and Adam turns rounding noise / (|noise| + eps) into steps anywhere in [-lr, lr]
                kb = np.asarray(p)[C:2 * C] - tparams[name].detach().numpy()[C:2 * C]
                assert np.abs(kb).max() <= 2 * step * HP["lr"]
            v_theirs = st["exp_avg_sq"].numpy()
            if name.endswith("attn.c_attn.bias"):
                v_theirs = without_key_bias(v_theirs, C)
            # float32 gradients carry an absolute error of ~1e-7 of the tensor's LARGEST gradient; on an element whose
            # own gradient is 1e-4 of that or less, the relative error reaches 0.1% and more, and Adam's normalised
            # update (~lr whatever the gradient's size) can move anywhere in [-lr, lr] per step. Those elements get
            # the hard bound of the update's size; every other element the table's tolerance.
            # (once off, an element stays off by that much: the mask keeps every element that was ever sensitive)
            rms = np.sqrt(v_theirs)
            sensitive = ever_sensitive.get(name, False) | (rms < 1e-4 * rms.max())
            ever_sensitive[name] = sensitive
            assert np.abs(mine - theirs)[sensitive].max(initial=0.0) <= 2 * step * HP["lr"]
            assert_close(np.where(sensitive, theirs, mine), theirs, scale=PARAM_SCALE, what=f"step {step} {name}")
            assert_close(m_mine, m_theirs, what=f"step {step} {name} m")
    assert clipped >= 3, "the test must exercise clipping"
