"""The reductions a training step keeps native: the mean loss (cross_entropy_forward loss=), the global norm into a
tensor (global_norm out=), and AdamW over a whole flat buffer with weight-decay ranges and in-kernel clipping."""
import numpy as np
import pytest

from backends import on_backends
from conftest import randn
from gptx import Tensor, ops


def _scalar(backend):
    return Tensor(backend.poison((1,))) if backend.kind == "cpu" else backend.poison((1,))


@on_backends()
@pytest.mark.parametrize("N,V,Vp", [(1, 5, 5), (7, 13, 16), (97, 50, 64), (4099, 11, 16)])
def test_cross_entropy_mean_loss(backend, rng, N, V, Vp):
    logits = randn(rng, N, Vp)
    targets = rng.integers(0, V, N).astype(np.int32)
    targets[rng.random(N) < 0.3] = -100
    loss = _scalar(backend)
    losses, _ = ops.cross_entropy_forward(backend.put(logits), backend.put(targets), V=V, loss=loss)
    kept = targets != -100
    z = logits[:, :V].astype(np.float64)
    lse = np.log(np.exp(z - z.max(1, keepdims=True)).sum(1)) + z.max(1)
    if kept.any():
        want = np.mean((lse - z[np.arange(N), np.maximum(targets, 0)])[kept])
        assert float(loss) == pytest.approx(want, rel=1e-5, abs=1e-6)
        # the mean is of exactly the losses the op returned, summed in double
        assert float(loss) == pytest.approx(backend.get(losses)[kept].mean(), rel=1e-7)
    else:
        assert np.isnan(float(loss))


@on_backends()
def test_cross_entropy_mean_loss_all_ignored_and_empty(backend):
    loss = _scalar(backend)
    ops.cross_entropy_forward(backend.put(np.zeros((3, 4))), backend.put(np.full(3, -100, np.int32)), loss=loss)
    assert np.isnan(loss.item())
    loss = _scalar(backend)
    ops.cross_entropy_forward(backend.put(np.zeros((0, 4))), backend.put(np.zeros(0, np.int32)), loss=loss)
    assert np.isnan(loss.item())  # the mean of nothing, as torch gives


def test_cross_entropy_mean_loss_errors():
    logits, targets = np.zeros((2, 3), np.float32), np.zeros(2, np.int32)
    with pytest.raises(ValueError, match="cross_entropy_forward: argument 'loss' must have one element"):
        ops.cross_entropy_forward(logits, targets, loss=np.zeros(2, np.float32))
    with pytest.raises(TypeError, match="argument 'loss' must be float32"):
        ops.cross_entropy_forward(logits, targets, loss=np.zeros(1, np.int32))
    with pytest.raises(ValueError, match="argument 'loss' is read-only"):
        ro = np.zeros(1, np.float32)
        ro.flags.writeable = False
        ops.cross_entropy_forward(logits, targets, loss=ro)


@on_backends(threads=True)
def test_global_norm_into_tensor(backend, threads, rng):
    xs = [randn(rng, n) for n in (1, 7, 1000, 20001)]
    dev = [backend.put(x) for x in xs]
    out = _scalar(backend)
    assert ops.global_norm(dev, out=out) is out
    want = np.sqrt(sum(float((x.astype(np.float64) ** 2).sum()) for x in xs))
    assert float(out) == pytest.approx(want, rel=1e-7)  # double sums, one rounding to float32
    assert ops.global_norm(dev) == pytest.approx(want, rel=1e-12)
    empty = _scalar(backend)
    ops.global_norm([], out=empty)
    assert float(empty) == 0.0
    with pytest.raises(ValueError, match="global_norm: argument 'out' must have one element"):
        ops.global_norm(xs, out=np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="argument 'out' shares memory"):
        ops.global_norm([xs[2]], out=xs[2][:1])


def _adamw(backend, p, g, m, v, norm=None, **kw):
    p, m, v = backend.put(p), backend.put(m), backend.put(v)
    ops.adamw_step(p, backend.put(g), m, v, norm=None if norm is None else backend.put(norm), **kw)
    return backend.get(p), backend.get(m), backend.get(v)


