"""Bad input to every op: right exception, message naming op and argument, nothing written; in place; overflow."""
import math
import os
import subprocess
import sys

import numpy as np
import pytest

import gptx
from conftest import randn
from gptx import ops
import reference as ref
from tolerances import assert_close

F32 = np.float32
V_EMB, C_EMB, MAXT = 7, 5, 4  # embedding tables (V, C) and (maxT, C); idx is (2, 3)
VP = 9  # cross-entropy logits (4, VP)


# ------------------------------------------------------------------------------------------------ valid arguments
def _idx(rng, shape, high):
    return rng.integers(0, high, size=shape).astype(np.int32)


def _base(op, rng):
    """A small valid keyword-argument set for `op`; outputs are pre-filled with random values (not NaN) so that any
    write by a rejected call is visible."""
    f = lambda *s: randn(rng, *s)  # noqa: E731
    if op == "matmul_forward":
        return dict(a=f(5, 3), b=f(3, 4), bias=f(4), out=f(5, 4))
    if op == "matmul_backward":
        return dict(dout=f(5, 4), a=f(5, 3), b=f(3, 4), need_dbias=True, da=f(5, 3), db=f(3, 4), dbias=f(4))
    if op == "bias_backward":
        return dict(dout=f(5, 4), dbias=f(4))
    if op == "softmax_forward":
        return dict(inp=f(3, 7), out=f(3, 7))
    if op == "softmax_backward":
        return dict(dout=f(3, 7), out=f(3, 7), dinp=f(3, 7))
    if op == "attention_forward":
        return dict(q=f(2, 3, 2, 4), k=f(2, 5, 2, 4), v=f(2, 5, 2, 4), out=f(2, 3, 2, 4), lse=f(2, 2, 3))
    if op == "attention_backward":
        return dict(dout=f(2, 3, 2, 4), q=f(2, 3, 2, 4), k=f(2, 5, 2, 4), v=f(2, 5, 2, 4), out=f(2, 3, 2, 4),
                    lse=np.abs(f(2, 2, 3)) + 2.0, dq=f(2, 3, 2, 4), dk=f(2, 5, 2, 4), dv=f(2, 5, 2, 4))
    if op == "layernorm_forward":
        return dict(inp=f(3, 5), weight=f(5), bias=f(5), out=f(3, 5), mean=f(3), rstd=f(3))
    if op == "layernorm_backward":
        return dict(dout=f(3, 5), inp=f(3, 5), weight=f(5), mean=f(3), rstd=np.abs(f(3)) + 0.5, dinp=f(3, 5),
                    dweight=f(5), dbias=f(5))
    if op == "gelu_forward":
        return dict(inp=f(3, 7), out=f(3, 7))
    if op == "gelu_backward":
        return dict(dout=f(3, 7), inp=f(3, 7), dinp=f(3, 7))
    if op == "embedding_forward":
        return dict(idx=_idx(rng, (2, 3), V_EMB), wte=f(V_EMB, C_EMB), wpe=f(MAXT, C_EMB), out=f(2, 3, C_EMB))
    if op == "embedding_backward":
        return dict(dout=f(2, 3, C_EMB), idx=_idx(rng, (2, 3), V_EMB), dwte=f(V_EMB, C_EMB), dwpe=f(MAXT, C_EMB))
    if op == "add_forward":
        return dict(a=f(3, 7), b=f(3, 7), out=f(3, 7))
    if op == "cross_entropy_forward":
        t = _idx(rng, (4,), VP)
        t[2] = -100  # the default ignore_index is valid
        return dict(logits=f(4, VP), targets=t, losses=f(4), lse=f(4))
    if op == "cross_entropy_backward":
        t = _idx(rng, (4,), VP)
        t[2] = -100
        return dict(logits=f(4, VP), lse=f(4) + 3.0, targets=t, dlosses=f(4), dlogits=f(4, VP))
    if op == "adamw_step":
        return dict(param=f(3, 5), grad=f(3, 5), m=f(3, 5), v=np.abs(f(3, 5)), lr=1e-3, step=1)
    raise KeyError(op)


OPS = [
    "matmul_forward", "matmul_backward", "bias_backward", "softmax_forward", "softmax_backward", "attention_forward",
    "attention_backward", "layernorm_forward", "layernorm_backward", "gelu_forward", "gelu_backward",
    "embedding_forward", "embedding_backward", "add_forward", "cross_entropy_forward", "cross_entropy_backward",
    "adamw_step",
]
# Arguments the op writes: outputs, plus the in-place parameters / accumulated gradients.
WRITTEN = {
    "matmul_forward": {"out"}, "matmul_backward": {"da", "db", "dbias"}, "bias_backward": {"dbias"},
    "softmax_forward": {"out"}, "softmax_backward": {"dinp"}, "attention_forward": {"out", "lse"},
    "attention_backward": {"dq", "dk", "dv"}, "layernorm_forward": {"out", "mean", "rstd"},
    "layernorm_backward": {"dinp", "dweight", "dbias"}, "gelu_forward": {"out"}, "gelu_backward": {"dinp"},
    "embedding_forward": {"out"}, "embedding_backward": {"dwte", "dwpe"}, "add_forward": {"out"},
    "cross_entropy_forward": {"losses", "lse"}, "cross_entropy_backward": {"dlogits"},
    "adamw_step": {"param", "m", "v"},
}
INT_ARGS = {"idx", "targets"}


