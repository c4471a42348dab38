// matmul_tile.h — small helpers of the GEMM in matmul.cc: the single-GEMM arguments, integer arithmetic, scratch
// allocation and writing result vectors or register tiles into C (with bias and beta). Included only by matmul.cc
// and its headers, once per ISA build.
#pragma once
#include <stdint.h>
#include <stdlib.h>

#include "../vec.h"

namespace gptx {
namespace cpu {
namespace GPTX_ISA_NS {

// One float32 GEMM: C(M, N) = beta * C + op(A) @ op(B) + bias (the MatmulParams of one batch index).
struct GemmArgs {
    bool trans_a = false, trans_b = false;
    int64_t M = 0, N = 0, K = 0;
    const float* A = nullptr;
    int64_t lda = 0;
    const float* B = nullptr;
    int64_t ldb = 0;
    float* C = nullptr;
    int64_t ldc = 0;
    float beta = 0.0f;
    const float* bias = nullptr;
};

namespace {

int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t round_up(int64_t a, int64_t b) { return cdiv(a, b) * b; }
int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }

float* alloc_floats(int64_t n) { return (float*)aligned_alloc(64, (size_t)round_up(n * (int64_t)sizeof(float), 64)); }

// ---------------------------------------------------------------- writing a result vector into C
// r = acc (+ bias) (+ cscale * C); cscale == 0 means C is not read at all (beta = 0 must not leak NaN poison).
inline Vf finish(Vf r, const float* bias, const float* c, float cscale) {
    if (bias) r = r + vload(bias);
    if (cscale != 0.0f) r = cscale == 1.0f ? r + vload(c) : vfmadd(vset1(cscale), vload(c), r);
    return r;
}
inline Vf finish_part(Vf r, const float* bias, const float* c, float cscale, int64_t n) {
    if (bias) r = r + vload_part(bias, n, 0.0f);
    if (cscale != 0.0f) {
        Vf cv = vload_part(c, n, 0.0f);
        r = cscale == 1.0f ? r + cv : vfmadd(vset1(cscale), cv, r);
    }
    return r;
}

// Stores an MR x NV accumulator tile into C rows [0, mr) and columns [0, nr).
template <int MR, int NV>
inline void store_tile(Vf (&acc)[MR][NV], float* c, int64_t ldc, int mr, int nr, float cscale, const float* bias) {
    if (mr == MR && nr == NV * kW) {
#pragma GCC unroll 16
        for (int i = 0; i < MR; i++)
#pragma GCC unroll 8
            for (int v = 0; v < NV; v++) {
                float* cp = c + i * ldc + v * kW;
                vstore(cp, finish(acc[i][v], bias ? bias + v * kW : nullptr, cp, cscale));
            }
        return;
    }
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++) {
        if (i >= mr) break;
#pragma GCC unroll 8
        for (int v = 0; v < NV; v++) {
            int64_t cols = nr - v * kW;
            if (cols <= 0) break;
            float* cp = c + i * ldc + v * kW;
            const float* bp = bias ? bias + v * kW : nullptr;
            if (cols >= kW)
                vstore(cp, finish(acc[i][v], bp, cp, cscale));
            else
                vstore_part(cp, finish_part(acc[i][v], bp, cp, cscale, cols), cols);
        }
    }
}

}  // namespace
}  // namespace GPTX_ISA_NS
}  // namespace cpu
}  // namespace gptx