@on_backends()
@pytest.mark.parametrize("n", [1, 37, 5000])
def test_adamw_decay_ranges_equal_per_segment_steps(backend, rng, n):
    p, g = randn(rng, n), randn(rng, n)
    m, v = randn(rng, n, scale=0.1), np.abs(randn(rng, n, scale=0.1))
    cuts = sorted(set(rng.integers(0, n + 1, 4).tolist()))
    ranges = [(cuts[i], cuts[i + 1]) for i in range(0, len(cuts) - 1, 2)]
    kw = dict(lr=0.05, beta1=0.9, beta2=0.95, eps=1e-8, step=3)
    got = _adamw(backend, p, g, m, v, weight_decay=0.3, decay_ranges=ranges, **kw)
    decayed = _adamw(backend, p, g, m, v, weight_decay=0.3, **kw)
    plain = _adamw(backend, p, g, m, v, weight_decay=0.0, **kw)
    mask = np.zeros(n, bool)
    for b, e in ranges:
        mask[b:e] = True
    for got_a, dec_a, plain_a in zip(got, decayed, plain):
        np.testing.assert_array_equal(got_a, np.where(mask, dec_a, plain_a))


@on_backends()
def test_adamw_clips_by_the_norm_tensor(backend, rng):
    n = 301
    p, g, m, v = randn(rng, n), randn(rng, n), np.zeros(n, np.float32), np.zeros(n, np.float32)
    norm = float(np.sqrt((g.astype(np.float64) ** 2).sum()))
    kw = dict(lr=0.01, step=1, weight_decay=0.1)
    for max_norm, norm_scale in [(1.0, 1.0), (1.0, 0.25), (1e6, 1.0), (0.0, 1.0)]:
        got = _adamw(backend, p, g, m, v, grad_scale=0.5, norm=np.array([norm], np.float32), max_norm=max_norm,
                     norm_scale=norm_scale, **kw)
        scaled = np.float32(np.float32(norm) * np.float32(norm_scale))
        clip = min(np.float32(1), np.float32(max_norm) / (scaled + np.float32(1e-6))) if max_norm > 0 else 1.0
        want = _adamw(backend, p, g, m, v, grad_scale=float(np.float32(0.5) * np.float32(clip)), **kw)
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)


@on_backends()
@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_adamw_skips_the_step_on_a_non_finite_norm(backend, rng, bad):
    n = 40
    p, g, m, v = randn(rng, n), randn(rng, n), randn(rng, n), np.abs(randn(rng, n))
    got = _adamw(backend, p, g, m, v, lr=0.1, step=2, norm=np.array([bad], np.float32), max_norm=1.0)
    for a, b in zip(got, (p, m, v)):
        np.testing.assert_array_equal(a, b)
    # also without clipping: a diverged gradient never reaches the weights
    got = _adamw(backend, p, g, m, v, lr=0.1, step=2, norm=np.array([bad], np.float32))
    np.testing.assert_array_equal(got[0], p)


def test_adamw_new_argument_errors():
    z = np.zeros(10, np.float32)
    args = (z.copy(), z, z.copy(), z.copy())
    with pytest.raises(ValueError, match="adamw_step: argument 'decay_ranges' must be sorted, disjoint"):
        ops.adamw_step(*args, lr=0.1, step=1, decay_ranges=[(5, 8), (2, 3)])
    with pytest.raises(ValueError, match="argument 'decay_ranges' ends at 11 but param has 10 elements"):
        ops.adamw_step(*args, lr=0.1, step=1, decay_ranges=[(0, 11)])
    with pytest.raises(ValueError, match="argument 'decay_ranges' must be"):
        ops.adamw_step(*args, lr=0.1, step=1, decay_ranges=[(0, 1, 2)])
    with pytest.raises(ValueError, match="argument 'norm' must have one element"):
        ops.adamw_step(*args, lr=0.1, step=1, norm=np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="argument 'max_norm' must be finite"):
        ops.adamw_step(*args, lr=0.1, step=1, max_norm=float("inf"))


def test_tensor_item_and_float():
    t = Tensor(np.array([2.5], np.float32))
    assert t.item() == 2.5 and float(t) == 2.5 and f"{t:.2f}" == "2.50"
    assert Tensor(np.array([[7]], np.int32)).item() == 7
    assert Tensor.zeros([], "float32").shape == ()
    with pytest.raises(ValueError, match="Tensor.item: only a tensor with one element"):
        Tensor(np.zeros(2, np.float32)).item()