def _array_args(op):
    kw = _base(op, np.random.default_rng(0))
    return [k for k, v in kw.items() if isinstance(v, np.ndarray)]


def _expect_rejected(op, kw, exc, names, must_contain=()):
    """Call ops.<op>(**kw), expect `exc` whose message names the op and one of `names`, and check that no array
    argument changed (a rejected call writes nothing)."""
    before = {k: v.copy() for k, v in kw.items() if isinstance(v, np.ndarray)}
    with pytest.raises(exc) as info:
        getattr(ops, op)(**kw)
    msg = str(info.value)
    assert type(info.value) is exc, f"{op}: expected {exc.__name__}, got {type(info.value).__name__}: {msg}"
    assert op in msg, f"{op}: the message does not name the op: {msg!r}"
    assert any(f"'{n}'" in msg for n in names), f"{op}: the message names none of {names}: {msg!r}"
    for s in must_contain:
        assert s in msg, f"{op}: the message does not mention {s!r}: {msg!r}"
    for k, v in before.items():
        assert np.array_equal(kw[k], v, equal_nan=True), f"{op}: rejected call modified argument '{k}'"


# ------------------------------------------------------------------------------------------------ baseline
@pytest.mark.parametrize("op", OPS)
def test_base_arguments_are_valid(op, rng):
    """The unmutated argument sets are accepted (so every rejection below is due to the one mutation), also when
    every input that is only read is a read-only array."""
    kw = _base(op, rng)
    getattr(ops, op)(**kw)
    kw = _base(op, rng)
    for k, v in kw.items():
        if isinstance(v, np.ndarray) and k not in WRITTEN[op]:
            v.setflags(write=False)
    getattr(ops, op)(**kw)


# ------------------------------------------------------------------------------------------------ generic mutations
def _generic_cases():
    cases = []
    for op in OPS:
        for name in _array_args(op):
            if name in INT_ARGS:
                bad_dtypes = [np.int64, np.float32, np.int16, np.uint8]
            else:
                bad_dtypes = [np.float64, np.float16, np.int32, np.int64]
            for dt in bad_dtypes:
                cases.append(pytest.param(op, name, "dtype", dt, id=f"{op}-{name}-{np.dtype(dt).name}"))
            kinds = ["strided", "list", "str", "bfloat16_tensor"]
            if _transposed_copy(_base(op, np.random.default_rng(0))[name]) is not None:
                kinds.append("transposed")
            for kind in kinds:
                cases.append(pytest.param(op, name, kind, None, id=f"{op}-{name}-{kind}"))
            if name in WRITTEN[op]:
                cases.append(pytest.param(op, name, "readonly", None, id=f"{op}-{name}-readonly"))
    return cases


def _strided_copy(x):
    """Same shape and values, not C-contiguous: every other element of a twice-as-wide buffer."""
    wide = np.repeat(x, 2, axis=-1)
    return wide[..., ::2]


def _transposed_copy(x):
    """Same shape and values, a transposed view (None where a transpose would still be C-contiguous)."""
    if x.ndim < 2 or x.shape[-1] == 1 or x.shape[-2] == 1:
        return None
    return np.ascontiguousarray(np.swapaxes(x, -1, -2)).swapaxes(-1, -2)


@pytest.mark.parametrize("op,name,kind,dtype", _generic_cases())
def test_generic_bad_argument(op, name, kind, dtype, rng):
    kw = _base(op, rng)
    x = kw[name]
    if kind == "dtype":
        kw[name] = x.astype(dtype)
        _expect_rejected(op, kw, TypeError, [name])
    elif kind == "strided":
        kw[name] = _strided_copy(x)
        assert not kw[name].flags.c_contiguous
        _expect_rejected(op, kw, ValueError, [name], must_contain=["contiguous"])
    elif kind == "transposed":
        t = _transposed_copy(x)
        assert not t.flags.c_contiguous and t.shape == x.shape
        kw[name] = t
        _expect_rejected(op, kw, ValueError, [name], must_contain=["contiguous"])
    elif kind == "bfloat16_tensor":
        kw[name] = gptx.Tensor(x.astype(F32)).to("bfloat16")
        _expect_rejected(op, kw, TypeError, [name])
    elif kind == "list":
        kw[name] = x.tolist()
        _expect_rejected(op, kw, TypeError, [name])
    elif kind == "str":
        kw[name] = "not an array"
        _expect_rejected(op, kw, TypeError, [name])
    elif kind == "readonly":
        x.setflags(write=False)
        _expect_rejected(op, kw, ValueError, [name], must_contain=["read-only"])
    else:
        raise AssertionError(kind)


# ------------------------------------------------------------------------------------------------ explicit mutations
def _views(rng, shape1, shape2, offset):
    """Two C-contiguous views of one float32 buffer; the second starts `offset` elements after the first."""
    n1, n2 = math.prod(shape1), math.prod(shape2)
    buf = randn(rng, max(n1, offset + n2))
    return buf[:n1].reshape(shape1), buf[offset:offset + n2].reshape(shape2)


def _set(**changes):
    return lambda kw, rng: kw.update(changes)


def _f(*shape):
    """Set argument(s) to fresh random arrays of a shape: _f(5, 4)('out') -> mutation."""
    return lambda *names: (lambda kw, rng: kw.update({n: np.asarray(randn(rng, *shape)) for n in names}))


def _ids(shape, high):
    return lambda name: (lambda kw, rng: kw.update({name: _idx(rng, shape, high)}))


