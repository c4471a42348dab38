// convert.cu — the CUDA runtime's element services for gptx::Tensor (fill, dtype conversion): memory-bound
// grid-stride loops, 16-byte packs where every pointer is aligned (cuda/runtime.h declares them).
#include <cmath>
#include <cstdint>
#include <cstring>

#include "core/dtype_convert.h"
#include "cuda/common.cuh"

namespace gptx {
namespace cuda {
namespace {

constexpr int kThreads = 256;

// ---------------------------------------------------------------------------------------------------- fill
// W is an unsigned word of the element size; `pattern` is 16 bytes of repeated elements for the aligned body.
template <typename W>
__global__ void fill_kernel(W* out, int64_t n, W value, uint4 pattern, bool vec) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    int64_t start = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    int64_t tail = 0;
    if (vec) {
        constexpr int N = 16 / (int)sizeof(W);
        const int64_t nv = n / N;
        for (int64_t i = start; i < nv; i += stride) reinterpret_cast<uint4*>(out)[i] = pattern;
        tail = nv * N;
    }
    for (int64_t i = tail + start; i < n; i += stride) out[i] = value;
}

template <typename W>
void launch_fill(void* out, int64_t n, W value) {
    uint4 pattern;
    unsigned char bytes[16];
    for (int k = 0; k < 16; k += (int)sizeof(W)) std::memcpy(bytes + k, &value, sizeof(W));
    std::memcpy(&pattern, bytes, 16);
    const bool vec = aligned16(out);
    const int64_t work = vec ? n / (16 / (int64_t)sizeof(W)) + 16 : n;
    fill_kernel<W><<<blocks_for(work, kThreads), kThreads, 0, stream()>>>(static_cast<W*>(out), n, value, pattern,
                                                                         vec);
    GPTX_CUDA_CHECK_LAUNCH("fill_kernel");
}

// ---------------------------------------------------------------------------------------------------- cast
// Float <-> float: float32 in between (exact for bf16/fp16 -> float32; one rounding, to nearest even, into the
// narrower type; NaN stays NaN). Anything involving an integer type goes through double, as the CPU does
// (csrc/core/tensor.cc load_as_double/store_from_double).
template <typename In, typename Out>
__global__ void cast_float_kernel(Out* out, const In* in, int64_t n, bool vec) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    int64_t start = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    int64_t tail = 0;
    constexpr int N = (sizeof(In) > sizeof(Out) ? Pack<In>::N : Pack<Out>::N);  // 16 bytes of the wider type
    struct alignas(N * sizeof(In)) VIn { In v[N]; };
    struct alignas(N * sizeof(Out)) VOut { Out v[N]; };
    if (vec) {
        const int64_t nv = n / N;
        for (int64_t i = start; i < nv; i += stride) {
            const VIn x = reinterpret_cast<const VIn*>(in)[i];
            VOut y;
#pragma unroll
            for (int k = 0; k < N; k++) y.v[k] = from_float<Out>(to_float(x.v[k]));
            reinterpret_cast<VOut*>(out)[i] = y;
        }
        tail = nv * N;
    }
    for (int64_t i = tail + start; i < n; i += stride) out[i] = from_float<Out>(to_float(in[i]));
}

__device__ __forceinline__ double load_as_double(const void* p, DType dt, int64_t i) {
    switch (dt) {
        case DType::float32: return static_cast<const float*>(p)[i];
        case DType::bfloat16: return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
        case DType::float16: return __half2float(static_cast<const __half*>(p)[i]);
        case DType::int32: return static_cast<const int32_t*>(p)[i];
        case DType::int64: return static_cast<double>(static_cast<const int64_t*>(p)[i]);
        case DType::uint16: return static_cast<const uint16_t*>(p)[i];
        case DType::uint8: return static_cast<const uint8_t*>(p)[i];
    }
    return 0.0;
}

// Out-of-range or NaN float -> int conversions are undefined in C++; here the narrow unsigned types go through
// int64 (wrapping, as x86 does for in-range int64 values) and int32/int64 use the hardware conversion (saturating,
// NaN -> 0), which may differ from the CPU only in those undefined cases.
__device__ __forceinline__ void store_from_double(void* p, DType dt, int64_t i, double x) {
    switch (dt) {
        case DType::float32: static_cast<float*>(p)[i] = static_cast<float>(x); break;
        case DType::bfloat16:
            static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(static_cast<float>(x));
            break;
        case DType::float16: static_cast<__half*>(p)[i] = __float2half_rn(static_cast<float>(x)); break;
        case DType::int32: static_cast<int32_t*>(p)[i] = static_cast<int32_t>(x); break;
        case DType::int64: static_cast<int64_t*>(p)[i] = static_cast<int64_t>(x); break;
        case DType::uint16:
            static_cast<uint16_t*>(p)[i] = static_cast<uint16_t>(static_cast<int64_t>(x));
            break;
        case DType::uint8: static_cast<uint8_t*>(p)[i] = static_cast<uint8_t>(static_cast<int64_t>(x)); break;
    }
}

__global__ void cast_generic_kernel(void* out, DType out_dtype, const void* in, DType in_dtype, int64_t n) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        store_from_double(out, out_dtype, i, load_as_double(in, in_dtype, i));
}

bool is_float(DType d) { return d == DType::float32 || d == DType::bfloat16 || d == DType::float16; }

}  // namespace

namespace {
template <typename W>
void fill_with(void* out, int64_t n, const unsigned char* bytes) {
    W w;
    std::memcpy(&w, bytes, sizeof(W));
    launch_fill<W>(out, n, w);
}
}  // namespace

void fill(void* out, DType dtype, int64_t n, double value) {
    if (n <= 0) return;
    // The element's bytes come from the CPU's conversion, so a fill writes exactly the bits the CPU's fill would.
    unsigned char bytes[8] = {0};
    detail::store_element(bytes, dtype, 0, value);
    switch (dtype_size(dtype)) {
        case 1: fill_with<uint8_t>(out, n, bytes); return;
        case 2: fill_with<uint16_t>(out, n, bytes); return;
        case 4: fill_with<uint32_t>(out, n, bytes); return;
        case 8: fill_with<unsigned long long>(out, n, bytes); return;
    }
    throw TypeError(std::string("fill: unsupported dtype ") + dtype_name(dtype));
}

void cast(void* out, DType out_dtype, const void* in, DType in_dtype, int64_t n) {
    if (n <= 0) return;
    if (is_float(in_dtype) && is_float(out_dtype)) {
        dispatch_float(in_dtype, "cast", [&](auto in_tag) {
            using In = decltype(in_tag);
            dispatch_float(out_dtype, "cast", [&](auto out_tag) {
                using Out = decltype(out_tag);
                constexpr int N = (sizeof(In) > sizeof(Out) ? Pack<In>::N : Pack<Out>::N);
                const bool vec = (reinterpret_cast<uintptr_t>(in) % (N * sizeof(In))) == 0 &&
                                 (reinterpret_cast<uintptr_t>(out) % (N * sizeof(Out))) == 0;
                const int64_t work = vec ? n / N + N : n;
                cast_float_kernel<In, Out><<<blocks_for(work, kThreads), kThreads, 0, stream()>>>(
                    static_cast<Out*>(out), static_cast<const In*>(in), n, vec);
                GPTX_CUDA_CHECK_LAUNCH("cast");
            });
        });
        return;
    }
    cast_generic_kernel<<<blocks_for(n, kThreads), kThreads, 0, stream()>>>(out, out_dtype, in, in_dtype, n);
    GPTX_CUDA_CHECK_LAUNCH("cast");
}

}  // namespace cuda
}  // namespace gptx
