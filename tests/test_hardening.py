"""Regression tests for holes found by probing the native core: each once crashed, computed from uninitialised
memory or silently reinterpreted its input. Each now gives a clear error or a defined result."""
import numpy as np
import pytest

import gptx
from gptx import ops


def test_thread_count_is_bounded():
    before = gptx.get_num_threads()
    for n in (0, -1, 1025, 100000):
        with pytest.raises(ValueError, match=r"set_num_threads: argument 'n' must be in \[1, 1024\]"):
            gptx.set_num_threads(n)
    assert gptx.get_num_threads() == before  # a refused value changes nothing


def test_big_endian_arrays_are_refused_not_reinterpreted():
    x = np.arange(6, dtype=">f4").reshape(2, 3)
    with pytest.raises(TypeError, match="argument 'inp' has numpy dtype >f4 in non-native byte order"):
        ops.gelu_forward(x)
    with pytest.raises(TypeError, match="non-native byte order"):
        gptx.Tensor(np.zeros(3, ">i4"))
    # the same values in native order work
    np.testing.assert_allclose(np.asarray(ops.add_forward(x.astype("=f4"), x.astype("=f4"))), 2 * x.astype("=f4"))


def test_read_only_memory_never_leaves_as_a_writable_legacy_capsule():
    torch = pytest.importorskip("torch")
    a = np.arange(4, dtype=np.float32)
    a.flags.writeable = False
    t = gptx.Tensor(a)
    legacy = torch.utils.dlpack.from_dlpack(t.__dlpack__())  # legacy capsule: a copy, so writing it is harmless
    legacy[0] = 42.0
    assert a[0] == 0.0
    with pytest.raises(BufferError, match="read-only memory cannot be exported without a copy"):
        t.__dlpack__(copy=False)


def test_zero_width_inputs_are_errors_not_uninitialised_outputs():
    with pytest.raises(ValueError, match="layernorm_forward: argument 'inp' has no features"):
        ops.layernorm_forward(np.zeros((3, 0), np.float32), np.zeros(0, np.float32), np.zeros(0, np.float32))
    out, mean, rstd = ops.layernorm_forward(np.zeros((0, 4), np.float32), np.ones(4, np.float32),
                                            np.zeros(4, np.float32))  # no rows: nothing to compute, still fine
    assert np.asarray(mean).shape == (0,)
    with pytest.raises(ValueError, match="attention_forward: argument 'q' has head size 0"):
        ops.attention_forward(np.zeros((1, 2, 3, 2, 0), np.float32))


@pytest.mark.parametrize("scale", [0.0, -0.5, float("nan")])
def test_attention_scale_is_never_silently_replaced(scale):
    qkv = np.random.default_rng(0).standard_normal((1, 3, 3, 1, 4)).astype(np.float32)
    with pytest.raises(ValueError, match="attention_forward: argument 'scale' must be a positive number"):
        ops.attention_forward(qkv, scale=scale)
    out, _ = ops.attention_forward(qkv)  # omitted: 1/sqrt(HS)
    explicit, _ = ops.attention_forward(qkv, scale=0.5)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(explicit))


def test_position_overflow_is_a_clear_error():
    wte, wpe = np.zeros((5, 2), np.float32), np.zeros((4, 2), np.float32)
    with pytest.raises(ValueError, match=r"pos_offset \+ T = 9223372036854775807 \+ 2"):
        ops.embedding_forward(np.zeros((1, 2), np.int32), wte, wpe, pos_offset=2**63 - 1)


def test_view_with_an_overflowing_shape_is_a_clear_error():
    t = gptx.Tensor(np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="Tensor.view"):
        t.view(2**62, 2**62)
