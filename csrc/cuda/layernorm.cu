// layernorm.cu — layernorm forward/backward over the last dim C on the GPU (semantics of csrc/ref/ref_layernorm.cc).
//
// forward:  one warp per row (8 rows per 256-thread block, grid-stride over rows). Two-pass statistics in float32:
//           mean = sum x / C, var = sum (x - mean)^2 / C (biased), rstd = 1 / sqrt(var + eps); the second and third
//           reads of the row hit L1/L2. 16-byte packs when C is a multiple of the pack and pointers are aligned.
// backward: dinp: one warp per row, g = dout * weight, dinp = rstd (g - mean(g) - xhat mean(g xhat)).
//           dweight/dbias: deterministic two-pass reduction, no atomics: blocks of 32 columns x 8 row-lanes each
//           sum a fixed chunk of rows into a per-chunk partial (fixed-order shared-memory reduction over the 8
//           lanes), then one thread per column adds the chunks in order (plus the old value with accumulate).
#include <cstdint>

#include "cuda/common.cuh"
#include "cuda/kernels.h"

namespace gptx {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

template <typename T>
__global__ void layernorm_forward_kernel(T* out, float* __restrict__ mean, float* __restrict__ rstd,
                                         const T* inp, const float* __restrict__ weight,
                                         const float* __restrict__ bias, int64_t N, int64_t C, float eps,
                                         bool vec) {
    constexpr int NV = Pack<T>::N;
    const int lane = threadIdx.x & 31;
    const int64_t nwarps = (int64_t)gridDim.x * kWarps;
    for (int64_t row = (int64_t)blockIdx.x * kWarps + (threadIdx.x >> 5); row < N; row += nwarps) {
        const T* x = inp + row * C;
        T* y = out + row * C;
        float sum = 0.0f;
        if (vec) {
            for (int64_t i = lane; i < C / NV; i += 32) {
                const Pack<T> p = reinterpret_cast<const Pack<T>*>(x)[i];
#pragma unroll
                for (int k = 0; k < NV; k++) sum += to_float(p.v[k]);
            }
        } else {
            for (int64_t c = lane; c < C; c += 32) sum += to_float(x[c]);
        }
        const float mu = warp_sum(sum) / (float)C;
        float ss = 0.0f;
        if (vec) {
            for (int64_t i = lane; i < C / NV; i += 32) {
                const Pack<T> p = reinterpret_cast<const Pack<T>*>(x)[i];
#pragma unroll
                for (int k = 0; k < NV; k++) {
                    const float d = to_float(p.v[k]) - mu;
                    ss += d * d;
                }
            }
        } else {
            for (int64_t c = lane; c < C; c += 32) {
                const float d = to_float(x[c]) - mu;
                ss += d * d;
            }
        }
        const float var = warp_sum(ss) / (float)C;
        const float rs = 1.0f / sqrtf(var + eps);
        if (vec) {
            for (int64_t i = lane; i < C / NV; i += 32) {
                const Pack<T> p = reinterpret_cast<const Pack<T>*>(x)[i];
                Pack<T> o;
#pragma unroll
                for (int k = 0; k < NV; k++) {
                    const int64_t c = i * NV + k;
                    o.v[k] = from_float<T>((to_float(p.v[k]) - mu) * rs * weight[c] + bias[c]);
                }
                reinterpret_cast<Pack<T>*>(y)[i] = o;
            }
        } else {
            for (int64_t c = lane; c < C; c += 32)
                y[c] = from_float<T>((to_float(x[c]) - mu) * rs * weight[c] + bias[c]);
        }
        if (lane == 0) {
            if (mean != nullptr) mean[row] = mu;
            if (rstd != nullptr) rstd[row] = rs;
        }
    }
}

template <typename T>
__global__ void layernorm_backward_dinp_kernel(T* dinp, const T* dout,
                                               const T* inp, const float* __restrict__ weight,
                                               const float* __restrict__ mean, const float* __restrict__ rstd,
                                               int64_t N, int64_t C, bool accumulate, bool vec) {
    constexpr int NV = Pack<T>::N;
    const int lane = threadIdx.x & 31;
    const int64_t nwarps = (int64_t)gridDim.x * kWarps;
    for (int64_t row = (int64_t)blockIdx.x * kWarps + (threadIdx.x >> 5); row < N; row += nwarps) {
        const T* x = inp + row * C;
        const T* dy = dout + row * C;
        T* dx = dinp + row * C;
        const float mu = mean[row], rs = rstd[row];
        float gs = 0.0f, gxs = 0.0f;
        if (vec) {
            for (int64_t i = lane; i < C / NV; i += 32) {
                const Pack<T> px = reinterpret_cast<const Pack<T>*>(x)[i];
                const Pack<T> pd = reinterpret_cast<const Pack<T>*>(dy)[i];
#pragma unroll
                for (int k = 0; k < NV; k++) {
                    const float g = to_float(pd.v[k]) * weight[i * NV + k];
                    gs += g;
                    gxs += g * ((to_float(px.v[k]) - mu) * rs);
                }
            }
        } else {
            for (int64_t c = lane; c < C; c += 32) {
                const float g = to_float(dy[c]) * weight[c];
                gs += g;
                gxs += g * ((to_float(x[c]) - mu) * rs);
            }
        }
        const float g_mean = warp_sum(gs) / (float)C;
        const float gx_mean = warp_sum(gxs) / (float)C;
        if (vec) {
            for (int64_t i = lane; i < C / NV; i += 32) {
                const Pack<T> px = reinterpret_cast<const Pack<T>*>(x)[i];
                const Pack<T> pd = reinterpret_cast<const Pack<T>*>(dy)[i];
                Pack<T> o;
                if (accumulate) o = reinterpret_cast<const Pack<T>*>(dx)[i];
#pragma unroll
                for (int k = 0; k < NV; k++) {
                    const float xhat = (to_float(px.v[k]) - mu) * rs;
                    const float g = to_float(pd.v[k]) * weight[i * NV + k];
                    float d = rs * (g - g_mean - xhat * gx_mean);
                    if (accumulate) d += to_float(o.v[k]);
                    o.v[k] = from_float<T>(d);
                }
                reinterpret_cast<Pack<T>*>(dx)[i] = o;
            }
        } else {
            for (int64_t c = lane; c < C; c += 32) {
                const float xhat = (to_float(x[c]) - mu) * rs;
                const float g = to_float(dy[c]) * weight[c];
                float d = rs * (g - g_mean - xhat * gx_mean);
                if (accumulate) d += to_float(dx[c]);
                dx[c] = from_float<T>(d);
            }
        }
    }
}

// Block (32, 8): column c = blockIdx.x * 32 + threadIdx.x, rows [chunk * rows_per_chunk, ...) split over the 8
// row-lanes (row-lane ty takes rows ty, ty + 8, ...). partial_dw/db[chunk * C + c].
template <typename T>
__global__ void layernorm_backward_dwdb_partial_kernel(float* __restrict__ partial_dw, float* __restrict__ partial_db,
                                                       const T* __restrict__ dout, const T* __restrict__ inp,
                                                       const float* __restrict__ mean,
                                                       const float* __restrict__ rstd, int64_t N, int64_t C,
                                                       int64_t rows_per_chunk) {
    __shared__ float s_dw[8][33];
    __shared__ float s_db[8][33];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int64_t c = (int64_t)blockIdx.x * 32 + tx;
    const int64_t chunk = blockIdx.y;
    const int64_t r0 = chunk * rows_per_chunk;
    const int64_t r1 = (r0 + rows_per_chunk < N) ? r0 + rows_per_chunk : N;
    float dw = 0.0f, db = 0.0f;
    if (c < C) {
        for (int64_t r = r0 + ty; r < r1; r += 8) {
            const float dy = to_float(dout[r * C + c]);
            dw += dy * ((to_float(inp[r * C + c]) - mean[r]) * rstd[r]);
            db += dy;
        }
    }
    s_dw[ty][tx] = dw;
    s_db[ty][tx] = db;
    __syncthreads();
    if (ty == 0 && c < C) {
        float a = s_dw[0][tx], b = s_db[0][tx];
#pragma unroll
        for (int k = 1; k < 8; k++) {
            a += s_dw[k][tx];
            b += s_db[k][tx];
        }
        partial_dw[chunk * C + c] = a;
        partial_db[chunk * C + c] = b;
    }
}

__global__ void layernorm_backward_dwdb_final_kernel(float* __restrict__ dweight, float* __restrict__ dbias,
                                                     const float* __restrict__ partial_dw,
                                                     const float* __restrict__ partial_db, int64_t C, int64_t chunks,
                                                     bool accumulate) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; c < C; c += stride) {
        float a = 0.0f, b = 0.0f;
        for (int64_t k = 0; k < chunks; k++) {
            a += partial_dw[k * C + c];
            b += partial_db[k * C + c];
        }
        if (accumulate) {
            a += dweight[c];
            b += dbias[c];
        }
        dweight[c] = a;
        dbias[c] = b;
    }
}

