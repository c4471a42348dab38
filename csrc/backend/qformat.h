// qformat.h — element conversions of the packed weight formats (backend/params.h: qmatmul), shared by the packer
// (csrc/ops), the reference and the CPU kernels. All `static inline`: a non-static inline function compiled into an
// AVX-512 unit could be the copy the linker keeps for generic callers (BUILD-NOTES).
#pragma once
#include <stdint.h>
#include <string.h>

namespace gptx {
namespace backend {
namespace qfmt {

static inline uint32_t bits_of(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}
static inline float float_of(uint32_t u) {
    float x;
    memcpy(&x, &u, 4);
    return x;
}

// float32 -> bfloat16, round to nearest even (NaN stays a quiet NaN).
static inline uint16_t to_bf16(float x) {
    uint32_t u = bits_of(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
static inline float bf16_to_f32(uint16_t h) { return float_of((uint32_t)h << 16); }

// IEEE half -> float32 (exact, subnormals included).
static inline float f16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    if (exp == 0x1fu) return float_of(sign | 0x7f800000u | (man << 13));
    if (exp == 0) {  // zero or subnormal: man * 2^-24
        const float v = (float)man * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    return float_of(sign | ((exp + 127 - 15) << 23) | (man << 13));
}

// float32 -> IEEE half, round to nearest even; overflow gives infinity (the packer refuses it before).
static inline uint16_t f32_to_f16(float x) {
    const uint32_t u = bits_of(x);
    const uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    const uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);  // rounds past 65504
    if (a < 0x38800000u) {  // below the smallest normal half: a multiple of 2^-24, rounded to nearest even
        const float v = float_of(a) * 16777216.0f;  // exact scaling by 2^24
        float r = v + 8388608.0f;                   // 2^23: rounds to an integer, ties to even
        r -= 8388608.0f;
        return (uint16_t)(sign | (uint16_t)r);
    }
    uint32_t h = ((a >> 13) - ((127 - 15) << 10));
    const uint32_t rest = a & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) h++;
    return (uint16_t)(sign | h);
}

}  // namespace qfmt
}  // namespace backend
}  // namespace gptx
