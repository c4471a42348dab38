// attention.cc — validation and dispatch of attention_forward / attention_backward (separate and packed layouts).
#include <cmath>

#include "gptx/ops.h"
#include "ops/check.h"
#include "ops/dropout_spec.h"

namespace gptx {

namespace {

using detail::Check;

// Sizes and strided views of q, k, v for the kernel, from either layout.
struct AttentionLayout {
    bool packed = false;
    int64_t B = 0, NH = 0, HS = 0, Tq = 0, Tk_cap = 0, Tk = 0;
    std::vector<int64_t> out_shape, lse_shape;
};

AttentionLayout check_layout(const Check& c, const Tensor& q, const Tensor& k, const Tensor& v, bool causal,
                             int64_t kv_len) {
    AttentionLayout L;
    c.act(q, "q");
    if (!k.defined() && !v.defined()) {
        L.packed = true;
        c.ndim(q, "q", 5, 5);
        if (q.size(2) != 3) c.fail("q", "in the packed layout must be qkv (B, T, 3, NH, HS), got " + q.shape_str());
        L.B = q.size(0);
        L.Tq = q.size(1);
        L.NH = q.size(3);
        L.HS = q.size(4);
        L.Tk_cap = L.Tq;
    } else {
        if (!k.defined()) c.fail("k", "is required when v is given (or pass neither for the packed qkv layout)");
        if (!v.defined()) c.fail("v", "is required when k is given (or pass neither for the packed qkv layout)");
        c.act(k, "k");
        c.act(v, "v");
        c.ndim(q, "q", 4, 4);
        c.ndim(k, "k", 4, 4);
        L.B = q.size(0);
        L.Tq = q.size(1);
        L.NH = q.size(2);
        L.HS = q.size(3);
        L.Tk_cap = k.size(1);
        if (k.size(0) != L.B || k.size(2) != L.NH || k.size(3) != L.HS)
            c.fail("k", "must be (B, Tk, NH, HS) = (" + std::to_string(L.B) + ", Tk, " + std::to_string(L.NH) + ", " +
                            std::to_string(L.HS) + "), got " + k.shape_str());
        c.shape(v, "v", k.shape());
    }
    L.Tk = kv_len < 0 ? L.Tk_cap : kv_len;
    if (L.packed && kv_len >= 0 && kv_len != L.Tq) c.fail("kv_len", "must be -1 (or T) in the packed layout");
    if (L.Tk > L.Tk_cap)
        c.fail("kv_len", "is " + std::to_string(L.Tk) + " but k holds only " + std::to_string(L.Tk_cap) + " rows");
    if (L.Tk < 1 && L.Tq > 0) c.fail("kv_len", "must be >= 1 (there must be at least one key)");
    if (causal && L.Tq > L.Tk)
        c.fail("q", "has " + std::to_string(L.Tq) + " rows but only " + std::to_string(L.Tk) +
                        " keys; causal attention needs Tq <= Tk");
    if (L.HS == 0 && L.B * L.NH * L.Tq > 0) c.fail("q", "has head size 0: attention needs at least one feature");
    const int64_t max_hs = c.kernels().caps.max_head_size;
    if (max_hs > 0 && L.HS > max_hs)
        c.fail("q", "has head size " + std::to_string(L.HS) + " but the " + c.kernels().name +
                        " backend supports head sizes up to " + std::to_string(max_hs));
    L.out_shape = {L.B, L.Tq, L.NH, L.HS};
    L.lse_shape = {L.B, L.NH, L.Tq};
    return L;
}

// The kernel parameters of the q, k, v views (pointers offset in elements of the activation dtype).
backend::AttentionParams make_params(const Check& c, const AttentionLayout& L, const Tensor& q, const Tensor& k,
                                     const Tensor& v, bool causal, float scale) {
    const size_t es = dtype_size(q.dtype());
    auto at = [es](const Tensor& t, int64_t elems) {
        return static_cast<const char*>(t.data_ptr()) + static_cast<size_t>(elems) * es;
    };
    backend::AttentionParams p;
    p.dtype = c.act_dtype();
    p.B = L.B;
    p.NH = L.NH;
    p.Tq = L.Tq;
    p.Tk = L.Tk;
    p.HS = L.HS;
    p.causal = causal;
    p.scale = scale > 0.0f ? scale : static_cast<float>(1.0 / std::sqrt(static_cast<double>(L.HS)));
    const int64_t C = L.NH * L.HS;
    if (L.packed) {
        p.q = at(q, 0);
        p.k = at(q, C);
        p.v = at(q, 2 * C);
        p.q_batch_stride = p.k_batch_stride = p.v_batch_stride = L.Tq * 3 * C;
        p.q_row_stride = p.k_row_stride = p.v_row_stride = 3 * C;
    } else {
        p.q = at(q, 0);
        p.k = at(k, 0);
        p.v = at(v, 0);
        p.q_batch_stride = L.Tq * C;
        p.k_batch_stride = p.v_batch_stride = L.Tk_cap * C;
        p.q_row_stride = p.k_row_stride = p.v_row_stride = C;
    }
    p.q_head_stride = p.k_head_stride = p.v_head_stride = L.HS;
    p.o_batch_stride = L.Tq * C;
    p.o_row_stride = C;
    p.o_head_stride = L.HS;
    return p;
}

// dq/dk/dv pointers (packed: the three thirds of dqkv), in elements of the activation dtype.
void grad_pointers(const AttentionLayout& L, const AttentionGrads& g, backend::AttentionBackwardParams* p) {
    const size_t es = dtype_size(g.dq.dtype());
    const int64_t C = L.NH * L.HS;
    char* base = static_cast<char*>(g.dq.data_ptr());
    p->dq = base;
    if (L.packed) {
        p->dk = base + static_cast<size_t>(C) * es;
        p->dv = base + static_cast<size_t>(2 * C) * es;
    } else {
        p->dk = g.dk.data_ptr();
        p->dv = g.dv.data_ptr();
    }
}

}  // namespace

AttentionOutputs attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, bool causal, float scale,
                                   int64_t kv_len, const Tensor& out_, const Tensor& lse_, const Dropout& dropout) {
    const Check c("attention_forward");
    const AttentionLayout L = check_layout(c, q, k, v, causal, kv_len);
    const backend::DropoutMask mask = detail::dropout_mask(c, dropout);
    if (!std::isfinite(scale) || scale < 0.0f)
        c.fail("scale", "must be a positive finite number, or 0 for 1/sqrt(HS)");
    AttentionOutputs r;
    r.out = c.output(out_, "out", L.out_shape, c.act_dtype());
    r.lse = c.output(lse_, "lse", L.lse_shape);
    for (const Tensor* in : {&q, &k, &v}) {
        const char* name = in == &q ? "q" : in == &k ? "k" : "v";
        c.no_overlap(r.out, "out", *in, name);
        c.no_overlap(r.lse, "lse", *in, name);
    }
    c.no_overlap(r.out, "out", r.lse, "lse");
    if (r.out.numel() == 0) return r;
    backend::AttentionParams p = make_params(c, L, q, k, v, causal, scale);
    p.out = r.out.data_ptr();
    p.lse = r.lse.data<float>();
    p.dropout = mask;
    c.backend()->attention_forward(p);
    return r;
}

