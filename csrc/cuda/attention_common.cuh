// attention_common.cuh — what the two CUDA attention kernel families share (the causal key count, strided row
// pointers) and the entry points attention.cu's dispatcher calls. Internal to csrc/cuda/.
#pragma once
#include <cstdint>

#include "cuda/common.cuh"
#include "cuda/kernels.h"

namespace gptx {
namespace cuda {
namespace attn {

using AP = ::gptx::cuda::AttentionParams;

constexpr int64_t kMaxHS = 256;  // the generic kernels keep 8 head-dim elements per lane

// Number of keys query row i may see: all Tk, or with causal those j <= Tk - Tq + i.
__host__ __device__ __forceinline__ int64_t kept_keys(bool causal, int64_t Tq, int64_t Tk, int64_t i) {
    if (!causal) return Tk;
    const int64_t last = Tk - Tq + i;
    if (last < 0) return 0;
    return last + 1 < Tk ? last + 1 : Tk;
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

// Blocks for one block per row, within the grid's x limit (kernels loop over the rest).
inline unsigned grid_rows(int64_t rows) { return (unsigned)(rows < (1LL << 30) ? rows : (1LL << 30)); }

// attention_generic.cu: any float dtype, any HS <= kMaxHS, any Tq.
void forward_generic(const AP& p);
// D[b, h, i] = sum_d dout * out (float32, B*NH*Tq), the first step of every backward.
void backward_dot(const AttentionBackwardParams& bp, float* D);
void backward_generic(const AttentionBackwardParams& bp, const float* D);

// attention_tc.cu: tensor cores for bfloat16/float16 at HS 64 and 128. Each returns false, having launched nothing,
// for a case it does not take (dtype, head size, Tq below a tile's worth, shared memory, grid size). Both families
// apply dropout on the probabilities (AttentionParams::dropout) inside.
bool tc_forward(const AP& p);
bool tc_backward(const AttentionBackwardParams& bp, const float* D);

}  // namespace attn
}  // namespace cuda
}  // namespace gptx
