// attention.cu — flash-style multi-head attention forward/backward on CUDA (semantics of cpu::attention_*).
//
// Two families of kernels:
// - Tensor-core kernels (bfloat16/float16, HS 64 or 128, sm_80+): FlashAttention-2 structure with nvcuda::wmma
//   16x16x16 products staged through shared memory. Tiles of 64 queries x 64 keys, 4 warps, each warp owning 16
//   rows of the tile. The softmax/elementwise steps give each lane half a row (32 columns), so a row's max and sum
//   need one shuffle. Forward: S = Q K^T, online softmax, O (float, in shared memory) = O * alpha + P V.
//   Backward: D = rowsum(dO * O) (attn_bwd_dot), then one kernel per key block for dK, dV (loops over query blocks,
//   warp owns 16 keys: S^T = K Q^T, P^T, dP^T = V dO^T, dS^T, dV += P^T dO, dK += dS^T Q, accumulators in wmma
//   fragments) and one per query block for dQ (loops over key blocks: S, P, dP, dS, dQ += dS K). No atomics: every
//   output element is owned by one warp, so results are deterministic.
// - Generic kernels (float32, any HS in [1, 256], decode-sized Tq, or anything the tensor-core path does not take):
//   one 128-thread block per query row (forward, dQ) or key row (dK/dV); the 4 warps split the keys (queries)
//   round-robin, lanes split the head dimension, each warp runs its own online softmax and the 4 partial states are
//   merged in a fixed order. Scores are the same lane-split dot product in every generic kernel, so the backward's
//   recomputed P = exp(s - lse) sees the same score as the forward (up to fusing the scale into an fma).
// Rows with no key (causal with Tq > Tk, outside the contract) give out = 0, lse = -inf, zero gradients.
// Measured on an H200 (bf16, B=8 NH=12 T=1024 HS=64 causal, packed qkv): forward 0.31 ms (~42 TFLOP/s), backward
// 1.10 ms; HS=128: 0.78 / 3.18 ms. Well below FlashAttention-2: the next step is register-resident mma.sync m16n8k16
// tiles (ldmatrix, softmax on the accumulator layout) with cp.async double-buffered K/V, replacing the smem round trips.
// (Over ~600 lines: both kernel families and their dispatch; split generic / tensor-core files if it grows.)
#include <mma.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>

#include "cuda/common.cuh"
#include "cuda/kernels.h"

