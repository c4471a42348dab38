// qmatmul.cc — qmatmul_forward: C = A @ W^T + bias over packed bfloat16 or int8 (q8_0-style) weights, the decoding
// matmul (layouts and semantics in backend/params.h).
//
// Compiled once per ISA like every kernel, plus once more as avx512_bf16 (-mavx512bf16 -mavx512vnni), where the
// bf16 tile uses vdpbf16ps and the int8 tile vpdpbusd. The other builds: AVX-512 / AVX2 widen bf16 to float32
// (a shift: bf16 is the top half of a float32) and FMA; int8 goes through vpmaddubsw with the sign trick
// (|a| * sign(w, a): each pair sums to at most 2 * 127 * 127 < 2^15, so it never saturates); generic is scalar.
//
// Work: the output is cut into units of NP panels (16 features each); a thread takes whole units and runs every
// row block of MR rows against the unit's panels, so a panel (K x 16 weights: 24 KiB of bf16 at K = 768) stays in
// cache while the rows stream past it. At M = 1 (decoding) this is a GEMV that reads each weight byte once.
#include <omp.h>
#include <string.h>
#if defined(__AMX_BF16__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "../kernels.h"
#include "backend/qformat.h"
#include "../threads.h"
#include "../vec.h"

namespace gptx {
namespace cpu {
namespace GPTX_ISA_NS {

namespace {

// ------------------------------------------------------------------------------------------------ activations
using backend::qfmt::f16_to_f32;
using backend::qfmt::float_of;
using backend::qfmt::to_bf16;

static inline uint32_t load_u32(const void* p) {
    uint32_t u;
    memcpy(&u, p, 4);
    return u;
}

// The bf16-rounded activations as the tiles read them: bfloat16 bits for vdpbf16ps / AMX; elsewhere the same values
// as float32, so the FMA tiles broadcast them straight from memory (a bf16 pair moved through a general register
// cost three instructions per broadcast and left the AVX2 / AVX-512 tiles at ~0.65x the float32 GEMM on prompts).
#if defined(__AVX512BF16__)
typedef uint16_t Act;
static inline Act act_of(float x) { return to_bf16(x); }
#else
typedef float Act;
static inline Act act_of(float x) { return backend::qfmt::bf16_to_f32(to_bf16(x)); }
#endif

static void convert_rows_bf16(const QMatmulParams& p, Act* aw, int64_t Kp, int nt) {
    memset(aw + p.M * Kp, 0, (size_t)((qround_up(p.M, 32) - p.M) * Kp) * sizeof(Act));  // rows an AMX tile may read
#pragma omp parallel for num_threads(nt) schedule(static) if (p.M * p.K >= 65536)
    for (int64_t m = 0; m < p.M; m++) {
        const float* a = p.A + m * p.lda;
        Act* o = aw + m * Kp;
        for (int64_t k = 0; k < p.K; k++) o[k] = act_of(a[k]);
        for (int64_t k = p.K; k < Kp; k++) o[k] = 0;
    }
}

#if defined(__AVX512VNNI__)
// vpdpbusd multiplies unsigned bytes by signed ones: activations are stored as q + 128 and the kernel subtracts
// 128 * sum(w) per block.
constexpr int kActOffset = 128;
#else
constexpr int kActOffset = 0;
#endif

// One row quantized per block of 32: scale = max|a| / 127, q = round_half_even(a * (127 / max|a|)). A block holding
// a NaN or an infinity gets a NaN scale (and zero quants), so the outputs it feeds are NaN, as in float32.
static void quantize_row(const float* a, int64_t K, int64_t Kp, uint8_t* q, float* d) {
    for (int64_t k0 = 0; k0 < Kp; k0 += kQBlock) {
        const int64_t n = K - k0 < kQBlock ? (K - k0 > 0 ? K - k0 : 0) : kQBlock;
        float amax = 0.0f, probe = 0.0f;
        for (int64_t i = 0; i < n; i++) {
            const float v = fabsf(a[k0 + i]);
            amax = v > amax ? v : amax;
            probe += a[k0 + i] * 0.0f;  // NaN iff some element is NaN or infinite
        }
        if (probe != 0.0f) {
            d[k0 / kQBlock] = probe;
            for (int64_t i = 0; i < kQBlock; i++) q[k0 + i] = (uint8_t)kActOffset;
            continue;
        }
        const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
        d[k0 / kQBlock] = amax / 127.0f;
        for (int64_t i = 0; i < kQBlock; i++) {
            float r = i < n ? nearbyintf(a[k0 + i] * id) : 0.0f;
            r = r > 127.0f ? 127.0f : (r < -127.0f ? -127.0f : r);
            q[k0 + i] = (uint8_t)((int)r + kActOffset);
        }
    }
}

static void convert_rows_int8(const QMatmulParams& p, uint8_t* aq, float* ad, int64_t Kp, int nt) {
    const int64_t Kb = Kp / kQBlock;
#pragma omp parallel for num_threads(nt) schedule(static) if (p.M * p.K >= 65536)
    for (int64_t m = 0; m < p.M; m++) quantize_row(p.A + m * p.lda, p.K, Kp, aq + m * Kp, ad + m * Kb);
}

// ------------------------------------------------------------------------------------------------ tiles
// A tile: R rows (a: converted activations, row stride lda elements) against NP panels (w: the first panel, ps:
// elements or bytes from one panel to the next) over the whole of K; out: R x (NP * 16) float32, row stride 32.
#if defined(GPTX_ISA_AVX512)
constexpr int kMRbf = 6, kMR8 = 4, kNP = 2;

template <int R, int NP>
static void bf16_tile(const Act* a, int64_t lda, const uint16_t* w, int64_t ps, int64_t Kp, float* out) {
    __m512 acc[R][NP];
    for (int r = 0; r < R; r++)
        for (int p = 0; p < NP; p++) acc[r][p] = _mm512_setzero_ps();
#if !defined(__AVX512BF16__)
    const __m512i hi = _mm512_set1_epi32((int)0xffff0000u);
#endif
    for (int64_t kk = 0; kk < Kp / 2; kk++) {
        __m512i wv[NP];
        for (int p = 0; p < NP; p++) wv[p] = _mm512_loadu_si512((const void*)(w + p * ps + kk * 32));
#if defined(__AVX512BF16__)
        for (int r = 0; r < R; r++) {
            const __m512i av = _mm512_set1_epi32((int)load_u32(a + r * lda + 2 * kk));
            for (int p = 0; p < NP; p++) acc[r][p] = _mm512_dpbf16_ps(acc[r][p], (__m512bh)av, (__m512bh)wv[p]);
        }
#else
        __m512 we[NP], wo[NP];
        for (int p = 0; p < NP; p++) {
            we[p] = _mm512_castsi512_ps(_mm512_slli_epi32(wv[p], 16));
            wo[p] = _mm512_castsi512_ps(_mm512_and_si512(wv[p], hi));
        }
        for (int r = 0; r < R; r++) {
            const __m512 a0 = _mm512_set1_ps(a[r * lda + 2 * kk]), a1 = _mm512_set1_ps(a[r * lda + 2 * kk + 1]);
            for (int p = 0; p < NP; p++) acc[r][p] = _mm512_fmadd_ps(a1, wo[p], _mm512_fmadd_ps(a0, we[p], acc[r][p]));
        }
#endif
    }
    for (int r = 0; r < R; r++)
        for (int p = 0; p < NP; p++) _mm512_storeu_ps(out + r * 32 + p * 16, acc[r][p]);
}

template <int R, int NP>
static void int8_tile(const uint8_t* aq, int64_t lda, const float* ad, int64_t ldd, const uint8_t* w, int64_t ps,
                      int64_t Kb, float* out) {
    __m512 acc[R][NP];
    for (int r = 0; r < R; r++)
        for (int p = 0; p < NP; p++) acc[r][p] = _mm512_setzero_ps();
#if defined(__AVX512VNNI__)
    const __m512i k128 = _mm512_set1_epi8((char)0x80);
#else
    const __m512i ones = _mm512_set1_epi16(1), zero = _mm512_setzero_si512();
#endif
    for (int64_t b = 0; b < Kb; b++) {
        __m512 dw[NP];
        const uint8_t* q[NP];
        for (int p = 0; p < NP; p++) {
            dw[p] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(w + p * ps + b * 32)));
            q[p] = w + p * ps + Kb * 32 + b * 512;
        }
        __m512i s[R][NP];
        for (int r = 0; r < R; r++)
            for (int p = 0; p < NP; p++) s[r][p] = _mm512_setzero_si512();
#if defined(__AVX512VNNI__)
        __m512i corr[NP];
        for (int p = 0; p < NP; p++) corr[p] = _mm512_setzero_si512();
#endif
        for (int g = 0; g < 8; g++) {
            __m512i wv[NP];
            for (int p = 0; p < NP; p++) wv[p] = _mm512_loadu_si512((const void*)(q[p] + g * 64));
#if defined(__AVX512VNNI__)
            for (int p = 0; p < NP; p++) corr[p] = _mm512_dpbusd_epi32(corr[p], k128, wv[p]);
            for (int r = 0; r < R; r++) {
                const __m512i av = _mm512_set1_epi32((int)load_u32(aq + r * lda + b * 32 + g * 4));
                for (int p = 0; p < NP; p++) s[r][p] = _mm512_dpbusd_epi32(s[r][p], av, wv[p]);
            }
#else
            for (int r = 0; r < R; r++) {
                const __m512i av = _mm512_set1_epi32((int)load_u32(aq + r * lda + b * 32 + g * 4));
                const __m512i aa = _mm512_abs_epi8(av);
                const __mmask64 neg = _mm512_movepi8_mask(av);
                for (int p = 0; p < NP; p++) {
                    const __m512i ws = _mm512_mask_sub_epi8(wv[p], neg, zero, wv[p]);
                    s[r][p] = _mm512_add_epi32(s[r][p], _mm512_madd_epi16(_mm512_maddubs_epi16(aa, ws), ones));
                }
            }
#endif
        }
        for (int r = 0; r < R; r++) {
            const __m512 da = _mm512_set1_ps(ad[r * ldd + b]);
            for (int p = 0; p < NP; p++) {
#if defined(__AVX512VNNI__)
                const __m512i is = _mm512_sub_epi32(s[r][p], corr[p]);
#else
                const __m512i is = s[r][p];
#endif
                acc[r][p] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(is), _mm512_mul_ps(dw[p], da), acc[r][p]);
            }
        }
    }
    for (int r = 0; r < R; r++)
        for (int p = 0; p < NP; p++) _mm512_storeu_ps(out + r * 32 + p * 16, acc[r][p]);
}

#elif defined(GPTX_ISA_AVX2)
constexpr int kMRbf = 4, kMR8 = 2, kNP = 1;

// A panel is two ymm halves: lanes 0-7 in the first 32 bytes of each 64-byte row, lanes 8-15 in the second.
template <int R, int NP>
static void bf16_tile(const Act* a, int64_t lda, const uint16_t* w, int64_t ps, int64_t Kp, float* out) {
    (void)ps;
    __m256 acc[R][2];
    for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    const __m256i hi = _mm256_set1_epi32((int)0xffff0000u);
    for (int64_t kk = 0; kk < Kp / 2; kk++) {
        __m256 we[2], wo[2];
        for (int h = 0; h < 2; h++) {
            const __m256i wv = _mm256_loadu_si256((const __m256i*)(w + kk * 32 + h * 16));
            we[h] = _mm256_castsi256_ps(_mm256_slli_epi32(wv, 16));
            wo[h] = _mm256_castsi256_ps(_mm256_and_si256(wv, hi));
        }
        for (int r = 0; r < R; r++) {
            const __m256 a0 = _mm256_broadcast_ss(a + r * lda + 2 * kk), a1 = _mm256_broadcast_ss(a + r * lda + 2 * kk + 1);
            for (int h = 0; h < 2; h++) acc[r][h] = _mm256_fmadd_ps(a1, wo[h], _mm256_fmadd_ps(a0, we[h], acc[r][h]));
        }
    }
    for (int r = 0; r < R; r++)
        for (int h = 0; h < 2; h++) _mm256_storeu_ps(out + r * 32 + h * 8, acc[r][h]);
}

template <int R, int NP>
static void int8_tile(const uint8_t* aq, int64_t lda, const float* ad, int64_t ldd, const uint8_t* w, int64_t ps,
                      int64_t Kb, float* out) {
    (void)ps;
    __m256 acc[R][2];
    for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1);
    for (int64_t b = 0; b < Kb; b++) {
        const __m256 dw0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(w + b * 32)));
        const __m256 dw1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(w + b * 32 + 16)));
        const uint8_t* q = w + Kb * 32 + b * 512;
        __m256i s[R][2];
        for (int r = 0; r < R; r++) s[r][0] = s[r][1] = _mm256_setzero_si256();
        for (int g = 0; g < 8; g++) {
            const __m256i w0 = _mm256_loadu_si256((const __m256i*)(q + g * 64));
            const __m256i w1 = _mm256_loadu_si256((const __m256i*)(q + g * 64 + 32));
            for (int r = 0; r < R; r++) {
                const __m256i av = _mm256_set1_epi32((int)load_u32(aq + r * lda + b * 32 + g * 4));
                const __m256i aa = _mm256_sign_epi8(av, av);
                s[r][0] = _mm256_add_epi32(s[r][0],
                                           _mm256_madd_epi16(_mm256_maddubs_epi16(aa, _mm256_sign_epi8(w0, av)), ones));
                s[r][1] = _mm256_add_epi32(s[r][1],
                                           _mm256_madd_epi16(_mm256_maddubs_epi16(aa, _mm256_sign_epi8(w1, av)), ones));
            }
        }
        for (int r = 0; r < R; r++) {
            const __m256 da = _mm256_set1_ps(ad[r * ldd + b]);
            acc[r][0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[r][0]), _mm256_mul_ps(dw0, da), acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[r][1]), _mm256_mul_ps(dw1, da), acc[r][1]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int h = 0; h < 2; h++) _mm256_storeu_ps(out + r * 32 + h * 8, acc[r][h]);
}

