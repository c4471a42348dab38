// matmul.cu — matrix products on the GPU (matmul_forward, a batched GEMM) and the bias gradient (bias_backward).
//
// C_z(M, N) = beta * C_z + op(A_z) @ op(B_z) + bias, for z in [0, batch); see MatmulParams in backend/params.h for the argument rules.
//
// Three kernels:
// - bfloat16 / float16 operands: tensor cores through mma.sync.m16n8k16 (float32 accumulation). Tiles of op(A)
//   and op(B) go global -> shared memory through a multi-stage cp.async pipeline; fragments come out of shared
//   memory with ldmatrix (.trans for an operand whose contiguous dimension is M or N, so transposed operands need
//   no separate transpose). 16-byte cp.async is used only for a chunk of 8 elements that lies wholly inside the
//   matrix and only when the operand's address, leading dimension and batch stride are multiples of 8 elements
//   (checked at launch); every other chunk is loaded element by element with zero fill. Two tile shapes:
//   128x128x32 with 8 warps (each 64x32) and 4 stages, and 64x64x32 with 4 warps (each 32x32) and 3 stages for
//   grids too small to fill the GPU (small M, decode).
// - float32 operands: a plain-FMA SIMT kernel (no TF32), 128x128x8 tiles, 256 threads each computing 8x8
//   outputs, register-prefetched double buffering. Bounds-checked scalar global loads (any layout/alignment).
// - K == 0: an elementwise kernel, C = beta C + bias.
// The epilogue adds the bias (float32), adds beta * C only when beta != 0 (C is never read otherwise, so NaN
// poison cannot leak) and rounds once to c_dtype.
//
// bias_backward: deterministic two-pass column sums (per-chunk partials in a fixed row order, then the partials
// summed in chunk order); no atomics.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "cuda/common.cuh"
#include "cuda/kernels.h"