namespace gptx {
namespace cuda {
namespace {

using AP = ::gptx::cuda::AttentionParams;

// ------------------------------------------------------------------------------------------------ shared helpers

// Number of keys query row i may see: all Tk, or with causal those j <= Tk - Tq + i.
__host__ __device__ __forceinline__ int64_t kept_keys(bool causal, int64_t Tq, int64_t Tk, int64_t i) {
    if (!causal) return Tk;
    const int64_t last = Tk - Tq + i;
    if (last < 0) return 0;
    return last + 1 < Tk ? last + 1 : Tk;
}

__device__ __forceinline__ float warp_sum(float x) {
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

template <typename T>
__device__ __forceinline__ const T* row_ptr(const void* base, int64_t bs, int64_t rs, int64_t hs, int64_t b,
                                            int64_t t, int64_t h) {
    return static_cast<const T*>(base) + b * bs + t * rs + h * hs;
}
template <typename T>
__device__ __forceinline__ T* row_ptr_mut(void* base, int64_t bs, int64_t rs, int64_t hs, int64_t b, int64_t t,
                                          int64_t h) {
    return static_cast<T*>(base) + b * bs + t * rs + h * hs;
}

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
        for (int64_t j = warp; j < keep; j += kGenWarps) {
            const T* k = row_ptr<T>(p.k, p.k_batch_stride, p.k_row_stride, p.k_head_stride, b, j, h);
            const T* v = row_ptr<T>(p.v, p.v_batch_stride, p.v_row_stride, p.v_head_stride, b, j, h);
            const float P = expf(p.scale * dot_row(q, k, HS, lane) - lse);
            const float dS = P * (dot_row(dout, v, HS, lane) - Di);
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
            const float dS = P * (dot_row(v, dout, HS, lane) - Dbuf[ri]);
#pragma unroll
            for (int t = 0; t < kGenPer; t++) {
                const int d = lane + 32 * t;
                if (d < HS) {
                    dk[t] = fmaf(dS, to_float(q[d]), dk[t]);
                    dv[t] = fmaf(P, to_float(dout[d]), dv[t]);
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

// ------------------------------------------------------------------------------------------------ tensor-core kernels
namespace wmma = nvcuda::wmma;

constexpr int kBr = 64, kBc = 64;  // query / key tile
constexpr int kTcThreads = 128;    // 4 warps x 16 rows
constexpr int kLdS = kBc + 4;      // float score tile row stride (floats): 16-byte multiple, rows 4 banks apart
constexpr int kLdP = kBc + 8;      // 16-bit P / dS tile row stride (elements): 16-byte multiple

template <int D>
struct TcLayout {
    static constexpr int kLdT = D + 8;  // 16-bit Q/K/V/dO tile row stride
    static constexpr int kLdO = D + 4;  // float O tile row stride
    static constexpr size_t tile16 = (size_t)64 * kLdT * 2;
    static constexpr size_t score = (size_t)64 * kLdS * 4;
    static constexpr size_t p16 = (size_t)64 * kLdP * 2;
    static constexpr size_t ofl = (size_t)64 * kLdO * 4;
    // forward: Q, K, V tiles, S, P, O
    static constexpr size_t fwd_bytes = 3 * tile16 + score + p16 + ofl;
    // backward kernels: 4 tiles, S (then P in float), dP, P and dS in 16 bits, plus lse/D (2 x 64 floats)
    static constexpr size_t bwd_bytes = 4 * tile16 + 2 * score + 2 * p16 + 2 * 64 * 4;
};

// Loads rows [r0, r0 + 64) of one (b, h) slice (row stride rs elements, head dim D contiguous) into a 16-bit smem
// tile; rows at or past nrows are zero (so padded keys/values contribute exact zeros).
template <typename T, int D>
__device__ __forceinline__ void load_tile(T* sm, const T* base, int64_t rs, int64_t r0, int64_t nrows) {
    constexpr int kLdT = TcLayout<D>::kLdT;
    constexpr int kChunks = D / 8;  // 16-byte chunks per row
    for (int c = threadIdx.x; c < 64 * kChunks; c += kTcThreads) {
        const int row = c / kChunks, col = (c % kChunks) * 8;
        T* dst = sm + row * kLdT + col;
        const int64_t gr = r0 + row;
        if (gr < nrows) {
            const T* src = base + gr * rs + col;
            if ((reinterpret_cast<uintptr_t>(src) & 15) == 0) {
                *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(src);
            } else {
#pragma unroll
                for (int e = 0; e < 8; e++) dst[e] = src[e];
            }
        } else {
            *reinterpret_cast<uint4*>(dst) = make_uint4(0, 0, 0, 0);
        }
    }
}

// Lane l of a warp works on row (l >> 1) of the warp's 16, columns [32 (l & 1), 32 (l & 1) + 32). The column order
// is rotated per lane so that the 32 lanes hit 32 different banks of a float tile with row stride kLdS (= 4 mod 32).
__device__ __forceinline__ int rot_col(int lane, int c) {
    const int row = lane >> 1, half = lane & 1;
    return 32 * half + ((c + 2 * half + (row >> 3)) & 31);
}

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
#define GPTX_ATTN_TC 1
#endif

template <typename T, int D>
__global__ void __launch_bounds__(kTcThreads) attn_fwd_tc(AP p) {
#ifdef GPTX_ATTN_TC
    using L = TcLayout<D>;
    constexpr int kLdT = L::kLdT, kLdO = L::kLdO;
    extern __shared__ __align__(128) unsigned char smem[];
    T* Qs = reinterpret_cast<T*>(smem);
    T* Ks = reinterpret_cast<T*>(smem + L::tile16);
    T* Vs = reinterpret_cast<T*>(smem + 2 * L::tile16);
    float* Ss = reinterpret_cast<float*>(smem + 3 * L::tile16);
    T* Ps = reinterpret_cast<T*>(smem + 3 * L::tile16 + L::score);
    float* Os = reinterpret_cast<float*>(smem + 3 * L::tile16 + L::score + L::p16);

    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int64_t BH = p.B * p.NH, ntiles = (p.Tq + kBr - 1) / kBr;
    // heavy (late, causal) query tiles first
    const int64_t tile = ntiles - 1 - (int64_t)blockIdx.x / BH, bh = (int64_t)blockIdx.x % BH;
    const int64_t h = bh % p.NH, b = bh / p.NH, i0 = tile * kBr;

    const T* qb = static_cast<const T*>(p.q) + b * p.q_batch_stride + h * p.q_head_stride;
    const T* kb = static_cast<const T*>(p.k) + b * p.k_batch_stride + h * p.k_head_stride;
    const T* vb = static_cast<const T*>(p.v) + b * p.v_batch_stride + h * p.v_head_stride;
    load_tile<T, D>(Qs, qb, p.q_row_stride, i0, p.Tq);
    for (int e = threadIdx.x; e < 64 * kLdO; e += kTcThreads) Os[e] = 0.0f;
    __syncthreads();

    wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> qa[D / 16];
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) wmma::load_matrix_sync(qa[kk], Qs + warp * 16 * kLdT + kk * 16, kLdT);

    const int myrow = warp * 16 + (lane >> 1);  // row of the tile this lane runs the softmax for
    const int64_t qi = i0 + myrow;
    const int64_t limit = qi < p.Tq ? kept_keys(p.causal, p.Tq, p.Tk, qi) : 0;
    float m = -INFINITY, l = 0.0f;

    // keys the tile's last query may see
    const int64_t tile_last = (i0 + kBr < p.Tq ? i0 + kBr : p.Tq) - 1;
    const int64_t nkeys = kept_keys(p.causal, p.Tq, p.Tk, tile_last);
    for (int64_t j0 = 0; j0 < nkeys; j0 += kBc) {
        __syncthreads();  // previous tile's K/V reads are done
        load_tile<T, D>(Ks, kb, p.k_row_stride, j0, p.Tk);
        load_tile<T, D>(Vs, vb, p.v_row_stride, j0, p.Tk);
        __syncthreads();

        // S_w (16 x 64) = Q_w K^T
#pragma unroll
        for (int n = 0; n < kBc / 16; n++) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::fill_fragment(acc, 0.0f);
#pragma unroll
            for (int kk = 0; kk < D / 16; kk++) {
                wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> kf;
                wmma::load_matrix_sync(kf, Ks + n * 16 * kLdT + kk * 16, kLdT);
                wmma::mma_sync(acc, qa[kk], kf, acc);
            }
            wmma::store_matrix_sync(Ss + warp * 16 * kLdS + n * 16, acc, kLdS, wmma::mem_row_major);
        }
        __syncwarp();

        // online softmax on this lane's half row
        float s[32];
        float mx = -INFINITY;
#pragma unroll
        for (int c = 0; c < 32; c++) {
            const int col = rot_col(lane, c);
            const float x = Ss[myrow * kLdS + col] * p.scale;
            s[c] = j0 + col < limit ? x : -INFINITY;
            mx = fmaxf(mx, s[c]);
        }
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        const float mnew = fmaxf(m, mx);
        float alpha = 1.0f, rs = 0.0f;
        if (mnew != -INFINITY) {
            alpha = expf(m - mnew);  // m == -inf: 0
#pragma unroll
            for (int c = 0; c < 32; c++) {
                const float pc = expf(s[c] - mnew);  // masked: exp(-inf) = 0
                rs += pc;
                Ps[myrow * kLdP + rot_col(lane, c)] = from_float<T>(pc);
            }
        } else {
#pragma unroll
            for (int c = 0; c < 32; c++) Ps[myrow * kLdP + rot_col(lane, c)] = from_float<T>(0.0f);
        }
        rs += __shfl_xor_sync(0xffffffffu, rs, 1);
        l = l * alpha + rs;
        m = mnew;
        if (alpha != 1.0f) {
            const int half = lane & 1;
            for (int c = 0; c < D / 2; c++) {
                const int col = half * (D / 2) + ((c + 2 * half + (myrow >> 3)) % (D / 2));
                Os[myrow * kLdO + col] *= alpha;
            }
        }
        __syncwarp();

        // O_w (16 x D) += P_w (16 x 64) V (64 x D)
#pragma unroll
        for (int n = 0; n < D / 16; n++) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            float* op = Os + warp * 16 * kLdO + n * 16;
            wmma::load_matrix_sync(acc, op, kLdO, wmma::mem_row_major);
#pragma unroll
            for (int kk = 0; kk < kBc / 16; kk++) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> pa;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> vf;
                wmma::load_matrix_sync(pa, Ps + warp * 16 * kLdP + kk * 16, kLdP);
                wmma::load_matrix_sync(vf, Vs + kk * 16 * kLdT + n * 16, kLdT);
                wmma::mma_sync(acc, pa, vf, acc);
            }
            wmma::store_matrix_sync(op, acc, kLdO, wmma::mem_row_major);
        }
        __syncwarp();
    }

    // out = O / l, lse = m + log(l); rows without keys: 0 and -inf
    if (qi < p.Tq) {
        const float inv = l > 0.0f ? 1.0f / l : 0.0f;
        T* out = static_cast<T*>(p.out) + b * p.o_batch_stride + qi * p.o_row_stride + h * p.o_head_stride;
        const int half = lane & 1;
        for (int c = 0; c < D / 2; c++) {
            const int col = half * (D / 2) + c;
            out[col] = from_float<T>(Os[myrow * kLdO + col] * inv);
        }
        if (half == 0 && p.lse != nullptr) p.lse[bh * p.Tq + qi] = l > 0.0f ? m + logf(l) : -INFINITY;
    }
#else
    __trap();
#endif
}

// Writes a warp's 16 x 16 float block (staged in smem at st, row stride kLdS) times mul into rows r0.. of a strided
// (b, h) slice at column c0, adding to the old values with accumulate; rows at or past nrows are skipped.
template <typename T>
__device__ __forceinline__ void store_block16(T* base, int64_t rs, int64_t r0, int64_t nrows, int c0, const float* st,
                                              float mul, bool accumulate, int lane) {
    for (int e = lane; e < 256; e += 32) {
        const int rr = e >> 4, cc = e & 15;
        const int64_t gr = r0 + rr;
        if (gr < nrows) {
            T* dst = base + gr * rs + c0 + cc;
            const float x = st[rr * kLdS + cc] * mul;
            *dst = from_float<T>(accumulate ? to_float(*dst) + x : x);
        }
    }
}

// dK, dV for one key block of 64 keys; warp w owns keys 16w .. 16w + 15 of it.
template <typename T, int D>
__global__ void __launch_bounds__(kTcThreads) attn_bwd_dkdv_tc(AttentionBackwardParams bp, const float* Dbuf) {
#ifdef GPTX_ATTN_TC
    using L = TcLayout<D>;
    constexpr int kLdT = L::kLdT;
    const AP& p = bp.fwd;
    extern __shared__ __align__(128) unsigned char smem[];
    T* Ks = reinterpret_cast<T*>(smem);
    T* Vs = reinterpret_cast<T*>(smem + L::tile16);
    T* Qs = reinterpret_cast<T*>(smem + 2 * L::tile16);
    T* dOs = reinterpret_cast<T*>(smem + 3 * L::tile16);
    float* Ss = reinterpret_cast<float*>(smem + 4 * L::tile16);
    float* dPs = reinterpret_cast<float*>(smem + 4 * L::tile16 + L::score);
    T* Ps = reinterpret_cast<T*>(smem + 4 * L::tile16 + 2 * L::score);
    T* dSs = reinterpret_cast<T*>(smem + 4 * L::tile16 + 2 * L::score + L::p16);
    float* lse_s = reinterpret_cast<float*>(smem + 4 * L::tile16 + 2 * L::score + 2 * L::p16);
    float* D_s = lse_s + 64;

    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int64_t BH = p.B * p.NH, ntiles = (p.Tk + kBc - 1) / kBc;
    // heavy (early, causal) key tiles first
    const int64_t tile = (int64_t)blockIdx.x / BH, bh = (int64_t)blockIdx.x % BH;
    const int64_t h = bh % p.NH, b = bh / p.NH, j0 = tile * kBc;
    (void)ntiles;

    const T* qb = static_cast<const T*>(p.q) + b * p.q_batch_stride + h * p.q_head_stride;
    const T* kb = static_cast<const T*>(p.k) + b * p.k_batch_stride + h * p.k_head_stride;
    const T* vb = static_cast<const T*>(p.v) + b * p.v_batch_stride + h * p.v_head_stride;
    const T* dob = static_cast<const T*>(bp.dout) + b * p.o_batch_stride + h * p.o_head_stride;
    load_tile<T, D>(Ks, kb, p.k_row_stride, j0, p.Tk);
    load_tile<T, D>(Vs, vb, p.v_row_stride, j0, p.Tk);

    wmma::fragment<wmma::accumulator, 16, 16, 16, float> dk[D / 16], dv[D / 16];
#pragma unroll
    for (int n = 0; n < D / 16; n++) {
        wmma::fill_fragment(dk[n], 0.0f);
        wmma::fill_fragment(dv[n], 0.0f);
    }

    const int myrow = warp * 16 + (lane >> 1);  // key row of the tile for the elementwise step
    const int64_t kj = j0 + myrow;
    // first query that sees key j0: i >= j0 - (Tk - Tq)
    int64_t ifirst = 0;
    if (p.causal) {
        ifirst = j0 - (p.Tk - p.Tq);
        if (ifirst < 0) ifirst = 0;
    }
    for (int64_t i0 = ifirst / kBr * kBr; i0 < p.Tq; i0 += kBr) {
        __syncthreads();  // previous Q/dO tiles are no longer read
        load_tile<T, D>(Qs, qb, p.q_row_stride, i0, p.Tq);
        load_tile<T, D>(dOs, dob, p.o_row_stride, i0, p.Tq);
        for (int e = threadIdx.x; e < 64; e += kTcThreads) {
            const int64_t qi = i0 + e;
            lse_s[e] = qi < p.Tq ? p.lse[bh * p.Tq + qi] : 0.0f;
            D_s[e] = qi < p.Tq ? Dbuf[bh * p.Tq + qi] : 0.0f;
        }
        __syncthreads();

        // S^T_w (16 keys x 64 queries) = K_w Q^T
#pragma unroll
        for (int n = 0; n < kBr / 16; n++) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::fill_fragment(acc, 0.0f);
#pragma unroll
            for (int kk = 0; kk < D / 16; kk++) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> ka;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> qf;
                wmma::load_matrix_sync(ka, Ks + warp * 16 * kLdT + kk * 16, kLdT);
                wmma::load_matrix_sync(qf, Qs + n * 16 * kLdT + kk * 16, kLdT);
                wmma::mma_sync(acc, ka, qf, acc);
            }
            wmma::store_matrix_sync(Ss + warp * 16 * kLdS + n * 16, acc, kLdS, wmma::mem_row_major);
        }
        __syncwarp();
        // P^T in float over S^T (each lane rewrites the elements it read), and in 16 bits for the products
#pragma unroll 8
        for (int c = 0; c < 32; c++) {
            const int col = rot_col(lane, c);
            const int64_t qi = i0 + col;
            const bool kept = qi < p.Tq && kj < p.Tk && (!p.causal || kj <= p.Tk - p.Tq + qi);
            const float P = kept ? expf(Ss[myrow * kLdS + col] * p.scale - lse_s[col]) : 0.0f;
            Ss[myrow * kLdS + col] = P;
            Ps[myrow * kLdP + col] = from_float<T>(P);
        }
        __syncwarp();
        // dP^T_w (16 keys x 64 queries) = V_w dO^T
#pragma unroll
        for (int n = 0; n < kBr / 16; n++) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::fill_fragment(acc, 0.0f);
#pragma unroll
            for (int kk = 0; kk < D / 16; kk++) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> va;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> of;
                wmma::load_matrix_sync(va, Vs + warp * 16 * kLdT + kk * 16, kLdT);
                wmma::load_matrix_sync(of, dOs + n * 16 * kLdT + kk * 16, kLdT);
                wmma::mma_sync(acc, va, of, acc);
            }
            wmma::store_matrix_sync(dPs + warp * 16 * kLdS + n * 16, acc, kLdS, wmma::mem_row_major);
        }
        __syncwarp();
#pragma unroll 8
        for (int c = 0; c < 32; c++) {
            const int col = rot_col(lane, c);
            const int e = myrow * kLdS + col;
            dSs[myrow * kLdP + col] = from_float<T>(Ss[e] * (dPs[e] - D_s[col]));
        }
        __syncwarp();
        // dV_w += P^T_w dO, dK_w += dS^T_w Q (scale applied on the store)
#pragma unroll
        for (int kk = 0; kk < kBr / 16; kk++) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> pa, sa;
            wmma::load_matrix_sync(pa, Ps + warp * 16 * kLdP + kk * 16, kLdP);
            wmma::load_matrix_sync(sa, dSs + warp * 16 * kLdP + kk * 16, kLdP);
#pragma unroll
            for (int n = 0; n < D / 16; n++) {
                wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> of, qf;
                wmma::load_matrix_sync(of, dOs + kk * 16 * kLdT + n * 16, kLdT);
                wmma::mma_sync(dv[n], pa, of, dv[n]);
                wmma::load_matrix_sync(qf, Qs + kk * 16 * kLdT + n * 16, kLdT);
                wmma::mma_sync(dk[n], sa, qf, dk[n]);
            }
        }
    }

    // store through this warp's 16 x 16 corner of the score tile (only this warp uses rows 16w.. of it)
    float* st = Ss + warp * 16 * kLdS;
    T* dkb = static_cast<T*>(bp.dk) + b * p.k_batch_stride + h * p.k_head_stride;
    T* dvb = static_cast<T*>(bp.dv) + b * p.v_batch_stride + h * p.v_head_stride;
    const int64_t r0 = j0 + warp * 16;