#else  // generic: plain loops
constexpr int kMRbf = 4, kMR8 = 4, kNP = 1;

template <int R, int NP>
static void bf16_tile(const Act* a, int64_t lda, const uint16_t* w, int64_t ps, int64_t Kp, float* out) {
    (void)ps;
    float acc[R][16] = {};
    for (int64_t kk = 0; kk < Kp / 2; kk++) {
        const uint16_t* wr = w + kk * 32;
        for (int r = 0; r < R; r++) {
            const float a0 = a[r * lda + 2 * kk], a1 = a[r * lda + 2 * kk + 1];
            for (int l = 0; l < 16; l++)
                acc[r][l] += a0 * float_of((uint32_t)wr[2 * l] << 16) + a1 * float_of((uint32_t)wr[2 * l + 1] << 16);
        }
    }
    for (int r = 0; r < R; r++)
        for (int l = 0; l < 16; l++) out[r * 32 + l] = acc[r][l];
}

template <int R, int NP>
static void int8_tile(const uint8_t* aq, int64_t lda, const float* ad, int64_t ldd, const uint8_t* w, int64_t ps,
                      int64_t Kb, float* out) {
    (void)ps;
    float acc[R][16] = {};
    const uint16_t* scales = (const uint16_t*)w;
    for (int64_t b = 0; b < Kb; b++) {
        const int8_t* q = (const int8_t*)(w + Kb * 32 + b * 512);
        int32_t s[R][16] = {};
        for (int g = 0; g < 8; g++)
            for (int r = 0; r < R; r++) {
                const int8_t* a4 = (const int8_t*)(aq + r * lda + b * 32 + g * 4);
                for (int l = 0; l < 16; l++) {
                    const int8_t* w4 = q + g * 64 + l * 4;
                    s[r][l] += a4[0] * w4[0] + a4[1] * w4[1] + a4[2] * w4[2] + a4[3] * w4[3];
                }
            }
        for (int r = 0; r < R; r++) {
            const float da = ad[r * ldd + b];
            for (int l = 0; l < 16; l++) acc[r][l] += (float)s[r][l] * (f16_to_f32(scales[b * 16 + l]) * da);
        }
    }
    for (int r = 0; r < R; r++)
        for (int l = 0; l < 16; l++) out[r * 32 + l] = acc[r][l];
}
#endif

