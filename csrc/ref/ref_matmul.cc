// ref_matmul.cc — scalar reference of matmul_forward and bias_backward (double accumulation; the spec, not fast).
#include "../cpu/kernels.h"
#include "../cpu/threads.h"

namespace gptx {
namespace cpu {
namespace GPTX_ISA_NS {

namespace {

// op(A_z)[m, k]: A_z is M x K, or K x M read transposed.
double op_a(const MatmulParams& g, const float* A, int64_t m, int64_t k) {
    return g.trans_a ? A[k * g.lda + m] : A[m * g.lda + k];
}

// op(B_z)[k, n]: B_z is K x N, or N x K read transposed.
double op_b(const MatmulParams& g, const float* B, int64_t k, int64_t n) {
    return g.trans_b ? B[n * g.ldb + k] : B[k * g.ldb + n];
}

}  // namespace

// C_z[m, n] = beta * C_z[m, n] + sum_k op(A_z)[m, k] * op(B_z)[k, n] + bias[n], batch after batch
void matmul_forward(const MatmulParams& g) {
    const int nt = num_threads();
    for (int64_t z = 0; z < g.batch; z++) {
        const float* A = f32(g.A) + z * g.stride_a;
        const float* B = f32(g.B) + z * g.stride_b;
        float* C = f32(g.C) + z * g.stride_c;
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int64_t m = 0; m < g.M; m++) {
            for (int64_t n = 0; n < g.N; n++) {
                double acc = 0.0;
                for (int64_t k = 0; k < g.K; k++) acc += op_a(g, A, m, k) * op_b(g, B, k, n);
                if (g.bias != nullptr) acc += g.bias[n];
                float& c = C[m * g.ldc + n];
                if (g.beta != 0.0f) acc += (double)g.beta * c;  // beta == 0: C is never read
                c = (float)acc;
            }
        }
    }
}

// dbias[o] (+)= sum_n dout[n, o]
void bias_backward(const BiasBackwardParams& p) {
    float* dbias = p.dbias;
    const float* dout = f32(p.dout);
    const int64_t N = p.N, OC = p.OC;
    const bool accumulate = p.accumulate;
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