namespace gptx {
namespace cuda {
namespace {

constexpr int64_t kMaxGridY = 65535;

// ------------------------------------------------------------------------------------------------ shared pieces
struct Epilogue {
    void* C;
    int64_t ldc, stride_c;
    const float* bias;
    float beta;
    bool c_f32;     // C is float32 (else 16-bit of the operand dtype)
    bool c_pair;    // C rows allow aligned 2-element stores (ldc, stride_c even, base aligned)
};

template <bool IS_BF16>
__device__ __forceinline__ float half_bits_to_float(uint16_t h) {
    if (IS_BF16) return __uint_as_float(static_cast<uint32_t>(h) << 16);
    return __half2float(__ushort_as_half(h));
}
template <bool IS_BF16>
__device__ __forceinline__ uint16_t float_to_half_bits(float x) {
    if (IS_BF16) return __bfloat16_as_ushort(__float2bfloat16_rn(x));
    return __half_as_ushort(__float2half_rn(x));
}

// Writes the two horizontally adjacent results (row, col) and (row, col + 1) (the second only if col + 1 < N).
// IS_BF16 only matters for a 16-bit C.
template <bool IS_BF16>
__device__ __forceinline__ void store_pair(const Epilogue& e, int64_t z, int64_t row, int64_t col, int64_t N,
                                           float v0, float v1) {
    const bool has1 = col + 1 < N;
    if (e.bias) {
        v0 += e.bias[col];
        if (has1) v1 += e.bias[col + 1];
    }
    const int64_t off = z * e.stride_c + row * e.ldc + col;
    if (e.c_f32) {
        float* c = static_cast<float*>(e.C) + off;
        if (e.beta != 0.0f) {
            v0 += e.beta * c[0];
            if (has1) v1 += e.beta * c[1];
        }
        if (has1 && e.c_pair) {
            *reinterpret_cast<float2*>(c) = make_float2(v0, v1);
        } else {
            c[0] = v0;
            if (has1) c[1] = v1;
        }
    } else {
        uint16_t* c = static_cast<uint16_t*>(e.C) + off;
        if (e.beta != 0.0f) {
            v0 += e.beta * half_bits_to_float<IS_BF16>(c[0]);
            if (has1) v1 += e.beta * half_bits_to_float<IS_BF16>(c[1]);
        }
        const uint16_t h0 = float_to_half_bits<IS_BF16>(v0);
        if (has1 && e.c_pair) {
            const uint16_t h1 = float_to_half_bits<IS_BF16>(v1);
            *reinterpret_cast<uint32_t*>(c) = static_cast<uint32_t>(h0) | (static_cast<uint32_t>(h1) << 16);
        } else {
            c[0] = h0;
            if (has1) c[1] = float_to_half_bits<IS_BF16>(v1);
        }
    }
}

bool aligned_to(const void* p, size_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

int sm_count() {
    int dev = 0;
    GPTX_CUDA_CHECK(cudaGetDevice(&dev));
    static int cached[64] = {0};
    if (dev >= 0 && dev < 64 && cached[dev] > 0) return cached[dev];
    int n = 0;
    GPTX_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
    if (n < 1) n = 1;
    if (dev >= 0 && dev < 64) cached[dev] = n;
    return n;
}

// ------------------------------------------------------------------------------------------------ PTX wrappers
__device__ __forceinline__ uint32_t smem_addr(const void* p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(src));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}
template <bool IS_BF16>
__device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    if (IS_BF16) {
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
            "{%0, %1, %2, %3};\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    } else {
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
            "{%0, %1, %2, %3};\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
}

// ------------------------------------------------------------------------------------------------ 16-bit mma kernel
struct MmaParams {
    const uint16_t* A;
    const uint16_t* B;
    int64_t lda, ldb, stride_a, stride_b;
    int64_t M, N, K;
    int64_t z_offset;  // batch index of blockIdx.y == 0
    bool a_vec, b_vec;  // 16-byte cp.async allowed for A / B
    Epilogue epi;
};

// Copies a TR x TC tile (TC contiguous in global memory and in shared memory, shared row stride SLD) whose top-left
// element is (r0, c0) of a R x Cn matrix g (row stride ld); elements outside the matrix become zero.
template <int TR, int TC, int SLD, int THREADS>
__device__ __forceinline__ void load_tile(uint16_t* smem, const uint16_t* g, int64_t ld, int64_t r0, int64_t c0,
                                          int64_t R, int64_t Cn, bool vec) {
    constexpr int CPR = TC / 8;  // 8-element (16-byte) chunks per row
    constexpr int CHUNKS = TR * CPR;
    static_assert(TC % 8 == 0 && CHUNKS % THREADS == 0, "tile / thread mismatch");
#pragma unroll
    for (int i = 0; i < CHUNKS / THREADS; ++i) {
        const int c = static_cast<int>(threadIdx.x) + i * THREADS;
        const int r = c / CPR;
        const int cc = (c % CPR) * 8;
        const int64_t gr = r0 + r, gc = c0 + cc;
        uint16_t* s = smem + r * SLD + cc;
        if (vec && gr < R && gc + 8 <= Cn) {
            cp_async16(smem_addr(s), g + gr * ld + gc);
        } else {
            uint32_t w[4] = {0u, 0u, 0u, 0u};
            if (gr < R) {
                const uint16_t* src = g + gr * ld;
#pragma unroll
                for (int j = 0; j < 8; ++j) {
                    if (gc + j < Cn) w[j / 2] |= static_cast<uint32_t>(src[gc + j]) << (16 * (j % 2));
                }
            }
            *reinterpret_cast<uint4*>(s) = make_uint4(w[0], w[1], w[2], w[3]);
        }
    }
}

// The interior fast path of load_tile: the whole tile lies inside the matrix and 16-byte copies are allowed.
// g points at the tile's top-left element; goff[i] = r * ld + cc of this thread's i-th chunk (precomputed).
template <int TR, int TC, int SLD, int THREADS>
__device__ __forceinline__ void load_tile_full(uint16_t* smem, const uint16_t* g, const int64_t* goff) {
    constexpr int CPR = TC / 8;
    constexpr int CHUNKS = TR * CPR;
#pragma unroll
    for (int i = 0; i < CHUNKS / THREADS; ++i) {
        const int c = static_cast<int>(threadIdx.x) + i * THREADS;
        cp_async16(smem_addr(smem + (c / CPR) * SLD + (c % CPR) * 8), g + goff[i]);
    }
}
template <int TR, int TC, int THREADS>
__device__ __forceinline__ void tile_offsets(int64_t* goff, int64_t ld) {
    constexpr int CPR = TC / 8;
    constexpr int CHUNKS = TR * CPR;
#pragma unroll
    for (int i = 0; i < CHUNKS / THREADS; ++i) {
        const int c = static_cast<int>(threadIdx.x) + i * THREADS;
        goff[i] = static_cast<int64_t>(c / CPR) * ld + (c % CPR) * 8;
    }
}

template <int BM_, int BN_, int BK_, int WARPS_M_, int WARPS_N_, int STAGES_, int MIN_BLOCKS_>
struct MmaCfg {
    static constexpr int BM = BM_, BN = BN_, BK = BK_, WARPS_M = WARPS_M_, WARPS_N = WARPS_N_, STAGES = STAGES_;
    static constexpr int MIN_BLOCKS = MIN_BLOCKS_;  // blocks per SM the register budget must allow
    static constexpr int THREADS = 32 * WARPS_M * WARPS_N;
    static constexpr int WTM = BM / WARPS_M, WTN = BN / WARPS_N;  // warp tile
    static constexpr int MT = WTM / 16, NT = WTN / 8;              // mma tiles per warp
    static constexpr int PAD = 8;                                  // 16 bytes: conflict-free ldmatrix rows
    static_assert(WTM % 16 == 0 && WTN % 16 == 0, "warp tile");
    // shared layouts: A (TA=false) [BM][BK+PAD], (TA=true) [BK][BM+PAD]; B (TB=true) [BN][BK+PAD], else [BK][BN+PAD]
    template <bool TA>
    static constexpr int a_elems() { return TA ? BK * (BM + PAD) : BM * (BK + PAD); }
    template <bool TB>
    static constexpr int b_elems() { return TB ? BN * (BK + PAD) : BK * (BN + PAD); }
    template <bool TA, bool TB>
    static constexpr int smem_bytes() { return STAGES * (a_elems<TA>() + b_elems<TB>()) * 2; }
};

// Big: 2 blocks per SM (2 x 80 KiB shared, 128 registers) measured faster on an H200 than bigger tiles at 1 block.
using BigCfg = MmaCfg<128, 128, 32, 2, 4, 4, 2>;
using SmallCfg = MmaCfg<64, 64, 32, 2, 2, 3, 4>;

template <class Cfg, bool IS_BF16, bool TA, bool TB>
__global__ void __launch_bounds__(Cfg::THREADS, Cfg::MIN_BLOCKS) mma_gemm_kernel(MmaParams p) {
    constexpr int BM = Cfg::BM, BN = Cfg::BN, BK = Cfg::BK, STAGES = Cfg::STAGES, THREADS = Cfg::THREADS;
    constexpr int PAD = Cfg::PAD;
    constexpr int SLDA = TA ? BM + PAD : BK + PAD;
    constexpr int SLDB = TB ? BK + PAD : BN + PAD;
    constexpr int A_ST = Cfg::template a_elems<TA>();
    constexpr int B_ST = Cfg::template b_elems<TB>();
    constexpr int MT = Cfg::MT, NT = Cfg::NT;

    extern __shared__ __align__(16) unsigned char smem_raw[];
    uint16_t* sA = reinterpret_cast<uint16_t*>(smem_raw);
    uint16_t* sB = sA + STAGES * A_ST;

    // Tile index with grouped ordering (GROUP tile rows sweep the tile columns together: L2 reuse of B).
    const int64_t tiles_m = (p.M + BM - 1) / BM, tiles_n = (p.N + BN - 1) / BN;
    const int64_t pid = blockIdx.x;
    constexpr int64_t GROUP = 8;
    const int64_t in_group = GROUP * tiles_n;
    const int64_t first_m = (pid / in_group) * GROUP;
    const int64_t group_rows = min(tiles_m - first_m, GROUP);
    const int64_t tm = first_m + (pid % in_group) % group_rows;
    const int64_t tn = (pid % in_group) / group_rows;
    const int64_t m0 = tm * BM, n0 = tn * BN;
    const int64_t z = p.z_offset + blockIdx.y;

    const uint16_t* A = p.A + z * p.stride_a;
    const uint16_t* B = p.B + z * p.stride_b;
    const int64_t M = p.M, N = p.N, K = p.K;

    // Per-thread chunk offsets for the interior fast path (tile wholly inside M/N and K, 16-byte copies allowed).
    constexpr int A_CPT = BM * BK / 8 / THREADS, B_CPT = BN * BK / 8 / THREADS;
    int64_t a_off[A_CPT], b_off[B_CPT];
    if (TA) tile_offsets<BK, BM, THREADS>(a_off, p.lda);
    else tile_offsets<BM, BK, THREADS>(a_off, p.lda);
    if (TB) tile_offsets<BN, BK, THREADS>(b_off, p.ldb);
    else tile_offsets<BK, BN, THREADS>(b_off, p.ldb);
    const bool a_full_mn = p.a_vec && m0 + BM <= M;
    const bool b_full_mn = p.b_vec && n0 + BN <= N;
    const uint16_t* a_tile = A + (TA ? m0 : m0 * p.lda);  // element (k = 0, m0) / (m0, k = 0)
    const uint16_t* b_tile = B + (TB ? n0 * p.ldb : n0);

    auto load_stage = [&](int slot, int64_t kt) {
        const int64_t k0 = kt * BK;
        uint16_t* a = sA + slot * A_ST;
        uint16_t* b = sB + slot * B_ST;
        const bool k_full = k0 + BK <= K;
        if (a_full_mn && k_full) {
            if (TA) load_tile_full<BK, BM, SLDA, THREADS>(a, a_tile + k0 * p.lda, a_off);
            else load_tile_full<BM, BK, SLDA, THREADS>(a, a_tile + k0, a_off);
        } else if (TA)  // A is K x M: rows k, contiguous m
            load_tile<BK, BM, SLDA, THREADS>(a, A, p.lda, k0, m0, K, M, p.a_vec);
        else  // A is M x K
            load_tile<BM, BK, SLDA, THREADS>(a, A, p.lda, m0, k0, M, K, p.a_vec);
        if (b_full_mn && k_full) {
            if (TB) load_tile_full<BN, BK, SLDB, THREADS>(b, b_tile + k0, b_off);
            else load_tile_full<BK, BN, SLDB, THREADS>(b, b_tile + k0 * p.ldb, b_off);
        } else if (TB)  // B is N x K
            load_tile<BN, BK, SLDB, THREADS>(b, B, p.ldb, n0, k0, N, K, p.b_vec);
        else  // B is K x N
            load_tile<BK, BN, SLDB, THREADS>(b, B, p.ldb, k0, n0, K, N, p.b_vec);
    };

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int wm = warp / Cfg::WARPS_N, wn = warp % Cfg::WARPS_N;
    const int warp_m0 = wm * Cfg::WTM, warp_n0 = wn * Cfg::WTN;

    float acc[MT][NT][4];
#pragma unroll
    for (int i = 0; i < MT; ++i)
#pragma unroll
        for (int j = 0; j < NT; ++j)
#pragma unroll
            for (int q = 0; q < 4; ++q) acc[i][j][q] = 0.0f;

    const int64_t KT = (K + BK - 1) / BK;
#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s) {
        if (s < KT) load_stage(s, s);
        cp_async_commit();
    }