// ------------------------------------------------------------------------------------------------ driver
// Runs the tile for a row block of mr <= MR rows (R chosen at run time among the compiled sizes).
template <int NP>
static void bf16_rows(int64_t mr, const Act* a, int64_t lda, const uint16_t* w, int64_t ps, int64_t Kp,
                      float* out) {
    switch (mr) {
        case 1: bf16_tile<1, NP>(a, lda, w, ps, Kp, out); break;
        case 2: bf16_tile<2, NP>(a, lda, w, ps, Kp, out); break;
        case 3: bf16_tile<3, NP>(a, lda, w, ps, Kp, out); break;
        case 4: bf16_tile<4, NP>(a, lda, w, ps, Kp, out); break;
#if defined(GPTX_ISA_AVX512)
        case 5: bf16_tile<5, NP>(a, lda, w, ps, Kp, out); break;
        case 6: bf16_tile<6, NP>(a, lda, w, ps, Kp, out); break;
#endif
        default: break;
    }
}

template <int NP>
static void int8_rows(int64_t mr, const uint8_t* aq, int64_t lda, const float* ad, int64_t ldd, const uint8_t* w,
                      int64_t ps, int64_t Kb, float* out) {
    switch (mr) {
        case 1: int8_tile<1, NP>(aq, lda, ad, ldd, w, ps, Kb, out); break;
        case 2: int8_tile<2, NP>(aq, lda, ad, ldd, w, ps, Kb, out); break;
#if !defined(GPTX_ISA_AVX2)
        case 3: int8_tile<3, NP>(aq, lda, ad, ldd, w, ps, Kb, out); break;
        case 4: int8_tile<4, NP>(aq, lda, ad, ldd, w, ps, Kb, out); break;
#endif
        default: break;
    }
}

