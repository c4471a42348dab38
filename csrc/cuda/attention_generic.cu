// attention_generic.cu — the generic CUDA attention kernels (float32, any HS in [1, 256], decode-sized Tq, and
// anything the tensor-core kernels do not take), and the D = rowsum(dO * O) step every backward starts with.
//
// One 128-thread block per query row (forward, dQ) or key row (dK/dV); the 4 warps split the keys (queries)
// round-robin, lanes split the head dimension, each warp runs its own online softmax and the 4 partial states are
// merged in a fixed order. Scores are the same lane-split dot product in every generic kernel, so the backward's
// recomputed P = exp(s - lse) sees the same score as the forward (up to fusing the scale into an fma).
// Dropout on the probabilities (p.dropout, threshold > 0) multiplies P by the regenerated factor Z where P meets V
// (forward: the output sum only, not l; backward: dV += P Z dO, dS = P (Z dP - D)). Z is 1 without dropout.
#include <cmath>
#include <cstdint>

#include "cuda/attention_common.cuh"

namespace gptx {
namespace cuda {
namespace attn {
namespace {

// D[bh, i] = sum_d dout[b, i, h, d] * out[b, i, h, d]: one warp per row.
template <typename T>
__global__ void attn_bwd_dot(float* D, const void* dout, AP p) {
    const int lane = threadIdx.x & 31;
    const int64_t rows = p.B * p.NH * p.Tq;
    for (int64_t r = (int64_t)blockIdx.x * (blockDim.x / 32) + (threadIdx.x >> 5); r < rows;
         r += (int64_t)gridDim.x * (blockDim.x / 32)) {
        const int64_t i = r % p.Tq, bh = r / p.Tq, h = bh % p.NH, b = bh / p.NH;
        const T* o = row_ptr<T>(p.out, p.o_batch_stride, p.o_row_stride, p.o_head_stride, b, i, h);
        const T* d = row_ptr<T>(dout, p.o_batch_stride, p.o_row_stride, p.o_head_stride, b, i, h);
        float acc = 0.0f;
        for (int64_t e = lane; e < p.HS; e += 32) acc += to_float(o[e]) * to_float(d[e]);
        acc = warp_sum(acc);
        if (lane == 0) D[r] = acc;
    }
}

// The dropout factor of probability (row state rs, key j): 1 without dropout.
__device__ __forceinline__ float drop_factor(const backend::DropoutMask& m, uint32_t rs, int64_t j) {
    if (m.threshold == 0) return 1.0f;
    return backend::dropout_bits(rs, (uint32_t)j) >= m.threshold ? m.scale : 0.0f;
}

// ------------------------------------------------------------------------------------------------ generic kernels
constexpr int kGenWarps = 4;
constexpr int kGenThreads = 32 * kGenWarps;
constexpr int kGenPer = 8;  // head-dim elements per lane: HS <= 256

// x[t] = row[lane + 32 t] (0 past HS)
template <typename T>
__device__ __forceinline__ void load_row(float (&x)[kGenPer], const T* row, int HS, int lane) {
#pragma unroll
    for (int t = 0; t < kGenPer; t++) {
        const int d = lane + 32 * t;
        x[t] = d < HS ? to_float(row[d]) : 0.0f;
    }
}
// The one dot product every generic kernel uses (same order of operations everywhere).
template <typename T>
__device__ __forceinline__ float dot_row(const float (&x)[kGenPer], const T* row, int HS, int lane) {
    float acc = 0.0f;
#pragma unroll
    for (int t = 0; t < kGenPer; t++) {
        const int d = lane + 32 * t;
        if (d < HS) acc = fmaf(x[t], to_float(row[d]), acc);
    }
    return warp_sum(acc);
}

// One block per query row (bh, i); warps take keys w, w + 4, ...
template <typename T>
__global__ void __launch_bounds__(kGenThreads) attn_fwd_generic(AP p) {
    __shared__ float sm_m[kGenWarps], sm_l[kGenWarps];
    __shared__ float sm_o[kGenWarps][32 * kGenPer];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int HS = (int)p.HS;
    const int64_t rows = p.B * p.NH * p.Tq;
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const int64_t i = r % p.Tq, bh = r / p.Tq, h = bh % p.NH, b = bh / p.NH;
        const int64_t keep = kept_keys(p.causal, p.Tq, p.Tk, i);
        float q[kGenPer], o[kGenPer];
        load_row(q, row_ptr<T>(p.q, p.q_batch_stride, p.q_row_stride, p.q_head_stride, b, i, h), HS, lane);
#pragma unroll
        for (int t = 0; t < kGenPer; t++) o[t] = 0.0f;
        float m = -INFINITY, l = 0.0f;
        const uint32_t rs = p.dropout.threshold ? backend::dropout_row(p.dropout.key, (uint64_t)r) : 0u;
        for (int64_t j = warp; j < keep; j += kGenWarps) {
            const float s = p.scale * dot_row(q, row_ptr<T>(p.k, p.k_batch_stride, p.k_row_stride, p.k_head_stride,
                                                            b, j, h), HS, lane);
            if (s == -INFINITY) continue;  // carries no mass
            float alpha, pj;
            if (s <= m) {
                alpha = 1.0f;
                pj = expf(s - m);
            } else {
                alpha = expf(m - s);  // m == -inf: 0
                pj = 1.0f;
                m = s;
            }
            l = l * alpha + pj;
            pj *= drop_factor(p.dropout, rs, j);  // after the sum: lse is that of the undropped probabilities
            const T* v = row_ptr<T>(p.v, p.v_batch_stride, p.v_row_stride, p.v_head_stride, b, j, h);
#pragma unroll
            for (int t = 0; t < kGenPer; t++) {
                const int d = lane + 32 * t;
                if (d < HS) o[t] = o[t] * alpha + pj * to_float(v[d]);
            }
        }
        if (lane == 0) {
            sm_m[warp] = m;
            sm_l[warp] = l;
        }
#pragma unroll
        for (int t = 0; t < kGenPer; t++) sm_o[warp][lane + 32 * t] = o[t];
        __syncthreads();
        float M = -INFINITY;
        for (int w = 0; w < kGenWarps; w++) M = fmaxf(M, sm_m[w]);
        float L = 0.0f, f[kGenWarps];
        for (int w = 0; w < kGenWarps; w++) {
            f[w] = sm_m[w] == -INFINITY ? 0.0f : expf(sm_m[w] - M);
            L += sm_l[w] * f[w];
        }
        T* out = row_ptr_mut<T>(p.out, p.o_batch_stride, p.o_row_stride, p.o_head_stride, b, i, h);
        for (int d = threadIdx.x; d < HS; d += kGenThreads) {
            float acc = 0.0f;
            for (int w = 0; w < kGenWarps; w++) acc += sm_o[w][d] * f[w];
            out[d] = from_float<T>(L > 0.0f ? acc / L : 0.0f);
        }
        if (threadIdx.x == 0 && p.lse != nullptr) p.lse[r] = L > 0.0f ? M + logf(L) : -INFINITY;
        __syncthreads();  // before the next row reuses the shared state
    }
}

// One block per query row: dq_i = scale * sum_j dS_ij k_j.
template <typename T>
__global__ void __launch_bounds__(kGenThreads) attn_bwd_dq_generic(AttentionBackwardParams bp, const float* Dbuf) {
    __shared__ float sm_dq[kGenWarps][32 * kGenPer];
    const AP& p = bp.fwd;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int HS = (int)p.HS;
    const int64_t rows = p.B * p.NH * p.Tq;
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const int64_t i = r % p.Tq, bh = r / p.Tq, h = bh % p.NH, b = bh / p.NH;
        const int64_t keep = kept_keys(p.causal, p.Tq, p.Tk, i);
        float q[kGenPer], dout[kGenPer], dq[kGenPer];
        load_row(q, row_ptr<T>(p.q, p.q_batch_stride, p.q_row_stride, p.q_head_stride, b, i, h), HS, lane);
        load_row(dout, row_ptr<T>(bp.dout, p.o_batch_stride, p.o_row_stride, p.o_head_stride, b, i, h), HS, lane);
#pragma unroll
        for (int t = 0; t < kGenPer; t++) dq[t] = 0.0f;
        const float lse = p.lse[r], Di = Dbuf[r];
        const uint32_t rs = p.dropout.threshold ? backend::dropout_row(p.dropout.key, (uint64_t)r) : 0u;
        for (int64_t j = warp; j < keep; j += kGenWarps) {
            const T* k = row_ptr<T>(p.k, p.k_batch_stride, p.k_row_stride, p.k_head_stride, b, j, h);
            const T* v = row_ptr<T>(p.v, p.v_batch_stride, p.v_row_stride, p.v_head_stride, b, j, h);
            const float P = expf(p.scale * dot_row(q, k, HS, lane) - lse);
            const float dS = P * (drop_factor(p.dropout, rs, j) * dot_row(dout, v, HS, lane) - Di);
#pragma unroll
            for (int t = 0; t < kGenPer; t++) {
                const int d = lane + 32 * t;
                if (d < HS) dq[t] = fmaf(dS, to_float(k[d]), dq[t]);
            }
        }
#pragma unroll
        for (int t = 0; t < kGenPer; t++) sm_dq[warp][lane + 32 * t] = dq[t];
        __syncthreads();
        T* dst = row_ptr_mut<T>(bp.dq, p.q_batch_stride, p.q_row_stride, p.q_head_stride, b, i, h);
        for (int d = threadIdx.x; d < HS; d += kGenThreads) {
            float acc = 0.0f;
            for (int w = 0; w < kGenWarps; w++) acc += sm_dq[w][d];
            acc *= p.scale;
            dst[d] = from_float<T>(bp.accumulate ? to_float(dst[d]) + acc : acc);
        }
        __syncthreads();
    }
}

// One block per key row (bh, j): dk_j = scale * sum_i dS_ij q_i, dv_j = sum_i P_ij dout_i over the queries that
// see key j (causal: i >= j - (Tk - Tq)).
template <typename T>
__global__ void __launch_bounds__(kGenThreads) attn_bwd_dkdv_generic(AttentionBackwardParams bp, const float* Dbuf) {
    __shared__ float sm_dk[kGenWarps][32 * kGenPer], sm_dv[kGenWarps][32 * kGenPer];
    const AP& p = bp.fwd;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int HS = (int)p.HS;
    const int64_t rows = p.B * p.NH * p.Tk;
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const int64_t j = r % p.Tk, bh = r / p.Tk, h = bh % p.NH, b = bh / p.NH;
        int64_t i0 = 0;
        if (p.causal) {
            i0 = j - (p.Tk - p.Tq);
            if (i0 < 0) i0 = 0;
        }
        float k[kGenPer], v[kGenPer], dk[kGenPer], dv[kGenPer];
        load_row(k, row_ptr<T>(p.k, p.k_batch_stride, p.k_row_stride, p.k_head_stride, b, j, h), HS, lane);
        load_row(v, row_ptr<T>(p.v, p.v_batch_stride, p.v_row_stride, p.v_head_stride, b, j, h), HS, lane);
#pragma unroll
        for (int t = 0; t < kGenPer; t++) dk[t] = dv[t] = 0.0f;
        for (int64_t i = i0 + warp; i < p.Tq; i += kGenWarps) {
            const T* q = row_ptr<T>(p.q, p.q_batch_stride, p.q_row_stride, p.q_head_stride, b, i, h);
            const T* dout = row_ptr<T>(bp.dout, p.o_batch_stride, p.o_row_stride, p.o_head_stride, b, i, h);
            const int64_t ri = bh * p.Tq + i;
            const float P = expf(p.scale * dot_row(k, q, HS, lane) - p.lse[ri]);
            const float Z = p.dropout.threshold ? drop_factor(p.dropout, backend::dropout_row(p.dropout.key, ri), j)
                                                : 1.0f;
            const float dS = P * (Z * dot_row(v, dout, HS, lane) - Dbuf[ri]);
            const float PZ = P * Z;
#pragma unroll
            for (int t = 0; t < kGenPer; t++) {
                const int d = lane + 32 * t;
                if (d < HS) {
                    dk[t] = fmaf(dS, to_float(q[d]), dk[t]);
                    dv[t] = fmaf(PZ, to_float(dout[d]), dv[t]);
                }
            }
        }
#pragma unroll
        for (int t = 0; t < kGenPer; t++) {
            sm_dk[warp][lane + 32 * t] = dk[t];
            sm_dv[warp][lane + 32 * t] = dv[t];
        }
        __syncthreads();
        T* dkp = row_ptr_mut<T>(bp.dk, p.k_batch_stride, p.k_row_stride, p.k_head_stride, b, j, h);
        T* dvp = row_ptr_mut<T>(bp.dv, p.v_batch_stride, p.v_row_stride, p.v_head_stride, b, j, h);
        for (int d = threadIdx.x; d < HS; d += kGenThreads) {
            float ak = 0.0f, av = 0.0f;
            for (int w = 0; w < kGenWarps; w++) {
                ak += sm_dk[w][d];
                av += sm_dv[w][d];
            }
            ak *= p.scale;
            dkp[d] = from_float<T>(bp.accumulate ? to_float(dkp[d]) + ak : ak);
            dvp[d] = from_float<T>(bp.accumulate ? to_float(dvp[d]) + av : av);
        }
        __syncthreads();
    }
}

static_assert(32 * kGenPer == kMaxHS, "the dispatcher's head-size limit is the generic kernels' register budget");

}  // namespace

