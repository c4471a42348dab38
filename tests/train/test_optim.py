"""AdamW, clip_grad_norm and lr_schedule vs torch.optim.AdamW, torch.nn.utils.clip_grad_norm_ and closed forms."""
import math

import numpy as np
import pytest

from conftest import randn
import gptx
from gptx.model import GPT, GPTConfig
from gptx.optim import AdamW, clip_grad_norm, lr_schedule
from tolerances import assert_close

SHAPES = {"w": (7, 5), "emb": (11, 3), "b": (5,), "ln": (3,), "big": (200, 201)}  # big: above the parallel threshold


def make(rng):
    return {n: randn(rng, *s) for n, s in SHAPES.items()}


@pytest.mark.parametrize("max_norm", [None, 0.5], ids=["noclip", "clip"])
def test_adamw_vs_torch(rng, max_norm):
    torch = pytest.importorskip("torch")
    params = make(rng)
    grads = {n: np.zeros_like(p) for n, p in params.items()}
    tparams = {n: torch.nn.Parameter(torch.from_numpy(p.copy())) for n, p in params.items()}
    hp = dict(lr=3e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    opt = AdamW(list(params.items()), grads, **hp)
    decay = [t for n, t in tparams.items() if t.ndim >= 2]
    no_decay = [t for n, t in tparams.items() if t.ndim < 2]
    topt = torch.optim.AdamW([{"params": decay, "weight_decay": hp["weight_decay"]},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=hp["lr"], betas=hp["betas"], eps=hp["eps"], foreach=False)
    clipped = 0
    for step in range(1, 7):
        lr = lr_schedule(step - 1, 6, hp["lr"], warmup_steps=2, min_lr=3e-3)
        for n in params:
            grads[n][...] = randn(rng, *SHAPES[n], scale=0.05)
            tparams[n].grad = torch.from_numpy(grads[n].copy())
        norm, scale = clip_grad_norm(grads, max_norm)
        if max_norm is not None:
            tnorm = torch.nn.utils.clip_grad_norm_(list(tparams.values()), max_norm, foreach=False)
            assert math.isclose(norm, float(tnorm), rel_tol=1e-5)
            clipped += scale < 1.0
        else:
            assert scale == 1.0
        for g in topt.param_groups:
            g["lr"] = lr
        topt.step()
        opt.step(lr=lr, grad_scale=scale)
        assert opt.step_count == step
        for n in params:
            st = topt.state[tparams[n]]
            what = f"step {step} {n}"
            assert_close(opt.m[n], st["exp_avg"].numpy(), what=what + " m")
            assert_close(opt.v[n], st["exp_avg_sq"].numpy(), what=what + " v")
            assert_close(params[n], tparams[n].detach().numpy(), what=what + " param")
    if max_norm is not None:
        assert clipped >= 3, "the test must exercise clipping"


def test_weight_decay_only_on_matrices(rng):
    params = make(rng)
    before = {n: p.copy() for n, p in params.items()}
    grads = {n: np.zeros_like(p) for n, p in params.items()}  # zero gradient: only decay can move a parameter
    opt = AdamW(params, grads, lr=0.1, weight_decay=0.5)
    opt.step()
    for n, p in params.items():
        if p.ndim >= 2:
            np.testing.assert_allclose(p, before[n] * np.float32(1 - 0.1 * 0.5), rtol=1e-6)
        else:
            np.testing.assert_array_equal(p, before[n])


def test_state_dict_round_trip(rng):
    params = make(rng)
    grads = {n: randn(rng, *p.shape) for n, p in params.items()}
    opt = AdamW(params, grads, lr=1e-2)
    opt.step()
    opt.step()
    sd = opt.state_dict()
    m_id = id(opt.m["w"])
    p2 = {n: p.copy() for n, p in params.items()}
    opt2 = AdamW(p2, grads, lr=1e-2)
    opt2.load_state_dict(sd)
    assert id(opt.m["w"]) == m_id and opt2.step_count == 2
    opt.step()
    opt2.step()
    for n in params:
        np.testing.assert_array_equal(params[n], p2[n])
        np.testing.assert_array_equal(opt.v[n], opt2.v[n])
    bad = opt.state_dict()
    bad["m"]["w"] = np.zeros((2, 2), np.float32)
    with pytest.raises(ValueError, match="m\\['w'\\]"):
        opt2.load_state_dict(bad)
    del bad["v"]["b"]
    with pytest.raises(ValueError, match="missing"):
        opt2.load_state_dict({"step": 1, "m": sd["m"], "v": bad["v"]})


def _gpt_with_grads(seed):
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=70), seed=seed)
    r = np.random.default_rng(seed)
    for name, g in model.grads.items():
        g.copy_(r.standard_normal(g.shape, dtype=np.float32) * np.float32(0.05))
    return model