def _same(dst, src):
    """Argument dst is the very same array as src."""
    return lambda kw, rng: kw.update({dst: kw[src]})


def _overlap(name1, shape1, name2, shape2, offset):
    def m(kw, rng):
        a, b = _views(rng, shape1, shape2, offset)
        kw[name1], kw[name2] = a, b
    return m


def _poke(name, index, value):
    def m(kw, rng):
        kw[name] = kw[name].copy()
        kw[name][index] = value
    return m


def _seq(*muts):
    def m(kw, rng):
        for mu in muts:
            mu(kw, rng)
    return m


VE = ValueError
CASES = {
    "matmul_forward": [
        ("a_rank1", _f(3)("a"), VE, ["a"]),
        ("b_rank1", _f(3)("b"), VE, ["b"]),
        ("inner_dim_mismatch", _f(4, 4)("b"), VE, ["a", "b"]),
        ("trans_a_mismatch", _set(trans_a=True), VE, ["a", "b"]),
        ("trans_b_mismatch", _set(trans_b=True), VE, ["a", "b"]),
        ("batch_dims_mismatch", _seq(_f(2, 5, 3)("a"), _f(3, 3, 4)("b"), _f(2, 5, 4)("out")), VE, ["b"]),
        ("batch_rank_mismatch", _seq(_f(2, 5, 3)("a"), _f(1, 2, 3, 4)("b"), _f(2, 5, 4)("out")), VE, ["b"]),
        ("b_batched_a_2d", _f(2, 3, 4)("b"), VE, ["a", "b"]),
        ("bias_len", _f(5)("bias"), VE, ["bias"]),
        ("bias_rank2", _f(1, 4)("bias"), VE, ["bias"]),
        ("out_shape", _f(5, 5)("out"), VE, ["out"]),
        ("out_transposed_shape", _f(4, 5)("out"), VE, ["out"]),
        ("out_flat", _f(20)("out"), VE, ["out"]),
        ("out_missing_batch", _seq(_f(2, 5, 3)("a"), _f(5, 4)("out")), VE, ["out"]),
        ("out_is_a", _seq(_f(4, 4)("a", "b"), _same("out", "a")), VE, ["out"]),
        ("out_is_b", _seq(_f(4, 4)("a", "b"), _same("out", "b")), VE, ["out"]),
        ("out_overlaps_a", _overlap("a", (5, 3), "out", (5, 4), 10), VE, ["out"]),
        ("out_overlaps_bias", _overlap("out", (5, 4), "bias", (4,), 18), VE, ["out"]),
        ("accumulate_without_out", _set(out=None, accumulate=True), VE, ["out"]),
    ],
    "matmul_backward": [
        ("dout_shape", _f(5, 5)("dout"), VE, ["dout"]),
        ("dout_rank", _f(20)("dout"), VE, ["dout"]),
        ("a_rank1", _f(3)("a"), VE, ["a"]),
        ("inner_dim_mismatch", _f(4, 4)("b"), VE, ["a", "b"]),
        ("batch_dims_mismatch", _seq(_f(2, 5, 3)("a"), _f(3, 3, 4)("b"), _f(2, 5, 4)("dout"), _set(da=None, db=None)),
         VE, ["b"]),
        ("da_shape", _f(3, 5)("da"), VE, ["da"]),
        ("db_shape", _f(4, 3)("db"), VE, ["db"]),
        ("dbias_len", _f(5)("dbias"), VE, ["dbias"]),
        ("da_is_a", _same("da", "a"), VE, ["da"]),
        ("db_is_b", _same("db", "b"), VE, ["db"]),
        ("da_overlaps_dout", _overlap("dout", (5, 4), "da", (5, 3), 7), VE, ["da"]),
        ("da_overlaps_db", _overlap("da", (5, 3), "db", (3, 4), 5), VE, ["da", "db"]),
        ("dbias_overlaps_db", _overlap("db", (3, 4), "dbias", (4,), 10), VE, ["db", "dbias"]),
        ("accumulate_without_da", _set(da=None, accumulate=True), VE, ["da"]),
        ("accumulate_without_db", _set(db=None, accumulate=True), VE, ["db"]),
        ("accumulate_without_dbias", _set(dbias=None, accumulate=True), VE, ["dbias"]),
    ],
    "bias_backward": [
        ("dbias_len", _f(5)("dbias"), VE, ["dbias"]),
        ("dbias_rank2", _f(1, 4)("dbias"), VE, ["dbias"]),
        ("dout_0d", _f()("dout"), VE, ["dout"]),
        ("dbias_overlaps_dout", _overlap("dout", (5, 4), "dbias", (4,), 3), VE, ["dbias"]),
        ("accumulate_without_dbias", _set(dbias=None, accumulate=True), VE, ["dbias"]),
    ],
    "softmax_forward": [
        ("out_shape", _f(3, 6)("out"), VE, ["out"]),
        ("out_transposed_shape", _f(7, 3)("out"), VE, ["out"]),
        ("inp_0d", _seq(_f()("inp"), _set(out=None)), VE, ["inp"]),
        ("causal_Tq_gt_L", _seq(_f(5, 3)("inp", "out"), _set(causal=True)), VE, ["inp"]),
        ("causal_1d", _seq(_f(7)("inp", "out"), _set(causal=True)), VE, ["inp"]),
        ("out_overlaps_inp", _overlap("inp", (3, 7), "out", (3, 7), 7), VE, ["out"]),
        ("inp_overlaps_out_tail", _overlap("out", (3, 7), "inp", (3, 7), 1), VE, ["out"]),
    ],
    "softmax_backward": [
        ("dout_shape", _f(3, 6)("dout"), VE, ["dout"]),
        ("out_shape", _f(3, 6)("out"), VE, ["dout", "out"]),
        ("out_0d", _seq(_f()("out", "dout"), _set(dinp=None)), VE, ["out"]),
        ("dinp_shape", _f(3, 6)("dinp"), VE, ["dinp"]),
        ("dinp_is_out", _same("dinp", "out"), VE, ["dinp"]),
        ("dinp_overlaps_out", _overlap("out", (3, 7), "dinp", (3, 7), 2), VE, ["dinp"]),
        ("dinp_overlaps_dout", _overlap("dout", (3, 7), "dinp", (3, 7), 1), VE, ["dinp"]),
    ],
    "attention_forward": [
        ("q_rank3", _f(2, 3, 8)("q"), VE, ["q"]),
        ("q_rank5_with_kv", _f(2, 3, 3, 2, 4)("q"), VE, ["q"]),
        ("k_rank3", _f(2, 5, 8)("k", "v"), VE, ["k"]),
        ("k_head_size", _f(2, 5, 2, 3)("k", "v"), VE, ["k"]),
        ("k_batch", _f(3, 5, 2, 4)("k", "v"), VE, ["k"]),
        ("k_heads", _f(2, 5, 1, 4)("k", "v"), VE, ["k"]),
        ("v_shape", _f(2, 4, 2, 4)("v"), VE, ["v"]),
        ("v_head_size", _f(2, 5, 2, 3)("v"), VE, ["v"]),
        ("v_missing", _set(v=None), VE, ["v"]),
        ("k_missing", _set(k=None), VE, ["k"]),
        ("out_shape", _f(2, 3, 2, 5)("out"), VE, ["out"]),
        ("out_kv_shape", _f(2, 5, 2, 4)("out"), VE, ["out"]),
        ("lse_shape", _f(2, 3, 2)("lse"), VE, ["lse"]),
        ("lse_rank", _f(2, 2, 3, 1)("lse"), VE, ["lse"]),
        ("kv_len_gt_k", _set(kv_len=6), VE, ["kv_len"]),
        ("kv_len_zero", _set(kv_len=0), VE, ["kv_len"]),
        ("causal_Tq_gt_Tk", _seq(_f(2, 6, 2, 4)("q", "out"), _f(2, 2, 6)("lse")), VE, ["q", "k", "kv_len"]),
        ("causal_Tq_gt_kv_len", _set(kv_len=2), VE, ["q", "kv_len"]),
        ("packed_not_qkv", _seq(_f(2, 3, 2, 2, 4)("q"), _set(k=None, v=None)), VE, ["q"]),
        ("packed_rank4", _set(k=None, v=None), VE, ["q"]),
        ("packed_kv_len", _seq(_f(2, 3, 3, 2, 4)("q"), _set(k=None, v=None, kv_len=2)), VE, ["kv_len"]),
        ("scale_inf", _set(scale=math.inf), VE, ["scale"]),
        ("scale_nan", _set(scale=math.nan), VE, ["scale"]),
        ("out_is_q", _same("out", "q"), VE, ["out"]),
        ("out_overlaps_k", _overlap("k", (2, 5, 2, 4), "out", (2, 3, 2, 4), 17), VE, ["out"]),
        ("lse_overlaps_out", _overlap("out", (2, 3, 2, 4), "lse", (2, 2, 3), 40), VE, ["out", "lse"]),
        ("packed_out_overlaps_qkv",
         _seq(_overlap("q", (2, 3, 3, 2, 4), "out", (2, 3, 2, 4), 50), _set(k=None, v=None)), VE, ["out"]),
    ],
    "attention_backward": [
        ("dout_shape", _f(2, 3, 2, 5)("dout"), VE, ["dout"]),
        ("out_shape", _f(2, 4, 2, 4)("out"), VE, ["out"]),
        ("lse_shape", _f(2, 3, 2)("lse"), VE, ["lse"]),
        ("lse_rank", _f(2, 6)("lse"), VE, ["lse"]),
        ("q_rank3", _f(2, 3, 8)("q"), VE, ["q"]),
        ("k_head_size", _f(2, 5, 2, 3)("k", "v"), VE, ["k"]),
        ("v_shape", _f(2, 4, 2, 4)("v"), VE, ["v"]),
        ("k_missing", _set(k=None), VE, ["k"]),
        ("dq_shape", _f(2, 3, 2, 5)("dq"), VE, ["dq"]),
        ("dk_shape", _f(2, 4, 2, 4)("dk"), VE, ["dk"]),
        ("dv_shape", _f(2, 3, 2, 4)("dv"), VE, ["dv"]),
        ("dv_is_v", _same("dv", "v"), VE, ["dv"]),
        ("dq_is_dout", _same("dq", "dout"), VE, ["dq"]),
        ("dq_is_q", _same("dq", "q"), VE, ["dq"]),
        ("dk_overlaps_dv", _overlap("dk", (2, 5, 2, 4), "dv", (2, 5, 2, 4), 33), VE, ["dk", "dv"]),
        ("dq_overlaps_lse", _overlap("lse", (2, 2, 3), "dq", (2, 3, 2, 4), 11), VE, ["dq"]),
        ("accumulate_without_dq", _set(dq=None, accumulate=True), VE, ["dq"]),
        ("accumulate_without_dk", _set(dk=None, accumulate=True), VE, ["dk"]),
        ("accumulate_without_dv", _set(dv=None, accumulate=True), VE, ["dv"]),
        ("packed_with_dk", _seq(_f(2, 3, 3, 2, 4)("q", "dq"), _f(2, 3, 2, 4)("dk"), _set(k=None, v=None, dv=None)),
         VE, ["dk"]),
        ("kv_len_gt_k", _set(kv_len=6), VE, ["kv_len"]),
        ("causal_Tq_gt_Tk", _seq(_f(2, 6, 2, 4)("q", "dq", "out", "dout"), _f(2, 2, 6)("lse")), VE,
         ["q", "k", "kv_len"]),
        ("scale_nan", _set(scale=math.nan), VE, ["scale"]),
    ],
    "layernorm_forward": [
        ("weight_len", _f(4)("weight"), VE, ["weight"]),
        ("weight_rank2", _f(1, 5)("weight"), VE, ["weight"]),
        ("bias_len", _f(6)("bias"), VE, ["bias"]),
        ("mean_shape", _f(4)("mean"), VE, ["mean"]),
        ("rstd_shape", _f(3, 1)("rstd"), VE, ["rstd"]),
        ("out_shape", _f(3, 4)("out"), VE, ["out"]),
        ("inp_0d", _set(inp=np.array(1.0, F32), out=None, mean=None, rstd=None), VE, ["inp"]),
        ("eps_zero", _set(eps=0.0), VE, ["eps"]),
        ("eps_negative", _set(eps=-1e-5), VE, ["eps"]),
        ("eps_nan", _set(eps=math.nan), VE, ["eps"]),
        ("eps_inf", _set(eps=math.inf), VE, ["eps"]),
        ("mean_is_rstd", _same("mean", "rstd"), VE, ["mean", "rstd"]),
        ("out_is_inp", _same("out", "inp"), VE, ["out"]),
        ("rstd_overlaps_inp", _overlap("inp", (3, 5), "rstd", (3,), 13), VE, ["rstd"]),
        ("mean_overlaps_weight", _overlap("weight", (5,), "mean", (3,), 2), VE, ["mean"]),
    ],
    "layernorm_backward": [
        ("dout_shape", _f(3, 4)("dout"), VE, ["dout"]),
        ("weight_len", _f(4)("weight"), VE, ["weight"]),
        ("mean_shape", _f(4)("mean"), VE, ["mean"]),
        ("rstd_shape", _f(2)("rstd"), VE, ["rstd"]),
        ("mean_rank", _f(3, 1)("mean"), VE, ["mean"]),
        ("dinp_shape", _f(5, 3)("dinp"), VE, ["dinp"]),
        ("dweight_len", _f(4)("dweight"), VE, ["dweight"]),
        ("dbias_len", _f(6)("dbias"), VE, ["dbias"]),
        ("dinp_is_dout", _same("dinp", "dout"), VE, ["dinp"]),
        ("dbias_is_weight", _same("dbias", "weight"), VE, ["dbias"]),
        ("dweight_overlaps_dbias", _overlap("dweight", (5,), "dbias", (5,), 4), VE, ["dweight", "dbias"]),
        ("dinp_overlaps_rstd", _overlap("dinp", (3, 5), "rstd", (3,), 14), VE, ["dinp"]),
        ("accumulate_without_dinp", _set(dinp=None, accumulate=True), VE, ["dinp"]),
        ("accumulate_without_dweight", _set(dweight=None, accumulate=True), VE, ["dweight"]),
        ("accumulate_without_dbias", _set(dbias=None, accumulate=True), VE, ["dbias"]),
    ],
    "gelu_forward": [
        ("out_shape", _f(21)("out"), VE, ["out"]),
        ("out_transposed_shape", _f(7, 3)("out"), VE, ["out"]),
        ("out_overlaps_inp", _overlap("inp", (3, 7), "out", (3, 7), 1), VE, ["out"]),
        ("inp_overlaps_out", _overlap("out", (3, 7), "inp", (3, 7), 5), VE, ["out"]),
    ],
    "gelu_backward": [
        ("dout_shape", _f(3, 6)("dout"), VE, ["dout"]),
        ("dinp_shape", _f(7, 3)("dinp"), VE, ["dinp"]),
        ("dinp_is_inp", _same("dinp", "inp"), VE, ["dinp"]),
        ("dinp_overlaps_inp", _overlap("inp", (3, 7), "dinp", (3, 7), 20), VE, ["dinp"]),
        ("dinp_overlaps_dout", _overlap("dout", (3, 7), "dinp", (3, 7), 3), VE, ["dinp"]),
        ("accumulate_without_dinp", _set(dinp=None, accumulate=True), VE, ["dinp"]),
    ],
    "embedding_forward": [
        ("idx_rank1", _ids((6,), V_EMB)("idx"), VE, ["idx"]),
        ("idx_rank3", _ids((1, 2, 3), V_EMB)("idx"), VE, ["idx"]),
        ("idx_negative", _poke("idx", (0, 1), -1), VE, ["idx"]),
        ("idx_eq_V", _poke("idx", (1, 2), V_EMB), VE, ["idx"]),
        ("idx_int32_max", _poke("idx", (1, 0), 2**31 - 1), VE, ["idx"]),
        ("idx_int32_min", _poke("idx", (0, 0), -(2**31)), VE, ["idx"]),
        ("wte_rank1", _f(V_EMB * C_EMB)("wte"), VE, ["wte"]),
        ("wpe_rank3", _f(1, MAXT, C_EMB)("wpe"), VE, ["wpe"]),
        ("wpe_columns", _f(MAXT, C_EMB - 1)("wpe"), VE, ["wpe"]),
        ("wpe_too_short", _f(2, C_EMB)("wpe"), VE, ["wpe"]),
        ("pos_offset_past_wpe", _set(pos_offset=2), VE, ["wpe", "pos_offset"]),
        ("pos_offset_negative", _set(pos_offset=-1), VE, ["pos_offset"]),
        ("out_shape", _f(2, 3, C_EMB - 1)("out"), VE, ["out"]),
        ("out_flat", _f(6, C_EMB)("out"), VE, ["out"]),
        ("out_overlaps_wte", _overlap("wte", (V_EMB, C_EMB), "out", (2, 3, C_EMB), 20), VE, ["out"]),
        ("out_overlaps_wpe", _overlap("out", (2, 3, C_EMB), "wpe", (MAXT, C_EMB), 1), VE, ["out"]),
    ],
    "embedding_backward": [
        ("dout_shape", _f(2, 3, C_EMB - 1)("dout"), VE, ["dout"]),
        ("dout_rank", _f(6, C_EMB)("dout"), VE, ["dout"]),
        ("idx_rank1", _ids((6,), V_EMB)("idx"), VE, ["idx"]),
        ("idx_negative", _poke("idx", (1, 1), -1), VE, ["idx"]),
        ("idx_eq_V", _poke("idx", (0, 2), V_EMB), VE, ["idx"]),
        ("dwte_rank1", _f(V_EMB * C_EMB)("dwte"), VE, ["dwte"]),
        ("dwpe_columns", _f(MAXT, C_EMB + 1)("dwpe"), VE, ["dwpe"]),
        ("pos_offset_past_dwpe", _set(pos_offset=2), VE, ["dwpe", "pos_offset"]),
        ("pos_offset_negative", _set(pos_offset=-3), VE, ["pos_offset"]),
        ("dwte_is_dwpe_buffer", _overlap("dwte", (V_EMB, C_EMB), "dwpe", (MAXT, C_EMB), 10), VE, ["dwte", "dwpe"]),
        ("dwte_overlaps_dout", _overlap("dout", (2, 3, C_EMB), "dwte", (V_EMB, C_EMB), 29), VE, ["dwte"]),
        ("dwpe_overlaps_dout", _overlap("dwpe", (MAXT, C_EMB), "dout", (2, 3, C_EMB), 19), VE, ["dwpe"]),
    ],
    "add_forward": [
        ("b_shape", _f(3, 6)("b"), VE, ["b"]),
        ("b_transposed_shape", _f(7, 3)("b"), VE, ["b"]),
        ("b_flat", _f(21)("b"), VE, ["b"]),
        ("b_batched", _f(2, 3, 7)("b"), VE, ["b"]),
        ("out_shape", _f(3, 6)("out"), VE, ["out"]),
        ("out_flat", _f(21)("out"), VE, ["out"]),
        ("out_overlaps_a", _overlap("a", (3, 7), "out", (3, 7), 1), VE, ["out"]),
        ("out_overlaps_b", _overlap("out", (3, 7), "b", (3, 7), 7), VE, ["out"]),
        ("out_is_a_b_overlaps", _seq(_overlap("a", (3, 7), "b", (3, 7), 1), _same("out", "a")), VE, ["out"]),
    ],
    "cross_entropy_forward": [
        ("targets_shape", _ids((5,), VP)("targets"), VE, ["targets"]),
        ("targets_rank", _ids((4, 1), VP)("targets"), VE, ["targets"]),
        ("targets_negative", _poke("targets", 0, -1), VE, ["targets"]),
        ("targets_eq_V", _poke("targets", 1, VP), VE, ["targets"]),
        ("targets_in_padding", _seq(_set(V=7), _poke("targets", 3, 7)), VE, ["targets"]),
        ("targets_other_ignore_index", _set(ignore_index=-1), VE, ["targets"]),
        ("V_gt_Vp", _set(V=VP + 1), VE, ["V"]),
        ("losses_shape", _f(5)("losses"), VE, ["losses"]),
        ("lse_shape", _f(4, 1)("lse"), VE, ["lse"]),
        ("logits_0d", _set(logits=np.array(1.0, F32), losses=None, lse=None), VE, ["logits"]),
        ("losses_is_lse", _same("losses", "lse"), VE, ["losses", "lse"]),
        ("lse_overlaps_logits", _overlap("logits", (4, VP), "lse", (4,), 30), VE, ["lse"]),
        ("losses_overlaps_lse", _overlap("losses", (4,), "lse", (4,), 2), VE, ["losses", "lse"]),
    ],
    "cross_entropy_backward": [
        ("lse_shape", _f(5)("lse"), VE, ["lse"]),
        ("dlosses_shape", _f(4, 1)("dlosses"), VE, ["dlosses"]),
        ("targets_shape", _ids((3,), VP)("targets"), VE, ["targets"]),
        ("targets_negative", _poke("targets", 3, -1), VE, ["targets"]),
        ("targets_eq_V", _poke("targets", 0, VP), VE, ["targets"]),
        ("targets_in_padding", _seq(_set(V=5), _poke("targets", 1, 6)), VE, ["targets"]),
        ("V_gt_Vp", _set(V=VP + 3), VE, ["V"]),
        ("dlogits_shape", _f(4, VP - 1)("dlogits"), VE, ["dlogits"]),
        ("dlogits_flat", _f(4 * VP)("dlogits"), VE, ["dlogits"]),
        ("dlogits_overlaps_logits", _overlap("logits", (4, VP), "dlogits", (4, VP), VP), VE, ["dlogits"]),
        ("dlogits_overlaps_dlosses", _overlap("dlogits", (4, VP), "dlosses", (4,), 12), VE, ["dlogits"]),
        ("dlogits_overlaps_lse", _overlap("lse", (4,), "dlogits", (4, VP), 3), VE, ["dlogits"]),
        ("accumulate_without_dlogits", _set(dlogits=None, accumulate=True), VE, ["dlogits"]),
    ],
    "adamw_step": [
        ("lr_negative", _set(lr=-1e-3), VE, ["lr"]),
        ("lr_nan", _set(lr=math.nan), VE, ["lr"]),
        ("lr_inf", _set(lr=math.inf), VE, ["lr"]),
        ("beta1_one", _set(beta1=1.0), VE, ["beta1"]),
        ("beta1_negative", _set(beta1=-0.1), VE, ["beta1"]),
        ("beta2_one", _set(beta2=1.0), VE, ["beta2"]),
        ("beta2_gt_one", _set(beta2=1.5), VE, ["beta2"]),
        ("beta2_nan", _set(beta2=math.nan), VE, ["beta2"]),
        ("eps_zero", _set(eps=0.0), VE, ["eps"]),
        ("eps_negative", _set(eps=-1e-8), VE, ["eps"]),
        ("weight_decay_negative", _set(weight_decay=-0.01), VE, ["weight_decay"]),
        ("step_zero", _set(step=0), VE, ["step"]),
        ("step_negative", _set(step=-2), VE, ["step"]),
        ("grad_scale_inf", _set(grad_scale=math.inf), VE, ["grad_scale"]),
        ("grad_shape", _f(3, 4)("grad"), VE, ["grad"]),
        ("m_shape", _f(5, 3)("m"), VE, ["m"]),
        ("v_flat", _f(15)("v"), VE, ["v"]),
        ("m_is_v", _same("m", "v"), VE, ["m", "v"]),
        ("param_is_grad", _same("param", "grad"), VE, ["param", "grad"]),
        ("m_overlaps_param", _overlap("param", (3, 5), "m", (3, 5), 14), VE, ["param", "m"]),
        ("grad_overlaps_v", _overlap("v", (3, 5), "grad", (3, 5), 1), VE, ["v", "grad"]),
    ],
}


