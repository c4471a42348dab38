// matmul.cc — validation and dispatch of matmul_forward / matmul_backward / bias_backward.
#include <cstring>

#include "gptx/ops.h"
#include "ops/check.h"

namespace gptx {

namespace {

using detail::Check;

// The matrix view of a (..., rows, cols) operand.
struct Operand {
    int64_t batch = 1, rows = 0, cols = 0;
    std::vector<int64_t> batch_shape;
};

Operand operand(const Tensor& t) {
    Operand o;
    const auto& s = t.shape();
    o.rows = s[s.size() - 2];
    o.cols = s[s.size() - 1];
    o.batch_shape.assign(s.begin(), s.end() - 2);
    o.batch = detail::leading(s, 2);
    return o;
}

// Sizes shared by forward and backward after validating a and b.
struct MatmulShape {
    Operand a, b;
    int64_t M = 0, N = 0, K = 0;
    bool shared_b = false;  // b is 2-D and serves every batch of a
    std::vector<int64_t> out_shape;
};

MatmulShape check_operands(const Check& c, const Tensor& a, const Tensor& b, bool trans_a, bool trans_b) {
    c.act(a, "a", /*allow_f16=*/true);
    c.act(b, "b", /*allow_f16=*/true);
    c.ndim(a, "a", 2, 8);
    c.ndim(b, "b", 2, 8);
    MatmulShape s;
    s.a = operand(a);
    s.b = operand(b);
    s.M = trans_a ? s.a.cols : s.a.rows;
    s.K = trans_a ? s.a.rows : s.a.cols;
    const int64_t kb = trans_b ? s.b.cols : s.b.rows;
    s.N = trans_b ? s.b.rows : s.b.cols;
    if (kb != s.K)
        c.fail("b", "has inner dimension " + std::to_string(kb) + " but a " + a.shape_str() + (trans_a ? " (transposed)" : "") +
                        " needs " + std::to_string(s.K));
    s.shared_b = b.dim() == 2;
    if (!s.shared_b && s.b.batch_shape != s.a.batch_shape)
        c.fail("b", "has batch dims " + detail::shape_to_string(s.b.batch_shape) + " but a has " +
                        detail::shape_to_string(s.a.batch_shape) + " (a 2-D b is shared by every batch)");
    s.out_shape = s.a.batch_shape;
    s.out_shape.push_back(s.M);
    s.out_shape.push_back(s.N);
    return s;
}

// One (possibly batched) GEMM on the op's device: the backend contract's MatmulParams with the operands taken from
// tensors (pointers and dtypes).
using Gemm = backend::MatmulParams;

void set_a(Gemm& g, const Tensor& t) {
    g.A = t.data_ptr();
    g.ab_dtype = t.dtype();
}
void set_b(Gemm& g, const Tensor& t) { g.B = t.data_ptr(); }
void set_c(Gemm& g, const Tensor& t) {
    g.C = t.data_ptr();
    g.c_dtype = t.dtype();
}

void run(const Check& c, const Gemm& g) {
    if (g.M == 0 || g.N == 0 || g.batch == 0) return;
    c.backend()->matmul_forward(g);
}

// The dtype of a matmul result: float32 or the operands' dtype; an output given by the caller decides.
DType result_dtype(const Check& c, const Tensor& given, const char* arg) {
    if (!given.defined()) return c.act_dtype();
    const DType d = given.dtype();
    if (d != DType::float32 && d != c.act_dtype())
        c.fail_type(arg, std::string("must be float32 or ") + dtype_name(c.act_dtype()) + ", got " + dtype_name(d));
    return d;
}

}  // namespace

Tensor matmul_forward(const Tensor& a, const Tensor& b, const Tensor& bias, bool trans_a, bool trans_b,
                      const Tensor& out_, bool accumulate) {
    const Check c("matmul_forward");
    const MatmulShape s = check_operands(c, a, b, trans_a, trans_b);
    if (bias.defined()) {
        c.f32(bias, "bias");
        c.shape(bias, "bias", {s.N});
    }
    if (accumulate && !out_.defined()) c.fail("out", "is required when accumulate is true");
    Tensor out = c.output(out_, "out", s.out_shape, result_dtype(c, out_, "out"));
    c.no_overlap(out, "out", a, "a");
    c.no_overlap(out, "out", b, "b");
    if (bias.defined()) c.no_overlap(out, "out", bias, "bias");

    Gemm g;
    g.trans_b = trans_b;
    g.N = s.N;
    g.K = s.K;
    set_a(g, a);
    g.lda = s.a.cols;
    set_b(g, b);
    g.ldb = s.b.cols;
    set_c(g, out);
    g.ldc = s.N;
    g.beta = accumulate ? 1.0f : 0.0f;
    g.bias = bias.defined() ? bias.data<float>() : nullptr;
    if (s.shared_b && !trans_a) {  // fold the batch into M: one large GEMM
        g.M = s.a.batch * s.M;
    } else {
        g.trans_a = trans_a;
        g.M = s.M;
        g.batch = s.a.batch;
        g.stride_a = s.a.rows * s.a.cols;
        g.stride_b = s.shared_b ? 0 : s.b.rows * s.b.cols;
        g.stride_c = s.M * s.N;
    }
    run(c, g);
    return out;
}

MatmulGrads matmul_backward(const Tensor& dout, const Tensor& a, const Tensor& b, bool trans_a, bool trans_b,
                            bool need_da, bool need_db, bool need_dbias, const Tensor& da_, const Tensor& db_,
                            const Tensor& dbias_, bool accumulate) {
    const Check c("matmul_backward");
    const MatmulShape s = check_operands(c, a, b, trans_a, trans_b);
    c.act(dout, "dout");
    c.shape(dout, "dout", s.out_shape);
    if (accumulate && ((need_da && !da_.defined()) || (need_db && !db_.defined()) || (need_dbias && !dbias_.defined())))
        c.fail(!need_da || da_.defined() ? (!need_db || db_.defined() ? "dbias" : "db") : "da",
               "is required when accumulate is true");
    MatmulGrads g;
    if (need_da) g.da = c.output(da_, "da", a.shape(), result_dtype(c, da_, "da"));
    if (need_db) g.db = c.output(db_, "db", b.shape(), result_dtype(c, db_, "db"));
    if (need_dbias) g.dbias = c.output(dbias_, "dbias", {s.N});
    const Tensor* outs[3] = {&g.da, &g.db, &g.dbias};
    const char* out_names[3] = {"da", "db", "dbias"};
    for (int i = 0; i < 3; i++) {
        if (!outs[i]->defined()) continue;
        c.no_overlap(*outs[i], out_names[i], dout, "dout");
        c.no_overlap(*outs[i], out_names[i], a, "a");
        c.no_overlap(*outs[i], out_names[i], b, "b");
        for (int j = i + 1; j < 3; j++)
            if (outs[j]->defined()) c.no_overlap(*outs[i], out_names[i], *outs[j], out_names[j]);
    }

    const int64_t lda = s.a.cols, ldb = s.b.cols, M = s.M, N = s.N, K = s.K, batch = s.a.batch;
    const int64_t a_step = s.a.rows * s.a.cols, b_step = s.shared_b ? 0 : s.b.rows * s.b.cols, d_step = M * N;
    const bool fold = s.shared_b && !trans_a;  // batch folds into M: (batch*M, K) operands

    if (g.da.defined()) {
        Gemm m;
        set_c(m, g.da);
        m.beta = accumulate ? 1.0f : 0.0f;
        if (fold || !trans_a) {  // dA (M, K) = dout @ op(B)^T
            m.trans_b = !trans_b;
            m.M = fold ? batch * M : M;
            m.N = K;
            m.K = N;
            set_a(m, dout);
            m.lda = N;
            set_b(m, b);
            m.ldb = ldb;
            m.ldc = K;
            if (!fold) {
                m.batch = batch;
                m.stride_a = d_step;
                m.stride_b = b_step;
                m.stride_c = a_step;
            }
        } else {  // dA (K, M) = op(B) @ dout^T
            m.trans_a = trans_b;
            m.trans_b = true;
            m.M = K;
            m.N = M;
            m.K = N;
            set_a(m, b);
            m.lda = ldb;
            set_b(m, dout);
            m.ldb = N;
            m.ldc = M;
            m.batch = batch;
            m.stride_a = b_step;
            m.stride_b = d_step;
            m.stride_c = a_step;
        }
        run(c, m);
    }
    if (g.db.defined()) {
        Gemm m;
        set_c(m, g.db);
        m.ldc = s.b.cols;
        if (!trans_b) {  // dB (K, N) = op(A)^T @ dout
            m.trans_a = fold ? true : !trans_a;
            m.M = K;
            m.N = N;
            set_a(m, a);
            m.lda = lda;
            set_b(m, dout);
            m.ldb = N;
        } else {  // dB (N, K) = dout^T @ op(A)
            m.trans_a = true;
            m.trans_b = fold ? false : trans_a;
            m.M = N;
            m.N = K;
            set_a(m, dout);
            m.lda = N;
            set_b(m, a);
            m.ldb = lda;
        }
        if (fold) {
            m.K = batch * M;
            m.beta = accumulate ? 1.0f : 0.0f;
            run(c, m);
        } else if (!s.shared_b) {
            m.K = M;
            m.beta = accumulate ? 1.0f : 0.0f;
            m.batch = batch;
            m.stride_a = trans_b ? d_step : a_step;
            m.stride_b = trans_b ? a_step : d_step;
            m.stride_c = b_step;
            run(c, m);
        } else {
            // A shared b sums its gradient over the batch: one GEMM per batch, every one after the first
            // accumulating (in order, so the sum is deterministic). A 16-bit db would round after every batch, so
            // the sum runs in a float32 buffer that is rounded once at the end.
            m.K = M;
            Tensor acc32;
            if (g.db.dtype() != DType::float32) {
                acc32 = accumulate ? g.db.to(DType::float32) : Tensor::empty(g.db.shape(), DType::float32, c.device());
                set_c(m, acc32);
            }
            for (int64_t i = 0; i < batch; i++) {
                Gemm mi = m;
                mi.beta = accumulate || i > 0 ? 1.0f : 0.0f;
                const Tensor ai = (trans_b ? dout : a).view({-1}).slice(i * (trans_b ? d_step : a_step),
                                                                       (i + 1) * (trans_b ? d_step : a_step));
                const Tensor bi = (trans_b ? a : dout).view({-1}).slice(i * (trans_b ? a_step : d_step),
                                                                       (i + 1) * (trans_b ? a_step : d_step));
                set_a(mi, ai);
                set_b(mi, bi);
                run(c, mi);
            }
            if (acc32.defined()) g.db.copy_from(acc32);
        }
    }
    if (g.dbias.defined()) bias_backward(dout, g.dbias, accumulate);
    return g;
}

Tensor bias_backward(const Tensor& dout, const Tensor& dbias_, bool accumulate) {
    const Check c("bias_backward");
    c.act(dout, "dout", /*allow_f16=*/true);
    c.ndim(dout, "dout", 1, 8);
    const int64_t OC = dout.size(-1), N = detail::leading(dout.shape(), 1);
    if (accumulate && !dbias_.defined()) c.fail("dbias", "is required when accumulate is true");
    Tensor dbias = c.output(dbias_, "dbias", {OC});
    c.no_overlap(dbias, "dbias", dout, "dout");
    if (OC == 0) return dbias;
    if (N == 0) {
        if (!accumulate) dbias.fill(0.0);
        return dbias;
    }
    backend::BiasBackwardParams p;
    p.dbias = dbias.data<float>();
    p.dout = dout.data_ptr();
    p.dtype = dout.dtype();
    p.N = N;
    p.OC = OC;
    p.accumulate = accumulate;
    c.backend()->bias_backward(p);
    return dbias;
}

}  // namespace gptx
