// attention_tc.cu — the tensor-core CUDA attention kernels (bfloat16/float16, HS 64 or 128, sm_80+).
//
// FlashAttention-2 structure with nvcuda::wmma 16x16x16 products staged through shared memory. Tiles of 64 queries
// x 64 keys, 4 warps, each warp owning 16 rows of the tile. The softmax/elementwise steps give each lane half a row
// (32 columns), so a row's max and sum need one shuffle. Forward: S = Q K^T, online softmax, O (float, in shared
// memory) = O * alpha + P V. Backward (after D = rowsum(dO * O)): one kernel per key block for dK, dV (loops over
// query blocks, warp owns 16 keys: S^T = K Q^T, P^T, dP^T = V dO^T, dS^T, dV += P^T dO, dK += dS^T Q, accumulators
// in wmma fragments) and one per query block for dQ (loops over key blocks: S, P, dP, dS, dQ += dS K). No atomics:
// every output element is owned by one warp, so results are deterministic.
// Dropout on the probabilities (DROP, a template flag so the dropout-free kernels are the code that ran before):
// forward stores P Z for the P V product while the row sum l takes P; backward stores P Z (16-bit) for dV and forms
// dS = P (Z dP - D). Z is regenerated per element from the row states (backend/dropout_mask.h): in dK/dV, whose
// lanes run along key rows, the 64 query rows' states are staged in shared memory next to lse and D.
// (Over 600 lines: the three kernels share tile layouts and helpers that nothing else uses.)
// Measured on an H200 (bf16, B=8 NH=12 T=1024 HS=64 causal, packed qkv): forward 0.31 ms (~42 TFLOP/s), backward
// 1.10 ms; HS=128: 0.78 / 3.18 ms. Well below FlashAttention-2: the next step is register-resident mma.sync m16n8k16
// tiles (ldmatrix, softmax on the accumulator layout) with cp.async double-buffered K/V, replacing the smem round trips.
#include <mma.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "cuda/attention_common.cuh"