@pytest.mark.parametrize("max_norm", [0.0, 0.5], ids=["noclip", "clip"])
def test_flat_step_equals_one_step_per_parameter(max_norm):
    """One call over GPT's flat buffers (decay on the >= 2-D parameters' ranges, gaps and padding left at zero) gives
    what one call per parameter gives, bit for bit; the moments keep their per-name views and checkpoint names."""
    a, b = _gpt_with_grads(3), _gpt_with_grads(3)
    flat = AdamW(a.named_parameters(), a.grads, lr=1e-2, weight_decay=0.1, flat=a.flat_buffers())
    each = AdamW(b.named_parameters(), b.grads, lr=1e-2, weight_decay=0.1)
    norm = gptx.Tensor.zeros([])
    for _ in range(3):
        gptx.ops.global_norm([a.flat_buffers()[1]], out=norm)
        flat.step(norm=norm, max_norm=max_norm, norm_scale=0.5, grad_scale=0.5)
        each.step(norm=norm, max_norm=max_norm, norm_scale=0.5, grad_scale=0.5)
    np.testing.assert_array_equal(a.flat_buffers()[0], b.flat_buffers()[0])
    sa, sb = flat.state_dict(), each.state_dict()
    assert sa["step"] == sb["step"] == 3 and set(sa["m"]) == set(sb["m"]) == set(dict(a.named_parameters()))
    for key in ("m", "v"):
        for n in sb[key]:
            np.testing.assert_array_equal(sa[key][n], sb[key][n], err_msg=f"{key} {n}")
    # the bytes that belong to no parameter (alignment gaps, wte's padding rows) stayed zero
    outside = np.ones(a.flat_buffers()[0].size, dtype=bool)
    for _, p in a.named_parameters():
        off = (p.data_ptr - a.flat_buffers()[0].data_ptr) // 4
        outside[off:off + p.size] = False
    assert outside.sum() > 12 * 32  # wte's padding rows (70 -> 128) at least
    for buf in (a.flat_buffers()[0], flat._m_flat, flat._v_flat):
        assert not np.asarray(buf)[outside].any()
    each.load_state_dict(sa)  # one format: a flat optimizer's state loads into a per-parameter one and back
    flat.load_state_dict(each.state_dict())


@pytest.mark.parametrize("max_norm", [0.0, 1.0], ids=["noclip", "clip"])
@pytest.mark.parametrize("bad", [np.inf, np.nan])
def test_non_finite_norm_skips_the_update(max_norm, bad):
    model = _gpt_with_grads(4)
    opt = AdamW(model.named_parameters(), model.grads, lr=1e-2, flat=model.flat_buffers())
    before = np.array(model.flat_buffers()[0])
    norm = gptx.Tensor(np.array([bad], np.float32))
    opt.step(norm=norm, max_norm=max_norm)
    np.testing.assert_array_equal(model.flat_buffers()[0], before)
    assert not np.asarray(opt._m_flat).any() and not np.asarray(opt._v_flat).any()


def test_flat_buffers_must_hold_the_parameters(rng):
    model = _gpt_with_grads(5)
    other = _gpt_with_grads(5)
    with pytest.raises(ValueError, match="not a view of the flat buffers"):
        AdamW(model.named_parameters(), model.grads, flat=other.flat_buffers())


def test_adamw_checks_arguments(rng):
    p = {"w": randn(rng, 3, 3)}
    with pytest.raises(ValueError, match="no gradient"):
        AdamW(p, {})
    with pytest.raises(ValueError, match="shape"):
        AdamW(p, {"w": randn(rng, 3)})
    with pytest.raises(TypeError, match="float32"):
        AdamW(p, {"w": np.zeros((3, 3))})


def test_lr_schedule_values():
    lr, mn, warm, total = 1.0, 0.1, 10, 110
    assert lr_schedule(0, total, lr, warm, mn) == pytest.approx(0.1)
    assert lr_schedule(4, total, lr, warm, mn) == pytest.approx(0.5)
    assert lr_schedule(9, total, lr, warm, mn) == pytest.approx(1.0)
    assert lr_schedule(10, total, lr, warm, mn) == pytest.approx(1.0)      # cosine starts at the peak
    assert lr_schedule(60, total, lr, warm, mn) == pytest.approx(0.55)     # half way: (lr + min_lr) / 2
    assert lr_schedule(110, total, lr, warm, mn) == pytest.approx(0.1)
    assert lr_schedule(500, total, lr, warm, mn) == pytest.approx(0.1)
    vals = [lr_schedule(s, total, lr, warm, mn) for s in range(warm, total)]
    assert all(a >= b for a, b in zip(vals, vals[1:]))                    # monotone decay
    assert lr_schedule(0, 5, 2e-3, 0, 2e-3) == 2e-3                       # min_lr == lr: constant
    # warmup values do not depend on the total, so a run extended later shares them
    assert [lr_schedule(s, 8, lr, 4, mn) for s in range(4)] == [lr_schedule(s, 4, lr, 4, mn) for s in range(4)]


def test_clip_grad_norm_scales(rng):
    g = {"a": np.full((4,), 3.0, np.float32), "b": np.full((2, 2), 4.0, np.float32)}  # norm sqrt(36 + 64) = 10
    norm, scale = clip_grad_norm(g, 5.0)
    assert norm == pytest.approx(10.0) and scale == pytest.approx(0.5, rel=1e-6)
    assert clip_grad_norm(g, 20.0) == (pytest.approx(10.0), 1.0)
    assert clip_grad_norm(g, 0)[1] == 1.0
    norm, scale = clip_grad_norm(g, 5.0, grad_scale=0.25)   # accumulated sum of 4 means -> norm of the mean
    assert norm == pytest.approx(2.5) and scale == 1.0
    g["a"][0] = np.nan
    norm, scale = clip_grad_norm(g, 1.0)
    assert math.isnan(norm) and scale == 1.0
