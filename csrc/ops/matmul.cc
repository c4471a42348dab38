// matmul.cc — validation and dispatch of matmul_forward / matmul_backward / bias_backward.
#include <cstring>

#include "cpu/kernel_table.h"
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
    c.f32(a, "a");
    c.f32(b, "b");
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

void run_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
              int64_t ldb, float* C, int64_t ldc, bool accumulate, const float* bias) {
    if (M == 0 || N == 0) return;
    if (K == 0) {  // an empty sum: C = beta C + bias
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++)
                C[i * ldc + j] = (accumulate ? C[i * ldc + j] : 0.0f) + (bias ? bias[j] : 0.0f);
        return;
    }
    cpu::GemmArgs g;
    g.trans_a = ta;
    g.trans_b = tb;
    g.M = M;
    g.N = N;
    g.K = K;
    g.A = A;
    g.lda = lda;
    g.B = B;
    g.ldb = ldb;
    g.C = C;
    g.ldc = ldc;
    g.beta = accumulate ? 1.0f : 0.0f;
    g.bias = bias;
    cpu::active().gemm(g);
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
    Tensor out = c.output(out_, "out", s.out_shape);
    c.no_overlap(out, "out", a, "a");
    c.no_overlap(out, "out", b, "b");
    if (bias.defined()) c.no_overlap(out, "out", bias, "bias");

    const float* pa = a.data<float>();
    const float* pb = b.data<float>();
    const float* pbias = bias.defined() ? bias.data<float>() : nullptr;
    float* po = out.data<float>();
    if (s.shared_b && !trans_a) {  // fold the batch into M: one large GEMM
        run_gemm(false, trans_b, s.a.batch * s.M, s.N, s.K, pa, s.a.cols, pb, s.b.cols, po, s.N, accumulate, pbias);
        return out;
    }
    const int64_t a_step = s.a.rows * s.a.cols, b_step = s.shared_b ? 0 : s.b.rows * s.b.cols, o_step = s.M * s.N;
    for (int64_t i = 0; i < s.a.batch; i++)
        run_gemm(trans_a, trans_b, s.M, s.N, s.K, pa + i * a_step, s.a.cols, pb + i * b_step, s.b.cols,
                 po + i * o_step, s.N, accumulate, pbias);
    return out;
}

MatmulGrads matmul_backward(const Tensor& dout, const Tensor& a, const Tensor& b, bool trans_a, bool trans_b,
                            bool need_da, bool need_db, bool need_dbias, const Tensor& da_, const Tensor& db_,
                            const Tensor& dbias_, bool accumulate) {
    const Check c("matmul_backward");
    const MatmulShape s = check_operands(c, a, b, trans_a, trans_b);
    c.f32(dout, "dout");
    c.shape(dout, "dout", s.out_shape);
    if (accumulate && ((need_da && !da_.defined()) || (need_db && !db_.defined()) || (need_dbias && !dbias_.defined())))
        c.fail(!need_da || da_.defined() ? (!need_db || db_.defined() ? "dbias" : "db") : "da",
               "is required when accumulate is true");
    MatmulGrads g;
    if (need_da) g.da = c.output(da_, "da", a.shape());
    if (need_db) g.db = c.output(db_, "db", b.shape());
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

    const float* pd = dout.data<float>();
    const float* pa = a.data<float>();
    const float* pb = b.data<float>();
    const int64_t lda = s.a.cols, ldb = s.b.cols, M = s.M, N = s.N, K = s.K;
    const int64_t a_step = s.a.rows * s.a.cols, b_step = s.shared_b ? 0 : s.b.rows * s.b.cols, d_step = M * N;
    const bool fold = s.shared_b && !trans_a;  // batch folds into M: (batch*M, K) operands

    if (g.da.defined()) {
        float* p = g.da.data<float>();
        if (fold) {
            run_gemm(false, !trans_b, s.a.batch * M, K, N, pd, N, pb, ldb, p, K, accumulate, nullptr);
        } else {
            for (int64_t i = 0; i < s.a.batch; i++) {
                if (!trans_a)  // dA (M, K) = dout @ op(B)^T
                    run_gemm(false, !trans_b, M, K, N, pd + i * d_step, N, pb + i * b_step, ldb, p + i * a_step, K,
                             accumulate, nullptr);
                else  // dA (K, M) = op(B) @ dout^T
                    run_gemm(trans_b, true, K, M, N, pb + i * b_step, ldb, pd + i * d_step, N, p + i * a_step, M,
                             accumulate, nullptr);
            }
        }
    }
    if (g.db.defined()) {
        float* p = g.db.data<float>();
        const int64_t ldp = s.b.cols;
        if (fold) {
            const int64_t MM = s.a.batch * M;
            if (!trans_b)  // dB (K, N) = A^T @ dout
                run_gemm(true, false, K, N, MM, pa, lda, pd, N, p, ldp, accumulate, nullptr);
            else  // dB (N, K) = dout^T @ A
                run_gemm(true, false, N, K, MM, pd, N, pa, lda, p, ldp, accumulate, nullptr);
        } else {
            for (int64_t i = 0; i < s.a.batch; i++) {
                // A shared b sums its gradient over the batch: every batch after the first accumulates.
                const bool acc = accumulate || (s.shared_b && i > 0);
                float* pi = p + i * b_step;
                if (!trans_b)  // dB (K, N) = op(A)^T @ dout
                    run_gemm(!trans_a, false, K, N, M, pa + i * a_step, lda, pd + i * d_step, N, pi, ldp, acc, nullptr);
                else  // dB (N, K) = dout^T @ op(A)
                    run_gemm(true, trans_a, N, K, M, pd + i * d_step, N, pa + i * a_step, lda, pi, ldp, acc, nullptr);
            }
        }
    }
    if (g.dbias.defined()) bias_backward(dout, g.dbias, accumulate);
    return g;
}

Tensor bias_backward(const Tensor& dout, const Tensor& dbias_, bool accumulate) {
    const Check c("bias_backward");
    c.f32(dout, "dout");
    c.ndim(dout, "dout", 1, 8);
    const int64_t OC = dout.size(-1), N = detail::leading(dout.shape(), 1);
    if (accumulate && !dbias_.defined()) c.fail("dbias", "is required when accumulate is true");
    Tensor dbias = c.output(dbias_, "dbias", {OC});
    c.no_overlap(dbias, "dbias", dout, "dout");
    if (OC == 0) return dbias;
    if (N == 0) {
        if (!accumulate) std::memset(dbias.data_ptr(), 0, dbias.nbytes());
        return dbias;
    }
    cpu::active().bias_backward(dbias.data<float>(), dout.data<float>(), N, OC, accumulate);
    return dbias;
}

}  // namespace gptx
