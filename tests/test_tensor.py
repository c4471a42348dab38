"""gptx.Tensor: zero-copy numpy/DLPack interop, lifetimes, properties, views, bf16/f16 conversion, ops on Tensors."""
import gc
import weakref

import numpy as np
import pytest

import gptx
from conftest import poisoned, randn
from gptx import ops
import reference as ref
from tolerances import assert_close

F32 = np.float32
NUMPY_DTYPES = [(np.float32, "float32"), (np.float16, "float16"), (np.int32, "int32"), (np.int64, "int64"),
                (np.uint16, "uint16"), (np.uint8, "uint8")]


def _ptr(a):
    return a.__array_interface__["data"][0]


# ------------------------------------------------------------------------------------------------ numpy
@pytest.mark.parametrize("np_dtype,name", NUMPY_DTYPES, ids=[n for _, n in NUMPY_DTYPES])
def test_numpy_round_trip_zero_copy(rng, np_dtype, name):
    a = (rng.standard_normal((3, 17)) * 50).astype(np_dtype)
    for t in (gptx.Tensor(a), gptx.from_numpy(a)):
        assert t.dtype == name and t.shape == (3, 17)
        assert t.data_ptr == _ptr(a)
        back = np.asarray(t)
        assert back.dtype == np_dtype and back.shape == (3, 17)
        assert np.shares_memory(back, a) and np.shares_memory(t.numpy(), a)
        np.testing.assert_array_equal(back, a)
    # writes are visible both ways
    t = gptx.Tensor(a)
    np.asarray(t)[1, 2] = 7
    assert a[1, 2] == 7
    a[2, 16] = 9
    assert np.asarray(t)[2, 16] == 9


def test_tensor_to_numpy_zero_copy():
    t = gptx.Tensor.zeros([4, 5])
    n = np.asarray(t)
    assert _ptr(n) == t.data_ptr and n.flags.c_contiguous and n.flags.writeable
    n[3, 4] = 2.5
    assert np.asarray(t)[3, 4] == 2.5
    assert np.shares_memory(t.numpy(), n)
    c = np.array(t)  # np.array copies by default
    assert not np.shares_memory(c, n)


def test_tensor_keeps_numpy_array_alive():
    a = np.arange(1000, dtype=F32)
    expected = a.copy()
    alive = weakref.ref(a)
    t = gptx.Tensor(a)
    del a
    gc.collect()
    assert alive() is not None, "the wrapped array was freed while a Tensor views it"
    junk = [np.full(1000, -1.0, F32) for _ in range(50)]  # would reuse freed memory
    np.testing.assert_array_equal(np.asarray(t), expected)
    v = t.view(10, 100)
    del t, junk
    gc.collect()
    assert alive() is not None, "a view of the Tensor must keep the array alive too"
    np.testing.assert_array_equal(np.asarray(v).reshape(-1), expected)
    del v
    gc.collect()
    assert alive() is None, "the array is never released (reference leak)"


def test_tensor_of_array_slice_keeps_base_alive():
    base = np.arange(200, dtype=np.int32)
    t = gptx.Tensor(base[50:150])
    assert t.data_ptr == _ptr(base) + 50 * 4
    del base
    gc.collect()
    np.testing.assert_array_equal(np.asarray(t), np.arange(50, 150, dtype=np.int32))


def test_op_result_keeps_storage_alive(rng):
    a = randn(rng, 3, 7)
    n = np.asarray(ops.gelu_forward(a))  # the only reference to the Tensor is through the numpy view
    gc.collect()
    junk = [np.full(21, -1.0, F32) for _ in range(50)]
    assert_close(n, ref.gelu(a), what="gelu result viewed after the Tensor went away")
    del junk


# ------------------------------------------------------------------------------------------------ properties
@pytest.mark.parametrize("dtype,size", [("float32", 4), ("bfloat16", 2), ("float16", 2), ("int32", 4),
                                        ("int64", 8), ("uint16", 2), ("uint8", 1)])
def test_properties(dtype, size):
    t = gptx.Tensor.empty([3, 5, 7], dtype)
    assert t.shape == (3, 5, 7) and isinstance(t.shape, tuple)
    assert t.dtype == dtype and t.device == "cpu"
    assert t.ndim == 3 and t.size == 105 and t.nbytes == 105 * size and len(t) == 3
    assert t.data_ptr % 64 == 0, "storage is documented to be 64-byte aligned"
    assert "gptx.Tensor" in repr(t) and dtype in repr(t)