// out rows r < mr, lanes of panels j0 .. j0 + np - 1 -> C (columns < N), plus the bias.
static void store_tile(const QMatmulParams& p, const float* tile, int64_t m0, int64_t mr, int64_t j0, int64_t np) {
    const int64_t n0 = j0 * kQPanel;
    int64_t n1 = n0 + np * kQPanel;
    if (n1 > p.N) n1 = p.N;
    for (int64_t r = 0; r < mr; r++) {
        float* c = p.C + (m0 + r) * p.ldc;
        const float* t = tile + r * 32;
        if (p.bias != nullptr)
            for (int64_t n = n0; n < n1; n++) c[n] = t[n - n0] + p.bias[n];
        else
            for (int64_t n = n0; n < n1; n++) c[n] = t[n - n0];
    }
}


#if defined(__AMX_BF16__)
// ------------------------------------------------------------------------------------------------ AMX (bf16 prefill)
// Sapphire Rapids and later Xeons: tdpbf16ps multiplies a 16 x 32 bf16 tile of activations by a 32 x 16 tile of
// weights whose pairs along K are interleaved per column, which is exactly a panel's layout (16 rows of 64 bytes
// = 32 k x 16 lanes), into a 16 x 16 float32 tile. Used from kAmxMinRows rows on: prompts (prefill). Decode batches
// stay on the vdpbf16ps tile, whose per-row result does not depend on how many rows run together.
constexpr int64_t kAmxMinRows = 64;