    // Lane roles for ldmatrix.x4: matrix index li (0..3) and row within it lr.
    const int li = lane / 8, lr = lane % 8;

    int load_slot = STAGES - 1, read_slot = 0;  // (kt + STAGES - 1) % STAGES and kt % STAGES
    for (int64_t kt = 0; kt < KT; ++kt) {
        cp_async_wait<STAGES - 2>();
        __syncthreads();  // stage kt visible to all; everyone is done with the slot refilled below
        {
            const int64_t nk = kt + STAGES - 1;
            if (nk < KT) load_stage(load_slot, nk);
            cp_async_commit();
            load_slot = load_slot + 1 == STAGES ? 0 : load_slot + 1;
        }
        const int slot = read_slot;
        read_slot = read_slot + 1 == STAGES ? 0 : read_slot + 1;
        const uint16_t* a = sA + slot * A_ST;
        const uint16_t* b = sB + slot * B_ST;
#pragma unroll
        for (int kk = 0; kk < BK; kk += 16) {
            uint32_t af[MT][4];
            uint32_t bf[NT][2];
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
                const int mb = warp_m0 + mt * 16;
                if (TA) {  // [k][m]
                    const uint16_t* ptr = a + (kk + lr + (li / 2) * 8) * SLDA + mb + (li % 2) * 8;
                    ldmatrix_x4_trans(af[mt], smem_addr(ptr));
                } else {  // [m][k]
                    const uint16_t* ptr = a + (mb + lane % 16) * SLDA + kk + (lane / 16) * 8;
                    ldmatrix_x4(af[mt], smem_addr(ptr));
                }
            }
#pragma unroll
            for (int np = 0; np < NT / 2; ++np) {
                const int nb = warp_n0 + np * 16;
                uint32_t r[4];
                if (TB) {  // [n][k]
                    const uint16_t* ptr = b + (nb + lr + (li / 2) * 8) * SLDB + kk + (li % 2) * 8;
                    ldmatrix_x4(r, smem_addr(ptr));
                } else {  // [k][n]
                    const uint16_t* ptr = b + (kk + lr + (li % 2) * 8) * SLDB + nb + (li / 2) * 8;
                    ldmatrix_x4_trans(r, smem_addr(ptr));
                }
                bf[2 * np][0] = r[0];
                bf[2 * np][1] = r[1];
                bf[2 * np + 1][0] = r[2];
                bf[2 * np + 1][1] = r[3];
            }
#pragma unroll
            for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                for (int nt = 0; nt < NT; ++nt) mma_16816<IS_BF16>(acc[mt][nt], af[mt], bf[nt][0], bf[nt][1]);
        }
    }
    cp_async_wait<0>();

