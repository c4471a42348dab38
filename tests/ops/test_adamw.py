"""adamw_step on every backend vs NumPy float64 and torch.optim.AdamW over several steps (weight decay, grad_scale);
global_norm (sum of squares over a list of tensors) vs float64."""
import numpy as np
import pytest

from backends import large, on_backends
from conftest import randn
from gptx import _core, ops
from reference import adamw, f64

SIZES = [1, 3, 17, 97, 1003, 40000, large(1 << 20)]  # 40000 is above the CPU kernels' parallel threshold
HP = dict(lr=1e-2, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1)


def check_state(backend, got, expected, what):
    for name, g, e in zip(("param", "m", "v"), got, expected):
        backend.assert_close(g, e, what=f"{what} {name}")


@on_backends(threads=True)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("weight_decay,grad_scale", [(0.0, 1.0), (0.1, 0.37)], ids=["plain", "wd-scaled"])
def test_steps_vs_reference(backend, threads, rng, n, weight_decay, grad_scale):
    """Each step from the kernel's own float32 state matches one float64 reference step."""
    state = [backend.put(randn(rng, n)), backend.put(np.zeros(n)), backend.put(np.zeros(n))]
    hp = dict(HP, weight_decay=weight_decay)
    for step in range(1, 6):
        g = randn(rng, n, scale=2.0)
        p, m, v = map(backend.get, state)
        expected = adamw(p, g, m, v, step=step, grad_scale=grad_scale, **hp)
        ops.adamw_step(state[0], backend.put(g), state[1], state[2], step=step, grad_scale=grad_scale, **hp)
        check_state(backend, state, expected, f"adamw n={n} step={step} wd={weight_decay} grad_scale={grad_scale}")


@on_backends(threads=True)
def test_large_step_count_and_tiny_grads(backend, threads, rng):
    # late steps (bias corrections ~1) and gradients near eps
    n = 97
    p, m, v = randn(rng, n), randn(rng, n, scale=1e-3), np.abs(randn(rng, n, scale=1e-6))
    g = randn(rng, n, scale=1e-7)
    expected = adamw(p, g, m, v, step=10000, **HP)
    state = list(map(backend.put, (p, m, v)))
    ops.adamw_step(state[0], backend.put(g), state[1], state[2], step=10000, **HP)
    check_state(backend, state, expected, "adamw step 10000")


@on_backends(kinds=("cuda",))
def test_matches_reference_kernel_bitwise(backend, rng):
    # the CUDA kernel does the same double-precision arithmetic as the scalar reference kernel
    n = 10007
    p0, g, m0, v0 = randn(rng, n), randn(rng, n), randn(rng, n, scale=1e-3), np.abs(randn(rng, n, scale=1e-4))
    pc, mc, vc = p0.copy(), m0.copy(), v0.copy()
    before = _core.cpu_isa()
    _core.set_cpu_isa("reference")
    try:
        ops.adamw_step(pc, g, mc, vc, step=7, grad_scale=0.5, **HP)
    finally:
        _core.set_cpu_isa(before)
    p, m, v = map(backend.put, (p0, m0, v0))
    ops.adamw_step(p, backend.put(g), m, v, step=7, grad_scale=0.5, **HP)
    for name, got, want in (("m", m, mc), ("v", v, vc), ("param", p, pc)):
        backend.assert_equal(got, want, f"adamw {name} vs the reference kernel")


@on_backends(threads=True)
@pytest.mark.parametrize("n", [17, 1003, 40000])
def test_vs_torch(backend, threads, rng, n):
    torch = pytest.importorskip("torch")
    weight_decay, grad_scale = 0.1, 0.5
    p = randn(rng, n)
    state = [backend.put(p), backend.put(np.zeros(n)), backend.put(np.zeros(n))]
    tp = torch.nn.Parameter(torch.from_numpy(p.copy()))
    opt = torch.optim.AdamW([tp], lr=HP["lr"], betas=(HP["beta1"], HP["beta2"]), eps=HP["eps"],
                            weight_decay=weight_decay, foreach=False)
    for step in range(1, 8):
        g = randn(rng, n)
        tp.grad = torch.from_numpy(g * np.float32(grad_scale))  # torch sees the already scaled gradient
        opt.step()
        ops.adamw_step(state[0], backend.put(g), state[1], state[2], lr=HP["lr"], beta1=HP["beta1"],
                       beta2=HP["beta2"], eps=HP["eps"], weight_decay=weight_decay, step=step, grad_scale=grad_scale)
        st = opt.state[tp]
        check_state(backend, state, (tp.detach().numpy(), st["exp_avg"].numpy(), st["exp_avg_sq"].numpy()),
                    f"adamw vs torch n={n} step={step}")


@on_backends(threads=True)
def test_deterministic_rerun(backend, threads, rng):
    n = 40000
    p0, g = randn(rng, n), randn(rng, n)
    runs = []
    for _ in range(2):
        p, m, v, gd = backend.put(p0), backend.put(np.zeros(n)), backend.put(np.zeros(n)), backend.put(g)
        for step in (1, 2):
            ops.adamw_step(p, gd, m, v, step=step, grad_scale=0.7, **HP)
        runs.append([backend.get(t) for t in (p, m, v)] + [ops.global_norm([p, gd, m])])
    for x1, x2 in zip(*runs):
        np.testing.assert_array_equal(x1, x2)


@on_backends(dtypes=("float32", "bfloat16"), threads=True)
@pytest.mark.parametrize("shapes", [[1], [3, 17], [33, (5, 7)], [97, 1003, 40000], large([5000001])], ids=str)
def test_global_norm(backend, dtype, threads, rng, shapes):
    ts = [backend.put_and_values(randn(rng, *np.atleast_1d(s), scale=3.0), dtype) for s in shapes]
    got = ops.global_norm([t for t, _ in ts])
    expected = np.sqrt(sum((f64(values) ** 2).sum() for _, values in ts))
    # summed in double from the (rounded) values: the float32 bound holds whatever the dtype
    backend.assert_close(np.array(got), np.array(expected), what=f"global_norm {dtype} {shapes}")


@pytest.mark.slow
@on_backends(threads=True)
def test_global_norm_deterministic(backend, threads, rng):
    ts = [backend.put(randn(rng, 3000001))]
    assert ops.global_norm(ts) == ops.global_norm(ts)