namespace gptx {
namespace cuda {
namespace attn {
namespace {

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
    // backward kernels: 4 tiles, S (then P in float), dP, P and dS in 16 bits, plus lse/D (2 x 64 floats) and the
    // dropout row states of the query tile (64 x 4 bytes)
    static constexpr size_t bwd_bytes = 4 * tile16 + 2 * score + 2 * p16 + 3 * 64 * 4;
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

// The dropout factor of probability (row state rs, key j): mask.scale when kept, else 0.
__device__ __forceinline__ float tc_drop(const backend::DropoutMask& m, uint32_t rs, int64_t j) {
    return backend::dropout_bits(rs, (uint32_t)j) >= m.threshold ? m.scale : 0.0f;
}

template <typename T, int D, bool DROP>
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
    const uint32_t drs = DROP ? backend::dropout_row(p.dropout.key, (uint64_t)(bh * p.Tq + qi)) : 0u;

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
                const int col = rot_col(lane, c);
                Ps[myrow * kLdP + col] = from_float<T>(DROP ? pc * tc_drop(p.dropout, drs, j0 + col) : pc);
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
template <typename T, int D, bool DROP>
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
    uint32_t* drs_s = reinterpret_cast<uint32_t*>(D_s + 64);

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
            if (DROP) drs_s[e] = backend::dropout_row(p.dropout.key, (uint64_t)(bh * p.Tq + qi));
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
            Ps[myrow * kLdP + col] = from_float<T>(DROP ? P * tc_drop(p.dropout, drs_s[col], kj) : P);
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
            const float dP = DROP ? dPs[e] * tc_drop(p.dropout, drs_s[col], kj) : dPs[e];
            dSs[myrow * kLdP + col] = from_float<T>(Ss[e] * (dP - D_s[col]));
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
template <typename T, int D, bool DROP>
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
    const uint32_t drs = DROP ? backend::dropout_row(p.dropout.key, (uint64_t)(bh * p.Tq + qi)) : 0u;

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
            const float dP = DROP ? dPs[e] * tc_drop(p.dropout, drs, j0 + col) : dPs[e];
            dSs[myrow * kLdP + col] = from_float<T>(Ss[e] * (dP - Di));
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

// ------------------------------------------------------------------------------------------------ launch
constexpr int64_t kMaxGrid = (1LL << 31) - 1;

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

template <typename T, int D, bool DROP>
void launch_forward(const AP& p) {
    const int64_t tiles = (p.Tq + kBr - 1) / kBr;
    const size_t bytes = TcLayout<D>::fwd_bytes;
    set_smem(attn_fwd_tc<T, D, DROP>, bytes);
    attn_fwd_tc<T, D, DROP><<<(unsigned)(tiles * p.B * p.NH), kTcThreads, bytes, stream()>>>(p);
    GPTX_CUDA_CHECK_LAUNCH("attention_forward (tensor cores)");
}

template <typename T, int D, bool DROP>
void launch_backward(const AttentionBackwardParams& bp, const float* Dbuf) {
    const AP& p = bp.fwd;
    const size_t bytes = TcLayout<D>::bwd_bytes;
    const int64_t ktiles = (p.Tk + kBc - 1) / kBc, qtiles = (p.Tq + kBr - 1) / kBr;
    set_smem(attn_bwd_dkdv_tc<T, D, DROP>, bytes);
    attn_bwd_dkdv_tc<T, D, DROP><<<(unsigned)(ktiles * p.B * p.NH), kTcThreads, bytes, stream()>>>(bp, Dbuf);
    GPTX_CUDA_CHECK_LAUNCH("attention_backward dk/dv (tensor cores)");
    set_smem(attn_bwd_dq_tc<T, D, DROP>, bytes);
    attn_bwd_dq_tc<T, D, DROP><<<(unsigned)(qtiles * p.B * p.NH), kTcThreads, bytes, stream()>>>(bp, Dbuf);
    GPTX_CUDA_CHECK_LAUNCH("attention_backward dq (tensor cores)");
}

// Calls f.template operator()<T, D>() for the 16-bit dtype and head size of p (both checked by use_tc).
template <typename F>
void dispatch_tc(const AP& p, F&& f) {
    const bool bf16 = p.dtype == DType::bfloat16;
    if (bf16 && p.HS == 64) f.template operator()<__nv_bfloat16, 64>();
    else if (bf16) f.template operator()<__nv_bfloat16, 128>();
    else if (p.HS == 64) f.template operator()<__half, 64>();
    else f.template operator()<__half, 128>();
}

// Decode-sized query counts use the generic kernel (a 64-query tile would be mostly padding).
constexpr int64_t kTcMinTq = 16;

struct ForwardLauncher {
    const AP& p;
    template <typename T, int D>
    void operator()() const {
        if (p.dropout.threshold != 0)
            launch_forward<T, D, true>(p);
        else
            launch_forward<T, D, false>(p);
    }
};

struct BackwardLauncher {
    const AttentionBackwardParams& bp;
    const float* D;
    template <typename T, int HS>
    void operator()() const {
        if (bp.fwd.dropout.threshold != 0)
            launch_backward<T, HS, true>(bp, D);
        else
            launch_backward<T, HS, false>(bp, D);
    }
};

}  // namespace

bool tc_forward(const AP& p) {
    if (p.Tq < kTcMinTq || !use_tc(p, (p.Tq + kBr - 1) / kBr)) return false;
    dispatch_tc(p, ForwardLauncher{p});
    return true;
}

bool tc_backward(const AttentionBackwardParams& bp, const float* D) {
    const AP& p = bp.fwd;
    if (p.Tq <= 0 || p.Tk <= 0 || !use_tc(p, (std::max(p.Tq, p.Tk) + 63) / 64)) return false;
    dispatch_tc(p, BackwardLauncher{bp, D});
    return true;
}

}  // namespace attn
}  // namespace cuda
}  // namespace gptx
