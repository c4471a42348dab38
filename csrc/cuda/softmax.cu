// softmax.cu — row softmax (optionally causal) and its backward on CUDA; semantics of cpu::KernelTable::softmax_*.
//
// One group of threads per row: a warp (8 rows per 256-thread block) for L <= 1024, a 512-thread block otherwise
// (the 50304-wide vocab rows). Three passes over the row (max, sum of exp, write) read it from L1/L2; each element
// is read before the same thread writes it, and every read of the row precedes the reduction barrier that comes
// before any write, so out == inp (and dinp == dout or out) is safe.
#include <cmath>

#include "cuda/common.cuh"
#include "cuda/kernels.h"

namespace gptx {
namespace cuda {
namespace {

constexpr int kWarpRowsPerBlock = 8;  // warp-per-row: 256 threads
constexpr int kBlockThreads = 512;    // block-per-row
constexpr int64_t kWarpMaxL = 1024;

// max that propagates NaN (a NaN in a kept entry makes the whole row NaN, as on the CPU)
__device__ __forceinline__ float nanmax(float a, float b) {
    if (a != a) return a;
    return (b > a || b != b) ? b : a;
}

__device__ __forceinline__ float warp_max(float x) {
    for (int o = 16; o > 0; o >>= 1) x = nanmax(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}
// Reduction over the row's group: a warp (GROUP == 32) or the whole block (GROUP == blockDim.x). The block
// version ends with a barrier, so the scratch can be reused by the next call.
template <int GROUP, bool MAX>
__device__ __forceinline__ float group_reduce(float x, float* scratch) {
    x = MAX ? warp_max(x) : warp_sum(x);
    if (GROUP == 32) return x;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) scratch[warp] = x;
    __syncthreads();
    float y = lane < GROUP / 32 ? scratch[lane] : (MAX ? -INFINITY : 0.0f);
    y = MAX ? warp_max(y) : warp_sum(y);
    __syncthreads();
    return y;
}

__host__ __device__ __forceinline__ int64_t kept_columns(int64_t r, int64_t L, int64_t causal_Tq) {
    if (causal_Tq <= 0) return L;
    const int64_t last = r % causal_Tq + (L - causal_Tq);
    if (last < 0) return 0;
    return last + 1 < L ? last + 1 : L;
}

template <typename T, int GROUP>
__device__ void softmax_row(T* out, const T* inp, int64_t r, int64_t L, float scale, int64_t causal_Tq, int tid,
                            float* scratch) {
    const T* x = inp + r * L;
    T* y = out + r * L;
    const int64_t keep = kept_columns(r, L, causal_Tq);
    float mx = -INFINITY;
    for (int64_t j = tid; j < keep; j += GROUP) mx = nanmax(mx, scale * to_float(x[j]));
    mx = group_reduce<GROUP, true>(mx, scratch);
    if (mx == -INFINITY) {  // nothing kept, or every kept score -inf: the row carries no mass
        for (int64_t j = tid; j < L; j += GROUP) y[j] = from_float<T>(0.0f);
        return;
    }
    float sum = 0.0f;
    for (int64_t j = tid; j < keep; j += GROUP) sum += expf(scale * to_float(x[j]) - mx);
    sum = group_reduce<GROUP, false>(sum, scratch);
    const float inv = 1.0f / sum;
    for (int64_t j = tid; j < keep; j += GROUP) y[j] = from_float<T>(expf(scale * to_float(x[j]) - mx) * inv);
    for (int64_t j = keep + tid; j < L; j += GROUP) y[j] = from_float<T>(0.0f);
}

template <typename T>
__global__ void softmax_forward_warp(T* out, const T* inp, int64_t rows, int64_t L, float scale, int64_t causal_Tq) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int64_t r = (int64_t)blockIdx.x * kWarpRowsPerBlock + warp; r < rows;
         r += (int64_t)gridDim.x * kWarpRowsPerBlock)
        softmax_row<T, 32>(out, inp, r, L, scale, causal_Tq, lane, nullptr);
}

template <typename T>
__global__ void __launch_bounds__(kBlockThreads) softmax_forward_block(T* out, const T* inp, int64_t rows, int64_t L,
                                                                        float scale, int64_t causal_Tq) {
    __shared__ float scratch[32];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x)
        softmax_row<T, kBlockThreads>(out, inp, r, L, scale, causal_Tq, threadIdx.x, scratch);
}

