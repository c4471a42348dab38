// kernels.h — declarations of one CPU path's kernels (the namespace is the ISA this unit is compiled for).
// Each takes its op's parameter struct; semantics are documented on the struct in backend/params.h. The CPU paths
// declare float32 only (Capabilities in table.cc), so every void* below holds float32.
#pragma once
#include <cmath>
#include <limits>

#include "backend/params.h"
#include "isa_ns.h"

namespace gptx {
namespace cpu {
using namespace backend;  // the parameter structs
namespace GPTX_ISA_NS {

// The float32 view of an activation pointer of the contract (the CPU paths take float32 only).
static inline float* f32(void* x) { return static_cast<float*>(x); }
static inline const float* f32(const void* x) { return static_cast<const float*>(x); }

// The mean of losses over the rows whose target is not ignore_index, summed in double in row order so every CPU
// path gives the same bits; NaN when every row is ignored (torch's mean of nothing).
static inline float mean_loss(const float* losses, const int32_t* targets, int64_t N, int32_t ignore_index) {
    double sum = 0.0;
    int64_t count = 0;
    for (int64_t i = 0; i < N; i++)
        if (targets[i] != ignore_index) {
            sum += losses[i];
            count++;
        }
    return count ? (float)(sum / (double)count) : std::numeric_limits<float>::quiet_NaN();
}

// The factor AdamW multiplies every gradient by: grad_scale times the clip coefficient of the norm (params.h). False
// when the scaled norm is not finite: the step is then skipped.
static inline bool adamw_grad_scale(const AdamWParams& p, float* scale) {
    *scale = p.grad_scale;
    if (p.norm == nullptr) return true;
    const float norm = *p.norm * p.norm_scale;
    if (!std::isfinite(norm)) return false;
    *scale = p.grad_scale * clip_coefficient(norm, p.max_norm);
    return true;
}

void matmul_forward(const MatmulParams& p);
void qmatmul_forward(const QMatmulParams& p);
void bias_backward(const BiasBackwardParams& p);
void softmax_forward(const SoftmaxParams& p);
void softmax_backward(const SoftmaxBackwardParams& p);
void attention_forward(const AttentionParams& p);
void attention_backward(const AttentionBackwardParams& p);
void layernorm_forward(const LayernormParams& p);
void layernorm_backward(const LayernormBackwardParams& p);
void gelu_forward(const GeluParams& p);
void gelu_backward(const GeluBackwardParams& p);
void add_forward(const AddParams& p);
void dropout_forward(const DropoutParams& p);
void dropout_backward(const DropoutParams& p);
void embedding_forward(const EmbeddingParams& p);
void embedding_backward(const EmbeddingBackwardParams& p);
void cross_entropy_forward(const CrossEntropyParams& p);
void cross_entropy_backward(const CrossEntropyBackwardParams& p);
void adamw_step(const AdamWParams& p);
void global_norm(const GlobalNormParams& p);

}  // namespace GPTX_ISA_NS
}  // namespace cpu
}  // namespace gptx