    // Epilogue: acc[mt][nt] holds (row g, cols 2q, 2q+1) and (row g + 8, same cols), g = lane / 4, q = lane % 4.
    const int g = lane / 4, q = lane % 4;
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
            const int64_t col = n0 + warp_n0 + nt * 8 + 2 * q;
            if (col >= N) continue;
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const int64_t row = m0 + warp_m0 + mt * 16 + g + 8 * h;
                if (row < M) store_pair<IS_BF16>(p.epi, z, row, col, N, acc[mt][nt][2 * h], acc[mt][nt][2 * h + 1]);
            }
        }
    }
}

template <class Cfg, bool IS_BF16, bool TA, bool TB>
void launch_mma(const MmaParams& base, int64_t batch) {
    auto kernel = mma_gemm_kernel<Cfg, IS_BF16, TA, TB>;
    constexpr int smem = Cfg::template smem_bytes<TA, TB>();
    // Opt in to more than 48 KiB of dynamic shared memory, once per device and instantiation.
    static bool configured[64] = {false};
    int dev = 0;
    GPTX_CUDA_CHECK(cudaGetDevice(&dev));
    if (dev < 0 || dev >= 64 || !configured[dev]) {
        GPTX_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
        if (dev >= 0 && dev < 64) configured[dev] = true;
    }
    const int64_t tiles = ((base.M + Cfg::BM - 1) / Cfg::BM) * ((base.N + Cfg::BN - 1) / Cfg::BN);
    if (tiles > 0x7fffffffLL) throw Error("matmul_forward: matrix too large for one launch");
    cudaStream_t s = stream();
    for (int64_t z0 = 0; z0 < batch; z0 += kMaxGridY) {
        MmaParams p = base;
        p.z_offset = z0;
        const unsigned gy = static_cast<unsigned>(std::min<int64_t>(batch - z0, kMaxGridY));
        kernel<<<dim3(static_cast<unsigned>(tiles), gy), Cfg::THREADS, smem, s>>>(p);
        GPTX_CUDA_CHECK_LAUNCH("matmul_forward (tensor-core kernel)");
    }
}

