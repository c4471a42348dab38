// table.cc — gathers one CPU path's kernels into its KernelTable (compiled once per ISA and once for the reference).
#include "kernels.h"
#include "backend/kernel_table.h"

#define GPTX_CAT_(a, b) a##b
#define GPTX_CAT(a, b) GPTX_CAT_(a, b)
#define GPTX_STR_(a) #a
#define GPTX_STR(a) GPTX_STR_(a)

namespace gptx {
namespace backend {

const KernelTable* GPTX_CAT(cpu_kernels_, GPTX_ISA_NS)() {
    namespace k = cpu::GPTX_ISA_NS;
    // float32 activations only, any head size; packed bf16 / int8 weights for qmatmul_forward.
    Capabilities caps;
    caps.qmatmul = true;
    static const KernelTable table = {
        GPTX_STR(GPTX_ISA_NS),
        caps,
        &k::matmul_forward,
        &k::qmatmul_forward,
        &k::bias_backward,
        &k::softmax_forward,
        &k::softmax_backward,
        &k::attention_forward,
        &k::attention_backward,
        &k::layernorm_forward,
        &k::layernorm_backward,
        &k::gelu_forward,
        &k::gelu_backward,
        &k::add_forward,
        &k::dropout_forward,
        &k::dropout_backward,
        &k::embedding_forward,
        &k::embedding_backward,
        &k::cross_entropy_forward,
        &k::cross_entropy_backward,
        &k::adamw_step,
        &k::global_norm,
    };
    return &table;
}

}  // namespace backend
}  // namespace gptx
