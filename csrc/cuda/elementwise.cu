// elementwise.cu — gelu_forward / gelu_backward (tanh form) and add_forward on the GPU.
//
// All are memory-bound grid-stride loops. When every pointer is 16-byte aligned each thread moves one 16-byte pack
// per iteration (4 floats or 8 bf16/fp16) and the last n % pack elements are done element by element; otherwise
// the whole range runs element by element. Arithmetic is float32 (GELU follows csrc/cpu/kernels/gelu.cc: sigmoid
// form, x clamped to [-20, 20] inside u, exp argument capped), rounded to the activation dtype once on the store.
#include <cmath>
#include <cstdint>

#include "cuda/common.cuh"
#include "cuda/kernels.h"

namespace gptx {
namespace cuda {
namespace {

constexpr int kThreads = 256;

// ---------------------------------------------------------------------------------------------------- GELU
constexpr float kS2Pi = 0.7978845608028654f;  // sqrt(2/pi)
constexpr float kC = 0.044715f;
constexpr float kClamp = 20.0f;

__device__ __forceinline__ float neg2u(float xc) {
    return xc * fmaf(xc * xc, -2.0f * kS2Pi * kC, -2.0f * kS2Pi);
}

__device__ __forceinline__ float gelu_f(float x) {
    if (x != x) return x;  // NaN stays NaN
    const float xc = fminf(kClamp, fmaxf(-kClamp, x));
    const float e = expf(fminf(88.0f, neg2u(xc)));
    return fmaxf(-kClamp, x) / (1.0f + e);
}

// gelu'(x) = s + x s (1 - s) 2u'(x) with s = 1 / (1 + e), e = exp(-2u), 1 - s = e s (as on the CPU).
__device__ __forceinline__ float gelu_grad_f(float x) {
    if (x != x) return x;
    const float xc = fminf(kClamp, fmaxf(-kClamp, x));
    const float e = expf(fminf(80.0f, neg2u(xc)));
    const float s = 1.0f / (1.0f + e);
    const float du2 = fmaf(xc * xc, 2.0f * kS2Pi * 3.0f * kC, 2.0f * kS2Pi);
    return s * fmaf(xc * (e * s), du2, 1.0f);
}

template <typename T>
__global__ void gelu_forward_kernel(T* out, const T* inp, int64_t n, bool vec) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    int64_t start = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    int64_t tail = 0;
    if (vec) {
        constexpr int N = Pack<T>::N;
        const int64_t nv = n / N;
        for (int64_t i = start; i < nv; i += stride) {
            Pack<T> p = reinterpret_cast<const Pack<T>*>(inp)[i];
#pragma unroll
            for (int k = 0; k < N; k++) p.v[k] = from_float<T>(gelu_f(to_float(p.v[k])));
            reinterpret_cast<Pack<T>*>(out)[i] = p;
        }
        tail = nv * N;
    }
    for (int64_t i = tail + start; i < n; i += stride) out[i] = from_float<T>(gelu_f(to_float(inp[i])));
}

template <typename T>
__global__ void gelu_backward_kernel(T* dinp, const T* inp, const T* dout, int64_t n, bool accumulate, bool vec) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    int64_t start = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    int64_t tail = 0;
    if (vec) {
        constexpr int N = Pack<T>::N;
        const int64_t nv = n / N;
        for (int64_t i = start; i < nv; i += stride) {
            const Pack<T> x = reinterpret_cast<const Pack<T>*>(inp)[i];
            const Pack<T> dy = reinterpret_cast<const Pack<T>*>(dout)[i];
            Pack<T> d;
            if (accumulate) d = reinterpret_cast<const Pack<T>*>(dinp)[i];
#pragma unroll
            for (int k = 0; k < N; k++) {
                float g = gelu_grad_f(to_float(x.v[k])) * to_float(dy.v[k]);
                if (accumulate) g += to_float(d.v[k]);
                d.v[k] = from_float<T>(g);
            }
            reinterpret_cast<Pack<T>*>(dinp)[i] = d;
        }
        tail = nv * N;
    }
    for (int64_t i = tail + start; i < n; i += stride) {
        float g = gelu_grad_f(to_float(inp[i])) * to_float(dout[i]);
        if (accumulate) g += to_float(dinp[i]);
        dinp[i] = from_float<T>(g);
    }
}

// ---------------------------------------------------------------------------------------------------- add
template <typename T>
__global__ void add_kernel(T* out, const T* a, const T* b, int64_t n, bool vec) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    int64_t start = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    int64_t tail = 0;
    if (vec) {
        constexpr int N = Pack<T>::N;
        const int64_t nv = n / N;
        for (int64_t i = start; i < nv; i += stride) {
            const Pack<T> x = reinterpret_cast<const Pack<T>*>(a)[i];
            const Pack<T> y = reinterpret_cast<const Pack<T>*>(b)[i];
            Pack<T> o;
#pragma unroll
            for (int k = 0; k < N; k++) o.v[k] = from_float<T>(to_float(x.v[k]) + to_float(y.v[k]));
            reinterpret_cast<Pack<T>*>(out)[i] = o;
        }
        tail = nv * N;
    }
    for (int64_t i = tail + start; i < n; i += stride) out[i] = from_float<T>(to_float(a[i]) + to_float(b[i]));
}

}  // namespace