template <class Cfg, bool IS_BF16>
void launch_mma_trans(const MatmulParams& a, const MmaParams& p) {
    if (!a.trans_a && !a.trans_b) launch_mma<Cfg, IS_BF16, false, false>(p, a.batch);
    else if (!a.trans_a && a.trans_b) launch_mma<Cfg, IS_BF16, false, true>(p, a.batch);
    else if (a.trans_a && !a.trans_b) launch_mma<Cfg, IS_BF16, true, false>(p, a.batch);
    else launch_mma<Cfg, IS_BF16, true, true>(p, a.batch);
}

// ------------------------------------------------------------------------------------------------ float32 SIMT kernel
struct SgemmParams {
    const float* A;
    const float* B;
    int64_t lda, ldb, stride_a, stride_b;
    int64_t M, N, K;
    int64_t z_offset;
    Epilogue epi;
};

constexpr int SG_BM = 128, SG_BN = 128, SG_BK = 8, SG_THREADS = 256, SG_PAD = 4;

template <bool TA, bool TB>
__global__ void __launch_bounds__(SG_THREADS) sgemm_kernel(SgemmParams p) {
    __shared__ __align__(16) float sA[2][SG_BK][SG_BM + SG_PAD];
    __shared__ __align__(16) float sB[2][SG_BK][SG_BN + SG_PAD];

    const int64_t tiles_m = (p.M + SG_BM - 1) / SG_BM, tiles_n = (p.N + SG_BN - 1) / SG_BN;
    const int64_t pid = blockIdx.x;
    constexpr int64_t GROUP = 8;
    const int64_t in_group = GROUP * tiles_n;
    const int64_t first_m = (pid / in_group) * GROUP;
    const int64_t group_rows = min(tiles_m - first_m, GROUP);
    const int64_t m0 = (first_m + (pid % in_group) % group_rows) * SG_BM;
    const int64_t n0 = ((pid % in_group) / group_rows) * SG_BN;
    const int64_t z = p.z_offset + blockIdx.y;
    const float* A = p.A + z * p.stride_a;
    const float* B = p.B + z * p.stride_b;
    const int64_t M = p.M, N = p.N, K = p.K;
    const int tid = threadIdx.x;

    // Each thread loads 4 elements of each tile (1024 = 128 x 8), consecutive threads along the contiguous dim.
    float ra[4], rb[4];
    auto load_regs = [&](int64_t k0) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const int e = tid + i * SG_THREADS;
            const int am = TA ? e % SG_BM : e / SG_BK;
            const int ak = TA ? e / SG_BM : e % SG_BK;
            const int64_t gm = m0 + am, gk = k0 + ak;
            ra[i] = (gm < M && gk < K) ? (TA ? A[gk * p.lda + gm] : A[gm * p.lda + gk]) : 0.0f;
            const int bn = TB ? e / SG_BK : e % SG_BN;
            const int bk = TB ? e % SG_BK : e / SG_BN;
            const int64_t gn = n0 + bn, gk2 = k0 + bk;
            rb[i] = (gn < N && gk2 < K) ? (TB ? B[gn * p.ldb + gk2] : B[gk2 * p.ldb + gn]) : 0.0f;
        }
    };
    auto store_smem = [&](int buf) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const int e = tid + i * SG_THREADS;
            const int am = TA ? e % SG_BM : e / SG_BK;
            const int ak = TA ? e / SG_BM : e % SG_BK;
            sA[buf][ak][am] = ra[i];
            const int bn = TB ? e / SG_BK : e % SG_BN;
            const int bk = TB ? e % SG_BK : e / SG_BN;
            sB[buf][bk][bn] = rb[i];
        }
    };

    const int tx = tid % 16, ty = tid / 16;  // thread's rows: ty*4 + {0..3}, 64 + ty*4 + {0..3}; cols likewise with tx
    float acc[8][8];