void backward_dot(const AttentionBackwardParams& bp, float* D) {
    const AP& p = bp.fwd;
    const int64_t rows = p.B * p.NH * p.Tq;
    if (rows <= 0) return;
    dispatch_float(p.dtype, "attention_backward", [&](auto tag) {
        attn_bwd_dot<decltype(tag)><<<grid_rows((rows + 7) / 8), 256, 0, stream()>>>(D, bp.dout, p);
        GPTX_CUDA_CHECK_LAUNCH("attention_backward D = rowsum(dout * out)");
    });
}

void forward_generic(const AP& p) {
    dispatch_float(p.dtype, "attention_forward", [&](auto tag) {
        attn_fwd_generic<decltype(tag)><<<grid_rows(p.B * p.NH * p.Tq), kGenThreads, 0, stream()>>>(p);
        GPTX_CUDA_CHECK_LAUNCH("attention_forward");
    });
}

void backward_generic(const AttentionBackwardParams& bp, const float* D) {
    const AP& p = bp.fwd;
    dispatch_float(p.dtype, "attention_backward", [&](auto tag) {
        using T = decltype(tag);
        if (p.Tk > 0) {
            attn_bwd_dkdv_generic<T><<<grid_rows(p.B * p.NH * p.Tk), kGenThreads, 0, stream()>>>(bp, D);
            GPTX_CUDA_CHECK_LAUNCH("attention_backward dk/dv");
        }
        if (p.Tq > 0) {
            attn_bwd_dq_generic<T><<<grid_rows(p.B * p.NH * p.Tq), kGenThreads, 0, stream()>>>(bp, D);
            GPTX_CUDA_CHECK_LAUNCH("attention_backward dq");
        }
    });
}

}  // namespace attn
}  // namespace cuda
}  // namespace gptx
