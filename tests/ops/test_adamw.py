"""adamw_step vs NumPy float64 and torch.optim.AdamW over several steps (weight decay, grad_scale); global_norm."""
import numpy as np
import pytest

from conftest import randn
from gptx import ops
from reference import adamw, f64
from tolerances import assert_close

SIZES = [1, 3, 17, 97, 1003, 40000]  # 40000 is above the kernels' parallel threshold
HP = dict(lr=1e-2, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1)


def state(rng, n):
    return randn(rng, n), np.zeros(n, np.float32), np.zeros(n, np.float32)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("weight_decay,grad_scale", [(0.0, 1.0), (0.1, 0.37)], ids=["plain", "wd-scaled"])
def test_steps_vs_reference(isa, threads, rng, n, weight_decay, grad_scale):
    """Each step from the kernel's own float32 state matches one float64 reference step."""
    p, m, v = state(rng, n)
    hp = dict(HP, weight_decay=weight_decay)
    for step in range(1, 6):
        g = randn(rng, n, scale=2.0)
        ep, em, ev = adamw(p, g, m, v, step=step, grad_scale=grad_scale, **hp)
        ops.adamw_step(p, g, m, v, step=step, grad_scale=grad_scale, **hp)
        what = f"adamw n={n} step={step} wd={weight_decay} grad_scale={grad_scale}"
        assert_close(m, em, what=what + " m")
        assert_close(v, ev, what=what + " v")
        assert_close(p, ep, what=what + " param")


def test_large_step_count_and_tiny_grads(isa, threads, rng):
    # late steps (bias corrections ~1) and gradients near eps
    n = 97
    p, m, v = randn(rng, n), randn(rng, n, scale=1e-3), np.abs(randn(rng, n, scale=1e-6))
    g = randn(rng, n, scale=1e-7)
    ep, em, ev = adamw(p, g, m, v, step=10000, **HP)
    ops.adamw_step(p, g, m, v, step=10000, **HP)
    assert_close(m, em, what="adamw step 10000 m")
    assert_close(v, ev, what="adamw step 10000 v")
    assert_close(p, ep, what="adamw step 10000 param")


@pytest.mark.parametrize("n", [17, 1003, 40000])
def test_vs_torch(isa, threads, rng, n):
    torch = pytest.importorskip("torch")
    weight_decay, grad_scale = 0.1, 0.5
    p, m, v = state(rng, n)
    tp = torch.nn.Parameter(torch.from_numpy(p.copy()))
    opt = torch.optim.AdamW([tp], lr=HP["lr"], betas=(HP["beta1"], HP["beta2"]), eps=HP["eps"],
                            weight_decay=weight_decay, foreach=False)
    for step in range(1, 8):
        g = randn(rng, n)
        tp.grad = torch.from_numpy(g * np.float32(grad_scale))  # torch sees the already scaled gradient
        opt.step()
        ops.adamw_step(p, g, m, v, lr=HP["lr"], beta1=HP["beta1"], beta2=HP["beta2"], eps=HP["eps"],
                       weight_decay=weight_decay, step=step, grad_scale=grad_scale)
        st = opt.state[tp]
        what = f"adamw vs torch n={n} step={step}"
        assert_close(m, st["exp_avg"].numpy(), what=what + " m")
        assert_close(v, st["exp_avg_sq"].numpy(), what=what + " v")
        assert_close(p, tp.detach().numpy(), what=what + " param")


def test_deterministic_rerun(isa, threads, rng):
    n = 40000
    p0, g = randn(rng, n), randn(rng, n)
    runs = []
    for _ in range(2):
        p, m, v = p0.copy(), np.zeros(n, np.float32), np.zeros(n, np.float32)
        for step in (1, 2):
            ops.adamw_step(p, g, m, v, step=step, grad_scale=0.7, **HP)
        runs.append((p, m, v, ops.global_norm([p, g, m])))
    for x1, x2 in zip(*runs):
        np.testing.assert_array_equal(x1, x2)


@pytest.mark.parametrize("sizes", [[1], [3, 17], [97, 1003, 40000]], ids=str)
def test_global_norm(isa, threads, rng, sizes):
    ts = [randn(rng, n, scale=3.0) for n in sizes]
    got = ops.global_norm(ts)
    expected = np.sqrt(sum((f64(t) ** 2).sum() for t in ts))
    assert_close(np.array(got), np.array(expected), what=f"global_norm {sizes}")


def test_reference_backend(reference_backend, rng):
    n = 97
    p, m, v = state(rng, n)
    for step in range(1, 4):
        g = randn(rng, n)
        ep, em, ev = adamw(p, g, m, v, step=step, grad_scale=0.5, **HP)
        ops.adamw_step(p, g, m, v, step=step, grad_scale=0.5, **HP)
        assert_close(m, em, what=f"reference adamw step {step} m")
        assert_close(v, ev, what=f"reference adamw step {step} v")
        assert_close(p, ep, what=f"reference adamw step {step} param")
    ts = [randn(rng, 33), randn(rng, 5, 7)]
    assert_close(np.array(ops.global_norm(ts)), np.sqrt(sum((f64(t) ** 2).sum() for t in ts)),
                 what="reference global_norm")