// Linux hands out the AMX tile state only to processes that ask (arch_prctl ARCH_REQ_XCOMP_PERM, XTILEDATA = 18).
static bool amx_usable() {
    static const int ok = [] {
        unsigned a, b, c, d;
        __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(7), "c"(0));
        const bool tile = (d >> 24) & 1u, bf16 = (d >> 22) & 1u;
        if (!tile || !bf16) return 0;
        return syscall(SYS_arch_prctl, 0x1023, 18) == 0 ? 1 : 0;
    }();
    return ok != 0;
}

struct alignas(64) TileConfig {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
};

// Tiles 0-3: C (16 x 16 float32); 4-5: A (16 rows x 64 bytes); 6-7: B (16 rows x 64 bytes).
static void amx_configure() {
    TileConfig cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) {
        cfg.colsb[t] = 64;
        cfg.rows[t] = 16;
    }
    // ldtilecfg through asm with a memory operand: GCC 12's intrinsic may drop the stores that fill cfg.
    __asm__ volatile("ldtilecfg %0" ::"m"(cfg) : "memory");
}

// Rows m0 .. m0 + 31 (the workspace has them, zero past M) x panels j0, j0 + 1 over the whole of K -> out (32 x 32).
static void amx_tile(const uint16_t* aw, int64_t Kp, const uint16_t* w, int64_t ps, int64_t np, float* out) {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    const int64_t stride_a = Kp * 2;  // bytes between activation rows
    for (int64_t k = 0; k < Kp; k += 32) {
        _tile_loadd(4, aw + k, stride_a);
        _tile_loadd(5, aw + 16 * Kp + k, stride_a);
        _tile_loadd(6, w + (k / 2) * 32, 64);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(2, 5, 6);
        if (np == 2) {
            _tile_loadd(7, w + ps + (k / 2) * 32, 64);
            _tile_dpbf16ps(1, 4, 7);
            _tile_dpbf16ps(3, 5, 7);
        }
    }
    _tile_stored(0, out, 128);
    _tile_stored(2, out + 16 * 32, 128);
    if (np == 2) {
        _tile_stored(1, out + 16, 128);
        _tile_stored(3, out + 16 * 32 + 16, 128);
    }
}

