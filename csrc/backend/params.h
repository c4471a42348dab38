// params.h — the one backend contract: a parameter struct per op, filled by csrc/ops after validation and read by
// every backend (each CPU ISA path, the scalar reference, CUDA) through the KernelTable (backend/kernel_table.h).
//
// Conventions, the same for every backend:
// - Raw pointers and sizes only (llm.c style; dims named B, T, C, NH, HS, V). Pointers are memory of the backend's
//   device. Every argument was validated by csrc/ops: pointers are non-null where required, sizes are >= 1 unless
//   the struct says otherwise, buffers are as large as the shapes say, and the dtypes are ones the backend declared
//   in its Capabilities. Kernels never allocate caller-visible memory and never throw on valid input.
// - "Activation" pointers (void*) hold `dtype` elements: float32 everywhere, bfloat16 where the backend supports it
//   (and float16 for matmul operands). Arithmetic is float32 inside, rounded to the activation dtype once, on the
//   store. Biases, layernorm weights, parameter gradients and statistics (mean, rstd, lse, losses) are float32.
// - With accumulate (or beta == 1) the result is added into the output; otherwise the output is overwritten and its
//   old contents are never read (NaN poison must not leak).
// - A CUDA backend enqueues on the current stream of the current device (csrc/ops makes the op's device current)
//   and returns without synchronising.
#pragma once
#include <cstdint>

#include "backend/dropout_mask.h"
#include "gptx/tensor.h"