@pytest.mark.parametrize(
    "op,mutate,exc,names",
    [pytest.param(op, m, e, n, id=f"{op}-{cid}") for op, cs in CASES.items() for cid, m, e, n in cs],
)
def test_bad_argument(op, mutate, exc, names, rng):
    kw = _base(op, rng)
    mutate(kw, rng)
    _expect_rejected(op, kw, exc, names)


def test_every_op_has_explicit_cases():
    assert set(CASES) == set(OPS)


# ------------------------------------------------------------------------------------------------ global_norm
def test_global_norm_bad_arguments(rng):
    ok = randn(rng, 3, 5)
    for tensors, exc, name in [
        ([ok.astype(np.float64)], TypeError, "tensors[0]"),
        ([ok, ok.astype(np.int32)], TypeError, "tensors[1]"),
        ([ok, "abc"], TypeError, "tensors[1]"),
        ([ok, [1.0, 2.0]], TypeError, "tensors[1]"),
        ([ok, ok, _strided_copy(ok)], ValueError, "tensors[2]"),
    ]:
        with pytest.raises(exc) as info:
            ops.global_norm(tensors)
        msg = str(info.value)
        assert type(info.value) is exc, msg
        assert "global_norm" in msg and name in msg, msg
    with pytest.raises(TypeError):
        ops.global_norm(5)