#pragma unroll
    for (int n = 0; n < D / 16; n++) {
        __syncwarp();
        wmma::store_matrix_sync(st, dk[n], kLdS, wmma::mem_row_major);
        __syncwarp();
        store_block16(dkb, p.k_row_stride, r0, p.Tk, n * 16, st, p.scale, bp.accumulate, lane);
        __syncwarp();
        wmma::store_matrix_sync(st, dv[n], kLdS, wmma::mem_row_major);
        __syncwarp();
        store_block16(dvb, p.v_row_stride, r0, p.Tk, n * 16, st, 1.0f, bp.accumulate, lane);
    }
#else
    __trap();
#endif
}

// dQ for one query block of 64 queries; warp w owns queries 16w .. 16w + 15.
template <typename T, int D>
__global__ void __launch_bounds__(kTcThreads) attn_bwd_dq_tc(AttentionBackwardParams bp, const float* Dbuf) {
#ifdef GPTX_ATTN_TC
    using L = TcLayout<D>;
    constexpr int kLdT = L::kLdT;
    const AP& p = bp.fwd;
    extern __shared__ __align__(128) unsigned char smem[];
    T* Qs = reinterpret_cast<T*>(smem);
    T* dOs = reinterpret_cast<T*>(smem + L::tile16);
    T* Ks = reinterpret_cast<T*>(smem + 2 * L::tile16);
    T* Vs = reinterpret_cast<T*>(smem + 3 * L::tile16);
    float* Ss = reinterpret_cast<float*>(smem + 4 * L::tile16);
    float* dPs = reinterpret_cast<float*>(smem + 4 * L::tile16 + L::score);
    T* dSs = reinterpret_cast<T*>(smem + 4 * L::tile16 + 2 * L::score + L::p16);

    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int64_t BH = p.B * p.NH, ntiles = (p.Tq + kBr - 1) / kBr;
    const int64_t tile = ntiles - 1 - (int64_t)blockIdx.x / BH, bh = (int64_t)blockIdx.x % BH;
    const int64_t h = bh % p.NH, b = bh / p.NH, i0 = tile * kBr;

    const T* qb = static_cast<const T*>(p.q) + b * p.q_batch_stride + h * p.q_head_stride;
    const T* kb = static_cast<const T*>(p.k) + b * p.k_batch_stride + h * p.k_head_stride;
    const T* vb = static_cast<const T*>(p.v) + b * p.v_batch_stride + h * p.v_head_stride;
    const T* dob = static_cast<const T*>(bp.dout) + b * p.o_batch_stride + h * p.o_head_stride;
    load_tile<T, D>(Qs, qb, p.q_row_stride, i0, p.Tq);
    load_tile<T, D>(dOs, dob, p.o_row_stride, i0, p.Tq);

    const int myrow = warp * 16 + (lane >> 1);
    const int64_t qi = i0 + myrow;
    const int64_t limit = qi < p.Tq ? kept_keys(p.causal, p.Tq, p.Tk, qi) : 0;
    const float lse = qi < p.Tq ? p.lse[bh * p.Tq + qi] : 0.0f;
    const float Di = qi < p.Tq ? Dbuf[bh * p.Tq + qi] : 0.0f;

    wmma::fragment<wmma::accumulator, 16, 16, 16, float> dq[D / 16];
#pragma unroll
    for (int n = 0; n < D / 16; n++) wmma::fill_fragment(dq[n], 0.0f);

    const int64_t tile_last = (i0 + kBr < p.Tq ? i0 + kBr : p.Tq) - 1;
    const int64_t nkeys = kept_keys(p.causal, p.Tq, p.Tk, tile_last);
    for (int64_t j0 = 0; j0 < nkeys; j0 += kBc) {
        __syncthreads();
        load_tile<T, D>(Ks, kb, p.k_row_stride, j0, p.Tk);
        load_tile<T, D>(Vs, vb, p.v_row_stride, j0, p.Tk);
        __syncthreads();

        // S_w = Q_w K^T
#pragma unroll
        for (int n = 0; n < kBc / 16; n++) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::fill_fragment(acc, 0.0f);
#pragma unroll
            for (int kk = 0; kk < D / 16; kk++) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> qa;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> kf;
                wmma::load_matrix_sync(qa, Qs + warp * 16 * kLdT + kk * 16, kLdT);
                wmma::load_matrix_sync(kf, Ks + n * 16 * kLdT + kk * 16, kLdT);
                wmma::mma_sync(acc, qa, kf, acc);
            }
            wmma::store_matrix_sync(Ss + warp * 16 * kLdS + n * 16, acc, kLdS, wmma::mem_row_major);
        }
        __syncwarp();