unsigned row_blocks(int64_t N) { return blocks_for(N, kWarps, 65535LL * 16); }

}  // namespace

void layernorm_forward(const LayernormParams& p) {
    void* out = p.out;
    float* mean = p.mean;
    float* rstd = p.rstd;
    const void* inp = p.inp;
    const float* weight = p.weight;
    const float* bias = p.bias;
    const DType dtype = p.dtype;
    const int64_t N = p.N, C = p.C;
    const float eps = p.eps;
    if (N <= 0 || C <= 0) return;
    dispatch_float(dtype, "layernorm_forward", [&](auto tag) {
        using T = decltype(tag);
        const bool vec = C % Pack<T>::N == 0 && aligned16(out) && aligned16(inp);
        layernorm_forward_kernel<T><<<row_blocks(N), kThreads, 0, stream()>>>(
            static_cast<T*>(out), mean, rstd, static_cast<const T*>(inp), weight, bias, N, C, eps, vec);
        GPTX_CUDA_CHECK_LAUNCH("layernorm_forward");
    });
}

void layernorm_backward(const LayernormBackwardParams& p) {
    void* dinp = p.dinp;
    float* dweight = p.dweight;
    float* dbias = p.dbias;
    const void* dout = p.dout;
    const void* inp = p.inp;
    const float* weight = p.weight;
    const float* mean = p.mean;
    const float* rstd = p.rstd;
    const DType dtype = p.dtype;
    const int64_t N = p.N, C = p.C;
    const bool accumulate = p.accumulate;
    if (N <= 0 || C <= 0) return;
    dispatch_float(dtype, "layernorm_backward", [&](auto tag) {
        using T = decltype(tag);
        const bool vec = C % Pack<T>::N == 0 && aligned16(dinp) && aligned16(dout) && aligned16(inp);
        layernorm_backward_dinp_kernel<T><<<row_blocks(N), kThreads, 0, stream()>>>(
            static_cast<T*>(dinp), static_cast<const T*>(dout), static_cast<const T*>(inp), weight, mean, rstd, N, C,
            accumulate, vec);
        GPTX_CUDA_CHECK_LAUNCH("layernorm_backward_dinp");

        // A chunk count fixed by N alone (at most 1024), so the summation order never depends on the device.
        int64_t rows_per_chunk = (N + 1023) / 1024;
        if (rows_per_chunk < 64) rows_per_chunk = 64;
        const int64_t chunks = (N + rows_per_chunk - 1) / rows_per_chunk;
        int dev = 0;
        GPTX_CUDA_CHECK(cudaGetDevice(&dev));
        std::shared_ptr<void> scratch = allocate(static_cast<size_t>(2 * chunks * C) * sizeof(float), dev);
        float* partial_dw = static_cast<float*>(scratch.get());
        float* partial_db = partial_dw + chunks * C;
        const int64_t col_tiles = (C + 31) / 32;
        // gridDim.x may be up to 2^31 - 1; chunks <= 1024 fits gridDim.y.
        dim3 grid(static_cast<unsigned>(col_tiles), static_cast<unsigned>(chunks));
        layernorm_backward_dwdb_partial_kernel<T><<<grid, dim3(32, 8), 0, stream()>>>(
            partial_dw, partial_db, static_cast<const T*>(dout), static_cast<const T*>(inp), mean, rstd, N, C,
            rows_per_chunk);
        GPTX_CUDA_CHECK_LAUNCH("layernorm_backward_dwdb_partial");
        layernorm_backward_dwdb_final_kernel<<<blocks_for(C, kThreads), kThreads, 0, stream()>>>(
            dweight, dbias, partial_dw, partial_db, C, chunks, accumulate);
        GPTX_CUDA_CHECK_LAUNCH("layernorm_backward_dwdb_final");
    });
}

}  // namespace cuda
}  // namespace gptx