def test_properties_scalar_and_empty():
    s = gptx.Tensor.empty([])
    assert s.shape == () and s.ndim == 0 and s.size == 1 and s.nbytes == 4
    with pytest.raises(TypeError):
        len(s)
    e = gptx.Tensor.zeros([0, 3])
    assert e.shape == (0, 3) and e.size == 0 and e.nbytes == 0 and len(e) == 0
    assert np.asarray(e).shape == (0, 3)


def test_empty_zeros():
    t = gptx.Tensor.empty([17, 3])
    assert t.dtype == "float32" and t.shape == (17, 3)
    for dtype, np_dtype in [("float32", F32), ("int32", np.int32), ("float16", np.float16), ("int64", np.int64)]:
        z = gptx.Tensor.zeros([5, 33], dtype)
        np.testing.assert_array_equal(np.asarray(z), np.zeros((5, 33), np_dtype))
    z = gptx.Tensor.zeros([1001], "bfloat16")
    np.testing.assert_array_equal(np.asarray(z.to("float32")), np.zeros(1001, F32))
    assert gptx.Tensor.zeros([2], "f32").dtype == "float32" and gptx.Tensor.zeros([2], "bf16").dtype == "bfloat16"
    with pytest.raises(TypeError, match="float64"):
        gptx.Tensor.empty([3], "float64")
    with pytest.raises(TypeError, match="tpu"):
        gptx.Tensor.empty([3], device="tpu")


def test_fill():
    t = gptx.Tensor.empty([4, 9])
    assert t.fill_(1.5) is not None
    np.testing.assert_array_equal(np.asarray(t), np.full((4, 9), 1.5, F32))


# ------------------------------------------------------------------------------------------------ views and clones
def test_view_reshape_share_memory():
    a = np.arange(105, dtype=F32)
    t = gptx.Tensor(a)
    for v, shape in [(t.view(3, 5, 7), (3, 5, 7)), (t.view(-1), (105,)), (t.view(5, -1), (5, 21)),
                     (t.reshape((3, -1, 7)), (3, 5, 7)), (t.reshape(105, 1), (105, 1)), (t.view([7, 15]), (7, 15))]:
        assert v.shape == shape and v.data_ptr == t.data_ptr
        np.testing.assert_array_equal(np.asarray(v).reshape(-1), a)
    v = t.view(3, 35)
    np.asarray(v)[2, 34] = -1.0
    assert a[104] == -1.0
    for bad in [(4, -1), (-1, -1), (2, 3), (-2, 105), (106,)]:
        with pytest.raises(ValueError, match="Tensor.view"):
            t.view(*bad)


def test_clone_copies():
    a = np.arange(21, dtype=F32).reshape(3, 7)
    t = gptx.Tensor(a)
    c = t.clone()
    assert c.data_ptr != t.data_ptr and c.shape == t.shape and c.dtype == t.dtype
    np.testing.assert_array_equal(np.asarray(c), a)
    a[0, 0] = 100.0
    assert np.asarray(c)[0, 0] == 0.0
    np.asarray(c)[1, 1] = -5.0
    assert a[1, 1] == 8.0


def test_to_same_dtype_copies_and_to_cpu_is_identity():
    t = gptx.Tensor(np.arange(6, dtype=F32))
    c = t.to("float32")
    assert c.data_ptr != t.data_ptr
    np.testing.assert_array_equal(np.asarray(c), np.arange(6, dtype=F32))
    assert t.to("cpu").data_ptr == t.data_ptr


# ------------------------------------------------------------------------------------------------ dtype conversion
def _bf16_bits(x):
    """float32 -> bfloat16 bit pattern, round to nearest even (NumPy, uint64 arithmetic; NaN inputs unspecified)."""
    u = np.ascontiguousarray(x, F32).view(np.uint32).astype(np.uint64)
    return (((u + 0x7FFF + ((u >> 16) & 1)) >> 16) & 0xFFFF).astype(np.uint16)