#pragma unroll 8
        for (int c = 0; c < 32; c++) {
            const int col = rot_col(lane, c);
            const int e = myrow * kLdS + col;
            Ss[e] = j0 + col < limit ? expf(Ss[e] * p.scale - lse) : 0.0f;  // P over S
        }
        __syncwarp();
        // dP_w = dO_w V^T
#pragma unroll
        for (int n = 0; n < kBc / 16; n++) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::fill_fragment(acc, 0.0f);
#pragma unroll
            for (int kk = 0; kk < D / 16; kk++) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> oa;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> vf;
                wmma::load_matrix_sync(oa, dOs + warp * 16 * kLdT + kk * 16, kLdT);
                wmma::load_matrix_sync(vf, Vs + n * 16 * kLdT + kk * 16, kLdT);
                wmma::mma_sync(acc, oa, vf, acc);
            }
            wmma::store_matrix_sync(dPs + warp * 16 * kLdS + n * 16, acc, kLdS, wmma::mem_row_major);
        }
        __syncwarp();
#pragma unroll 8
        for (int c = 0; c < 32; c++) {
            const int col = rot_col(lane, c);
            const int e = myrow * kLdS + col;
            dSs[myrow * kLdP + col] = from_float<T>(Ss[e] * (dPs[e] - Di));
        }
        __syncwarp();
        // dQ_w += dS_w K
