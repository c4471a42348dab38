"""qmatmul_forward, pack_weight, unpack_weight: decoding weights in bf16 and int8 (q8_0-style blocks) on every CPU
path (generic, avx2, avx512, avx512_bf16 with vdpbf16ps / vpdpbusd, the scalar reference) at 1 and 2 threads.

Three independent checks: (1) the packing against a NumPy model of the format (bf16 = round-to-nearest-even of the
float32; int8 = NumPy's own float16 scale of max|w| / 127 and rint(w / scale)); (2) each kernel against the NumPy
float64 sum of the operands as the contract rounds them (activations to bf16, or to int8 per block of 32), within
the float32 row; (3) the result against the float64 product of the unquantized operands, within the format's
rounding bound (tolerances.py). Odd sizes: K not a multiple of 32 (padded with zeros), N not a multiple of 16, M
on both sides of the row blocks; NaN-poisoned outputs.
"""
import numpy as np
import pytest

import gptx
from gptx import _core, ops
from tolerances import assert_close, tolerance

PATHS = ("generic", "avx2", "avx512", "avx512_bf16", "reference")
# (M, K, N): ones, K below / across one block of 32, N below / across a panel of 16, row counts around the tiles
# (4 and 6 rows; from 64 rows bf16 takes AMX tiles of 32 rows where the CPU has them), GPT-2 small's qkv at decode,
# and sizes large enough for two threads.
SHAPES = [(1, 1, 1), (1, 33, 17), (3, 45, 33), (7, 64, 100), (5, 31, 16), (31, 96, 50), (64, 96, 33),
          (97, 160, 47), (130, 32, 65), (1, 768, 2304), (16, 1031, 19)]


# conftest's `isa` and `threads` fixtures, over every path that has a qmatmul kernel of its own (indirect: this
# list instead of conftest's).
on_every_path = pytest.mark.parametrize("isa", PATHS, indirect=True)


# ------------------------------------------------------------------------------------------------ NumPy model
def bf16_round(x):
    """float32 -> the float32 value of its bfloat16 rounding (nearest, ties to even)."""
    u = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return u.astype(np.uint32).view(np.float32)


