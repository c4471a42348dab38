// adamw.cu — the fused AdamW step and the global norm on the GPU (semantics of csrc/ref/ref_adamw.cc).
//
// adamw_step:  elementwise grid-stride loop (float4 packs when all four arrays are 16-byte aligned), the same
//              double-precision arithmetic as the CPU reference: scalars computed once on the host in double,
//              m and v rounded to float and the update taken from the stored (float) m and v, as torch does. With a
//              norm pointer every thread reads the norm and computes the same clip factor (or skips the step when
//              the norm is not finite): clipping needs no host round trip.
// global_norm: per array a deterministic two-pass reduction in double: a grid fixed by n alone (<= 1024 blocks of 256) writes
//              one partial per block (fixed-order tree inside the block), then one block adds the partials in a fixed
//              order; a last single-thread kernel adds the arrays' sums in order and writes the square root. Only a
//              caller that wants the number on the host waits for it.
#include <cmath>
#include <cstdint>

#include "cuda/common.cuh"
#include "cuda/kernels.h"

namespace gptx {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxPartials = 1024;

struct AdamScalars {
    double b1, b2, eps, bc2_sqrt, step_size, decay, grad_scale;
};

__device__ __forceinline__ void adam_one(float& p, float g_in, float& m, float& v, const AdamScalars& a) {
    const double g = (double)g_in * a.grad_scale;
    m = (float)(a.b1 * m + (1.0 - a.b1) * g);
    v = (float)(a.b2 * v + (1.0 - a.b2) * g * g);
    const double denom = sqrt((double)v) / a.bc2_sqrt + a.eps;
    p = (float)(p * a.decay - a.step_size * (double)m / denom);
}

__global__ void adamw_kernel(float* __restrict__ param, const float* __restrict__ grad, float* __restrict__ m,
                             float* __restrict__ v, int64_t n, AdamScalars a, bool vec, const float* __restrict__ norm,
                             float max_norm, float norm_scale, float grad_scale) {
    if (norm != nullptr) {  // the same value in every thread: all skip or all clip alike
        const float scaled = *norm * norm_scale;
        if (!isfinite(scaled)) return;
        a.grad_scale = grad_scale * backend::clip_coefficient(scaled, max_norm);
    }
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    const int64_t start = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    int64_t tail = 0;
    if (vec) {
        const int64_t nv = n / 4;
        for (int64_t i = start; i < nv; i += stride) {
            float4 p = reinterpret_cast<const float4*>(param)[i];
            const float4 g = reinterpret_cast<const float4*>(grad)[i];
            float4 mm = reinterpret_cast<const float4*>(m)[i];
            float4 vv = reinterpret_cast<const float4*>(v)[i];
            adam_one(p.x, g.x, mm.x, vv.x, a);
            adam_one(p.y, g.y, mm.y, vv.y, a);
            adam_one(p.z, g.z, mm.z, vv.z, a);
            adam_one(p.w, g.w, mm.w, vv.w, a);
            reinterpret_cast<float4*>(param)[i] = p;
            reinterpret_cast<float4*>(m)[i] = mm;
            reinterpret_cast<float4*>(v)[i] = vv;
        }
        tail = nv * 4;
    }
    for (int64_t i = tail + start; i < n; i += stride) adam_one(param[i], grad[i], m[i], v[i], a);
}

// Fixed-order block sum of one double per thread; the result is valid in thread 0.
__device__ __forceinline__ double block_sum(double x) {
    __shared__ double s_part[kThreads / 32];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) s_part[warp] = x;
    __syncthreads();
    double r = 0.0;
    if (threadIdx.x == 0)
        for (int w = 0; w < kThreads / 32; w++) r += s_part[w];
    return r;
}

template <typename T>
__global__ void __launch_bounds__(kThreads) sum_squares_partial_kernel(double* __restrict__ partials,
                                                                       const T* __restrict__ x, int64_t n, bool vec) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    const int64_t start = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    double acc = 0.0;
    int64_t tail = 0;
    if (vec) {
        constexpr int NV = Pack<T>::N;
        const int64_t nv = n / NV;
        for (int64_t i = start; i < nv; i += stride) {
            const Pack<T> p = reinterpret_cast<const Pack<T>*>(x)[i];
#pragma unroll
            for (int k = 0; k < NV; k++) {
                const double f = (double)to_float(p.v[k]);
                acc += f * f;
            }
        }
        tail = nv * NV;
    }
    for (int64_t i = tail + start; i < n; i += stride) {
        const double f = (double)to_float(x[i]);
        acc += f * f;
    }
    const double r = block_sum(acc);
    if (threadIdx.x == 0) partials[blockIdx.x] = r;
}