namespace gptx {
namespace backend {

// ------------------------------------------------------------------------------------------------ matmul
// For each batch index z in [0, batch):  C_z(M, N) = beta * C_z + op(A_z)(M, K) @ op(B_z)(K, N) + bias(N)
// op(A) = A (row-major M x K, row stride lda) or, with trans_a, A^T where A is K x M (row stride lda); the same for
// B (K x N, or N x K with trans_b). A_z = A + z * stride_a elements (stride 0: shared by every batch), likewise B, C.
// ab_dtype: the dtype of A and B; c_dtype: float32 or ab_dtype. beta is 0 or 1. K may be 0 (C = beta C + bias).
struct MatmulParams {
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
    const float* bias = nullptr;  // (N) or null
    int64_t batch = 1;
    int64_t stride_a = 0, stride_b = 0, stride_c = 0;
};

// dbias(OC) (+)= sum over the N rows of dout(N, OC).
struct BiasBackwardParams {
    float* dbias = nullptr;
    const void* dout = nullptr;
    DType dtype = DType::float32;
    int64_t N = 0, OC = 0;
    bool accumulate = false;
};

// ------------------------------------------------------------------------------------------------ qmatmul
// C(M, N) = A(M, K) @ W^T + bias(N) with W (N, K) stored packed in a weight format for decoding (W^T is the
// Conv1D (K, N) weight; N output features, K the reduction). A and C are float32, row strides lda, ldc.
// Activations are converted once per call into `work` (qmatmul_workspace_bytes): rounded to bfloat16, or quantized
// to int8 per block of 32 along K with one float32 scale (q8_0's activation side). Products accumulate in float32
// (bf16) or in int32 per block, scaled by the two blocks' scales and summed in float32 (int8).
//
// Packed layouts (shared by every backend; pack_weight in csrc/ops/qmatmul.cc writes them, the reference reads
// them as the spec). N is padded to Np = a multiple of kQPanel (16) and K to Kp = a multiple of kQBlock (32), with
// zero weights; panel j holds output features 16j .. 16j + 15 ("lanes"):
// - bf16: panel j is Kp * 16 bfloat16 at element j * Kp * 16; element (k, lane) at ((k / 2) * 16 + lane) * 2 +
//   k % 2: pairs along K interleaved per lane, what vdpbf16ps reads (one 64-byte row per pair of k).
// - int8 (q8_0 blocks): panel j is Kb = Kp / 32 blocks at byte j * Kb * 544: first Kb * 16 float16 scales
//   (block b, lane at index b * 16 + lane), then Kb * 512 int8 quants, element (k, lane) of block b = k / 32 at
//   b * 512 + ((k % 32) / 4) * 64 + lane * 4 + k % 4: groups of 4 along K per lane (what vpdpbusd reads). A weight is
//   q * scale with scale = float16(max |w| over its 32 k / 127) and q = round(w / scale) in [-127, 127].
enum class QFormat : uint8_t { bf16 = 1, int8 = 2 };
constexpr int64_t kQPanel = 16, kQBlock = 32, kQInt8PanelBlockBytes = kQPanel * 2 + kQPanel * kQBlock;

inline int64_t qround_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }
// Bytes of a packed (N, K) weight.
inline int64_t qweight_bytes(QFormat f, int64_t N, int64_t K) {
    const int64_t Np = qround_up(N, kQPanel), Kp = qround_up(K, kQBlock);
    return f == QFormat::bf16 ? Np * Kp * 2 : (Np / kQPanel) * (Kp / kQBlock) * kQInt8PanelBlockBytes;
}
// Scratch for the converted activations: M rows of Kp bfloat16-rounded values (stored in 2 or 4 bytes, as the path's
// tiles read them; M rounded up to 32: AMX tiles read whole 16-row blocks, which the kernels fill with zeros), or M
// rows of Kp int8 then M * Kp / 32 float scales.
inline int64_t qmatmul_workspace_bytes(QFormat f, int64_t M, int64_t K) {
    const int64_t Kp = qround_up(K, kQBlock);
    return f == QFormat::bf16 ? qround_up(M, 32) * Kp * 4 : qround_up(M * Kp, 64) + M * (Kp / kQBlock) * 4;
}

struct QMatmulParams {
    int64_t M = 0, N = 0, K = 0;
    const float* A = nullptr;
    int64_t lda = 0;
    const void* W = nullptr;  // packed, qweight_bytes(format, N, K)
    QFormat format = QFormat::bf16;
    float* C = nullptr;
    int64_t ldc = 0;
    const float* bias = nullptr;  // (N) or null
    void* work = nullptr;         // qmatmul_workspace_bytes(format, M, K), 64-byte aligned
};

// ------------------------------------------------------------------------------------------------ softmax
// Over the last dim L of (rows, L), input pre-scaled by scale. causal_Tq > 0: rows form matrices of causal_Tq rows;
// row r (i = r % causal_Tq) keeps columns j <= i + (L - causal_Tq), masked columns give 0. A row whose kept entries
// are all -inf gives all zeros. out may equal inp.
struct SoftmaxParams {
    void* out = nullptr;
    const void* inp = nullptr;
    DType dtype = DType::float32;
    int64_t rows = 0, L = 0;
    float scale = 1.0f;
    int64_t causal_Tq = 0;
};
// dinp = scale * out * (dout - sum(dout * out)) (masked entries have out == 0, so they get 0). dinp may equal dout.
struct SoftmaxBackwardParams {
    void* dinp = nullptr;
    const void* dout = nullptr;
    const void* out = nullptr;
    DType dtype = DType::float32;
    int64_t rows = 0, L = 0;
    float scale = 1.0f;
};

// ------------------------------------------------------------------------------------------------ attention
// Multi-head attention over strided (B, T, NH, HS)-style views, flash-style (tiled, online softmax, no Tq x Tk
// matrix in memory). Element (b, t, h, d) of q lives at q[b * q_batch_stride + t * q_row_stride + h * q_head_stride
// + d] (d contiguous); the same scheme for k, v, out (and dout, dq, dk, dv in backward). lse is contiguous
// (B, NH, Tq), float32. Query row i sits at absolute position (Tk - Tq + i); with causal it attends keys
// j <= Tk - Tq + i (Tq <= Tk). HS is at most the backend's Capabilities::max_head_size.
struct AttentionParams {
    const void* q = nullptr;
    const void* k = nullptr;
    const void* v = nullptr;
    void* out = nullptr;
    float* lse = nullptr;  // natural-log logsumexp of the scaled scores per (b, h, i); may be null in forward
    DType dtype = DType::float32;
    int64_t B = 0, NH = 0, Tq = 0, Tk = 0, HS = 0;
    int64_t q_batch_stride = 0, q_row_stride = 0, q_head_stride = 0;
    int64_t k_batch_stride = 0, k_row_stride = 0, k_head_stride = 0;
    int64_t v_batch_stride = 0, v_row_stride = 0, v_head_stride = 0;
    int64_t o_batch_stride = 0, o_row_stride = 0, o_head_stride = 0;
    float scale = 1.0f;
    bool causal = true;
    // Dropout on the probabilities (threshold 0: none). Element (b, h, i, j) of P is kept with the bits of row
    // (b * NH + h) * Tq + i, column j (backend/dropout_mask.h) and scaled by dropout.scale; lse stays that of the
    // undropped scores. Backward regenerates the same mask: dV = (P o Z)^T dO, dS = P o (Z o dO V^T - D), where
    // D = rowsum(dO o O) as without dropout.
    DropoutMask dropout;
};
// Given dout (strided like out), out and lse from forward, writes dq, dk, dv (strided like q, k, v).
struct AttentionBackwardParams {
    AttentionParams fwd;  // q, k, v, out (read-only here), lse (read-only), sizes, strides, scale, causal
    const void* dout = nullptr;
    void* dq = nullptr;
    void* dk = nullptr;
    void* dv = nullptr;
    bool accumulate = false;
};

// ------------------------------------------------------------------------------------------------ layernorm
// out (N, C) = (inp - mean) * rstd * weight + bias over C; mean, rstd (N) saved for backward. Biased variance.
struct LayernormParams {
    void* out = nullptr;
    float* mean = nullptr;
    float* rstd = nullptr;
    const void* inp = nullptr;
    const float* weight = nullptr;
    const float* bias = nullptr;
    DType dtype = DType::float32;
    int64_t N = 0, C = 0;
    float eps = 1e-5f;
};
// Writes (or with accumulate adds into) dinp (N, C), dweight (C), dbias (C).
struct LayernormBackwardParams {
    void* dinp = nullptr;
    float* dweight = nullptr;
    float* dbias = nullptr;
    const void* dout = nullptr;
    const void* inp = nullptr;
    const float* weight = nullptr;
    const float* mean = nullptr;
    const float* rstd = nullptr;
    DType dtype = DType::float32;
    int64_t N = 0, C = 0;
    bool accumulate = false;
};

// ------------------------------------------------------------------------------------------------ GELU (tanh form)
struct GeluParams {  // out = gelu(inp); out may equal inp
    void* out = nullptr;
    const void* inp = nullptr;
    DType dtype = DType::float32;
    int64_t n = 0;
};
struct GeluBackwardParams {  // dinp (+)= gelu'(inp) * dout
    void* dinp = nullptr;
    const void* inp = nullptr;
    const void* dout = nullptr;
    DType dtype = DType::float32;
    int64_t n = 0;
    bool accumulate = false;
};

// ------------------------------------------------------------------------------------------------ add
struct AddParams {  // out = a + b; out may equal a or b (in place)
    void* out = nullptr;
    const void* a = nullptr;
    const void* b = nullptr;
    DType dtype = DType::float32;
    int64_t n = 0;
};

// ------------------------------------------------------------------------------------------------ dropout
// out (rows, cols) = (residual +) inp * Z, Z = mask.scale where dropout_keep(mask, dropout_row(mask.key, r), c), else
// 0 (the product rounded once, then the residual added). residual may be null; out may equal inp or residual.
// dropout_backward is the same map without a residual: dinp = dout * Z (the mask is regenerated, never stored).
struct DropoutParams {
    void* out = nullptr;
    const void* inp = nullptr;
    const void* residual = nullptr;
    DType dtype = DType::float32;
    int64_t rows = 0, cols = 0;
    DropoutMask mask;
};

// ------------------------------------------------------------------------------------------------ embedding
// out(B, T, C) = wte[idx[b, t]] + wpe[pos_offset + t] (the sum in float32, rounded once).
struct EmbeddingParams {
    void* out = nullptr;
    const int32_t* idx = nullptr;
    const void* wte = nullptr;
    const void* wpe = nullptr;
    DType dtype = DType::float32;
    int64_t B = 0, T = 0, C = 0, pos_offset = 0;
};
// dwte[idx[b, t]] += dout[b, t]; dwpe[pos_offset + t] += sum_b dout[b, t]. Always accumulates (weights' gradients).
// Deterministic: each element of dwte is summed in (b, t) order whatever the thread count (no float atomics).
struct EmbeddingBackwardParams {
    float* dwte = nullptr;
    float* dwpe = nullptr;
    const void* dout = nullptr;
    const int32_t* idx = nullptr;
    DType dtype = DType::float32;
    int64_t B = 0, T = 0, C = 0, pos_offset = 0;
};

// ------------------------------------------------------------------------------------------------ cross-entropy
// Fused softmax cross-entropy over logits (N, Vp) of which the first V columns are real:
// losses[i] = lse_i - logits[i, targets[i]] with lse_i = log sum_{j<V} exp(logits[i, j]); 0 where
// targets[i] == ignore_index. lse (N) is saved for backward. With `loss` non-null, loss[0] = the mean of losses over
// the rows whose target is not ignore_index (summed in double in row order; NaN when every row is ignored).
struct CrossEntropyParams {
    float* losses = nullptr;
    float* lse = nullptr;
    float* loss = nullptr;
    const void* logits = nullptr;
    const int32_t* targets = nullptr;
    DType dtype = DType::float32;
    int64_t N = 0, V = 0, Vp = 0;
    int32_t ignore_index = -100;
};
// dlogits[i, j] = dlosses[i] * (softmax_ij - [j == targets[i]]) for j < V, 0 for V <= j < Vp, the whole row 0 where
// ignored. dlogits may be the same buffer as logits (in place, row by row); with accumulate adds instead.
struct CrossEntropyBackwardParams {
    void* dlogits = nullptr;
    const void* logits = nullptr;
    const float* lse = nullptr;
    const int32_t* targets = nullptr;
    const float* dlosses = nullptr;
    DType dtype = DType::float32;
    int64_t N = 0, V = 0, Vp = 0;
    int32_t ignore_index = -100;
    bool accumulate = false;
};

// ------------------------------------------------------------------------------------------------ optimizer
// One fused AdamW step over n float32 elements (torch.optim.AdamW semantics, decoupled weight decay):
//   g = grad * grad_scale * clip; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2
//   p *= (1 - lr * weight_decay); p -= (lr / (1 - b1^step)) * m / (sqrt(v) / sqrt(1 - b2^step) + eps)
// clip is 1 when `norm` is null. Otherwise `norm` points at one float (the global gradient norm, memory of the
// backend's device) and clip = clip_coefficient(*norm * norm_scale, max_norm) below; when that product is not
// finite the step leaves param, m and v untouched (a diverged step never corrupts the weights).
struct AdamWParams {
    float* param = nullptr;
    const float* grad = nullptr;
    float* m = nullptr;
    float* v = nullptr;
    int64_t n = 0;
    float lr = 1e-3f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, weight_decay = 0.0f;
    int64_t step = 1;         // 1-based step count, for the bias corrections
    float grad_scale = 1.0f;  // e.g. 1/grad_accum, fused into the step
    const float* norm = nullptr;
    float max_norm = 0.0f;    // <= 0: no clipping (the finiteness check still applies)
    float norm_scale = 1.0f;
};

// torch.nn.utils.clip_grad_norm_'s coefficient in float32: min(1, max_norm / (norm + 1e-6)), 1 without clipping.
// Shared by the CPU and CUDA backends so both clip bit for bit alike; the caller has checked that norm is finite.
#if defined(__CUDACC__)
__host__ __device__
#endif
inline float clip_coefficient(float norm, float max_norm) {
    if (!(max_norm > 0.0f)) return 1.0f;
    const float coef = max_norm / (norm + 1e-6f);
    return coef < 1.0f ? coef : 1.0f;
}

// sqrt of the sum of squares of `count` arrays (float32, or bfloat16 where the backend supports it), accumulated in
// double in a fixed order (the same result for any thread count). Writes the sum of squares to sumsq (a double in
// host memory, or null) and its square root, rounded to float32, to norm (one float in the backend's memory, or
// null). A CUDA backend synchronises only when sumsq is set.
struct GlobalNormParams {
    const void* const* x = nullptr;
    const DType* dtype = nullptr;
    const int64_t* n = nullptr;
    int64_t count = 0;
    double* sumsq = nullptr;
    float* norm = nullptr;
};

}  // namespace backend
}  // namespace gptx
