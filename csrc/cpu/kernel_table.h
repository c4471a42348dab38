// kernel_table.h — the raw-pointer kernel interface every CPU backend (each ISA, and the scalar reference) fills in.
//
// Kernels see only pointers and sizes (llm.c style; dims named B, T, C, NH, HS, V). All arguments were validated by
// csrc/ops/ before a kernel is called: pointers are non-null where required, sizes are >= 1 and the buffers are as
// large as the shapes say. Kernels never allocate caller-visible memory and never throw.
#pragma once
#include <cstdint>

namespace gptx {
namespace cpu {

// C(M, N) = beta * C + op(A)(M, K) @ op(B)(K, N) + bias(N)
// op(A) = A (row-major M x K, row stride lda) or, with trans_a, A^T where A is K x M (row stride lda).
// op(B) = B (row-major K x N, row stride ldb) or, with trans_b, B^T where B is N x K (row stride ldb).
// beta is 0 (overwrite; C's old contents are never read, so NaN poison does not leak) or 1 (accumulate).
// bias may be null. C's row stride is ldc.
struct GemmArgs {
    bool trans_a = false, trans_b = false;
    int64_t M = 0, N = 0, K = 0;
    const float* A = nullptr;
    int64_t lda = 0;
    const float* B = nullptr;
    int64_t ldb = 0;
    float* C = nullptr;
    int64_t ldc = 0;
    float beta = 0.0f;
    const float* bias = nullptr;
};

// Causal/non-causal multi-head attention over strided (B, T, NH, HS)-style views.
// Element (b, t, h, d) of q lives at q[b * q_batch_stride + t * q_row_stride + h * q_head_stride + d] (d contiguous);
// the same scheme for k, v, out (and dout, dq, dk, dv in backward). lse is contiguous (B, NH, Tq).
// Query row i sits at absolute position (Tk - Tq + i); with causal it attends keys j <= Tk - Tq + i (Tq <= Tk).
struct AttentionParams {
    const float* q = nullptr;
    const float* k = nullptr;
    const float* v = nullptr;
    float* out = nullptr;
    float* lse = nullptr;  // natural-log logsumexp of the scaled scores per (b, h, i); may be null in forward
    int64_t B = 0, NH = 0, Tq = 0, Tk = 0, HS = 0;
    int64_t q_batch_stride = 0, q_row_stride = 0, q_head_stride = 0;
    int64_t k_batch_stride = 0, k_row_stride = 0, k_head_stride = 0;
    int64_t v_batch_stride = 0, v_row_stride = 0, v_head_stride = 0;
    int64_t o_batch_stride = 0, o_row_stride = 0, o_head_stride = 0;
    float scale = 1.0f;
    bool causal = true;
};

// Backward: given dout (strided like out), out, lse from forward, writes dq, dk, dv (strided like q, k, v).
// With accumulate the gradients are added into dq/dk/dv, otherwise overwritten (old contents never read).
struct AttentionBackwardParams {
    AttentionParams fwd;  // q, k, v, out (read-only here), lse (read-only), sizes, strides, scale, causal
    const float* dout = nullptr;
    float* dq = nullptr;
    float* dk = nullptr;
    float* dv = nullptr;
    bool accumulate = false;
};

// Hyperparameters of one fused AdamW step (torch.optim.AdamW semantics, decoupled weight decay):
//   g = grad * grad_scale; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2
//   p *= (1 - lr * weight_decay); p -= (lr / (1 - b1^step)) * m / (sqrt(v) / sqrt(1 - b2^step) + eps)
struct AdamWParams {
    float lr = 1e-3f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, weight_decay = 0.0f;
    int64_t step = 1;         // 1-based step count, for bias correction
    float grad_scale = 1.0f;  // e.g. the gradient-clipping factor, fused into the step
};

struct KernelTable {
    const char* name;  // "generic", "avx2", "avx512", "reference"

    // ---- matmul ----
    void (*gemm)(const GemmArgs& args);
    // dbias(OC) (+)= sum over rows of dout(N, OC)
    void (*bias_backward)(float* dbias, const float* dout, int64_t N, int64_t OC, bool accumulate);