#pragma unroll
    for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = 0.0f;

    const int64_t KT = (K + SG_BK - 1) / SG_BK;
    load_regs(0);
    store_smem(0);
    __syncthreads();
    for (int64_t kt = 0; kt < KT; ++kt) {
        const int buf = static_cast<int>(kt & 1);
        if (kt + 1 < KT) load_regs((kt + 1) * SG_BK);
#pragma unroll
        for (int k = 0; k < SG_BK; ++k) {
            float a[8], b[8];
            const float4 a0 = *reinterpret_cast<const float4*>(&sA[buf][k][ty * 4]);
            const float4 a1 = *reinterpret_cast<const float4*>(&sA[buf][k][64 + ty * 4]);
            const float4 b0 = *reinterpret_cast<const float4*>(&sB[buf][k][tx * 4]);
            const float4 b1 = *reinterpret_cast<const float4*>(&sB[buf][k][64 + tx * 4]);
            a[0] = a0.x; a[1] = a0.y; a[2] = a0.z; a[3] = a0.w;
            a[4] = a1.x; a[5] = a1.y; a[6] = a1.z; a[7] = a1.w;
            b[0] = b0.x; b[1] = b0.y; b[2] = b0.z; b[3] = b0.w;
            b[4] = b1.x; b[5] = b1.y; b[6] = b1.z; b[7] = b1.w;
#pragma unroll
            for (int i = 0; i < 8; ++i)
#pragma unroll
                for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }
        if (kt + 1 < KT) {
            store_smem(buf ^ 1);  // the other buffer was last read in iteration kt - 1, before its barrier
            __syncthreads();
        }
    }

#pragma unroll
    for (int i = 0; i < 8; ++i) {
        const int64_t row = m0 + (i < 4 ? ty * 4 + i : 64 + ty * 4 + (i - 4));
        if (row >= M) continue;
#pragma unroll
        for (int jh = 0; jh < 2; ++jh) {
#pragma unroll
            for (int jp = 0; jp < 2; ++jp) {
                const int64_t col = n0 + jh * 64 + tx * 4 + jp * 2;
                if (col < N) store_pair<true>(p.epi, z, row, col, N, acc[i][jh * 4 + jp * 2], acc[i][jh * 4 + jp * 2 + 1]);
            }
        }
    }
}

