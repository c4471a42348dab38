// matmul_small.h — the GEMM path for M <= 4 rows (token-by-token decoding): B streamed once, no packing.
// Included only by matmul.cc, once per ISA build.
#pragma once
#include <stdint.h>
#include <stdlib.h>
#include <omp.h>

#include "../threads.h"
#include "../vec.h"
#include "matmul_tile.h"

namespace gptx {
namespace cpu {
namespace GPTX_ISA_NS {
namespace {

// Decoding runs M = 1..4 rows against big weights; the cost is reading B once, so B is streamed straight from
// memory and the threads split N.
constexpr int kSmallM = 4;

// op(B) = B (K x N): MR rows of C, columns [0, w) with w <= kSmallCols. The partial sums live in a buffer (L1/L2)
// and four rows of B are streamed per pass, each read as one long contiguous run. Long runs are what counts
// (M = 1, N = 2304, K = 768, 1 thread, best of 15): a 16-column strip held in registers 11-13 GFLOP/s (64 bytes
// per row, then a row-stride jump), 512-column blocks 16.5, 1024: 18.5, 2048: 22, 4096: 28-33; OpenBLAS 22-25.
constexpr int64_t kSmallCols = 4096;

template <int MR>
void small_nn_block(int64_t K, const float* a, int64_t lda, const float* B, int64_t ldb, int64_t w, float* c,
                    int64_t ldc, float cscale, const float* bias) {
    float(*acc)[kSmallCols] = (float(*)[kSmallCols])alloc_floats(MR * kSmallCols);
    if (!acc) abort();
    const int64_t wv = w / kW * kW;  // full vectors; the tail [wv, w) is done with partial loads
    for (int i = 0; i < MR; i++)
        for (int64_t j = 0; j < w; j++) acc[i][j] = 0.0f;
    int64_t k = 0;
    for (; k + 4 <= K; k += 4) {
        const float* b0 = B + k * ldb;
        const float* b1 = b0 + ldb;
        const float* b2 = b1 + ldb;
        const float* b3 = b2 + ldb;
        Vf av[MR][4];
        for (int i = 0; i < MR; i++)
            for (int q = 0; q < 4; q++) av[i][q] = vset1(a[i * lda + k + q]);
        for (int64_t j = 0; j < wv; j += kW) {
            Vf x0 = vload(b0 + j), x1 = vload(b1 + j), x2 = vload(b2 + j), x3 = vload(b3 + j);
#pragma GCC unroll 4
            for (int i = 0; i < MR; i++) {
                Vf r = vload(&acc[i][j]);
                r = vfmadd(av[i][0], x0, r);
                r = vfmadd(av[i][1], x1, r);
                r = vfmadd(av[i][2], x2, r);
                r = vfmadd(av[i][3], x3, r);
                vstore(&acc[i][j], r);
            }
        }
        for (int64_t j = wv; j < w; j++)
            for (int i = 0; i < MR; i++) {
                float r = acc[i][j];
                r += a[i * lda + k] * b0[j];
                r += a[i * lda + k + 1] * b1[j];
                r += a[i * lda + k + 2] * b2[j];
                r += a[i * lda + k + 3] * b3[j];
                acc[i][j] = r;
            }
    }
    for (; k < K; k++) {
        const float* b0 = B + k * ldb;
        for (int i = 0; i < MR; i++) {
            Vf ai = vset1(a[i * lda + k]);
            for (int64_t j = 0; j < wv; j += kW) vstore(&acc[i][j], vfmadd(ai, vload(b0 + j), vload(&acc[i][j])));
            for (int64_t j = wv; j < w; j++) acc[i][j] += a[i * lda + k] * b0[j];
        }
    }
    for (int i = 0; i < MR; i++) {
        float* ci = c + i * ldc;
        for (int64_t j = 0; j < wv; j += kW)
            vstore(ci + j, finish(vload(&acc[i][j]), bias ? bias + j : nullptr, ci + j, cscale));
        for (int64_t j = wv; j < w; j++) {
            float r = acc[i][j] + (bias ? bias[j] : 0.0f);
            if (cscale != 0.0f) r += cscale * ci[j];
            ci[j] = r;
        }
    }
    free(acc);
}

// op(B) = B^T with B (N x K): C[i, j + q] = dot(a_i, B row j + q) for q < ng <= NG.
template <int MR, int NG>
void small_t_group(int64_t K, const float* a, int64_t lda, const float* B, int64_t ldb, int64_t ng, float* c,
                   int64_t ldc, float cscale, const float* bias) {
    const float* brow[NG];
    for (int q = 0; q < NG; q++) brow[q] = B + (q < ng ? q : 0) * ldb;
    Vf acc[MR][NG];
    for (int i = 0; i < MR; i++)
        for (int q = 0; q < NG; q++) acc[i][q] = vzero();
    int64_t k = 0;
    for (; k + kW <= K; k += kW) {
        Vf bv[NG];
#pragma GCC unroll 8
        for (int q = 0; q < NG; q++) bv[q] = vload(brow[q] + k);
#pragma GCC unroll 4
        for (int i = 0; i < MR; i++) {
            Vf ai = vload(a + i * lda + k);
#pragma GCC unroll 8
            for (int q = 0; q < NG; q++) acc[i][q] = vfmadd(ai, bv[q], acc[i][q]);
        }
    }
    if (k < K) {
        const int64_t rem = K - k;
        for (int q = 0; q < NG; q++) {
            Vf bq = vload_part(brow[q] + k, rem, 0.0f);
            for (int i = 0; i < MR; i++) acc[i][q] = vfmadd(vload_part(a + i * lda + k, rem, 0.0f), bq, acc[i][q]);
        }
    }
    for (int i = 0; i < MR; i++)
        for (int q = 0; q < ng; q++) {
            float r = vsum(acc[i][q]);
            if (bias) r += bias[q];
            float* cp = c + i * ldc + q;
            if (cscale != 0.0f) r += cscale * *cp;
            *cp = r;
        }
}

// B rows per group in the transposed case: MR x NG accumulators, within 16 (or 32) vector registers.
#if defined(GPTX_ISA_AVX512)
template <int MR> constexpr int small_ng() { return MR == 1 ? 8 : 4; }
#else
template <int MR> constexpr int small_ng() { return MR == 1 ? 8 : MR == 2 ? 4 : 2; }
#endif

template <int MR>
void gemm_small_rows(const GemmArgs& g, const float* a, int64_t lda, float* c, int nt) {
    const int64_t N = g.N, K = g.K;
    const float cscale = g.beta;
    if (!g.trans_b) {
        // One contiguous share of the columns per thread (in 16-float units, so no cache line is shared), walked
        // in blocks of at most kSmallCols.
        const int64_t units = cdiv(N, 16);
#pragma omp parallel for num_threads(nt) schedule(static, 1)
        for (int t = 0; t < nt; t++) {
            const int64_t j0 = imin(N, units * t / nt * 16), j1 = imin(N, units * (t + 1) / nt * 16);
            const int64_t nb = cdiv(j1 - j0, kSmallCols);
            for (int64_t b = 0; b < nb; b++) {
                const int64_t j = j0 + (j1 - j0) * b / nb, w = j0 + (j1 - j0) * (b + 1) / nb - j;
                small_nn_block<MR>(K, a, lda, g.B + j, g.ldb, w, c + j, g.ldc, cscale, g.bias ? g.bias + j : nullptr);
            }
        }
    } else {
        constexpr int NG = small_ng<MR>();
        const int64_t groups = cdiv(N, NG);
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int64_t s = 0; s < groups; s++) {
            const int64_t j = s * NG;
            small_t_group<MR, NG>(K, a, lda, g.B + j * g.ldb, g.ldb, imin(NG, N - j), c + j, g.ldc, cscale,
                                  g.bias ? g.bias + j : nullptr);
        }
    }
}

void gemm_small(const GemmArgs& g) {
    const int64_t M = g.M, K = g.K;
    int nt = num_threads();
    if ((double)M * (double)g.N * (double)K < 2.0e5) nt = 1;
    // op(A) rows must be contiguous in k: gather them when A is transposed (M x K floats, tiny here).
    const float* a = g.A;
    int64_t lda = g.lda;
    float* abuf = nullptr;
    if (g.trans_a) {
        abuf = alloc_floats(M * K);
        if (!abuf) abort();
        for (int64_t k = 0; k < K; k++)
            for (int64_t i = 0; i < M; i++) abuf[i * K + k] = g.A[k * g.lda + i];
        a = abuf;
        lda = K;
    }
    switch (M) {
        case 1: gemm_small_rows<1>(g, a, lda, g.C, nt); break;
        case 2: gemm_small_rows<2>(g, a, lda, g.C, nt); break;
        case 3: gemm_small_rows<3>(g, a, lda, g.C, nt); break;
        default: gemm_small_rows<4>(g, a, lda, g.C, nt); break;
    }
    free(abuf);
}

}  // namespace
}  // namespace GPTX_ISA_NS
}  // namespace cpu
}  // namespace gptx