# ------------------------------------------------------------------------------------------------ integer overflow
_POS_OFFSET_SCRIPT = """
import numpy as np
from gptx import ops
idx = np.zeros((2, 3), np.int32)
wte, wpe, dout = np.ones((7, 5), np.float32), np.ones((4, 5), np.float32), np.ones((2, 3, 5), np.float32)
for po in (2**63 - 1, 2**63 - 2, 2**63 - 3):
    for name, call in (("embedding_forward", lambda: ops.embedding_forward(idx, wte, wpe, pos_offset=po)),
                       ("embedding_backward", lambda: ops.embedding_backward(dout, idx, wte, wpe, pos_offset=po))):
        try:
            call()
        except ValueError as e:
            assert name in str(e) and ("'pos_offset'" in str(e) or "wpe'" in str(e)), str(e)
            continue
        print(f"ACCEPTED {name} pos_offset={po}", flush=True)
print("DONE")
"""


def test_pos_offset_overflow_rejected(tmp_path):
    """pos_offset near INT64_MAX must not wrap `pos_offset + T` past the range check (run in a subprocess: an
    accepted call reads and writes far outside wpe)."""
    r = subprocess.run([sys.executable, "-c", _POS_OFFSET_SCRIPT], capture_output=True, text=True, timeout=60,
                       env=_subprocess_env(), cwd=tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode == 0 and "DONE" in r.stdout and "ACCEPTED" not in out, (
        f"embedding pos_offset overflow: rc={r.returncode}\n{out[-2000:]}")


def _subprocess_env():
    env = dict(os.environ)
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(gptx.__file__)))
    env["PYTHONPATH"] = pkg_parent + os.pathsep + env.get("PYTHONPATH", "")
    return env


