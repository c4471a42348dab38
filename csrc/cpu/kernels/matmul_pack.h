// matmul_pack.h — packing of op(A) / op(B) panels for matmul.cc (included only there, once per ISA build).
//
// A packed panel of width W (MR rows of op(A), or NR columns of op(B)) stores, for each k, W consecutive floats;
// lanes past the matrix edge are zero so the micro-kernel always runs full tiles.
#pragma once
#include <stdint.h>
#include <string.h>

#include "../vec.h"

namespace gptx {
namespace cpu {
namespace GPTX_ISA_NS {
namespace {

// Source rows run along the panels: panel p of a block n columns wide gets dst[p * kc * W + k * W + j] =
// src[k * ld + p * W + j], zero past n. Row k is read as one run across all the block's panels; copying panel by
// panel (64 bytes per row, then a row-stride jump) made this packing 3.5% (B) and 4.3% (A^T, through masked
// loads/stores for W = 6) of a 768 x 2304 x 2048 GEMM, 1 thread.
template <int W>
void pack_direct(float* __restrict dst, const float* __restrict src, int64_t ld, int64_t kc, int64_t n) {
    const int64_t full = n / W, rem = n % W, pstride = kc * W;
    for (int64_t k = 0; k < kc; k++) {
        const float* s = src + k * ld;
        float* d = dst + k * W;
        for (int64_t p = 0; p < full; p++) memcpy(d + p * pstride, s + p * W, W * sizeof(float));
        if (rem) {
            float* dr = d + full * pstride;
            for (int64_t j = 0; j < rem; j++) dr[j] = s[full * W + j];
            for (int64_t j = rem; j < W; j++) dr[j] = 0.0f;
        }
    }
}

// dst[k * W + j] = src[j * ld + k] for j < n (n <= W), zero for n <= j < W: the source rows run along k.
// Full panels go through 4 x 4 SSE transposes (4 loads, 8 shuffles, 4 stores per 16 floats; baseline x86-64, so
// every ISA build has them). The scalar loop it replaced cost ~3 cycles a float, ~7% of a 2048 x 768 x 3072 GEMM.
template <int W>
void pack_transpose(float* __restrict dst, const float* __restrict src, int64_t ld, int64_t kc, int64_t n) {
    int64_t k = 0;
    if (n == W) {
        for (; k + 4 <= kc; k += 4) {
            float* d = dst + k * W;
            const float* s = src + k;
            int j = 0;
#pragma GCC unroll 8
            for (; j + 4 <= W; j += 4) {
                __m128 r0 = _mm_loadu_ps(s + (j + 0) * ld), r1 = _mm_loadu_ps(s + (j + 1) * ld);
                __m128 r2 = _mm_loadu_ps(s + (j + 2) * ld), r3 = _mm_loadu_ps(s + (j + 3) * ld);
                _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
                _mm_storeu_ps(d + j, r0);
                _mm_storeu_ps(d + W + j, r1);
                _mm_storeu_ps(d + 2 * W + j, r2);
                _mm_storeu_ps(d + 3 * W + j, r3);
            }
            if (W - j >= 2) {  // a pair of rows: (a0 b0 a1 b1), (a2 b2 a3 b3)
                __m128 r0 = _mm_loadu_ps(s + j * ld), r1 = _mm_loadu_ps(s + (j + 1) * ld);
                __m128 lo = _mm_unpacklo_ps(r0, r1), hi = _mm_unpackhi_ps(r0, r1);
                _mm_storel_pi((__m64*)(d + j), lo);
                _mm_storeh_pi((__m64*)(d + W + j), lo);
                _mm_storel_pi((__m64*)(d + 2 * W + j), hi);
                _mm_storeh_pi((__m64*)(d + 3 * W + j), hi);
                j += 2;
            }
            if (j < W)
                for (int q = 0; q < 4; q++) d[q * W + j] = s[j * ld + q];
        }
    }
    for (; k < kc; k++) {
        for (int64_t j = 0; j < n; j++) dst[k * W + j] = src[j * ld + k];
        for (int64_t j = n; j < W; j++) dst[k * W + j] = 0.0f;
    }
}

// Packs op(B)[pc : pc + kc, j0 : j0 + n] (op(B) = B, or B^T with B stored N x K) into cdiv(n, NR) consecutive
// kc x NR micro-panels.
template <int NR>
void pack_b(float* dst, const float* B, int64_t ldb, bool trans_b, int64_t pc, int64_t kc, int64_t j0, int64_t n) {
    if (!trans_b) {
        pack_direct<NR>(dst, B + pc * ldb + j0, ldb, kc, n);
        return;
    }
    for (int64_t p = 0; p * NR < n; p++) {
        const int64_t w = n - p * NR < NR ? n - p * NR : NR;
        pack_transpose<NR>(dst + p * kc * NR, B + (j0 + p * NR) * ldb + pc, ldb, kc, w);
    }
}

// Packs op(A)[i0 : i0 + m, pc : pc + kc] (op(A) = A, or A^T with A stored K x M) into cdiv(m, MR) consecutive
// kc x MR micro-panels.
template <int MR>
void pack_a(float* dst, const float* A, int64_t lda, bool trans_a, int64_t i0, int64_t m, int64_t pc, int64_t kc) {
    if (trans_a) {
        pack_direct<MR>(dst, A + pc * lda + i0, lda, kc, m);
        return;
    }
    for (int64_t p = 0; p * MR < m; p++) {
        const int64_t h = m - p * MR < MR ? m - p * MR : MR;
        pack_transpose<MR>(dst + p * kc * MR, A + (i0 + p * MR) * lda + pc, lda, kc, h);
    }
}

}  // namespace
}  // namespace GPTX_ISA_NS
}  // namespace cpu
}  // namespace gptx
