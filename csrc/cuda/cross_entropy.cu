// cross_entropy.cu — fused softmax cross-entropy over padded logits (N, Vp) on the GPU
// (semantics of csrc/ref/ref_cross_entropy.cc: only the first V columns are real).
//
// forward:  one 256-thread block per row (grid-stride over rows), one read of the row: each thread keeps an online
//           (max, sum of exp) pair over its 16-byte packs (one rescale per pack), then the pairs are merged in a
//           fixed order (warp shuffles, then warp 0 over the 8 warp results): deterministic. -inf safe: a pair whose
//           max is -inf has sum 0 and contributes nothing; a NaN logit makes the sum, hence lse and loss, NaN.
// backward: one block per row, threads over Vp: d = dlosses[i] * (exp(z - lse) - [j == target]) for j < V, exactly
//           0 for padding columns and ignored rows; each element is read before it is written by the same thread, so
//           dlogits may be logits. With accumulate the old value is added.
#include <cmath>
#include <cstdint>

#include "cuda/common.cuh"
#include "cuda/kernels.h"

namespace gptx {
namespace cuda {
namespace {

constexpr int kThreads = 256;

// exp(m_part - m_total), 0 for an empty part (m_part == -inf).
__device__ __forceinline__ float rescale(float m_part, float m_total) {
    return m_part == -INFINITY ? 0.0f : expf(m_part - m_total);
}

__device__ __forceinline__ void merge(float& m, float& s, float m2, float s2) {
    const float M = fmaxf(m, m2);
    if (M == -INFINITY) {
        s = s + s2;  // both empty (0) unless a NaN is being carried
    } else {
        s = s * rescale(m, M) + s2 * rescale(m2, M);
    }
    m = M;
}

__device__ __forceinline__ void add_value(float& m, float& s, float x) {
    if (x > m) {
        s = s * rescale(m, x) + 1.0f;
        m = x;
    } else if (x != -INFINITY) {
        s += expf(x - m);  // NaN x: NaN sum
    }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) cross_entropy_forward_kernel(float* __restrict__ losses,
                                                                         float* __restrict__ lse,
                                                                         const T* __restrict__ logits,
                                                                         const int32_t* __restrict__ targets,
                                                                         int64_t N, int64_t V, int64_t Vp,
                                                                         int32_t ignore_index, bool vec) {
    constexpr int NV = Pack<T>::N;
    __shared__ float s_m[kThreads / 32], s_s[kThreads / 32];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    for (int64_t row = blockIdx.x; row < N; row += gridDim.x) {
        const T* z = logits + row * Vp;
        float m = -INFINITY, s = 0.0f;
        int64_t tail = 0;
        if (vec) {
            const int64_t nv = V / NV;
            for (int64_t i = tid; i < nv; i += kThreads) {
                const Pack<T> p = reinterpret_cast<const Pack<T>*>(z)[i];
                float x[NV];
                float lm = -INFINITY;
#pragma unroll
                for (int k = 0; k < NV; k++) {
                    x[k] = to_float(p.v[k]);
                    lm = fmaxf(lm, x[k]);
                }
                if (lm > m) {
                    s *= rescale(m, lm);
                    m = lm;
                }
#pragma unroll
                for (int k = 0; k < NV; k++) s += (x[k] == -INFINITY) ? 0.0f : expf(x[k] - m);
            }
            tail = nv * NV;
        }
        for (int64_t j = tail + tid; j < V; j += kThreads) add_value(m, s, to_float(z[j]));
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            const float m2 = __shfl_xor_sync(0xffffffffu, m, o);
            const float s2 = __shfl_xor_sync(0xffffffffu, s, o);
            merge(m, s, m2, s2);
        }
        if (lane == 0) {
            s_m[warp] = m;
            s_s[warp] = s;
        }
        __syncthreads();
        if (tid == 0) {
            float M = s_m[0], S = s_s[0];
            for (int w = 1; w < kThreads / 32; w++) merge(M, S, s_m[w], s_s[w]);
            const float row_lse = M == -INFINITY ? -INFINITY : M + logf(S);
            if (lse != nullptr) lse[row] = row_lse;
            const int32_t t = targets[row];
            float loss;
            if (t == ignore_index) {
                loss = 0.0f;
            } else if (t >= 0 && (int64_t)t < V) {
                loss = row_lse - to_float(z[t]);
            } else {
                loss = NAN;  // an out-of-range target (the op layer validates; never read out of bounds)
            }
            losses[row] = loss;
        }
        __syncthreads();  // s_m / s_s are reused by the next row
    }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) cross_entropy_backward_kernel(T* dlogits, const T* logits,
                                                                          const float* __restrict__ lse,
                                                                          const int32_t* __restrict__ targets,
                                                                          const float* __restrict__ dlosses,
                                                                          int64_t N, int64_t V, int64_t Vp,
                                                                          int32_t ignore_index, bool accumulate,
                                                                          bool vec) {
    constexpr int NV = Pack<T>::N;
    for (int64_t row = blockIdx.x; row < N; row += gridDim.x) {
        const T* z = logits + row * Vp;
        T* dz = dlogits + row * Vp;
        const int32_t t = targets[row];
        const bool ignored = t == ignore_index;
        const float dl = ignored ? 0.0f : dlosses[row];
        const float row_lse = lse[row];
        const int64_t limit = ignored ? 0 : V;  // columns [limit, Vp) get exactly 0
        int64_t tail = 0;
        if (vec) {
            const int64_t nv = Vp / NV;
            for (int64_t i = threadIdx.x; i < nv; i += kThreads) {
                const Pack<T> p = reinterpret_cast<const Pack<T>*>(z)[i];
                Pack<T> o;
                if (accumulate) o = reinterpret_cast<const Pack<T>*>(dz)[i];
#pragma unroll
                for (int k = 0; k < NV; k++) {
                    const int64_t j = i * NV + k;
                    float d = 0.0f;
                    if (j < limit) d = dl * (expf(to_float(p.v[k]) - row_lse) - (j == t ? 1.0f : 0.0f));
                    if (accumulate) d += to_float(o.v[k]);
                    o.v[k] = from_float<T>(d);
                }
                reinterpret_cast<Pack<T>*>(dz)[i] = o;
            }
            tail = nv * NV;
        }
        for (int64_t j = tail + threadIdx.x; j < Vp; j += kThreads) {
            float d = 0.0f;
            if (j < limit) d = dl * (expf(to_float(z[j]) - row_lse) - (j == t ? 1.0f : 0.0f));
            if (accumulate) d += to_float(dz[j]);
            dz[j] = from_float<T>(d);
        }
    }
}

// The mean of losses over the rows whose target is kept (cross_entropy_forward's `loss`): one block, each thread a
// strided share summed in double, then a fixed-order tree, so the result is the same on every run.
__global__ void __launch_bounds__(kThreads) mean_loss_kernel(float* __restrict__ loss, const float* __restrict__ losses,
                                                             const int32_t* __restrict__ targets, int64_t N,
                                                             int32_t ignore_index) {
    __shared__ double s_sum[kThreads];
    __shared__ int64_t s_count[kThreads];
    double sum = 0.0;
    int64_t count = 0;
    for (int64_t i = threadIdx.x; i < N; i += kThreads)
        if (targets[i] != ignore_index) {
            sum += losses[i];
            count++;
        }
    s_sum[threadIdx.x] = sum;
    s_count[threadIdx.x] = count;
    __syncthreads();
    for (int w = kThreads / 2; w > 0; w >>= 1) {
        if (threadIdx.x < w) {
            s_sum[threadIdx.x] += s_sum[threadIdx.x + w];
            s_count[threadIdx.x] += s_count[threadIdx.x + w];
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) *loss = s_count[0] ? (float)(s_sum[0] / (double)s_count[0]) : nanf("");
}

unsigned row_grid(int64_t N) { return static_cast<unsigned>(N < (1LL << 30) ? N : (1LL << 30)); }

}  // namespace

void cross_entropy_forward(const CrossEntropyParams& p) {
    float* losses = p.losses;
    float* lse = p.lse;
    const void* logits = p.logits;
    const int32_t* targets = p.targets;
    const DType dtype = p.dtype;
    const int64_t N = p.N, V = p.V, Vp = p.Vp;
    const int32_t ignore_index = p.ignore_index;
    if (N <= 0) return;
    dispatch_float(dtype, "cross_entropy_forward", [&](auto tag) {
        using T = decltype(tag);
        const bool vec = Vp % Pack<T>::N == 0 && aligned16(logits);
        cross_entropy_forward_kernel<T><<<row_grid(N), kThreads, 0, stream()>>>(
            losses, lse, static_cast<const T*>(logits), targets, N, V, Vp, ignore_index, vec);
        GPTX_CUDA_CHECK_LAUNCH("cross_entropy_forward");
    });
    if (p.loss != nullptr) {
        mean_loss_kernel<<<1, kThreads, 0, stream()>>>(p.loss, losses, targets, N, ignore_index);
        GPTX_CUDA_CHECK_LAUNCH("cross_entropy_forward (mean)");
    }
}

void cross_entropy_backward(const CrossEntropyBackwardParams& p) {
    void* dlogits = p.dlogits;
    const void* logits = p.logits;
    const float* lse = p.lse;
    const int32_t* targets = p.targets;
    const float* dlosses = p.dlosses;
    const DType dtype = p.dtype;
    const int64_t N = p.N, V = p.V, Vp = p.Vp;
    const int32_t ignore_index = p.ignore_index;
    const bool accumulate = p.accumulate;
    if (N <= 0) return;
    dispatch_float(dtype, "cross_entropy_backward", [&](auto tag) {
        using T = decltype(tag);
        const bool vec = Vp % Pack<T>::N == 0 && aligned16(logits) && aligned16(dlogits);
        cross_entropy_backward_kernel<T><<<row_grid(N), kThreads, 0, stream()>>>(
            static_cast<T*>(dlogits), static_cast<const T*>(logits), lse, targets, dlosses, N, V, Vp, ignore_index,
            accumulate, vec);
        GPTX_CUDA_CHECK_LAUNCH("cross_entropy_backward");
    });
}

}  // namespace cuda
}  // namespace gptx