# ------------------------------------------------------------------------------------------------ size overflow
@pytest.mark.parametrize(
    "shape,dtype",
    [([2**40, 2**40], "float32"), ([2**62, 2], "uint8"), ([2**61, 1], "float32"), ([2**31, 2**31, 4], "float16"),
     ([3, 2**62, 3], "int32")],
    ids=str,
)
@pytest.mark.parametrize("make", ["empty", "zeros"])
def test_size_overflow(shape, dtype, make):
    """Element or byte counts past int64 raise ValueError naming the call (not a crash or a MemoryError)."""
    with pytest.raises(ValueError) as info:
        getattr(gptx.Tensor, make)(shape, dtype)
    assert not isinstance(info.value, TypeError)
    assert "Tensor." in str(info.value) and "large" in str(info.value)


def test_negative_dimension():
    with pytest.raises(ValueError, match="negative"):
        gptx.Tensor.empty([3, -1])


def test_view_overflow():
    t = gptx.Tensor.empty([3, 4])
    with pytest.raises(ValueError, match="Tensor.view"):
        t.view(2**40, 2**40)
    with pytest.raises(ValueError, match="Tensor.view"):
        t.view(-1, 2**62, 4)


# ------------------------------------------------------------------------------------------------ documented in place
@pytest.mark.parametrize("which", ["a", "b", "both"])
def test_add_forward_in_place(isa, threads, rng, which):
    a, b = randn(rng, 17, 97), randn(rng, 17, 97)
    if which == "both":
        b = a
    expected = ref.f64(a) + ref.f64(b)
    target = b if which == "b" else a
    r = ops.add_forward(a, b, out=target)
    assert np.shares_memory(np.asarray(r), target)
    assert_close(target, expected, what=f"add_forward in place (out is {which})")


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_softmax_forward_in_place(isa, threads, rng, causal):
    x = randn(rng, 2, 13, 1031, scale=2.0)
    expected = ref.softmax(x, 0.7, causal)
    r = ops.softmax_forward(x, scale=0.7, causal=causal, out=x)
    assert np.shares_memory(np.asarray(r), x)
    assert_close(x, expected, scale=1.0, what=f"softmax_forward in place causal={causal}")