#pragma unroll
        for (int kk = 0; kk < kBc / 16; kk++) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> sa;
            wmma::load_matrix_sync(sa, dSs + warp * 16 * kLdP + kk * 16, kLdP);
#pragma unroll
            for (int n = 0; n < D / 16; n++) {
                wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> kf;
                wmma::load_matrix_sync(kf, Ks + kk * 16 * kLdT + n * 16, kLdT);
                wmma::mma_sync(dq[n], sa, kf, dq[n]);
            }
        }
    }

    float* st = Ss + warp * 16 * kLdS;
    T* dqb = static_cast<T*>(bp.dq) + b * p.q_batch_stride + h * p.q_head_stride;
    const int64_t r0 = i0 + warp * 16;
#pragma unroll
    for (int n = 0; n < D / 16; n++) {
        __syncwarp();
        wmma::store_matrix_sync(st, dq[n], kLdS, wmma::mem_row_major);
        __syncwarp();
        store_block16(dqb, p.q_row_stride, r0, p.Tq, n * 16, st, p.scale, bp.accumulate, lane);
    }
#else
    __trap();
#endif
}

// ------------------------------------------------------------------------------------------------ dispatch
constexpr int64_t kMaxGrid = (1LL << 31) - 1;

unsigned grid_rows(int64_t rows) { return (unsigned)(rows < (1LL << 30) ? rows : (1LL << 30)); }

