// common.cuh — what every CUDA kernel file shares: error checks, the current stream, dtype load/store.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "cuda/runtime.h"
#include "gptx/error.h"
#include "gptx/tensor.h"

namespace gptx {
namespace cuda {

[[noreturn]] void throw_cuda_error(cudaError_t err, const char* what, const char* file, int line);

// Every CUDA runtime call is checked (gptx::CudaError); the error names the call (or kernel) and the source line.
#define GPTX_CUDA_CHECK(call)                                                                 \
    do {                                                                                      \
        cudaError_t gptx_err_ = (call);                                                       \
        if (gptx_err_ != cudaSuccess) ::gptx::cuda::throw_cuda_error(gptx_err_, #call, __FILE__, __LINE__); \
    } while (0)

// After each launch: a bad configuration shows up here, not at the next sync.
#define GPTX_CUDA_CHECK_LAUNCH(kernel_name)                                                   \
    do {                                                                                      \
        cudaError_t gptx_err_ = cudaGetLastError();                                           \
        if (gptx_err_ != cudaSuccess) ::gptx::cuda::throw_cuda_error(gptx_err_, kernel_name, __FILE__, __LINE__); \
    } while (0)

// The current device's current stream.
inline cudaStream_t stream() {
    int dev = 0;
    cudaGetDevice(&dev);
    return static_cast<cudaStream_t>(current_stream(dev));
}

inline unsigned blocks_for(int64_t n, int threads, int64_t cap = 65535LL * 32) {
    int64_t b = (n + threads - 1) / threads;
    if (b < 1) b = 1;
    return static_cast<unsigned>(b < cap ? b : cap);
}

// Load / store with float32 arithmetic for the activation dtypes.
__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) { return x; }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }
template <>
__device__ __forceinline__ __half from_float<__half>(float x) { return __float2half_rn(x); }

// 16 bytes of T: the unit of a vectorised load/store (4 floats, 8 bf16/fp16).
template <typename T>
struct alignas(16) Pack {
    static constexpr int N = 16 / static_cast<int>(sizeof(T));
    T v[N];
};

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// Sum over a warp, the same butterfly order on every lane (deterministic).
__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

// Calls f.template operator()<T>() with T the CUDA type of an activation dtype (float, __nv_bfloat16, __half).
template <typename F>
void dispatch_float(DType dtype, const char* what, F&& f) {
    switch (dtype) {
        case DType::float32: f(float{}); return;
        case DType::bfloat16: f(__nv_bfloat16{}); return;
        case DType::float16: f(__half{}); return;
        default: throw TypeError(std::string(what) + ": unsupported dtype " + dtype_name(dtype));
    }
}

}  // namespace cuda
}  // namespace gptx