def test_gelu_forward_in_place(isa, threads, rng):
    x = randn(rng, 3, 1001, scale=3.0)
    expected = ref.gelu(x)
    r = ops.gelu_forward(x, out=x)
    assert np.shares_memory(np.asarray(r), x)
    assert_close(x, expected, what="gelu_forward in place")


@pytest.mark.parametrize("accumulate", [False, True], ids=["overwrite", "accumulate"])
@pytest.mark.parametrize("padded", [False, True], ids=["V", "Vp"])
def test_cross_entropy_backward_in_place(isa, threads, rng, accumulate, padded):
    N, Vp = 7, 1031
    V = 1000 if padded else Vp
    logits = randn(rng, N, Vp, scale=2.0)
    targets = rng.integers(0, V, size=N).astype(np.int32)
    targets[3] = -100
    dlosses = randn(rng, N)
    lse = ref.cross_entropy(logits, targets, V)[1].astype(F32)
    expected = ref.cross_entropy_backward(logits, targets, dlosses, V)
    if accumulate:
        expected = expected + ref.f64(logits)
    r = ops.cross_entropy_backward(logits, lse, targets, dlosses, V=V, dlogits=logits, accumulate=accumulate)
    assert np.shares_memory(np.asarray(r), logits)
    assert_close(logits, expected, what=f"cross_entropy_backward in place (V={V}, accumulate={accumulate})")