def int8_weights(w):
    """w (N, K) -> (q (N, K) int, scale (N, K) float64 per element): q8_0 with a float16 scale, blocks along K."""
    N, K = w.shape
    Kp = -(-K // 32) * 32
    wp = np.zeros((N, Kp), np.float32)
    wp[:, :K] = w
    blocks = wp.reshape(N, Kp // 32, 32)
    d = (np.abs(blocks).max(axis=2) / np.float32(127)).astype(np.float16).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(d[..., None] > 0, np.rint(blocks / d[..., None]), 0)
    q = np.clip(q, -127, 127)
    return q.reshape(N, Kp)[:, :K], np.repeat(d, 32, axis=1)[:, :K].astype(np.float64)


def int8_activations(a):
    """a (M, K) -> (q, scale per element) as the contract quantizes activations: float32 scale max|a| / 127."""
    M, K = a.shape
    Kp = -(-K // 32) * 32
    ap = np.zeros((M, Kp), np.float32)
    ap[:, :K] = a
    blocks = ap.reshape(M, Kp // 32, 32)
    amax = np.abs(blocks).max(axis=2)
    with np.errstate(divide="ignore"):
        inv = np.where(amax > 0, np.float32(127) / amax, np.float32(0)).astype(np.float32)
    q = np.clip(np.rint((blocks * inv[..., None]).astype(np.float32)), -127, 127)
    d = (amax / np.float32(127)).astype(np.float32)
    return q.reshape(M, Kp)[:, :K], np.repeat(d, 32, axis=1)[:, :K].astype(np.float64)


def spec(a, w, fmt, bias):
    """float64 result of the contract: a (M, K), w (K, N) float32 -> (M, N)."""
    if fmt == "bf16":
        out = bf16_round(a).astype(np.float64) @ bf16_round(w).astype(np.float64)
    else:
        qw, dw = int8_weights(w.T)
        qa, da = int8_activations(a)
        M, K = a.shape
        out = np.zeros((M, w.shape[1]))
        for b0 in range(0, K, 32):  # per block: scales times the exact integer sum
            sl = slice(b0, min(K, b0 + 32))
            isum = qa[:, sl] @ qw[:, sl].T
            out += isum * np.outer(da[:, b0], dw[:, b0])
    return out + bias if bias is not None else out


def format_error_scale(a, w, fmt):
    """(M, N) scale of the format's worst-case rounding error (tolerances.py): bf16 sum |a w| (times 2^-7 there);
    int8 sum (|a| dw / 2 + |w| da / 2 + da dw / 4), the block steps' half."""
    a64, w64 = np.abs(a.astype(np.float64)), np.abs(w.astype(np.float64))
    if fmt == "bf16":
        return a64 @ w64
    _, dw = int8_weights(w.T)  # (N, K) per-element block scale (= step)
    _, da = int8_activations(a)  # (M, K)
    return a64 @ (dw.T / 2) + (da / 2) @ w64 + (da / 2) @ (dw.T / 2)


def assert_within_format_error(out, exact, a, w, fmt, what):
    rtol, atol = tolerance("cpu", f"{fmt}-weights")
    err = np.abs(np.asarray(out, np.float64) - exact)
    bound = atol * format_error_scale(a, w, fmt) + rtol * np.abs(exact) + 1e-6
    assert not np.isnan(err).any(), what
    bad = err > bound
    assert not bad.any(), (f"{what}: {int(bad.sum())} of {err.size} elements beyond the format's error bound; "
                           f"worst excess {float((err - bound).max()):.3g}")


def randn(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


# ------------------------------------------------------------------------------------------------ packing
@pytest.mark.parametrize("fmt", ["bf16", "int8"])
@pytest.mark.parametrize("trans", [False, True], ids=["KxN", "NxK"])
@pytest.mark.parametrize("shape", [(1, 1), (33, 17), (64, 16), (100, 45)], ids=str)
def test_pack_matches_the_format(rng, fmt, trans, shape):
    K, N = shape
    w = randn(rng, K, N, scale=0.05)
    w[0, 0] = 0.0
    if K >= 32:
        w[:32, -1] = 0.0  # an all-zero block: scale 0, quants 0
    packed = ops.pack_weight(np.ascontiguousarray(w.T) if trans else w, fmt, trans=trans)
    assert (packed.format, packed.N, packed.K) == (fmt, N, K)
    Np, Kp = -(-N // 16) * 16, -(-K // 32) * 32
    assert packed.nbytes == (Np * Kp * 2 if fmt == "bf16" else Np * Kp + Np * (Kp // 32) * 2)
    got = np.asarray(ops.unpack_weight(packed))
    if fmt == "bf16":
        want = bf16_round(w.T)
    else:
        q, d = int8_weights(w.T)
        want = (q * d).astype(np.float32)
    np.testing.assert_array_equal(got, want)


# ------------------------------------------------------------------------------------------------ forward
@pytest.mark.parametrize("fmt", ["bf16", "int8"])
@pytest.mark.parametrize("with_bias", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@on_every_path
def test_forward(isa, threads, rng, fmt, with_bias, shape):
    M, K, N = shape
    a, w = randn(rng, M, K), randn(rng, K, N, scale=0.05)
    bias = randn(rng, N) if with_bias else None
    packed = ops.pack_weight(w, fmt)
    out = np.full((M, N), np.nan, np.float32)
    r = ops.qmatmul_forward(a, packed, bias, out=out)
    assert np.shares_memory(np.asarray(r), out)
    scale = np.sqrt(K) * 0.05
    what = f"qmatmul_forward {fmt} {shape} bias={with_bias} [{isa} t{threads}]"
    assert_close(out, spec(a, w, fmt, bias), "cpu", "float32", scale, what + " vs the contract")
    exact = a.astype(np.float64) @ w.astype(np.float64) + (bias if with_bias else 0)
    assert_within_format_error(out, exact, a, w, fmt, what + " vs the unquantized product")


@pytest.mark.parametrize("fmt", ["bf16", "int8"])
@on_every_path
def test_forward_batched_and_allocated(isa, rng, fmt):
    a, w = randn(rng, 2, 3, 70), randn(rng, 70, 21, scale=0.1)
    packed = ops.pack_weight(w, fmt)
    r = np.asarray(ops.qmatmul_forward(a, packed))
    assert r.shape == (2, 3, 21) and r.dtype == np.float32
    flat = np.asarray(ops.qmatmul_forward(a.reshape(6, 70), packed))
    np.testing.assert_array_equal(r.reshape(6, 21), flat)


@pytest.mark.parametrize("fmt", ["bf16", "int8"])
@on_every_path
def test_rows_are_independent(isa, rng, fmt):
    """A row's result does not depend on the rows computed with it (what makes decoding batch-invariant)."""
    a, w = randn(rng, 13, 96), randn(rng, 96, 40, scale=0.1)
    packed = ops.pack_weight(w, fmt)
    together = np.asarray(ops.qmatmul_forward(a, packed))
    for i in (0, 5, 12):
        np.testing.assert_array_equal(np.asarray(ops.qmatmul_forward(a[i:i + 1], packed))[0], together[i])


@pytest.mark.parametrize("fmt", ["bf16", "int8"])
@on_every_path
def test_non_finite_activations_give_nan(isa, rng, fmt):
    a, w = randn(rng, 3, 64), randn(rng, 64, 20, scale=0.1)
    a[1, 40] = np.nan
    a[2, 3] = np.inf
    out = np.asarray(ops.qmatmul_forward(a, ops.pack_weight(w, fmt)))
    assert np.isfinite(out[0]).all()
    assert np.isnan(out[1]).all()
    assert not np.isfinite(out[2]).any()


def test_paths_agree_on_int8_activation_quantization(rng):
    """Every path quantizes activations to the same integers: results differ only by float32 summation order."""
    a, w = randn(rng, 9, 200), randn(rng, 200, 33, scale=0.1)
    packed = ops.pack_weight(w, "int8")
    before = _core.cpu_isa()
    try:
        outs = {}
        for isa in _core.available_cpu_isas():
            _core.set_cpu_isa(isa)
            outs[isa] = np.asarray(ops.qmatmul_forward(a, packed)).astype(np.float64)
    finally:
        _core.set_cpu_isa(before)
    ref = outs["reference"]
    for isa, o in outs.items():
        assert np.abs(o - ref).max() <= 1e-5 * np.abs(ref).max(), isa


# ------------------------------------------------------------------------------------------------ errors
def test_errors(rng):
    w = randn(rng, 40, 24)
    packed = ops.pack_weight(w, "int8")
    with pytest.raises(ValueError, match=r"pack_weight: argument 'format' must be 'bf16' or 'int8', got 'q4'"):
        ops.pack_weight(w, "q4")
    with pytest.raises(TypeError, match=r"pack_weight: argument 'w' must be float32"):
        ops.pack_weight(w.astype(np.float16), "bf16")
    with pytest.raises(ValueError, match=r"pack_weight: argument 'w'"):
        ops.pack_weight(w[0].copy(), "bf16")
    bad = w.copy()
    bad[3, 5] = np.inf
    with pytest.raises(ValueError, match=r"pack_weight: argument 'w' has a non-finite value at \(3, 5\)"):
        ops.pack_weight(bad, "int8")
    ops.pack_weight(bad, "bf16")  # bf16 keeps what it is given, infinities included
    huge = w.copy()
    huge[0, 0] = 1e9
    with pytest.raises(ValueError, match=r"int8 scale overflows float16"):
        ops.pack_weight(huge, "int8")
    with pytest.raises(ValueError, match=r"qmatmul_forward: argument 'a' has last dimension 41 but the packed weight has K = 40"):
        ops.qmatmul_forward(randn(rng, 2, 41), packed)
    with pytest.raises(TypeError, match=r"qmatmul_forward: argument 'a' must be float32"):
        ops.qmatmul_forward(np.ones((2, 40), np.int32), packed)
    with pytest.raises(ValueError, match=r"qmatmul_forward: argument 'bias'"):
        ops.qmatmul_forward(randn(rng, 2, 40), packed, randn(rng, 23))
    with pytest.raises(ValueError, match=r"qmatmul_forward: argument 'out'"):
        ops.qmatmul_forward(randn(rng, 2, 40), packed, out=np.empty((2, 25), np.float32))
    with pytest.raises(TypeError):
        ops.qmatmul_forward(randn(rng, 2, 40), w)  # a float array is not a packed weight


@pytest.mark.gpu
def test_cuda_refuses():
    """CUDA declares no qmatmul capability: packing or multiplying there is a clear error, not a crash."""
    if not gptx.cuda.is_available():
        pytest.skip("no CUDA device")
    w = gptx.Tensor(np.ones((64, 32), np.float32)).to("cuda")
    with pytest.raises(TypeError, match=r"pack_weight: argument 'w' is on cuda:0, whose backend \(cuda\) has no kernels"):
        ops.pack_weight(w, "int8")
    packed = ops.pack_weight(np.ones((64, 32), np.float32), "int8")
    a = gptx.Tensor(np.ones((2, 64), np.float32)).to("cuda")
    with pytest.raises(TypeError, match="qmatmul_forward"):
        ops.qmatmul_forward(a, packed)
