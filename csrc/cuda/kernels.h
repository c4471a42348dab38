// kernels.h — the raw-pointer CUDA kernel launchers, called by csrc/ops/ after validation (the CUDA twin of
// csrc/cpu/kernel_table.h; plain C++, no CUDA types, so the op dispatchers compile without the CUDA toolkit).
//
// Conventions:
// - Every launcher enqueues its work on the current stream of the current device (cuda/runtime.h: the op
//   dispatcher makes the tensor's device current first) and returns without synchronising.
// - Pointers are device pointers; sizes were validated (>= 1 where a kernel needs it, buffers as large as the
//   shapes say). "Activation" tensors are float32, bfloat16 or float16 as `dtype` says (float16 only where noted);
//   arithmetic is float32 internally and rounds to the activation dtype once, on the store. Parameters that are not
//   matmul operands (biases, layernorm weights), parameter gradients, and statistics (mean, rstd, lse, losses)
//   are always float32.
// - Launchers check the launch (cudaGetLastError) and throw gptx::Error naming the kernel on any CUDA failure.
// - With accumulate the result is added into the output, otherwise the output is overwritten and its old contents
//   are never read (NaN poison must not leak).
#pragma once
#include <cstdint>

#include "gptx/tensor.h"

namespace gptx {
namespace cuda {

// ------------------------------------------------------------------------------------------------ matmul
// For each batch index z in [0, batch):
//   C_z(M, N) = beta * C_z + op(A_z)(M, K) @ op(B_z)(K, N) + bias(N)
// op(A) = A (row-major M x K, row stride lda) or, with trans_a, A^T where A is K x M (row stride lda); same for B
// (K x N, or N x K with trans_b). A_z = A + z * stride_a elements (stride 0: shared), likewise B and C.
// ab_dtype: float32 (FMA or TF32-free fp32 path: results must match the CPU within float32 tolerances), bfloat16 or
// float16 (tensor cores, float32 accumulation). c_dtype: float32 or ab_dtype. bias: float32 or null.
// beta is 0 or 1. K may be 0 (C = beta C + bias).
struct GemmArgs {
    bool trans_a = false, trans_b = false;
    int64_t M = 0, N = 0, K = 0;
    const void* A = nullptr;
    int64_t lda = 0;
    const void* B = nullptr;
    int64_t ldb = 0;
    void* C = nullptr;
    int64_t ldc = 0;
    DType ab_dtype = DType::float32;
    DType c_dtype = DType::float32;
    float beta = 0.0f;
    const float* bias = nullptr;
    int64_t batch = 1;
    int64_t stride_a = 0, stride_b = 0, stride_c = 0;
};
void gemm(const GemmArgs& args);
// dbias(OC) (+)= sum over the N rows of dout(N, OC); dout of `dtype`, dbias float32.
void bias_backward(float* dbias, const void* dout, DType dtype, int64_t N, int64_t OC, bool accumulate);

// ------------------------------------------------------------------------------------------------ softmax
// Same semantics as cpu::KernelTable::softmax_forward/backward; inp/out/dout/dinp of `dtype` (out may equal inp,
// dinp may equal dout).
void softmax_forward(void* out, const void* inp, DType dtype, int64_t rows, int64_t L, float scale,
                     int64_t causal_Tq);
void softmax_backward(void* dinp, const void* dout, const void* out, DType dtype, int64_t rows, int64_t L,
                      float scale);

// ------------------------------------------------------------------------------------------------ attention
// Same layout and semantics as cpu::AttentionParams (element strides; d contiguous; lse contiguous (B, NH, Tq),
// float32). q, k, v, out of `dtype`. HS is any size in [1, 256]; the kernels may specialise 64 and 128.
struct AttentionParams {
    const void* q = nullptr;
    const void* k = nullptr;
    const void* v = nullptr;
    void* out = nullptr;
    float* lse = nullptr;  // may be null in forward
    DType dtype = DType::float32;
    int64_t B = 0, NH = 0, Tq = 0, Tk = 0, HS = 0;
    int64_t q_batch_stride = 0, q_row_stride = 0, q_head_stride = 0;
    int64_t k_batch_stride = 0, k_row_stride = 0, k_head_stride = 0;
    int64_t v_batch_stride = 0, v_row_stride = 0, v_head_stride = 0;
    int64_t o_batch_stride = 0, o_row_stride = 0, o_head_stride = 0;
    float scale = 1.0f;
    bool causal = true;
};
struct AttentionBackwardParams {
    AttentionParams fwd;  // q, k, v, out, lse read-only
    const void* dout = nullptr;  // strided like out
    void* dq = nullptr;          // strided like q, k, v; of fwd.dtype
    void* dk = nullptr;
    void* dv = nullptr;
    bool accumulate = false;
};
void attention_forward(const AttentionParams& p);
void attention_backward(const AttentionBackwardParams& p);

// ------------------------------------------------------------------------------------------------ layernorm
// inp/out/dout/dinp of `dtype`; weight, bias, mean, rstd, dweight, dbias float32.
void layernorm_forward(void* out, float* mean, float* rstd, const void* inp, const float* weight, const float* bias,
                       DType dtype, int64_t N, int64_t C, float eps);
void layernorm_backward(void* dinp, float* dweight, float* dbias, const void* dout, const void* inp,
                        const float* weight, const float* mean, const float* rstd, DType dtype, int64_t N, int64_t C,
                        bool accumulate);

// ------------------------------------------------------------------------------------------------ elementwise
void gelu_forward(void* out, const void* inp, DType dtype, int64_t n);  // out may equal inp
void gelu_backward(void* dinp, const void* inp, const void* dout, DType dtype, int64_t n, bool accumulate);
void add_forward(void* out, const void* a, const void* b, DType dtype, int64_t n);  // out may equal a or b
// out = value (any dtype of gptx::DType; value converted like a C cast with round-to-nearest for float types).
void fill(void* out, DType dtype, int64_t n, double value);
// out = in converted (float32 <-> bfloat16/float16 round to nearest even, ints like a C cast).
void cast(void* out, DType out_dtype, const void* in, DType in_dtype, int64_t n);

// ------------------------------------------------------------------------------------------------ embedding
// out(B, T, C) = wte[idx] + wpe[pos_offset + t]; wte, wpe, out of `dtype` (the sum in float32, rounded once).
void embedding_forward(void* out, const int32_t* idx, const void* wte, const void* wpe, DType dtype, int64_t B,
                       int64_t T, int64_t C, int64_t pos_offset);
// dwte[idx[b, t]] += dout[b, t]; dwpe[pos_offset + t] += sum_b dout[b, t]; dout of `dtype`, dwte/dwpe float32.
// Deterministic: each element is summed in (b, t) order (no float atomics).
void embedding_backward(float* dwte, float* dwpe, const void* dout, const int32_t* idx, DType dtype, int64_t B,
                        int64_t T, int64_t C, int64_t pos_offset);

// ------------------------------------------------------------------------------------------------ cross-entropy
// logits/dlogits of `dtype` (dlogits may be logits: in place); losses, lse, dlosses float32.
void cross_entropy_forward(float* losses, float* lse, const void* logits, const int32_t* targets, DType dtype,
                           int64_t N, int64_t V, int64_t Vp, int32_t ignore_index);
void cross_entropy_backward(void* dlogits, const void* logits, const float* lse, const int32_t* targets,
                            const float* dlosses, DType dtype, int64_t N, int64_t V, int64_t Vp, int32_t ignore_index,
                            bool accumulate);

// ------------------------------------------------------------------------------------------------ optimizer
// Same arithmetic as cpu::AdamWParams; param, m, v float32 (master weights), grad float32.
struct AdamWParams {
    float lr = 1e-3f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, weight_decay = 0.0f;
    int64_t step = 1;
    float grad_scale = 1.0f;
};
void adamw_step(float* param, const float* grad, float* m, float* v, int64_t n, const AdamWParams& hp);
// Sum of squares of x (float32 or bfloat16), accumulated in double; synchronises (returns a host value).
double sum_squares(const void* x, DType dtype, int64_t n);

}  // namespace cuda
}  // namespace gptx