def test_softmax_backward_dinp_is_dout(isa, rng):
    """Not documented as in place; if the op accepts dinp=dout it must give the right answer."""
    out = ref.softmax(randn(rng, 5, 97)).astype(F32)
    dout = randn(rng, 5, 97)
    expected = ref.softmax_backward(dout, out, 1.3)
    try:
        ops.softmax_backward(dout, out, scale=1.3, dinp=dout)
    except ValueError as e:
        assert "softmax_backward" in str(e) and "'dinp'" in str(e)
        return
    assert_close(dout, expected, what="softmax_backward dinp=dout")


@pytest.mark.parametrize("accumulate", [False, True], ids=["overwrite", "accumulate"])
def test_gelu_backward_dinp_is_dout(isa, rng, accumulate):
    """Not documented as in place; if the op accepts dinp=dout it must give the right answer."""
    x, dout = randn(rng, 3, 333, scale=2.0), randn(rng, 3, 333)
    expected = ref.gelu_backward(dout, x) + (ref.f64(dout) if accumulate else 0.0)
    try:
        ops.gelu_backward(dout, x, dinp=dout, accumulate=accumulate)
    except ValueError as e:
        assert "gelu_backward" in str(e) and "'dinp'" in str(e)
        return
    assert_close(dout, expected, what=f"gelu_backward dinp=dout accumulate={accumulate}")