bool device_has_tc(size_t smem_bytes) {
    int dev = 0, major = 0, optin = 0;
    GPTX_CUDA_CHECK(cudaGetDevice(&dev));
    GPTX_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    GPTX_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    return major >= 8 && (size_t)optin >= smem_bytes;
}

// Tensor-core path: 16-bit types, HS 64 or 128, a device that has the shared memory, grid within limits.
bool use_tc(const AP& p, int64_t tiles) {
    if (p.dtype != DType::bfloat16 && p.dtype != DType::float16) return false;
    if (p.HS != 64 && p.HS != 128) return false;
    if (tiles * p.B * p.NH > kMaxGrid) return false;
    const size_t need = p.HS == 64 ? TcLayout<64>::bwd_bytes : TcLayout<128>::bwd_bytes;
    const size_t need_f = p.HS == 64 ? TcLayout<64>::fwd_bytes : TcLayout<128>::fwd_bytes;
    return device_has_tc(need > need_f ? need : need_f);
}

template <typename K>
void set_smem(K kernel, size_t bytes) {
    // per device and kernel; cheap enough to set on every launch (a host-side attribute write)
    GPTX_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
}

template <typename T, int D>
void forward_tc(const AP& p) {
    const int64_t tiles = (p.Tq + kBr - 1) / kBr;
    const size_t bytes = TcLayout<D>::fwd_bytes;
    set_smem(attn_fwd_tc<T, D>, bytes);
    attn_fwd_tc<T, D><<<(unsigned)(tiles * p.B * p.NH), kTcThreads, bytes, stream()>>>(p);
    GPTX_CUDA_CHECK_LAUNCH("attention_forward (tensor cores)");
}