def _interesting_f32(rng, n=100_000):
    bits = rng.integers(0, 2**32, size=n, dtype=np.uint64).astype(np.uint32)
    hi = rng.integers(0, 2**16, size=4000, dtype=np.uint64).astype(np.uint32) << 16
    ties = np.concatenate([hi | 0x8000, hi | 0x7FFF, hi | 0x8001, hi, hi | 0xFFFF])  # bf16 ties and neighbours
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, np.finfo(F32).max, -np.finfo(F32).max,
                         np.finfo(F32).tiny, np.finfo(F32).smallest_subnormal, -np.finfo(F32).smallest_subnormal,
                         65504.0, 65505.0, 65519.0, 65520.0, 2.0**-24, 2.0**-25, 3 * 2.0**-25, 2.0**-14,
                         2.0**-14 - 2.0**-24, 1.0 + 2.0**-11, 1.0 + 3 * 2.0**-11], dtype=F32)
    # float16 subnormal / normal ties and neighbours
    k = rng.integers(0, 1024, size=2000)
    sub = ((k + 0.5) * 2.0**-24).astype(F32)
    m = rng.integers(1024, 2048, size=2000)
    e = rng.integers(-14, 16, size=2000)
    norm = ((m + 0.5) * 2.0 ** (e - 10.0)).astype(F32)
    wide = (rng.standard_normal(20000) * 10.0 ** rng.uniform(-9, 6, 20000)).astype(F32)
    near = np.concatenate([np.nextafter(sub, np.inf), np.nextafter(sub, -np.inf), np.nextafter(norm, 0)])
    x = np.concatenate([bits.view(F32), ties.view(F32), specials, sub, -sub, norm, -norm, wide, near.astype(F32)])
    return np.ascontiguousarray(x, F32)


def test_bfloat16_round_trip(rng):
    x = _interesting_f32(rng)
    b = gptx.Tensor(x).to("bfloat16")
    assert b.dtype == "bfloat16" and b.shape == x.shape and b.nbytes == 2 * x.size
    back = np.asarray(b.to("float32"))
    expected = (_bf16_bits(x).astype(np.uint32) << 16).view(F32)
    nan = np.isnan(x)
    assert np.isnan(back[nan]).all(), "NaN must stay NaN in bfloat16"
    got, want = back[~nan].view(np.uint32), expected[~nan].view(np.uint32)
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, (f"{bad.size} bfloat16 roundings differ, e.g. x={x[~nan][bad[0]]!r} "
                           f"(bits {x[~nan].view(np.uint32)[bad[0]]:#010x}): got {got[bad[0]]:#010x}, "
                           f"want {want[bad[0]]:#010x}")


def test_float16_matches_numpy(rng):
    x = _interesting_f32(rng)
    with np.errstate(over="ignore", invalid="ignore"):
        want = x.astype(np.float16)
    h = gptx.Tensor(x).to("float16")
    assert h.dtype == "float16"
    got = np.asarray(h)
    assert got.dtype == np.float16
    nan = np.isnan(x)
    assert np.isnan(got[nan]).all()
    g, w = got[~nan].view(np.uint16), want[~nan].view(np.uint16)
    bad = np.flatnonzero(g != w)
    assert bad.size == 0, (f"{bad.size} float16 roundings differ from numpy, e.g. x={x[~nan][bad[0]]!r}: "
                           f"got {g[bad[0]]:#06x}, want {w[bad[0]]:#06x}")


