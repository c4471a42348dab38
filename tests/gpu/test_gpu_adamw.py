"""CUDA adamw_step vs NumPy float64 (several steps, weight decay, grad_scale) and global_norm (sum of squares)."""
import numpy as np
import pytest

import gptx
from conftest import randn
from gptx import ops
from gpu_util import dev, host
from reference import adamw, f64
from tolerances import assert_close

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not gptx.cuda.is_available(), reason="no CUDA device")]

SIZES = [1, 3, 17, 97, 1003, 40000, 1 << 20]
HP = dict(lr=1e-2, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("weight_decay,grad_scale", [(0.0, 1.0), (0.1, 0.37)], ids=["plain", "wd-scaled"])
def test_steps_vs_reference(rng, n, weight_decay, grad_scale):
    p, m, v = dev(randn(rng, n)), dev(np.zeros(n, np.float32)), dev(np.zeros(n, np.float32))
    hp = dict(HP, weight_decay=weight_decay)
    for step in range(1, 4):
        g = randn(rng, n, scale=2.0)
        ep, em, ev = adamw(host(p), g, host(m), host(v), step=step, grad_scale=grad_scale, **hp)
        ops.adamw_step(p, dev(g), m, v, step=step, grad_scale=grad_scale, **hp)
        what = f"cuda adamw n={n} step={step} wd={weight_decay} grad_scale={grad_scale}"
        assert_close(host(m), em, backend="cuda", what=what + " m")
        assert_close(host(v), ev, backend="cuda", what=what + " v")
        assert_close(host(p), ep, backend="cuda", what=what + " param")


def test_matches_cpu_bitwise(rng):
    # the same double-precision arithmetic as the CPU reference kernel
    n = 10007
    p0, g, m0, v0 = randn(rng, n), randn(rng, n), randn(rng, n, scale=1e-3), np.abs(randn(rng, n, scale=1e-4))
    pc, mc, vc = p0.copy(), m0.copy(), v0.copy()
    from gptx import _core
    before = _core.cpu_isa()
    _core.set_cpu_isa("reference")
    try:
        ops.adamw_step(pc, g, mc, vc, step=7, grad_scale=0.5, **HP)
    finally:
        _core.set_cpu_isa(before)
    p, m, v = dev(p0), dev(m0), dev(v0)
    ops.adamw_step(p, dev(g), m, v, step=7, grad_scale=0.5, **HP)
    np.testing.assert_array_equal(host(m), mc)
    np.testing.assert_array_equal(host(v), vc)
    np.testing.assert_array_equal(host(p), pc)


def test_large_step_count_and_tiny_grads(rng):
    n = 97
    p, m, v = randn(rng, n), randn(rng, n, scale=1e-3), np.abs(randn(rng, n, scale=1e-6))
    g = randn(rng, n, scale=1e-7)
    ep, em, ev = adamw(p, g, m, v, step=10000, **HP)
    pd, md, vd = dev(p), dev(m), dev(v)
    ops.adamw_step(pd, dev(g), md, vd, step=10000, **HP)
    assert_close(host(md), em, backend="cuda", what="cuda adamw step 10000 m")
    assert_close(host(vd), ev, backend="cuda", what="cuda adamw step 10000 v")
    assert_close(host(pd), ep, backend="cuda", what="cuda adamw step 10000 param")


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("sizes", [[1], [3, 17], [97, 1003, 40000], [5000001]], ids=str)
def test_global_norm(rng, sizes, dtype):
    ts = [dev(randn(rng, n, scale=3.0), dtype) for n in sizes]
    got = ops.global_norm(ts)
    expected = np.sqrt(sum((host(t) ** 2).sum() for t in ts))
    assert_close(np.array(got), np.array(expected), backend="cuda", what=f"cuda global_norm {dtype} {sizes}")


def test_global_norm_deterministic(rng):
    ts = [dev(randn(rng, 3000001))]
    assert ops.global_norm(ts) == ops.global_norm(ts)
