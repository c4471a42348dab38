// kernels.h — declarations of one backend's kernels (the namespace is the ISA this unit is compiled for).
// Semantics of every function are documented on the matching KernelTable member in kernel_table.h.
#pragma once
#include "isa_ns.h"
#include "kernel_table.h"

namespace gptx {
namespace cpu {
namespace GPTX_ISA_NS {

void gemm(const GemmArgs& args);
void bias_backward(float* dbias, const float* dout, int64_t N, int64_t OC, bool accumulate);
void softmax_forward(float* out, const float* inp, int64_t rows, int64_t L, float scale, int64_t causal_Tq);
void softmax_backward(float* dinp, const float* dout, const float* out, int64_t rows, int64_t L, float scale);
void attention_forward(const AttentionParams& p);
void attention_backward(const AttentionBackwardParams& p);
void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                       const float* bias, int64_t N, int64_t C, float eps);
void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                        const float* weight, const float* mean, const float* rstd, int64_t N, int64_t C,
                        bool accumulate);
void gelu_forward(float* out, const float* inp, int64_t n);
void gelu_backward(float* dinp, const float* inp, const float* dout, int64_t n, bool accumulate);
void embedding_forward(float* out, const int32_t* idx, const float* wte, const float* wpe, int64_t B, int64_t T,
                       int64_t C, int64_t pos_offset);
void embedding_backward(float* dwte, float* dwpe, const float* dout, const int32_t* idx, int64_t B, int64_t T,
                        int64_t C, int64_t pos_offset);
void add_forward(float* out, const float* a, const float* b, int64_t n);
void cross_entropy_forward(float* losses, float* lse, const float* logits, const int32_t* targets, int64_t N,
                           int64_t V, int64_t Vp, int32_t ignore_index);
void cross_entropy_backward(float* dlogits, const float* logits, const float* lse, const int32_t* targets,
                            const float* dlosses, int64_t N, int64_t V, int64_t Vp, int32_t ignore_index,
                            bool accumulate);
void adamw_step(float* param, const float* grad, float* m, float* v, int64_t n, const AdamWParams& hp);
double sum_squares(const float* x, int64_t n);

}  // namespace GPTX_ISA_NS
}  // namespace cpu
}  // namespace gptx