def test_float16_to_float32_exhaustive():
    h = np.arange(2**16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    got = np.asarray(gptx.Tensor(h).to("float32"))
    want = h.astype(F32)
    nan = np.isnan(want)
    assert np.isnan(got[nan]).all()
    np.testing.assert_array_equal(got[~nan].view(np.uint32), want[~nan].view(np.uint32))


def test_bfloat16_refuses_numpy():
    b = gptx.Tensor.zeros([2, 3], "bfloat16")
    with pytest.raises(TypeError):
        np.asarray(b)
    with pytest.raises(TypeError):
        b.numpy()


# ------------------------------------------------------------------------------------------------ read-only memory
def test_read_only_array_is_not_a_write_path(rng):
    """A read-only array wrapped by gptx.Tensor must not be written by an op (reject at wrap time or as an output)."""
    x = randn(rng, 3, 7)
    ro = np.zeros((3, 7), F32)
    ro.setflags(write=False)
    try:
        t = gptx.Tensor(ro)
    except ValueError:
        return
    with pytest.raises(ValueError):
        ops.gelu_forward(x, out=t)
    assert not ro.any(), "an op wrote into a read-only numpy array through gptx.Tensor"


def test_read_only_dlpack_is_not_a_write_path(rng):
    x = randn(rng, 3, 7)
    ro = np.zeros((3, 7), F32)
    ro.setflags(write=False)
    try:
        t = gptx.from_dlpack(ro)
    except (ValueError, TypeError, BufferError):
        return
    with pytest.raises(ValueError):
        ops.gelu_forward(x, out=t)
    assert not ro.any(), "an op wrote into a read-only numpy array imported with gptx.from_dlpack"


# ------------------------------------------------------------------------------------------------ DLPack
def test_dlpack_device():
    assert gptx.Tensor.empty([2]).__dlpack_device__() == (1, 0)


def test_dlpack_numpy_both_ways(rng):
    a = randn(rng, 5, 17)
    g = gptx.from_dlpack(a)
    assert g.data_ptr == _ptr(a) and g.shape == (5, 17) and g.dtype == "float32"
    t = gptx.Tensor.zeros([4, 9], "int32")
    n = np.from_dlpack(t)
    assert _ptr(n) == t.data_ptr and n.shape == (4, 9) and n.dtype == np.int32
    n[3, 8] = 12
    assert np.asarray(t)[3, 8] == 12
    with pytest.raises(TypeError):
        gptx.from_dlpack(np.zeros(3))  # float64
    with pytest.raises(ValueError, match="contiguous"):
        gptx.from_dlpack(np.zeros((3, 4), F32).T)
    with pytest.raises(TypeError):
        gptx.from_dlpack([1.0, 2.0])


def test_dlpack_capsules():
    t = gptx.Tensor(np.arange(6, dtype=F32))
    for cap in (t.__dlpack__(), t.__dlpack__(max_version=(1, 0))):
        g = gptx.from_dlpack(cap)
        assert g.data_ptr == t.data_ptr and g.shape == (6,)
        with pytest.raises(ValueError):
            gptx.from_dlpack(cap)  # a consumed capsule
    c = gptx.from_dlpack(gptx.Tensor(np.arange(6, dtype=F32)).__dlpack__(copy=True))
    np.testing.assert_array_equal(np.asarray(c), np.arange(6, dtype=F32))


def test_dlpack_lifetimes():
    t = gptx.Tensor(np.arange(500, dtype=F32))
    n = np.from_dlpack(t)
    del t
    gc.collect()
    junk = [np.full(500, -1.0, F32) for _ in range(50)]
    np.testing.assert_array_equal(n, np.arange(500, dtype=F32))
    a = np.arange(300, dtype=np.int64)
    g = gptx.from_dlpack(a)
    del a, junk
    gc.collect()
    np.testing.assert_array_equal(np.asarray(g), np.arange(300, dtype=np.int64))


def test_dlpack_torch_both_ways():
    torch = pytest.importorskip("torch")
    x = torch.randn(7, 33)
    g = gptx.from_dlpack(x)
    assert g.data_ptr == x.data_ptr() and g.shape == (7, 33) and g.dtype == "float32"
    t = gptx.Tensor.zeros([3, 5])
    y = torch.from_dlpack(t)
    assert y.data_ptr() == t.data_ptr and tuple(y.shape) == (3, 5) and y.dtype == torch.float32
    y[2, 4] = 3.0
    assert np.asarray(t)[2, 4] == 3.0
    with pytest.raises(ValueError, match="contiguous"):
        gptx.from_dlpack(x.T)
    with pytest.raises(ValueError, match="contiguous"):
        gptx.from_dlpack(x[:, ::2])
    with pytest.raises(TypeError):
        gptx.from_dlpack(x.double())
    # dtypes torch and gptx share
    for tdt, name in [(torch.int32, "int32"), (torch.int64, "int64"), (torch.float16, "float16"),
                      (torch.bfloat16, "bfloat16"), (torch.uint8, "uint8")]:
        z = torch.zeros(4, 3, dtype=tdt)
        gz = gptx.from_dlpack(z)
        assert gz.dtype == name and gz.data_ptr == z.data_ptr()
        assert torch.from_dlpack(gz).dtype == tdt


def test_dlpack_torch_lifetimes():
    torch = pytest.importorskip("torch")
    x = torch.arange(1000, dtype=torch.float32)
    g = gptx.from_dlpack(x)
    del x
    gc.collect()
    junk = [torch.full((1000,), -1.0) for _ in range(50)]
    np.testing.assert_array_equal(np.asarray(g), np.arange(1000, dtype=F32))
    t = gptx.Tensor(np.arange(800, dtype=F32))
    y = torch.from_dlpack(t)
    del t, junk
    gc.collect()
    np.testing.assert_array_equal(y.numpy(), np.arange(800, dtype=F32))


def test_bfloat16_bits_via_torch(rng):
    """The raw bfloat16 bits (seen through torch) are the round-to-nearest-even of the float32 input; every bfloat16
    pattern widens back to float32 exactly."""
    torch = pytest.importorskip("torch")
    x = _interesting_f32(rng, 20_000)
    bits = torch.from_dlpack(gptx.Tensor(x).to("bfloat16")).view(torch.int16).numpy().view(np.uint16)
    nan = np.isnan(x)
    np.testing.assert_array_equal(bits[~nan], _bf16_bits(x)[~nan])
    assert ((bits[nan] & 0x7F80) == 0x7F80).all() and (bits[nan] & 0x7F).all(), "NaN must stay NaN"
    every = torch.from_numpy(np.arange(2**16, dtype=np.int32).astype(np.uint16).view(np.int16)).view(torch.bfloat16)
    widened = np.asarray(gptx.from_dlpack(every).to("float32"))
    want = (np.arange(2**16, dtype=np.uint32) << 16).view(F32)
    nan = np.isnan(want)
    assert np.isnan(widened[nan]).all()
    np.testing.assert_array_equal(widened[~nan].view(np.uint32), want[~nan].view(np.uint32))


# ------------------------------------------------------------------------------------------------ ops and Tensors
def test_ops_accept_tensor_and_numpy(rng):
    a, b, bias = randn(rng, 5, 33), randn(rng, 33, 19), randn(rng, 19)
    expected = ref.matmul(a, b, bias)
    for args in [(a, b, bias), (gptx.Tensor(a), b, bias), (a, gptx.from_dlpack(b), gptx.Tensor(bias)),
                 (gptx.Tensor(a), gptx.Tensor(b), gptx.Tensor(bias))]:
        r = ops.matmul_forward(*args)
        assert isinstance(r, gptx.Tensor) and r.shape == (5, 19) and r.dtype == "float32"
        assert_close(np.asarray(r), expected, scale=np.sqrt(33), what="matmul_forward (mixed Tensor/numpy)")
    out, mean, rstd = ops.layernorm_forward(gptx.Tensor(a), randn(rng, 33), gptx.Tensor(randn(rng, 33)))
    assert all(isinstance(x, gptx.Tensor) for x in (out, mean, rstd))
    assert mean.shape == (5,) and rstd.shape == (5,)


def test_out_as_tensor(rng):
    a, b = randn(rng, 7, 13), randn(rng, 13, 3)
    out = gptx.Tensor(poisoned((7, 3)))
    r = ops.matmul_forward(a, b, out=out)
    assert r.data_ptr == out.data_ptr
    assert_close(np.asarray(out), ref.matmul(a, b), scale=np.sqrt(13), what="matmul_forward out=Tensor")
    fresh = gptx.Tensor.empty([7, 13])
    r = ops.gelu_forward(gptx.Tensor(a), out=fresh)
    assert r.data_ptr == fresh.data_ptr
    assert_close(np.asarray(fresh), ref.gelu(a), what="gelu_forward out=Tensor")
    # a Tensor output of the wrong shape / dtype is rejected like a numpy one
    with pytest.raises(ValueError, match="'out'"):
        ops.gelu_forward(a, out=gptx.Tensor.empty([13, 7]))
    with pytest.raises(TypeError, match="'out'"):
        ops.gelu_forward(a, out=gptx.Tensor.empty([7, 13], "float16"))


def test_op_result_feeds_next_op(rng):
    """The Tensor an op returns is a valid input to the next (no numpy round trip needed)."""
    x = randn(rng, 3, 5, 17)
    h = ops.gelu_forward(x)
    s = ops.softmax_forward(h, scale=0.5)
    y = ops.add_forward(s, h)
    assert_close(np.asarray(y), ref.softmax(ref.gelu(x), 0.5) + ref.gelu(x), scale=2.0, what="gelu->softmax->add")


def test_fill_writes_the_converted_bit_pattern_for_every_dtype():
    for dtype, value in [("float32", 1.5), ("float32", -0.0), ("float16", 0.1), ("int32", -7), ("int64", 2**40),
                         ("uint16", 65535), ("uint8", 200), ("float32", float("nan"))]:
        t = gptx.Tensor.empty([1003], dtype)
        t.fill_(value)
        want = np.full(1003, value, dtype=np.dtype(dtype))
        np.testing.assert_array_equal(np.asarray(t).view(np.uint8), want.view(np.uint8))


def test_copy_columns_from_takes_a_column_band():
    src = gptx.Tensor(np.arange(5 * 11, dtype=np.float32).reshape(5, 11))
    dst = gptx.Tensor.empty([5, 4], "float32")
    assert dst.copy_columns_from(src, 3) is not None
    np.testing.assert_array_equal(np.asarray(dst), np.arange(55, dtype=np.float32).reshape(5, 11)[:, 3:7])
    with pytest.raises(ValueError):
        dst.copy_columns_from(src, 8)  # columns 8..12 are not all in src
