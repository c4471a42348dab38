// attention_tiles.h — building blocks of attention.cc: register-tiled small products, 2^x, transposes, scratch.
// Included only by attention.cc (once per ISA build); everything sits in that ISA's anonymous namespace.
#pragma once
#include <stdlib.h>
#include <string.h>

#include "../vec.h"

namespace gptx {
namespace cpu {
namespace GPTX_ISA_NS {
namespace {

constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2 = 0.693147180559945309f;

enum { kOverwrite = 0, kAccumulate = 1, kScaleAccumulate = 2, kOverwriteScaled = 3 };

// C[m][0:NV*kW] (op)= sum_k A(m, k) * B[k][0:NV*kW], A(m, k) = A[m * lda + k] (AROW) or A[k * lda + m].
// kScaleAccumulate starts from C * cs (a per-column factor: the online-softmax rescale of the output);
// kOverwriteScaled stores acc * cs[0] (the scores: the same rounded product in forward and backward).
template <int MR, int NV, bool AROW, int MODE>
static inline void micro(int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc,
                         const float* cs) {
    Vf acc[MR][NV];
    if (MODE == kOverwrite || MODE == kOverwriteScaled) {
        for (int m = 0; m < MR; m++)
            for (int v = 0; v < NV; v++) acc[m][v] = vzero();
    } else if (MODE == kAccumulate) {
        for (int m = 0; m < MR; m++)
            for (int v = 0; v < NV; v++) acc[m][v] = vload(C + m * ldc + v * kW);
    } else {
        Vf s[NV];
        for (int v = 0; v < NV; v++) s[v] = vload(cs + v * kW);
        for (int m = 0; m < MR; m++)
            for (int v = 0; v < NV; v++) acc[m][v] = vload(C + m * ldc + v * kW) * s[v];
    }
    for (int64_t k = 0; k < K; k++) {
        Vf b[NV];
        for (int v = 0; v < NV; v++) b[v] = vload(B + k * ldb + v * kW);
        for (int m = 0; m < MR; m++) {
            Vf a = vset1(AROW ? A[m * lda + k] : A[k * lda + m]);
            for (int v = 0; v < NV; v++) acc[m][v] = vfmadd(a, b[v], acc[m][v]);
        }
    }
    if (MODE == kOverwriteScaled) {
        const Vf s = vset1(cs[0]);
        for (int m = 0; m < MR; m++)
            for (int v = 0; v < NV; v++) vstore(C + m * ldc + v * kW, acc[m][v] * s);
    } else {
        for (int m = 0; m < MR; m++)
            for (int v = 0; v < NV; v++) vstore(C + m * ldc + v * kW, acc[m][v]);
    }
}

// Picks the micro-kernel for a remainder of mr rows (mr <= R) and nv vectors (nv <= NV).
template <int R, int NV, bool AROW, int MODE>
static inline void micro_rows(int mr, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
                              int64_t ldc, const float* cs) {
    if (mr == R) {
        micro<R, NV, AROW, MODE>(K, A, lda, B, ldb, C, ldc, cs);
    } else if constexpr (R > 1) {
        micro_rows<R - 1, NV, AROW, MODE>(mr, K, A, lda, B, ldb, C, ldc, cs);
    }
}
template <int MR, int NV, bool AROW, int MODE>
static inline void micro_any(int mr, int nv, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
                             float* C, int64_t ldc, const float* cs) {
    if (nv == NV) {
        micro_rows<MR, NV, AROW, MODE>(mr, K, A, lda, B, ldb, C, ldc, cs);
    } else if constexpr (NV > 1) {
        micro_any<MR, NV - 1, AROW, MODE>(mr, nv, K, A, lda, B, ldb, C, ldc, cs);
    }
}

// C(M, nvec * kW) (op)= A(M, K) * B(K, nvec * kW); B and C rows are whole vectors (padded by the callers).
template <bool AROW, int MODE, int kMR, int kNV>
static void small_gemm(int64_t M, int64_t nvec, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
                       float* C, int64_t ldc, const float* cs) {
    for (int64_t n = 0; n < nvec; n += kNV) {
        const int nv = (int)(nvec - n < kNV ? nvec - n : kNV);
        const float* Bn = B + n * kW;
        float* Cn = C + n * kW;
        const float* csn = MODE == kScaleAccumulate ? cs + n * kW : cs;
        int64_t m = 0;
        for (; m + kMR <= M; m += kMR) {
            const float* Am = AROW ? A + m * lda : A + m;
            if (nv == kNV)
                micro<kMR, kNV, AROW, MODE>(K, Am, lda, Bn, ldb, Cn + m * ldc, ldc, csn);
            else
                micro_any<kMR, kNV, AROW, MODE>(kMR, nv, K, Am, lda, Bn, ldb, Cn + m * ldc, ldc, csn);
        }
        if (m < M)
            micro_any<kMR, kNV, AROW, MODE>((int)(M - m), nv, K, AROW ? A + m * lda : A + m, lda, Bn, ldb,
                                            Cn + m * ldc, ldc, csn);
    }
}

// 2^x. Inputs here are <= ~0 (scores minus their max or their logsumexp); x <= -127, -inf included, gives exactly
// 0. The shared vexp_poly (about 2 ulp) after reducing x to n + f, |f| <= 1/2.
static inline Vf vexp2(Vf x) {
    x = vmin(vset1(127.0f), vmax(vset1(-127.0f), x));  // operand order keeps a NaN (max/min return the 2nd)
    Vf n = vround(x);
    Vf r = (x - n) * vset1(kLn2);
    return vexp_poly(r) * vpow2i(n);  // n = -127 makes the exponent field 0: an exact zero
}

static inline Vf lane_index() {
    float idx[kW];
    for (int i = 0; i < kW; i++) idx[i] = (float)i;
    return vload(idx);
}

// Pulls rows of a strided view toward the cache ahead of use: the views are rows of 4-16 lines scattered at a
// 3-9 KiB stride, which the hardware prefetcher follows poorly (copying them ran latency-bound at ~1.5 GB/s;
// prefetching ahead cut the backward's copy phase from ~10% to ~7% of its time).
static inline void prefetch_rows(const float* base, int64_t nrows, int64_t stride, int64_t n, bool write) {
    for (int64_t r = 0; r < nrows; r++)
        for (int64_t i = 0; i < n; i += 16) {
            if (write)
                __builtin_prefetch(base + r * stride + i, 1, 3);
            else
                __builtin_prefetch(base + r * stride + i, 0, 3);
        }
}

// dst[c * ldd + r] = src[r * lds + c] for r < rows, c < cols. Register 8x8 (4x4 on SSE2) tiles: the plain scalar
// loop stalled on its strided stores and cost ~8% of the backward.
static void transpose(const float* src, int64_t lds, float* dst, int64_t ldd, int64_t rows, int64_t cols) {
#if defined(GPTX_ISA_AVX2) || defined(GPTX_ISA_AVX512)
    constexpr int64_t T = 8;
#elif defined(GPTX_VEC_X86)
    constexpr int64_t T = 4;
#else
    constexpr int64_t T = 1;
#endif
    int64_t r0 = 0;
    for (; r0 + T <= rows; r0 += T) {
        int64_t c0 = 0;
        for (; c0 + T <= cols; c0 += T) {
            const float* sp = src + r0 * lds + c0;
            float* dp = dst + c0 * ldd + r0;
#if defined(GPTX_ISA_AVX2) || defined(GPTX_ISA_AVX512)
            __m256 a0 = _mm256_loadu_ps(sp), a1 = _mm256_loadu_ps(sp + lds), a2 = _mm256_loadu_ps(sp + 2 * lds),
                   a3 = _mm256_loadu_ps(sp + 3 * lds), a4 = _mm256_loadu_ps(sp + 4 * lds),
                   a5 = _mm256_loadu_ps(sp + 5 * lds), a6 = _mm256_loadu_ps(sp + 6 * lds),
                   a7 = _mm256_loadu_ps(sp + 7 * lds);
            __m256 t0 = _mm256_unpacklo_ps(a0, a1), t1 = _mm256_unpackhi_ps(a0, a1);
            __m256 t2 = _mm256_unpacklo_ps(a2, a3), t3 = _mm256_unpackhi_ps(a2, a3);
            __m256 t4 = _mm256_unpacklo_ps(a4, a5), t5 = _mm256_unpackhi_ps(a4, a5);
            __m256 t6 = _mm256_unpacklo_ps(a6, a7), t7 = _mm256_unpackhi_ps(a6, a7);
            __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
            __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
            __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
            __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
            _mm256_storeu_ps(dp, _mm256_permute2f128_ps(s0, s4, 0x20));
            _mm256_storeu_ps(dp + ldd, _mm256_permute2f128_ps(s1, s5, 0x20));
            _mm256_storeu_ps(dp + 2 * ldd, _mm256_permute2f128_ps(s2, s6, 0x20));
            _mm256_storeu_ps(dp + 3 * ldd, _mm256_permute2f128_ps(s3, s7, 0x20));
            _mm256_storeu_ps(dp + 4 * ldd, _mm256_permute2f128_ps(s0, s4, 0x31));
            _mm256_storeu_ps(dp + 5 * ldd, _mm256_permute2f128_ps(s1, s5, 0x31));
            _mm256_storeu_ps(dp + 6 * ldd, _mm256_permute2f128_ps(s2, s6, 0x31));
            _mm256_storeu_ps(dp + 7 * ldd, _mm256_permute2f128_ps(s3, s7, 0x31));
#elif defined(GPTX_VEC_X86)
            __m128 a0 = _mm_loadu_ps(sp), a1 = _mm_loadu_ps(sp + lds), a2 = _mm_loadu_ps(sp + 2 * lds),
                   a3 = _mm_loadu_ps(sp + 3 * lds);
            _MM_TRANSPOSE4_PS(a0, a1, a2, a3);
            _mm_storeu_ps(dp, a0);
            _mm_storeu_ps(dp + ldd, a1);
            _mm_storeu_ps(dp + 2 * ldd, a2);
            _mm_storeu_ps(dp + 3 * ldd, a3);
#else
            dp[0] = sp[0];
#endif
        }
        for (int64_t r = r0; r < r0 + T; r++)
            for (int64_t c = c0; c < cols; c++) dst[c * ldd + r] = src[r * lds + c];
    }
    for (int64_t r = r0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) dst[c * ldd + r] = src[r * lds + c];
}

static float* scratch(int64_t nfloats) {
    size_t bytes = ((size_t)nfloats * sizeof(float) + 63) & ~(size_t)63;
    return (float*)aligned_alloc(64, bytes ? bytes : 64);
}

static inline float dot(const float* a, const float* b, int64_t n) {
    Vf s0 = vzero(), s1 = vzero();
    int64_t i = 0;
    for (; i + 2 * kW <= n; i += 2 * kW) {
        s0 = vfmadd(vload(a + i), vload(b + i), s0);
        s1 = vfmadd(vload(a + i + kW), vload(b + i + kW), s1);
    }
    for (; i + kW <= n; i += kW) s0 = vfmadd(vload(a + i), vload(b + i), s0);
    if (i < n) s1 = vfmadd(vload_part(a + i, n - i, 0.0f), vload_part(b + i, n - i, 0.0f), s1);
    return vsum(s0 + s1);
}

}  // namespace
}  // namespace GPTX_ISA_NS
}  // namespace cpu
}  // namespace gptx
