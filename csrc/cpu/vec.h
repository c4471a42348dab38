// vec.h — the small SIMD wrapper CPU kernels are written against; one definition per ISA translation unit.
//
// Included only by files under csrc/cpu/kernels/, which CMake compiles once per ISA with GPTX_ISA_GENERIC,
// GPTX_ISA_AVX2 or GPTX_ISA_AVX512 defined (and the matching -m flags). Everything here is static inline inside the
// ISA's own namespace, and nothing uses the STL: an inline symbol shared between ISA units could be merged by the
// linker into generic code and fault with SIGILL on an older CPU (see BUILD-NOTES).
#pragma once
#include <stdint.h>
#include <math.h>

#include "isa_ns.h"
#if defined(GPTX_ISA_REFERENCE)
#error "the scalar reference must not use the SIMD wrapper"
#endif

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define GPTX_VEC_X86 1
#endif

namespace gptx {
namespace cpu {
namespace GPTX_ISA_NS {
namespace {

#if defined(GPTX_ISA_AVX512)
// ---------------------------------------------------------------- AVX-512: 16 floats
struct Vf { __m512 v; };
constexpr int kW = 16;
static inline Vf vzero() { return {_mm512_setzero_ps()}; }
static inline Vf vset1(float x) { return {_mm512_set1_ps(x)}; }
static inline Vf vload(const float* p) { return {_mm512_loadu_ps(p)}; }
static inline void vstore(float* p, Vf a) { _mm512_storeu_ps(p, a.v); }
static inline __mmask16 tail_mask(int64_t n) { return (__mmask16)((1u << n) - 1u); }
// Loads n < kW floats; the rest of the lanes are `fill`.
static inline Vf vload_part(const float* p, int64_t n, float fill) {
    return {_mm512_mask_loadu_ps(_mm512_set1_ps(fill), tail_mask(n), p)};
}
static inline void vstore_part(float* p, Vf a, int64_t n) { _mm512_mask_storeu_ps(p, tail_mask(n), a.v); }
static inline Vf operator+(Vf a, Vf b) { return {_mm512_add_ps(a.v, b.v)}; }
static inline Vf operator-(Vf a, Vf b) { return {_mm512_sub_ps(a.v, b.v)}; }
static inline Vf operator*(Vf a, Vf b) { return {_mm512_mul_ps(a.v, b.v)}; }
static inline Vf operator/(Vf a, Vf b) { return {_mm512_div_ps(a.v, b.v)}; }
static inline Vf vfmadd(Vf a, Vf b, Vf c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }  // a * b + c
static inline Vf vfnmadd(Vf a, Vf b, Vf c) { return {_mm512_fnmadd_ps(a.v, b.v, c.v)}; }  // c - a * b
static inline Vf vmax(Vf a, Vf b) { return {_mm512_max_ps(a.v, b.v)}; }
static inline Vf vmin(Vf a, Vf b) { return {_mm512_min_ps(a.v, b.v)}; }
static inline Vf vsqrt(Vf a) { return {_mm512_sqrt_ps(a.v)}; }
static inline float vsum(Vf a) { return _mm512_reduce_add_ps(a.v); }
static inline float vhmax(Vf a) { return _mm512_reduce_max_ps(a.v); }
static inline Vf vround(Vf a) { return {_mm512_roundscale_ps(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)}; }
// a < b ? x : y
static inline Vf vselect_lt(Vf a, Vf b, Vf x, Vf y) {
    return {_mm512_mask_blend_ps(_mm512_cmp_ps_mask(a.v, b.v, _CMP_LT_OQ), y.v, x.v)};
}
// 2^n for integral-valued n in [-126, 127]
static inline Vf vpow2i(Vf n) {
    __m512i e = _mm512_add_epi32(_mm512_cvtps_epi32(n.v), _mm512_set1_epi32(127));
    return {_mm512_castsi512_ps(_mm512_slli_epi32(e, 23))};
}

#elif defined(GPTX_ISA_AVX2)
// ---------------------------------------------------------------- AVX2 + FMA: 8 floats
struct Vf { __m256 v; };
constexpr int kW = 8;
static inline Vf vzero() { return {_mm256_setzero_ps()}; }
static inline Vf vset1(float x) { return {_mm256_set1_ps(x)}; }
static inline Vf vload(const float* p) { return {_mm256_loadu_ps(p)}; }
static inline void vstore(float* p, Vf a) { _mm256_storeu_ps(p, a.v); }
static inline __m256i tail_mask(int64_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
static inline Vf vload_part(const float* p, int64_t n, float fill) {
    __m256i m = tail_mask(n);
    return {_mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m))};
}
static inline void vstore_part(float* p, Vf a, int64_t n) { _mm256_maskstore_ps(p, tail_mask(n), a.v); }
static inline Vf operator+(Vf a, Vf b) { return {_mm256_add_ps(a.v, b.v)}; }
static inline Vf operator-(Vf a, Vf b) { return {_mm256_sub_ps(a.v, b.v)}; }
static inline Vf operator*(Vf a, Vf b) { return {_mm256_mul_ps(a.v, b.v)}; }
static inline Vf operator/(Vf a, Vf b) { return {_mm256_div_ps(a.v, b.v)}; }
static inline Vf vfmadd(Vf a, Vf b, Vf c) { return {_mm256_fmadd_ps(a.v, b.v, c.v)}; }
static inline Vf vfnmadd(Vf a, Vf b, Vf c) { return {_mm256_fnmadd_ps(a.v, b.v, c.v)}; }
static inline Vf vmax(Vf a, Vf b) { return {_mm256_max_ps(a.v, b.v)}; }
static inline Vf vmin(Vf a, Vf b) { return {_mm256_min_ps(a.v, b.v)}; }
static inline Vf vsqrt(Vf a) { return {_mm256_sqrt_ps(a.v)}; }
static inline float vsum(Vf a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}
static inline float vhmax(Vf a) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}
static inline Vf vround(Vf a) { return {_mm256_round_ps(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)}; }
static inline Vf vselect_lt(Vf a, Vf b, Vf x, Vf y) {
    return {_mm256_blendv_ps(y.v, x.v, _mm256_cmp_ps(a.v, b.v, _CMP_LT_OQ))};
}
static inline Vf vpow2i(Vf n) {
    __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(n.v), _mm256_set1_epi32(127));
    return {_mm256_castsi256_ps(_mm256_slli_epi32(e, 23))};
}

#elif defined(GPTX_VEC_X86)
// ---------------------------------------------------------------- generic x86-64: SSE2, 4 floats, no FMA
struct Vf { __m128 v; };
constexpr int kW = 4;
static inline Vf vzero() { return {_mm_setzero_ps()}; }
static inline Vf vset1(float x) { return {_mm_set1_ps(x)}; }
static inline Vf vload(const float* p) { return {_mm_loadu_ps(p)}; }
static inline void vstore(float* p, Vf a) { _mm_storeu_ps(p, a.v); }
static inline Vf vload_part(const float* p, int64_t n, float fill) {
    float tmp[4] = {fill, fill, fill, fill};
    for (int64_t i = 0; i < n; i++) tmp[i] = p[i];
    return {_mm_loadu_ps(tmp)};
}
static inline void vstore_part(float* p, Vf a, int64_t n) {
    float tmp[4];
    _mm_storeu_ps(tmp, a.v);
    for (int64_t i = 0; i < n; i++) p[i] = tmp[i];
}
static inline Vf operator+(Vf a, Vf b) { return {_mm_add_ps(a.v, b.v)}; }
static inline Vf operator-(Vf a, Vf b) { return {_mm_sub_ps(a.v, b.v)}; }
static inline Vf operator*(Vf a, Vf b) { return {_mm_mul_ps(a.v, b.v)}; }
static inline Vf operator/(Vf a, Vf b) { return {_mm_div_ps(a.v, b.v)}; }
static inline Vf vfmadd(Vf a, Vf b, Vf c) { return {_mm_add_ps(_mm_mul_ps(a.v, b.v), c.v)}; }
static inline Vf vfnmadd(Vf a, Vf b, Vf c) { return {_mm_sub_ps(c.v, _mm_mul_ps(a.v, b.v))}; }
static inline Vf vmax(Vf a, Vf b) { return {_mm_max_ps(a.v, b.v)}; }
static inline Vf vmin(Vf a, Vf b) { return {_mm_min_ps(a.v, b.v)}; }
static inline Vf vsqrt(Vf a) { return {_mm_sqrt_ps(a.v)}; }
static inline float vsum(Vf a) {
    __m128 s = _mm_add_ps(a.v, _mm_movehl_ps(a.v, a.v));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}
static inline float vhmax(Vf a) {
    __m128 s = _mm_max_ps(a.v, _mm_movehl_ps(a.v, a.v));
    s = _mm_max_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}
// SSE2 has no round instruction: the 1.5 * 2^23 trick rounds to nearest even for |a| < 2^22.
static inline Vf vround(Vf a) {
    const __m128 magic = _mm_set1_ps(12582912.0f);
    return {_mm_sub_ps(_mm_add_ps(a.v, magic), magic)};
}
static inline Vf vselect_lt(Vf a, Vf b, Vf x, Vf y) {
    __m128 m = _mm_cmplt_ps(a.v, b.v);
    return {_mm_or_ps(_mm_and_ps(m, x.v), _mm_andnot_ps(m, y.v))};
}
static inline Vf vpow2i(Vf n) {
    __m128i e = _mm_add_epi32(_mm_cvtps_epi32(n.v), _mm_set1_epi32(127));
    return {_mm_castsi128_ps(_mm_slli_epi32(e, 23))};
}

#else
// ---------------------------------------------------------------- portable fallback: 1 float
struct Vf { float v; };
constexpr int kW = 1;
static inline Vf vzero() { return {0.0f}; }
static inline Vf vset1(float x) { return {x}; }
static inline Vf vload(const float* p) { return {*p}; }
static inline void vstore(float* p, Vf a) { *p = a.v; }
static inline Vf vload_part(const float*, int64_t, float fill) { return {fill}; }
static inline void vstore_part(float*, Vf, int64_t) {}
static inline Vf operator+(Vf a, Vf b) { return {a.v + b.v}; }
static inline Vf operator-(Vf a, Vf b) { return {a.v - b.v}; }
static inline Vf operator*(Vf a, Vf b) { return {a.v * b.v}; }
static inline Vf operator/(Vf a, Vf b) { return {a.v / b.v}; }
static inline Vf vfmadd(Vf a, Vf b, Vf c) { return {a.v * b.v + c.v}; }
static inline Vf vfnmadd(Vf a, Vf b, Vf c) { return {c.v - a.v * b.v}; }
static inline Vf vmax(Vf a, Vf b) { return {a.v > b.v ? a.v : b.v}; }
static inline Vf vmin(Vf a, Vf b) { return {a.v < b.v ? a.v : b.v}; }
static inline Vf vsqrt(Vf a) { return {sqrtf(a.v)}; }
static inline float vsum(Vf a) { return a.v; }
static inline float vhmax(Vf a) { return a.v; }
static inline Vf vround(Vf a) { return {nearbyintf(a.v)}; }
static inline Vf vselect_lt(Vf a, Vf b, Vf x, Vf y) { return a.v < b.v ? x : y; }
static inline Vf vpow2i(Vf n) { return {ldexpf(1.0f, (int)n.v)}; }
#endif

// e^r for |r| <= ln2/2: the degree-6 polynomial every exp of the CPU kernels shares (vexp_core in
// kernels/misc_common.h, vexp2 in kernels/attention_tiles.h); about 2 ulp on that interval.
static inline Vf vexp_poly(Vf r) {
    Vf p = vset1(1.9875691500e-4f);
    p = vfmadd(p, r, vset1(1.3981999507e-3f));
    p = vfmadd(p, r, vset1(8.3334519073e-3f));
    p = vfmadd(p, r, vset1(4.1665795894e-2f));
    p = vfmadd(p, r, vset1(1.6666665459e-1f));
    p = vfmadd(p, r, vset1(5.0000001201e-1f));
    return vfmadd(p, r * r, r + vset1(1.0f));
}

// Horizontal helpers over a whole array (tails through partial loads).
static inline float hsum(const float* x, int64_t n) {
    Vf acc0 = vzero(), acc1 = vzero();
    int64_t i = 0;
    for (; i + 2 * kW <= n; i += 2 * kW) {
        acc0 = acc0 + vload(x + i);
        acc1 = acc1 + vload(x + i + kW);
    }
    for (; i + kW <= n; i += kW) acc0 = acc0 + vload(x + i);
    float s = vsum(acc0 + acc1);
    for (; i < n; i++) s += x[i];
    return s;
}

}  // namespace
}  // namespace GPTX_ISA_NS
}  // namespace cpu
}  // namespace gptx
