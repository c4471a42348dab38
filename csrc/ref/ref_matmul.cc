// ref_matmul.cc — scalar reference of gemm and bias_backward (double accumulation; the spec, not fast).
#include "../cpu/kernels.h"
#include "../cpu/threads.h"

namespace gptx {
namespace cpu {
namespace GPTX_ISA_NS {

namespace {

// op(A)[m, k]: A is M x K, or K x M read transposed.
double op_a(const GemmArgs& g, int64_t m, int64_t k) {
    return g.trans_a ? g.A[k * g.lda + m] : g.A[m * g.lda + k];
}

// op(B)[k, n]: B is K x N, or N x K read transposed.
double op_b(const GemmArgs& g, int64_t k, int64_t n) {
    return g.trans_b ? g.B[n * g.ldb + k] : g.B[k * g.ldb + n];
}

}  // namespace

// C[m, n] = beta * C[m, n] + sum_k op(A)[m, k] * op(B)[k, n] + bias[n]
void gemm(const GemmArgs& g) {
    const int nt = num_threads();
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t m = 0; m < g.M; m++) {
        for (int64_t n = 0; n < g.N; n++) {
            double acc = 0.0;
            for (int64_t k = 0; k < g.K; k++) acc += op_a(g, m, k) * op_b(g, k, n);
            if (g.bias != nullptr) acc += g.bias[n];
            float& c = g.C[m * g.ldc + n];
            if (g.beta != 0.0f) acc += (double)g.beta * c;  // beta == 0: C is never read
            c = (float)acc;
        }
    }
}

// dbias[o] (+)= sum_n dout[n, o]
void bias_backward(float* dbias, const float* dout, int64_t N, int64_t OC, bool accumulate) {
    const int nt = num_threads();
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t o = 0; o < OC; o++) {
        double acc = accumulate ? (double)dbias[o] : 0.0;
        for (int64_t n = 0; n < N; n++) acc += dout[n * OC + o];
        dbias[o] = (float)acc;
    }
}

}  // namespace GPTX_ISA_NS
}  // namespace cpu
}  // namespace gptx
