// kernel_table.h — what a backend is: its capabilities and one kernel per op, each taking the op's parameter struct
// (backend/params.h). Every CPU path (generic, avx2, avx512, reference) and CUDA fill in the same table, and
// csrc/ops calls whichever table serves the op's device (kernels_for); nothing above this header knows which.
#pragma once
#include "backend/params.h"

namespace gptx {
namespace backend {

// What a backend accepts; csrc/ops turns anything else into a clear error naming the op and the argument.
struct Capabilities {
    bool bfloat16 = false;        // bfloat16 activations (and bfloat16 arrays in global_norm)
    bool float16_matmul = false;  // float16 matmul operands
    int64_t max_head_size = 0;    // attention head size limit; 0: any
    bool qmatmul = false;         // qmatmul_forward (bf16 / int8 packed weights for decoding)
};

struct KernelTable {
    const char* name;  // "generic", "avx2", "avx512", "avx512_bf16", "reference", "cuda"
    Capabilities caps;

    void (*matmul_forward)(const MatmulParams&);
    void (*qmatmul_forward)(const QMatmulParams&);  // null where caps.qmatmul is false
    void (*bias_backward)(const BiasBackwardParams&);
    void (*softmax_forward)(const SoftmaxParams&);
    void (*softmax_backward)(const SoftmaxBackwardParams&);
    void (*attention_forward)(const AttentionParams&);
    void (*attention_backward)(const AttentionBackwardParams&);
    void (*layernorm_forward)(const LayernormParams&);
    void (*layernorm_backward)(const LayernormBackwardParams&);
    void (*gelu_forward)(const GeluParams&);
    void (*gelu_backward)(const GeluBackwardParams&);
    void (*add_forward)(const AddParams&);
    void (*dropout_forward)(const DropoutParams&);
    void (*dropout_backward)(const DropoutParams&);
    void (*embedding_forward)(const EmbeddingParams&);
    void (*embedding_backward)(const EmbeddingBackwardParams&);
    void (*cross_entropy_forward)(const CrossEntropyParams&);
    void (*cross_entropy_backward)(const CrossEntropyBackwardParams&);
    void (*adamw_step)(const AdamWParams&);
    void (*global_norm)(const GlobalNormParams&);
};

// The CPU tables, one per compiled path (csrc/cpu/table.cc, compiled once per ISA and once for the reference), and
// the one in use: picked once from cpuid (or GPTX_FORCE_ISA) and switchable for tests (csrc/cpu/dispatch.cc).
const KernelTable* cpu_kernels_generic();
const KernelTable* cpu_kernels_avx2();
const KernelTable* cpu_kernels_avx512();
const KernelTable* cpu_kernels_avx512_bf16();  // avx512 with the VNNI + BF16 qmatmul (null: not compiled in)
const KernelTable* cpu_kernels_reference();
const KernelTable& cpu_kernels();

// The CUDA table (csrc/cuda/table.cu), or null in a build without CUDA.
const KernelTable* cuda_kernels();

}  // namespace backend
}  // namespace gptx
