// table.cu — the CUDA backend's KernelTable: what it supports and its launchers (cuda/kernels.h).
#include "backend/kernel_table.h"
#include "cuda/attention_common.cuh"
#include "cuda/kernels.h"

namespace gptx {
namespace backend {

const KernelTable* cuda_kernels() {
    Capabilities caps;
    caps.bfloat16 = true;
    caps.float16_matmul = true;
    caps.max_head_size = cuda::attn::kMaxHS;  // the generic attention kernels keep 8 head-dim elements per lane
    caps.qmatmul = false;  // no packed bf16 / int8 weight kernels on CUDA yet: qmatmul_forward refuses there
    static const KernelTable table = {
        "cuda",
        caps,
        &cuda::matmul_forward,
        nullptr,  // qmatmul_forward
        &cuda::bias_backward,
        &cuda::softmax_forward,
        &cuda::softmax_backward,
        &cuda::attention_forward,
        &cuda::attention_backward,
        &cuda::layernorm_forward,
        &cuda::layernorm_backward,
        &cuda::gelu_forward,
        &cuda::gelu_backward,
        &cuda::add_forward,
        &cuda::dropout_forward,
        &cuda::dropout_backward,
        &cuda::embedding_forward,
        &cuda::embedding_backward,
        &cuda::cross_entropy_forward,
        &cuda::cross_entropy_backward,
        &cuda::adamw_step,
        &cuda::global_norm,
    };
    return &table;
}

}  // namespace backend
}  // namespace gptx