void gelu_forward(const GeluParams& p) {
    void* out = p.out;
    const void* inp = p.inp;
    const DType dtype = p.dtype;
    const int64_t n = p.n;
    if (n <= 0) return;
    dispatch_float(dtype, "gelu_forward", [&](auto tag) {
        using T = decltype(tag);
        const bool vec = aligned16(out) && aligned16(inp);
        const int64_t work = vec ? n / Pack<T>::N + Pack<T>::N : n;
        gelu_forward_kernel<T><<<blocks_for(work, kThreads), kThreads, 0, stream()>>>(
            static_cast<T*>(out), static_cast<const T*>(inp), n, vec);
        GPTX_CUDA_CHECK_LAUNCH("gelu_forward");
    });
}

void gelu_backward(const GeluBackwardParams& p) {
    void* dinp = p.dinp;
    const void* inp = p.inp;
    const void* dout = p.dout;
    const DType dtype = p.dtype;
    const int64_t n = p.n;
    const bool accumulate = p.accumulate;
    if (n <= 0) return;
    dispatch_float(dtype, "gelu_backward", [&](auto tag) {
        using T = decltype(tag);
        const bool vec = aligned16(dinp) && aligned16(inp) && aligned16(dout);
        const int64_t work = vec ? n / Pack<T>::N + Pack<T>::N : n;
        gelu_backward_kernel<T><<<blocks_for(work, kThreads), kThreads, 0, stream()>>>(
            static_cast<T*>(dinp), static_cast<const T*>(inp), static_cast<const T*>(dout), n, accumulate, vec);
        GPTX_CUDA_CHECK_LAUNCH("gelu_backward");
    });
}

void add_forward(const AddParams& p) {
    void* out = p.out;
    const void* a = p.a;
    const void* b = p.b;
    const DType dtype = p.dtype;
    const int64_t n = p.n;
    if (n <= 0) return;
    dispatch_float(dtype, "add_forward", [&](auto tag) {
        using T = decltype(tag);
        const bool vec = aligned16(out) && aligned16(a) && aligned16(b);
        const int64_t work = vec ? n / Pack<T>::N + Pack<T>::N : n;
        add_kernel<T><<<blocks_for(work, kThreads), kThreads, 0, stream()>>>(
            static_cast<T*>(out), static_cast<const T*>(a), static_cast<const T*>(b), n, vec);
        GPTX_CUDA_CHECK_LAUNCH("add_forward");
    });
}

}  // namespace cuda
}  // namespace gptx