template <bool TA, bool TB>
void launch_sgemm(const SgemmParams& base, int64_t batch) {
    const int64_t tiles = ((base.M + SG_BM - 1) / SG_BM) * ((base.N + SG_BN - 1) / SG_BN);
    if (tiles > 0x7fffffffLL) throw Error("matmul_forward: matrix too large for one launch");
    cudaStream_t s = stream();
    for (int64_t z0 = 0; z0 < batch; z0 += kMaxGridY) {
        SgemmParams p = base;
        p.z_offset = z0;
        const unsigned gy = static_cast<unsigned>(std::min<int64_t>(batch - z0, kMaxGridY));
        sgemm_kernel<TA, TB><<<dim3(static_cast<unsigned>(tiles), gy), SG_THREADS, 0, s>>>(p);
        GPTX_CUDA_CHECK_LAUNCH("matmul_forward (float32 kernel)");
    }
}

// ------------------------------------------------------------------------------------------------ K == 0
template <bool IS_BF16>
__global__ void gemm_k0_kernel(Epilogue e, int64_t batch, int64_t M, int64_t N) {
    const int64_t total = batch * M * N;
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const int64_t col = i % N, row = (i / N) % M, z = i / (N * M);
        const float v = e.bias ? e.bias[col] : 0.0f;
        const int64_t off = z * e.stride_c + row * e.ldc + col;
        if (e.c_f32) {
            float* c = static_cast<float*>(e.C) + off;
            *c = (e.beta != 0.0f ? e.beta * *c : 0.0f) + v;
        } else {
            uint16_t* c = static_cast<uint16_t*>(e.C) + off;
            const float old = e.beta != 0.0f ? e.beta * half_bits_to_float<IS_BF16>(*c) : 0.0f;
            *c = float_to_half_bits<IS_BF16>(old + v);
        }
    }
}

}  // namespace

// ------------------------------------------------------------------------------------------------ gemm
void matmul_forward(const MatmulParams& args) {
    const MatmulParams& a = args;
    if (a.M <= 0 || a.N <= 0 || a.batch <= 0) return;
    const DType ab = a.ab_dtype;
    if (ab != DType::float32 && ab != DType::bfloat16 && ab != DType::float16)
        throw TypeError(std::string("matmul_forward: unsupported operand dtype ") + dtype_name(ab));
    if (a.c_dtype != DType::float32 && a.c_dtype != ab)
        throw TypeError(std::string("matmul_forward: output dtype ") + dtype_name(a.c_dtype) + " with operands of " +
                        dtype_name(ab));
    const bool is_bf16 = ab == DType::bfloat16;

    Epilogue epi;
    epi.C = a.C;
    epi.ldc = a.ldc;
    epi.stride_c = a.stride_c;
    epi.bias = a.bias;
    epi.beta = a.beta;
    epi.c_f32 = a.c_dtype == DType::float32;
    {
        const size_t esz = epi.c_f32 ? 4 : 2;
        epi.c_pair = aligned_to(a.C, 2 * esz) && a.ldc % 2 == 0 && (a.batch == 1 || a.stride_c % 2 == 0);
    }

    if (a.K <= 0) {
        const int64_t total = a.batch * a.M * a.N;
        const unsigned blocks = blocks_for(total, 256);
        if (is_bf16)
            gemm_k0_kernel<true><<<blocks, 256, 0, stream()>>>(epi, a.batch, a.M, a.N);
        else
            gemm_k0_kernel<false><<<blocks, 256, 0, stream()>>>(epi, a.batch, a.M, a.N);
        GPTX_CUDA_CHECK_LAUNCH("matmul_forward (K = 0)");
        return;
    }

    if (ab == DType::float32) {
        SgemmParams p;
        p.A = static_cast<const float*>(a.A);
        p.B = static_cast<const float*>(a.B);
        p.lda = a.lda;
        p.ldb = a.ldb;
        p.stride_a = a.stride_a;
        p.stride_b = a.stride_b;
        p.M = a.M;
        p.N = a.N;
        p.K = a.K;
        p.z_offset = 0;
        p.epi = epi;
        if (!a.trans_a && !a.trans_b) launch_sgemm<false, false>(p, a.batch);
        else if (!a.trans_a && a.trans_b) launch_sgemm<false, true>(p, a.batch);
        else if (a.trans_a && !a.trans_b) launch_sgemm<true, false>(p, a.batch);
        else launch_sgemm<true, true>(p, a.batch);
        return;
    }

    MmaParams p;
    p.A = static_cast<const uint16_t*>(a.A);
    p.B = static_cast<const uint16_t*>(a.B);
    p.lda = a.lda;
    p.ldb = a.ldb;
    p.stride_a = a.stride_a;
    p.stride_b = a.stride_b;
    p.M = a.M;
    p.N = a.N;
    p.K = a.K;
    p.z_offset = 0;
    p.a_vec = aligned_to(a.A, 16) && a.lda % 8 == 0 && (a.batch == 1 || a.stride_a % 8 == 0);
    p.b_vec = aligned_to(a.B, 16) && a.ldb % 8 == 0 && (a.batch == 1 || a.stride_b % 8 == 0);
    p.epi = epi;

    // The big tile unless it leaves most of the GPU idle.
    const int64_t big_tiles = ((a.M + BigCfg::BM - 1) / BigCfg::BM) * ((a.N + BigCfg::BN - 1) / BigCfg::BN) * a.batch;
    const bool big = big_tiles >= sm_count();
    if (is_bf16) {
        if (big) launch_mma_trans<BigCfg, true>(a, p);
        else launch_mma_trans<SmallCfg, true>(a, p);
    } else {
        if (big) launch_mma_trans<BigCfg, false>(a, p);
        else launch_mma_trans<SmallCfg, false>(a, p);
    }
}

