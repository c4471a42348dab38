// misc_common.h — helpers shared by the elementwise / normalisation / loss / optimizer kernels (per-ISA, internal).
//
// Included only by csrc/cpu/kernels/*.cc after vec.h; everything sits in the ISA namespace's anonymous namespace,
// so each ISA unit gets its own copy and no symbol is shared between ISA builds.
#pragma once
#include <stdint.h>
#include <omp.h>

#include "../threads.h"
#include "../vec.h"

namespace gptx {
namespace cpu {
namespace GPTX_ISA_NS {
namespace {

// Outputs of at least this many bytes are written with non-temporal stores: they skip the read-for-ownership of the
// destination (a third of the DRAM traffic of a read-one-write-one op) but bypass the caches, which only pays off
// when the result could not have stayed in the 32 MiB L3 anyway. Measured (2 threads, 128-256 MB arrays): a copy ran
// at 33.8 GB/s with streaming stores vs 13.4 GB/s with plain ones; add_forward of 32M floats took 50.9 vs 57.5 ms.
constexpr int64_t kStreamMinBytes = int64_t(16) << 20;

static inline bool want_stream(int64_t nfloats) { return nfloats * (int64_t)sizeof(float) >= kStreamMinBytes; }

// Below this many floats an op runs on the calling thread. An empty 2-thread fork/join measured 1.1 us; add_forward
// broke even at 32K floats (4.7 us on 1 thread, 4.5 us on 2), gelu_forward already at 4K (2.6 vs 2.4 us).
constexpr int64_t kParallelMinWork = 32768;    // light ops: add, embedding, layernorm
constexpr int64_t kParallelMinHeavy = 8192;    // exp/div/sqrt per element: softmax, GELU, cross-entropy, AdamW

// Full-vector non-temporal store; p must be aligned to the vector width.
static inline void vstream(float* p, Vf a) {
#if defined(GPTX_ISA_AVX512)
    _mm512_stream_ps(p, a.v);
#elif defined(GPTX_ISA_AVX2)
    _mm256_stream_ps(p, a.v);
#elif defined(GPTX_VEC_X86)
    _mm_stream_ps(p, a.v);
#else
    *p = a.v;
#endif
}

// Orders this thread's non-temporal stores before anything that follows (call once per thread after streaming).
static inline void stream_fence() {
#if defined(GPTX_VEC_X86)
    _mm_sfence();
#endif
}

// e^x for x already in [-88, 88.37]: the exp of the exp-bound kernels (softmax, cross-entropy, GELU),
// ~14 vector ops instead of ~22; on AVX2 softmax_forward and cross-entropy forward are compute-bound at 2 threads,
// and this measured 0.28 vs 0.48 ns/element (1 thread, L1). Rounding via the 1.5*2^23 magic constant leaves n + 127
// in the low mantissa bits; shifting them up builds 2^n. For x < -87.68, n = -127 makes those bits 0, so the result
// is exactly 0 without a compare (values there are below FLT_MIN anyway). Range reduction x = n ln2 + r, then
// vexp_poly: max relative error 1.2e-7 (2 ulp) on a dense grid of [-87, 88].
static inline Vf vexp_core(Vf xc) {
    const Vf magic = vset1(12582912.0f + 127.0f);
    Vf t = vfmadd(xc, vset1(1.44269504088896341f), magic);
    Vf n = t - magic;
    Vf r = vfnmadd(n, vset1(0.693359375f), xc);  // ln2 split in two for an exact first product
    r = vfnmadd(n, vset1(-2.12194440e-4f), r);
    const Vf p = vexp_poly(r);
#if defined(GPTX_ISA_AVX512)
    Vf s = {_mm512_castsi512_ps(_mm512_slli_epi32(_mm512_castps_si512(t.v), 23))};
#elif defined(GPTX_ISA_AVX2)
    Vf s = {_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(t.v), 23))};
#elif defined(GPTX_VEC_X86)
    Vf s = {_mm_castsi128_ps(_mm_slli_epi32(_mm_castps_si128(t.v), 23))};
#else
    Vf s = {ldexpf(1.0f, (int)n.v)};
#endif
    return p * s;
}

// Clamps put the constant first: x86 max/min return the second operand when either is NaN, so a NaN input stays
// NaN (and shows up in the loss) instead of being clamped into a plausible number.
constexpr float kExpLo = -88.0f, kExpHi = 88.3762f;

// e^x, x clamped to [-88, 88.37]: exactly 0 below -87.68 (including -inf), at most 2.4e38 (never inf).
static inline Vf vexp_clamped(Vf x) { return vexp_core(vmin(vset1(kExpHi), vmax(vset1(kExpLo), x))); }

// e^x for x <= ~0 (scores minus their max; nothing above 88.37): exactly 0 below -87.68, including -inf, so masked
// entries vanish.
static inline Vf vexp_neg(Vf x) { return vexp_core(vmax(vset1(kExpLo), x)); }

// Prefetch of the 64-byte line holding p. The exp-bound kernels call it for the next row / block while computing
// the current one, so its DRAM read overlaps the exp work instead of following it (the hardware prefetcher stops
// at every 4 KB page, which is exactly one softmax row of 1024 floats).
static inline void prefetch_line(const float* p) { __builtin_prefetch(p, 0, 3); }

// Lanes [0, n) of a, the rest `fill` (n < kW). Used at row tails, so the round trip through memory is cheap enough.
static inline Vf vkeep(Vf a, int64_t n, float fill) {
    float t[kW];
    vstore(t, a);
    return vload_part(t, n, fill);
}

// Loads cnt floats (cnt == kW: a full vector), lanes past cnt are `fill`.
static inline Vf vload_n(const float* p, int64_t cnt, float fill) {
    return cnt == kW ? vload(p) : vload_part(p, cnt, fill);
}
static inline void vstore_n(float* p, Vf a, int64_t cnt) {
    if (cnt == kW)
        vstore(p, a);
    else
        vstore_part(p, a, cnt);
}

// out[i .. i + cnt) = f(i, cnt) over [0, n) in vector steps (cnt == kW except at the head and tail). With stream the
// aligned body goes through non-temporal stores and the unaligned head through one partial store.
template <class F>
static inline void write_row(float* out, int64_t n, bool stream, F&& f) {
    int64_t i = 0;
    if (stream) {
        int64_t mis = (int64_t)(((uintptr_t)out / sizeof(float)) % kW);
        if (mis != 0) {
            int64_t h = kW - mis < n ? kW - mis : n;
            vstore_part(out, f(int64_t(0), h), h);
            i = h;
        }
        for (; i + kW <= n; i += kW) vstream(out + i, f(i, int64_t(kW)));
    } else {
        for (; i + kW <= n; i += kW) vstore(out + i, f(i, int64_t(kW)));
    }
    if (i < n) vstore_part(out + i, f(i, n - i), n - i);
}

// Runs body(lo, hi) over [0, n) split into one contiguous piece per thread, piece borders on 64-byte multiples so
// two threads never write the same cache line (for 64-byte-aligned buffers). Small n stays on the calling thread.
template <class Body>
static inline void parallel_range(int64_t n, int64_t min_parallel, Body&& body) {
    const int nt = num_threads();
    if (nt <= 1 || n < min_parallel) {
        body(int64_t(0), n);
        return;
    }
#pragma omp parallel num_threads(nt)
    {
        const int64_t parts = omp_get_num_threads(), t = omp_get_thread_num();
        const int64_t per = ((n + parts - 1) / parts + 15) & ~int64_t(15);
        const int64_t lo = per * t < n ? per * t : n;
        const int64_t hi = lo + per < n ? lo + per : n;
        if (lo < hi) body(lo, hi);
    }
}

}  // namespace
}  // namespace GPTX_ISA_NS
}  // namespace cpu
}  // namespace gptx