template <typename T, int D>
void backward_tc(const AttentionBackwardParams& bp, const float* Dbuf) {
    const AP& p = bp.fwd;
    const size_t bytes = TcLayout<D>::bwd_bytes;
    const int64_t ktiles = (p.Tk + kBc - 1) / kBc, qtiles = (p.Tq + kBr - 1) / kBr;
    set_smem(attn_bwd_dkdv_tc<T, D>, bytes);
    attn_bwd_dkdv_tc<T, D><<<(unsigned)(ktiles * p.B * p.NH), kTcThreads, bytes, stream()>>>(bp, Dbuf);
    GPTX_CUDA_CHECK_LAUNCH("attention_backward dk/dv (tensor cores)");
    set_smem(attn_bwd_dq_tc<T, D>, bytes);
    attn_bwd_dq_tc<T, D><<<(unsigned)(qtiles * p.B * p.NH), kTcThreads, bytes, stream()>>>(bp, Dbuf);
    GPTX_CUDA_CHECK_LAUNCH("attention_backward dq (tensor cores)");
}

// Decode-sized query counts use the generic kernel (a 64-query tile would be mostly padding).
constexpr int64_t kTcMinTq = 16;

template <typename T>
void forward_dispatch(const AP& p) {
    const int64_t tiles = (p.Tq + kBr - 1) / kBr;
    if constexpr (!std::is_same<T, float>::value) {
        if (p.Tq >= kTcMinTq && use_tc(p, tiles)) {
            if (p.HS == 64)
                forward_tc<T, 64>(p);
            else
                forward_tc<T, 128>(p);
            return;
        }
    }
    attn_fwd_generic<T><<<grid_rows(p.B * p.NH * p.Tq), kGenThreads, 0, stream()>>>(p);
    GPTX_CUDA_CHECK_LAUNCH("attention_forward");
}