// ------------------------------------------------------------------------------------------------ bias_backward
namespace {

constexpr int BB_COLS = 32, BB_ROWS = 8;

// partial[chunk][col] = sum of dout[r][col] over the chunk's rows, in a fixed order.
template <typename T>
__global__ void bias_partial_kernel(float* partial, const T* dout, int64_t N, int64_t OC, int64_t rows_per_chunk) {
    __shared__ float red[BB_ROWS][BB_COLS];
    const int64_t col = blockIdx.x * static_cast<int64_t>(BB_COLS) + threadIdx.x;
    const int64_t chunk = blockIdx.y;
    const int64_t r_begin = chunk * rows_per_chunk;
    const int64_t r_end = min(N, r_begin + rows_per_chunk);
    float s = 0.0f;
    if (col < OC)
        for (int64_t r = r_begin + threadIdx.y; r < r_end; r += BB_ROWS) s += to_float(dout[r * OC + col]);
    red[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && col < OC) {
        float t = 0.0f;
#pragma unroll
        for (int j = 0; j < BB_ROWS; ++j) t += red[j][threadIdx.x];
        partial[chunk * OC + col] = t;
    }
}

__global__ void bias_final_kernel(float* dbias, const float* partial, int64_t chunks, int64_t OC, bool accumulate) {
    for (int64_t col = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; col < OC;
         col += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        float s = 0.0f;
        for (int64_t c = 0; c < chunks; ++c) s += partial[c * OC + col];
        dbias[col] = accumulate ? dbias[col] + s : s;
    }
}

}  // namespace

void bias_backward(const BiasBackwardParams& p) {
    float* dbias = p.dbias;
    const void* dout = p.dout;
    const DType dtype = p.dtype;
    const int64_t N = p.N, OC = p.OC;
    const bool accumulate = p.accumulate;
    if (OC <= 0) return;
    if (N <= 0) {
        if (!accumulate) GPTX_CUDA_CHECK(cudaMemsetAsync(dbias, 0, OC * sizeof(float), stream()));
        return;
    }
    // The chunking depends only on N (never on the device), so results are identical run to run and GPU to GPU.
    const int64_t chunks = std::min<int64_t>((N + 63) / 64, 1024);
    const int64_t rows_per_chunk = (N + chunks - 1) / chunks;
    int dev = 0;
    GPTX_CUDA_CHECK(cudaGetDevice(&dev));
    std::shared_ptr<void> work = allocate(static_cast<size_t>(chunks * OC) * sizeof(float), dev);
    float* partial = static_cast<float*>(work.get());
    cudaStream_t s = stream();
    const dim3 grid(static_cast<unsigned>((OC + BB_COLS - 1) / BB_COLS), static_cast<unsigned>(chunks));
    dispatch_float(dtype, "bias_backward", [&](auto tag) {
        using T = decltype(tag);
        bias_partial_kernel<T><<<grid, dim3(BB_COLS, BB_ROWS), 0, s>>>(partial, static_cast<const T*>(dout), N, OC,
                                                                         rows_per_chunk);
    });
    GPTX_CUDA_CHECK_LAUNCH("bias_backward (partials)");
    bias_final_kernel<<<blocks_for(OC, 256), 256, 0, s>>>(dbias, partial, chunks, OC, accumulate);
    GPTX_CUDA_CHECK_LAUNCH("bias_backward (final)");
}

}  // namespace cuda
}  // namespace gptx