static bool bf16_amx(const QMatmulParams& p, const uint16_t* aw, int64_t Kp, int nt) {
    if (p.M < kAmxMinRows || !amx_usable()) return false;
    const uint16_t* W = (const uint16_t*)p.W;
    const int64_t ps = Kp * kQPanel, panels = qround_up(p.N, kQPanel) / kQPanel, units = (panels + 1) / 2;
    const int64_t chunk = units / (8 * (int64_t)nt) > 1 ? units / (8 * (int64_t)nt) : 1;
#pragma omp parallel num_threads(nt)
    {
        amx_configure();
        alignas(64) float tile[32 * 32];
#pragma omp for schedule(dynamic, chunk)
        for (int64_t u = 0; u < units; u++) {
            const int64_t j0 = 2 * u, np = panels - j0 < 2 ? panels - j0 : 2;
            for (int64_t m0 = 0; m0 < p.M; m0 += 32) {
                amx_tile(aw + m0 * Kp, Kp, W + j0 * ps, ps, np, tile);
                store_tile(p, tile, m0, p.M - m0 < 32 ? p.M - m0 : 32, j0, np);
            }
        }
        _tile_release();
    }
    return true;
}
#endif

}  // namespace

void qmatmul_forward(const QMatmulParams& p) {
    const int64_t Kp = qround_up(p.K, kQBlock), Kb = Kp / kQBlock, panels = qround_up(p.N, kQPanel) / kQPanel;
    const int64_t units = (panels + kNP - 1) / kNP;
    const int nt = num_threads();
    const bool par = units >= 2 && (p.M * p.N * p.K >= 32768);
    // Dynamic chunks of about 1/8 of a thread's share: a core that another process slows down (these machines are
    // shared) hands its remaining units to the other threads instead of holding up the whole call.
    const int64_t chunk = units / (8 * (int64_t)nt) > 1 ? units / (8 * (int64_t)nt) : 1;
    if (p.format == QFormat::bf16) {
        Act* aw = (Act*)p.work;
        convert_rows_bf16(p, aw, Kp, nt);
#if defined(__AMX_BF16__)
        if (bf16_amx(p, aw, Kp, nt)) return;
#endif
        const uint16_t* W = (const uint16_t*)p.W;
        const int64_t ps = Kp * kQPanel;  // elements per panel
#pragma omp parallel for num_threads(nt) schedule(dynamic, chunk) if (par)
        for (int64_t u = 0; u < units; u++) {
            alignas(64) float tile[kMRbf * 32];
            const int64_t j0 = u * kNP, np = panels - j0 < kNP ? panels - j0 : kNP;
            for (int64_t m0 = 0; m0 < p.M; m0 += kMRbf) {
                const int64_t mr = p.M - m0 < kMRbf ? p.M - m0 : kMRbf;
                if (np == kNP)
                    bf16_rows<kNP>(mr, aw + m0 * Kp, Kp, W + j0 * ps, ps, Kp, tile);
                else
                    bf16_rows<1>(mr, aw + m0 * Kp, Kp, W + j0 * ps, ps, Kp, tile);
                store_tile(p, tile, m0, mr, j0, np);
            }
        }
    } else {
        uint8_t* aq = (uint8_t*)p.work;
        float* ad = (float*)((char*)p.work + qround_up(p.M * Kp, 64));
        convert_rows_int8(p, aq, ad, Kp, nt);
        const uint8_t* W = (const uint8_t*)p.W;
        const int64_t ps = Kb * kQInt8PanelBlockBytes;  // bytes per panel
#pragma omp parallel for num_threads(nt) schedule(dynamic, chunk) if (par)
        for (int64_t u = 0; u < units; u++) {
            alignas(64) float tile[kMR8 * 32];
            const int64_t j0 = u * kNP, np = panels - j0 < kNP ? panels - j0 : kNP;
            for (int64_t m0 = 0; m0 < p.M; m0 += kMR8) {
                const int64_t mr = p.M - m0 < kMR8 ? p.M - m0 : kMR8;
                if (np == kNP)
                    int8_rows<kNP>(mr, aq + m0 * Kp, Kp, ad + m0 * Kb, Kb, W + j0 * ps, ps, Kb, tile);
                else
                    int8_rows<1>(mr, aq + m0 * Kp, Kp, ad + m0 * Kb, Kb, W + j0 * ps, ps, Kb, tile);
                store_tile(p, tile, m0, mr, j0, np);
            }
        }
    }
}

}  // namespace GPTX_ISA_NS
}  // namespace cpu
}  // namespace gptx
