// embedding.cu — token + position embedding forward and its deterministic backward on the GPU
// (semantics of csrc/ref/ref_embedding.cc).
//
// forward:      one block per (b, t) row (grid-stride), threads over C; 16-byte packs when C is a multiple of the
//               pack and the pointers are aligned. out = wte[idx] + wpe[pos_offset + t], float32 sum rounded once.
// backward dwpe: one thread per (t, c), summing dout[b, t, c] over b in order onto the old value.
// backward dwte: no atomics and no sort. Token ids are hashed into kBuckets buckets (id % buckets); block k owns
//               every dwte row whose id falls in bucket k, scans idx in (b, t) order (256 positions at a time,
//               compacted in order with warp ballots) and, for each match, its threads add dout[b, t, :] into
//               dwte[id, :] (thread j owns columns j, j + 256, ...). Each dwte element is therefore updated by one
//               thread, in (b, t) order: bitwise deterministic. idx (4 bytes per position) is read once per bucket,
//               from L2.
#include <cstdint>

#include "cuda/common.cuh"
#include "cuda/kernels.h"

namespace gptx {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kBuckets = 1024;

template <typename T>
__global__ void embedding_forward_kernel(T* __restrict__ out, const int32_t* __restrict__ idx,
                                         const T* __restrict__ wte, const T* __restrict__ wpe, int64_t BT, int64_t T_,
                                         int64_t C, int64_t pos_offset, bool vec) {
    constexpr int NV = Pack<T>::N;
    for (int64_t bt = blockIdx.x; bt < BT; bt += gridDim.x) {
        const int64_t t = bt % T_;
        const T* tok = wte + (int64_t)idx[bt] * C;
        const T* pos = wpe + (pos_offset + t) * C;
        T* o = out + bt * C;
        if (vec) {
            for (int64_t i = threadIdx.x; i < C / NV; i += blockDim.x) {
                const Pack<T> a = reinterpret_cast<const Pack<T>*>(tok)[i];
                const Pack<T> b = reinterpret_cast<const Pack<T>*>(pos)[i];
                Pack<T> r;
#pragma unroll
                for (int k = 0; k < NV; k++) r.v[k] = from_float<T>(to_float(a.v[k]) + to_float(b.v[k]));
                reinterpret_cast<Pack<T>*>(o)[i] = r;
            }
        } else {
            for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
                o[c] = from_float<T>(to_float(tok[c]) + to_float(pos[c]));
        }
    }
}

template <typename T>
__global__ void embedding_backward_dwpe_kernel(float* __restrict__ dwpe, const T* __restrict__ dout, int64_t B,
                                               int64_t T_, int64_t C, int64_t pos_offset) {
    const int64_t n = T_ * C;
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const int64_t t = i / C, c = i - t * C;
        float* d = dwpe + (pos_offset + t) * C + c;
        float acc = *d;
        for (int64_t b = 0; b < B; b++) acc += to_float(dout[(b * T_ + t) * C + c]);
        *d = acc;
    }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) embedding_backward_dwte_kernel(float* __restrict__ dwte,
                                                                           const T* __restrict__ dout,
                                                                           const int32_t* __restrict__ idx,
                                                                           int64_t BT, int64_t C, int buckets) {
    __shared__ unsigned s_mask[kThreads / 32];
    __shared__ int32_t s_tok[kThreads];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    for (int bucket = blockIdx.x; bucket < buckets; bucket += gridDim.x) {
        for (int64_t s = 0; s < BT; s += kThreads) {
            const int64_t i = s + tid;
            const int32_t tok = i < BT ? idx[i] : -1;
            const bool match = tok >= 0 && (int)((uint32_t)tok % (uint32_t)buckets) == bucket;
            const unsigned m = __ballot_sync(0xffffffffu, match);
            s_tok[tid] = tok;
            if (lane == 0) s_mask[warp] = m;
            __syncthreads();
            for (int w = 0; w < kThreads / 32; w++) {
                unsigned mask = s_mask[w];
                while (mask != 0u) {
                    const int bit = __ffs(mask) - 1;
                    mask &= mask - 1u;
                    const int j = w * 32 + bit;
                    const int64_t pos = s + j;
                    float* drow = dwte + (int64_t)s_tok[j] * C;
                    const T* grow = dout + pos * C;
                    for (int64_t c = tid; c < C; c += kThreads) drow[c] += to_float(grow[c]);
                }
            }
            __syncthreads();  // s_tok / s_mask are rewritten by the next chunk
        }
    }
}

}  // namespace

void embedding_forward(const EmbeddingParams& p) {
    void* out = p.out;
    const int32_t* idx = p.idx;
    const void* wte = p.wte;
    const void* wpe = p.wpe;
    const DType dtype = p.dtype;
    const int64_t B = p.B, T = p.T, C = p.C, pos_offset = p.pos_offset;
    const int64_t BT = B * T;
    if (BT <= 0 || C <= 0) return;
    dispatch_float(dtype, "embedding_forward", [&](auto tag) {
        using E = decltype(tag);
        const bool vec = C % Pack<E>::N == 0 && aligned16(out) && aligned16(wte) && aligned16(wpe);
        const int threads = 128;
        const unsigned blocks = static_cast<unsigned>(BT < (1LL << 30) ? BT : (1LL << 30));
        embedding_forward_kernel<E><<<blocks, threads, 0, stream()>>>(
            static_cast<E*>(out), idx, static_cast<const E*>(wte), static_cast<const E*>(wpe), BT, T, C, pos_offset,
            vec);
        GPTX_CUDA_CHECK_LAUNCH("embedding_forward");
    });
}

void embedding_backward(const EmbeddingBackwardParams& p) {
    float* dwte = p.dwte;
    float* dwpe = p.dwpe;
    const void* dout = p.dout;
    const int32_t* idx = p.idx;
    const DType dtype = p.dtype;
    const int64_t B = p.B, T = p.T, C = p.C, pos_offset = p.pos_offset;
    const int64_t BT = B * T;
    if (BT <= 0 || C <= 0) return;
    dispatch_float(dtype, "embedding_backward", [&](auto tag) {
        using E = decltype(tag);
        embedding_backward_dwpe_kernel<E><<<blocks_for(T * C, kThreads), kThreads, 0, stream()>>>(
            dwpe, static_cast<const E*>(dout), B, T, C, pos_offset);
        GPTX_CUDA_CHECK_LAUNCH("embedding_backward_dwpe");
        // The bucket count depends on B * T only, never on the device: the result is the same everywhere.
        const int buckets = static_cast<int>(BT < kBuckets ? BT : kBuckets);
        embedding_backward_dwte_kernel<E><<<buckets, kThreads, 0, stream()>>>(dwte, static_cast<const E*>(dout), idx,
                                                                             BT, C, buckets);
        GPTX_CUDA_CHECK_LAUNCH("embedding_backward_dwte");
    });
}

}  // namespace cuda
}  // namespace gptx