template <typename T>
void backward_dispatch(const AttentionBackwardParams& bp) {
    const AP& p = bp.fwd;
    int dev = 0;
    GPTX_CUDA_CHECK(cudaGetDevice(&dev));
    const int64_t rows = p.B * p.NH * p.Tq;
    std::shared_ptr<void> dbuf = allocate((size_t)(rows > 0 ? rows : 1) * sizeof(float), dev);
    float* Dbuf = static_cast<float*>(dbuf.get());
    if (rows > 0) {
        attn_bwd_dot<T><<<grid_rows((rows + 7) / 8), 256, 0, stream()>>>(Dbuf, bp.dout, p);
        GPTX_CUDA_CHECK_LAUNCH("attention_backward D = rowsum(dout * out)");
    }
    if constexpr (!std::is_same<T, float>::value) {
        const int64_t tiles = (std::max(p.Tq, p.Tk) + 63) / 64;
        if (p.Tq > 0 && p.Tk > 0 && use_tc(p, tiles)) {
            if (p.HS == 64)
                backward_tc<T, 64>(bp, Dbuf);
            else
                backward_tc<T, 128>(bp, Dbuf);
            return;  // dbuf is freed stream-ordered after the kernels that read it
        }
    }
    if (p.Tk > 0) {
        attn_bwd_dkdv_generic<T><<<grid_rows(p.B * p.NH * p.Tk), kGenThreads, 0, stream()>>>(bp, Dbuf);
        GPTX_CUDA_CHECK_LAUNCH("attention_backward dk/dv");
    }
    if (p.Tq > 0) {
        attn_bwd_dq_generic<T><<<grid_rows(p.B * p.NH * p.Tq), kGenThreads, 0, stream()>>>(bp, Dbuf);
        GPTX_CUDA_CHECK_LAUNCH("attention_backward dq");
    }
}

void check_hs(int64_t HS, const char* what) {
    if (HS < 1 || HS > 32 * kGenPer)
        throw Error(std::string(what) + ": head size " + std::to_string(HS) + " outside [1, 256]");
}

}  // namespace

void attention_forward(const AttentionParams& p) {
    check_hs(p.HS, "attention_forward");
    if (p.B <= 0 || p.NH <= 0 || p.Tq <= 0) return;
    dispatch_float(p.dtype, "attention_forward", [&](auto tag) { forward_dispatch<decltype(tag)>(p); });
}

void attention_backward(const AttentionBackwardParams& bp) {
    const AP& p = bp.fwd;
    check_hs(p.HS, "attention_backward");
    if (p.B <= 0 || p.NH <= 0 || (p.Tq <= 0 && p.Tk <= 0)) return;
    dispatch_float(p.dtype, "attention_backward", [&](auto tag) { backward_dispatch<decltype(tag)>(bp); });
}

}  // namespace cuda
}  // namespace gptx
