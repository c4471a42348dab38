// kernels.h — the CUDA backend's launchers: one per op, each taking the op's parameter struct of the one backend
// contract (backend/params.h; semantics documented there), gathered into the CUDA KernelTable by table.cu. Plain
// C++, no CUDA types. Launchers enqueue on the current stream of the current device (csrc/ops makes the op's device
// current) and return without synchronising, check each launch (cudaGetLastError) and throw gptx::CudaError naming
// the kernel on a CUDA failure. Capabilities: float32, bfloat16 and (matmul operands) float16 activations, head
// sizes up to 256 (table.cu).
#pragma once
#include "backend/params.h"

namespace gptx {
namespace cuda {

using backend::AddParams;
using backend::AdamWParams;
using backend::AttentionBackwardParams;
using backend::AttentionParams;
using backend::BiasBackwardParams;
using backend::CrossEntropyBackwardParams;
using backend::CrossEntropyParams;
using backend::DropoutParams;
using backend::EmbeddingBackwardParams;
using backend::EmbeddingParams;
using backend::GeluBackwardParams;
using backend::GeluParams;
using backend::GlobalNormParams;
using backend::LayernormBackwardParams;
using backend::LayernormParams;
using backend::MatmulParams;
using backend::SoftmaxBackwardParams;
using backend::SoftmaxParams;

void matmul_forward(const MatmulParams& p);
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

}  // namespace cuda
}  // namespace gptx