AttentionGrads attention_backward(const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                                  const Tensor& out, const Tensor& lse, bool causal, float scale, int64_t kv_len,
                                  const Tensor& dq_, const Tensor& dk_, const Tensor& dv_, bool accumulate,
                                  const Dropout& dropout) {
    const Check c("attention_backward");
    const AttentionLayout L = check_layout(c, q, k, v, causal, kv_len);
    const backend::DropoutMask mask = detail::dropout_mask(c, dropout);
    if (!std::isfinite(scale) || scale < 0.0f)
        c.fail("scale", "must be a positive finite number, or 0 for 1/sqrt(HS)");
    c.act(dout, "dout");
    c.shape(dout, "dout", L.out_shape);
    c.act(out, "out");
    c.shape(out, "out", L.out_shape);
    c.f32(lse, "lse");
    c.shape(lse, "lse", L.lse_shape);
    AttentionGrads g;
    if (accumulate && (!dq_.defined() || (!L.packed && (!dk_.defined() || !dv_.defined()))))
        c.fail(!dq_.defined() ? "dq" : !dk_.defined() ? "dk" : "dv", "is required when accumulate is true");
    const DType act = c.act_dtype();
    g.dq = c.output(dq_, "dq", q.shape(), act);
    if (!L.packed) {
        // Rows of k/v past kv_len get no gradient: fresh buffers start at zero so those rows read as 0.
        g.dk = dk_.defined() ? c.output(dk_, "dk", k.shape(), act) : Tensor::zeros(k.shape(), act, c.device());
        g.dv = dv_.defined() ? c.output(dv_, "dv", v.shape(), act) : Tensor::zeros(v.shape(), act, c.device());
    } else if (dk_.defined() || dv_.defined()) {
        c.fail(dk_.defined() ? "dk" : "dv", "must not be given in the packed layout (dq receives dqkv)");
    }
    const Tensor* ins[6] = {&dout, &q, &k, &v, &out, &lse};
    const char* in_names[6] = {"dout", "q", "k", "v", "out", "lse"};
    const Tensor* outs[3] = {&g.dq, &g.dk, &g.dv};
    const char* out_names[3] = {"dq", "dk", "dv"};
    for (int i = 0; i < 3; i++) {
        for (int j = 0; j < 6; j++) c.no_overlap(*outs[i], out_names[i], *ins[j], in_names[j]);
        for (int j = i + 1; j < 3; j++) c.no_overlap(*outs[i], out_names[i], *outs[j], out_names[j]);
    }
    if (L.B * L.NH * L.Tq == 0) return g;

    backend::AttentionBackwardParams p;
    p.fwd = make_params(c, L, q, k, v, causal, scale);
    p.fwd.out = const_cast<void*>(out.data_ptr());  // read-only in backward
    p.fwd.lse = const_cast<float*>(lse.data<float>());
    p.dout = dout.data_ptr();
    grad_pointers(L, g, &p);
    p.accumulate = accumulate;
    p.fwd.dropout = mask;
    c.backend()->attention_backward(p);
    return g;
}

}  // namespace gptx