    // ---- softmax over the last dim L of (rows, L), input pre-scaled by scale ----
    // causal_Tq > 0: rows form matrices of causal_Tq rows; row r (i = r % causal_Tq) keeps columns
    // j <= i + (L - causal_Tq), masked columns give 0. A row whose kept entries are all -inf gives all zeros.
    void (*softmax_forward)(float* out, const float* inp, int64_t rows, int64_t L, float scale, int64_t causal_Tq);
    // dinp = scale * out * (dout - sum(dout * out))  (masked entries have out == 0, so they get 0)
    void (*softmax_backward)(float* dinp, const float* dout, const float* out, int64_t rows, int64_t L, float scale);

    // ---- attention (flash-style: tiled, online softmax, no Tq x Tk matrix in memory) ----
    void (*attention_forward)(const AttentionParams& p);
    void (*attention_backward)(const AttentionBackwardParams& p);

    // ---- layernorm over C: out = (x - mean) * rstd * weight + bias; mean/rstd (N) saved for backward ----
    void (*layernorm_forward)(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                              const float* bias, int64_t N, int64_t C, float eps);
    // writes (or with accumulate adds into) dinp (N, C), dweight (C), dbias (C)
    void (*layernorm_backward)(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                               const float* weight, const float* mean, const float* rstd, int64_t N, int64_t C,
                               bool accumulate);

    // ---- GELU, tanh approximation (GPT-2) ----
    void (*gelu_forward)(float* out, const float* inp, int64_t n);
    // dinp (+)= gelu'(inp) * dout
    void (*gelu_backward)(float* dinp, const float* inp, const float* dout, int64_t n, bool accumulate);

    // ---- token + position embedding: out(B, T, C) = wte[idx[b, t]] + wpe[pos_offset + t] ----
    void (*embedding_forward)(float* out, const int32_t* idx, const float* wte, const float* wpe, int64_t B,
                              int64_t T, int64_t C, int64_t pos_offset);
    // dwte[idx[b, t]] += dout[b, t]; dwpe[pos_offset + t] += sum_b dout[b, t]. Deterministic: each element of dwte
    // is summed in (b, t) order whatever the thread count. Always accumulates (weights' gradients).
    void (*embedding_backward)(float* dwte, float* dwpe, const float* dout, const int32_t* idx, int64_t B,
                               int64_t T, int64_t C, int64_t pos_offset);

    // ---- residual add: out = a + b (out may equal a or b: in place is allowed for this op) ----
    void (*add_forward)(float* out, const float* a, const float* b, int64_t n);

    // ---- fused softmax cross-entropy over logits (N, Vp) of which the first V columns are real ----
    // losses[i] = lse_i - logits[i, targets[i]] with lse_i = log sum_{j<V} exp(logits[i, j]); 0 where
    // targets[i] == ignore_index. lse (N) is saved for backward.
    void (*cross_entropy_forward)(float* losses, float* lse, const float* logits, const int32_t* targets,
                                  int64_t N, int64_t V, int64_t Vp, int32_t ignore_index);
    // dlogits[i, j] = dlosses[i] * (softmax_ij - [j == targets[i]]) for j < V, 0 for V <= j < Vp, whole row 0 where
    // ignored. dlogits may be the same buffer as logits (in place, row by row); with accumulate adds instead.
    void (*cross_entropy_backward)(float* dlogits, const float* logits, const float* lse, const int32_t* targets,
                                   const float* dlosses, int64_t N, int64_t V, int64_t Vp, int32_t ignore_index,
                                   bool accumulate);

    // ---- optimizer ----
    void (*adamw_step)(float* param, const float* grad, float* m, float* v, int64_t n, const AdamWParams& hp);
    // sum of squares, accumulated in double (for the global gradient norm)
    double (*sum_squares)(const float* x, int64_t n);
};

// The tables, one per compiled backend. Defined in csrc/cpu/table.cc (compiled once per ISA) and csrc/ref/.
const KernelTable* kernels_generic();
const KernelTable* kernels_avx2();
const KernelTable* kernels_avx512();
const KernelTable* kernels_reference();

// The table in use: picked once from cpuid (or GPTX_FORCE_ISA) and switchable for tests.
const KernelTable& active();

}  // namespace cpu
}  // namespace gptx
