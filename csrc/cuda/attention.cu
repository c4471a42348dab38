// attention.cu — flash-style multi-head attention forward/backward on CUDA (semantics of cpu::attention_*): the
// dispatcher. Tensor-core kernels (attention_tc.cu) take bfloat16/float16 at HS 64 and 128; the generic kernels
// (attention_generic.cu) take everything else (float32, any HS in [1, 256], decode-sized Tq).
// Rows with no key (causal with Tq > Tk, outside the contract) give out = 0, lse = -inf, zero gradients. The head
// size was checked against the table's max_head_size (attn::kMaxHS) by csrc/ops.
#include <memory>

#include "cuda/attention_common.cuh"

namespace gptx {
namespace cuda {

void attention_forward(const AttentionParams& p) {
    if (p.B <= 0 || p.NH <= 0 || p.Tq <= 0) return;
    if (!attn::tc_forward(p)) attn::forward_generic(p);
}

void attention_backward(const AttentionBackwardParams& bp) {
    const AttentionParams& p = bp.fwd;
    if (p.B <= 0 || p.NH <= 0 || (p.Tq <= 0 && p.Tk <= 0)) return;
    int dev = 0;
    GPTX_CUDA_CHECK(cudaGetDevice(&dev));
    const int64_t rows = p.B * p.NH * p.Tq;
    // D = rowsum(dout * out), freed stream-ordered after the kernels that read it
    std::shared_ptr<void> dbuf = allocate((size_t)(rows > 0 ? rows : 1) * sizeof(float), dev);
    float* D = static_cast<float*>(dbuf.get());
    attn::backward_dot(bp, D);
    if (!attn::tc_backward(bp, D)) attn::backward_generic(bp, D);
}

}  // namespace cuda
}  // namespace gptx