__global__ void __launch_bounds__(kThreads) sum_partials_kernel(double* __restrict__ out,
                                                                const double* __restrict__ partials, int count) {
    double acc = 0.0;
    for (int i = threadIdx.x; i < count; i += kThreads) acc += partials[i];
    const double r = block_sum(acc);
    if (threadIdx.x == 0) *out = r;
}

// The arrays' sums added in order (one thread: a few hundred values at most), and the norm rounded to float32.
__global__ void norm_total_kernel(double* __restrict__ total, float* __restrict__ norm, const double* __restrict__ sums,
                                  int64_t count) {
    double acc = 0.0;
    for (int64_t t = 0; t < count; t++) acc += sums[t];
    *total = acc;
    if (norm != nullptr) *norm = (float)sqrt(acc);
}

}  // namespace

void adamw_step(const AdamWParams& hp) {
    const int64_t n = hp.n;
    if (n <= 0) return;
    AdamScalars a;
    a.b1 = hp.beta1;
    a.b2 = hp.beta2;
    a.eps = hp.eps;
    const double lr = hp.lr;
    const double bias_correction1 = 1.0 - std::pow(a.b1, (double)hp.step);
    a.bc2_sqrt = std::sqrt(1.0 - std::pow(a.b2, (double)hp.step));
    a.step_size = lr / bias_correction1;
    a.decay = 1.0 - lr * (double)hp.weight_decay;
    a.grad_scale = hp.grad_scale;
    const bool vec = aligned16(hp.param) && aligned16(hp.grad) && aligned16(hp.m) && aligned16(hp.v);
    const int64_t work = vec ? n / 4 + 4 : n;
    adamw_kernel<<<blocks_for(work, kThreads), kThreads, 0, stream()>>>(hp.param, hp.grad, hp.m, hp.v, n, a, vec,
                                                                        hp.norm, hp.max_norm, hp.norm_scale,
                                                                        hp.grad_scale);
    GPTX_CUDA_CHECK_LAUNCH("adamw_step");
}

void global_norm(const GlobalNormParams& p) {
    if (p.count <= 0) return;
    int dev = 0;
    GPTX_CUDA_CHECK(cudaGetDevice(&dev));
    // One partial per block (reused by every array: the stream orders them), one sum per array, the total.
    const size_t doubles = kMaxPartials + static_cast<size_t>(p.count) + 1;
    std::shared_ptr<void> scratch = allocate(doubles * sizeof(double), dev);
    double* partials = static_cast<double*>(scratch.get());
    double* sums = partials + kMaxPartials;
    double* total = sums + p.count;
    cudaStream_t s = stream();
    for (int64_t t = 0; t < p.count; t++) {
        const int64_t n = p.n[t];
        // The grid depends on n only (about 16 elements per thread, at most kMaxPartials blocks): the summation
        // order, hence the result, is the same on every run and every device.
        int64_t blocks = (n + kThreads * 16 - 1) / (kThreads * 16);
        if (blocks > kMaxPartials) blocks = kMaxPartials;
        if (blocks < 1) blocks = 1;
        dispatch_float(p.dtype[t], "global_norm", [&](auto tag) {
            using T = decltype(tag);
            sum_squares_partial_kernel<T><<<static_cast<unsigned>(blocks), kThreads, 0, s>>>(
                partials, static_cast<const T*>(p.x[t]), n, aligned16(p.x[t]));
            GPTX_CUDA_CHECK_LAUNCH("global_norm (partials)");
        });
        sum_partials_kernel<<<1, kThreads, 0, s>>>(sums + t, partials, static_cast<int>(blocks));
        GPTX_CUDA_CHECK_LAUNCH("global_norm (sum)");
    }
    norm_total_kernel<<<1, 1, 0, s>>>(total, p.norm, sums, p.count);
    GPTX_CUDA_CHECK_LAUNCH("global_norm (total)");
    if (p.sumsq != nullptr) {
        GPTX_CUDA_CHECK(cudaMemcpyAsync(p.sumsq, total, sizeof(double), cudaMemcpyDeviceToHost, s));
        GPTX_CUDA_CHECK(cudaStreamSynchronize(s));
    }
}

}  // namespace cuda
}  // namespace gptx