template <typename T, int GROUP>
__device__ void softmax_backward_row(T* dinp, const T* dout, const T* out, int64_t r, int64_t L, float scale, int tid,
                                     float* scratch) {
    const T* dy = dout + r * L;
    const T* y = out + r * L;
    T* dx = dinp + r * L;
    float dot = 0.0f;
    for (int64_t j = tid; j < L; j += GROUP) dot += to_float(dy[j]) * to_float(y[j]);
    dot = group_reduce<GROUP, false>(dot, scratch);
    for (int64_t j = tid; j < L; j += GROUP) {
        const float yj = to_float(y[j]), dyj = to_float(dy[j]);
        dx[j] = from_float<T>(scale * yj * (dyj - dot));
    }
}

template <typename T>
__global__ void softmax_backward_warp(T* dinp, const T* dout, const T* out, int64_t rows, int64_t L, float scale) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int64_t r = (int64_t)blockIdx.x * kWarpRowsPerBlock + warp; r < rows;
         r += (int64_t)gridDim.x * kWarpRowsPerBlock)
        softmax_backward_row<T, 32>(dinp, dout, out, r, L, scale, lane, nullptr);
}

template <typename T>
__global__ void __launch_bounds__(kBlockThreads) softmax_backward_block(T* dinp, const T* dout, const T* out,
                                                                         int64_t rows, int64_t L, float scale) {
    __shared__ float scratch[32];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x)
        softmax_backward_row<T, kBlockThreads>(dinp, dout, out, r, L, scale, threadIdx.x, scratch);
}

constexpr int64_t kMaxGrid = 1LL << 30;

}  // namespace

void softmax_forward(const SoftmaxParams& p) {
    void* out = p.out;
    const void* inp = p.inp;
    const DType dtype = p.dtype;
    const int64_t rows = p.rows, L = p.L, causal_Tq = p.causal_Tq;
    const float scale = p.scale;
    if (rows <= 0 || L <= 0) return;
    dispatch_float(dtype, "softmax_forward", [&](auto tag) {
        using T = decltype(tag);
        if (L <= kWarpMaxL) {
            const int64_t blocks = std::min((rows + kWarpRowsPerBlock - 1) / kWarpRowsPerBlock, kMaxGrid);
            softmax_forward_warp<T><<<(unsigned)blocks, 32 * kWarpRowsPerBlock, 0, stream()>>>(
                static_cast<T*>(out), static_cast<const T*>(inp), rows, L, scale, causal_Tq);
            GPTX_CUDA_CHECK_LAUNCH("softmax_forward_warp");
        } else {
            const int64_t blocks = std::min(rows, kMaxGrid);
            softmax_forward_block<T><<<(unsigned)blocks, kBlockThreads, 0, stream()>>>(
                static_cast<T*>(out), static_cast<const T*>(inp), rows, L, scale, causal_Tq);
            GPTX_CUDA_CHECK_LAUNCH("softmax_forward_block");
        }
    });
}

void softmax_backward(const SoftmaxBackwardParams& p) {
    void* dinp = p.dinp;
    const void* dout = p.dout;
    const void* out = p.out;
    const DType dtype = p.dtype;
    const int64_t rows = p.rows, L = p.L;
    const float scale = p.scale;
    if (rows <= 0 || L <= 0) return;
    dispatch_float(dtype, "softmax_backward", [&](auto tag) {
        using T = decltype(tag);
        if (L <= kWarpMaxL) {
            const int64_t blocks = std::min((rows + kWarpRowsPerBlock - 1) / kWarpRowsPerBlock, kMaxGrid);
            softmax_backward_warp<T><<<(unsigned)blocks, 32 * kWarpRowsPerBlock, 0, stream()>>>(
                static_cast<T*>(dinp), static_cast<const T*>(dout), static_cast<const T*>(out), rows, L, scale);
            GPTX_CUDA_CHECK_LAUNCH("softmax_backward_warp");
        } else {
            const int64_t blocks = std::min(rows, kMaxGrid);
            softmax_backward_block<T><<<(unsigned)blocks, kBlockThreads, 0, stream()>>>(
                static_cast<T*>(dinp), static_cast<const T*>(dout), static_cast<const T*>(out), rows, L, scale);
            GPTX_CUDA_CHECK_LAUNCH("softmax_backward_block");
        }
    });
}

}  // namespace cuda
}  // namespace gptx
