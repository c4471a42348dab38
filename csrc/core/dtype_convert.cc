// dtype_convert.cc — element conversions between the gptx dtypes (the CPU's rounding rules).
#include "core/dtype_convert.h"

#include <cstring>

namespace gptx {
namespace detail {

namespace {

uint16_t f32_to_bf16(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu)) return static_cast<uint16_t>((u >> 16) | 0x40);  // NaN
    u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
    return static_cast<uint16_t>(u >> 16);
}

float bf16_to_f32(uint16_t h) {
    uint32_t u = static_cast<uint32_t>(h) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

uint16_t f32_to_f16(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    const uint32_t sign = (u >> 16) & 0x8000u;
    const uint32_t absu = u & 0x7fffffffu;
    if (absu >= 0x7f800000u) return static_cast<uint16_t>(sign | 0x7c00u | (absu > 0x7f800000u ? 0x200u : 0u));
    if (absu >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds past 65504: inf
    if (absu < 0x38800000u) {                                                // subnormal or zero in half
        if (absu < 0x33000000u) return static_cast<uint16_t>(sign);
        const uint32_t mant = (absu & 0x007fffffu) | 0x00800000u;
        const int shift = 126 - static_cast<int>(absu >> 23);  // 14..24
        uint32_t h = mant >> shift;
        const uint32_t rem = mant & ((1u << shift) - 1u), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1u))) h++;
        return static_cast<uint16_t>(sign | h);
    }
    uint32_t h = ((absu - 0x38000000u) >> 13);
    const uint32_t rem = absu & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;
    return static_cast<uint16_t>(sign | h);
}

float f16_to_f32(uint16_t h) {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu, u;
    if (exp == 0x1f) {
        u = sign | 0x7f800000u | (mant << 13);
    } else if (exp == 0) {
        if (mant == 0) {
            u = sign;
        } else {  // normalise the subnormal
            int e = -1;
            do {
                mant <<= 1;
                e++;
            } while (!(mant & 0x400u));
            u = sign | static_cast<uint32_t>(127 - 15 - e) << 23 | (mant & 0x3ffu) << 13;
        }
    } else {
        u = sign | (exp + 112) << 23 | mant << 13;
    }
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

}  // namespace

double load_element(const void* p, DType dt, int64_t i) {
    switch (dt) {
        case DType::float32: return static_cast<const float*>(p)[i];
        case DType::bfloat16: return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
        case DType::float16: return f16_to_f32(static_cast<const uint16_t*>(p)[i]);
        case DType::int32: return static_cast<const int32_t*>(p)[i];
        case DType::int64: return static_cast<double>(static_cast<const int64_t*>(p)[i]);
        case DType::uint16: return static_cast<const uint16_t*>(p)[i];
        case DType::uint8: return static_cast<const uint8_t*>(p)[i];
    }
    return 0;
}

void store_element(void* p, DType dt, int64_t i, double x) {
    switch (dt) {
        case DType::float32: static_cast<float*>(p)[i] = static_cast<float>(x); break;
        case DType::bfloat16: static_cast<uint16_t*>(p)[i] = f32_to_bf16(static_cast<float>(x)); break;
        case DType::float16: static_cast<uint16_t*>(p)[i] = f32_to_f16(static_cast<float>(x)); break;
        case DType::int32: static_cast<int32_t*>(p)[i] = static_cast<int32_t>(x); break;
        case DType::int64: static_cast<int64_t*>(p)[i] = static_cast<int64_t>(x); break;
        case DType::uint16: static_cast<uint16_t*>(p)[i] = static_cast<uint16_t>(x); break;
        case DType::uint8: static_cast<uint8_t*>(p)[i] = static_cast<uint8_t>(x); break;
    }
}

}  // namespace detail
}  // namespace gptx
