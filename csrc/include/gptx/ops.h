// ops.h — every op a GPT's forward and backward pass needs, on gptx::Tensor.
//
// Conventions (all ops):
// - Inputs are defined, contiguous tensors on one device (the CPU, or a CUDA device in a CUDA build; mixing devices
//   raises gptx::TypeError naming the argument). Outputs are allocated on that device. Token ids and targets are
//   int32. Shapes are given as (B, T, C)-style comments.
// - dtypes: on the CPU every float tensor is float32. On CUDA the activations of an op (inp, out, dout, dinp, q, k,
//   v, logits, wte/wpe of embedding_forward) are float32 or bfloat16, all of one dtype (matmul operands may also
//   be float16, and a matmul's out/da/db may be float32 instead of the operands' dtype); biases, layernorm weights,
//   parameter gradients (dbias, dweight, dwte, dwpe) and saved statistics (mean, rstd, lse, losses) are float32.
//   Any other combination raises gptx::TypeError. Token ids and targets of a CUDA op may also be CPU tensors: they are
//   range-checked on the host and uploaded, so the check needs no device sync (ids on the device are checked on a
//   host copy, which waits for the device). CUDA ops are queued on the current stream and return at once;
//   a failed CUDA call raises gptx::CudaError.
// - Outputs are optional: pass an undefined Tensor() and the op allocates one, or pass a tensor of the exact shape
//   and dtype to have it written in place (buffer reuse). Outputs may not overlap inputs unless the op says so.
// - Backward ops overwrite their gradient outputs, or add into them when `accumulate` is true. Gradients of
//   parameters that always accumulate are marked as such.
// - Errors: gptx::Error (bad value: shape, rank, aliasing, index out of range) or gptx::TypeError (dtype, device),
//   with a message naming the op and the argument. Nothing is written when an argument is rejected.
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

#include "gptx/tensor.h"

namespace gptx {

// ------------------------------------------------------------------------------------------------ dropout spec
// Dropout as GPT-2 trains with it: each element is zeroed with probability p, the others scaled by
// float32(1 / (1 - p)). The mask is a pure function of (seed, step, layer, site, element position) through a
// counter-based generator (no state: backward and a resumed run regenerate the same mask, whatever the thread
// count or device). p in [0, 1); p == 0 turns dropout off. `site` tells apart the places of one layer (gptx's GPT
// uses 0: embeddings, 1: attention probabilities, 2: attention residual branch, 3: MLP residual branch).
struct Dropout {
    float p = 0.0f;
    uint64_t seed = 0;
    int64_t step = 0, layer = 0, site = 0;
};

// ------------------------------------------------------------------------------------------------ matmul
// out = op(a) @ op(b) (+ bias) (+ out when accumulate), op(x) = x or x^T (last two dims).
// a: (M, K) (or (K, M) with trans_a), optionally with leading batch dims (..., M, K);
// b: (K, N) (or (N, K) with trans_b), either 2-D (shared by every batch) or with the same batch dims as a;
// bias: (N) or undefined; out: (..., M, N).
Tensor matmul_forward(const Tensor& a, const Tensor& b, const Tensor& bias = Tensor(), bool trans_a = false,
                      bool trans_b = false, const Tensor& out = Tensor(), bool accumulate = false);

struct MatmulGrads {
    Tensor da, db, dbias;
};
// Gradients of matmul_forward given dout (..., M, N). Computes da / db / dbias where the matching need_* flag is
// set (outputs as in matmul_forward's inputs). A 2-D b shared by a batch gets the gradient summed over the batch.
MatmulGrads matmul_backward(const Tensor& dout, const Tensor& a, const Tensor& b, bool trans_a = false,
                            bool trans_b = false, bool need_da = true, bool need_db = true, bool need_dbias = false,
                            const Tensor& da = Tensor(), const Tensor& db = Tensor(), const Tensor& dbias = Tensor(),
                            bool accumulate = false);
// dbias (N) = sum of dout (..., N) over every leading dim.
Tensor bias_backward(const Tensor& dout, const Tensor& dbias = Tensor(), bool accumulate = false);

// ------------------------------------------------------------------------------------------------ softmax
// out = softmax(scale * inp) over the last dim. With causal, inp is (..., Tq, L) with Tq <= L and row i keeps
// columns j <= i + (L - Tq) (masked entries are 0). A row whose kept entries are all -inf gives zeros.
Tensor softmax_forward(const Tensor& inp, float scale = 1.0f, bool causal = false, const Tensor& out = Tensor());
// dinp = scale * out * (dout - sum(dout * out, last dim)).
Tensor softmax_backward(const Tensor& dout, const Tensor& out, float scale = 1.0f, const Tensor& dinp = Tensor());

// ------------------------------------------------------------------------------------------------ attention
// Multi-head scaled-dot-product attention, flash-style (tiled, online softmax; no Tq x Tk matrix in memory).
// Separate layout: q (B, Tq, NH, HS), k and v (B, Tk_capacity, NH, HS), of which the first kv_len rows are used
//   (kv_len < 0: all). This is the KV-cache form: query i sits at position kv_len - Tq + i.
// Packed layout: q is qkv (B, T, 3, NH, HS) (the c_attn output viewed), k and v undefined.
// out: (B, Tq, NH, HS); lse: (B, NH, Tq) natural-log logsumexp of the scaled scores (saved for backward).
// scale 0 means 1 / sqrt(HS) (a negative scale is an error). Causal requires Tq <= kv_len. Head size >= 1.
// dropout: applied to the probabilities (row (b, h, i), column j of the mask), inside the kernel; lse stays that of
// the undropped scores. attention_backward must get the same dropout to regenerate the mask.
struct AttentionOutputs {
    Tensor out, lse;
};
AttentionOutputs attention_forward(const Tensor& q, const Tensor& k = Tensor(), const Tensor& v = Tensor(),
                                   bool causal = true, float scale = 0.0f, int64_t kv_len = -1,
                                   const Tensor& out = Tensor(), const Tensor& lse = Tensor(),
                                   const Dropout& dropout = Dropout());
// Gradients given dout (shaped like out); recomputes the scores from lse (FlashAttention backward).
// Separate layout returns dq, dk, dv shaped like q, k, v (rows past kv_len of dk/dv are left untouched);
// packed layout returns dqkv in dq (shaped like qkv), dk and dv undefined.
struct AttentionGrads {
    Tensor dq, dk, dv;
};
AttentionGrads attention_backward(const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                                  const Tensor& out, const Tensor& lse, bool causal = true, float scale = 0.0f,
                                  int64_t kv_len = -1, const Tensor& dq = Tensor(), const Tensor& dk = Tensor(),
                                  const Tensor& dv = Tensor(), bool accumulate = false,
                                  const Dropout& dropout = Dropout());

// ------------------------------------------------------------------------------------------------ layernorm
// out (..., C) = (inp - mean) * rstd * weight + bias; mean, rstd (...) saved for backward. Biased variance. C >= 1
// (the statistics of no features are undefined: an error, unless there are no rows either).
struct LayernormOutputs {
    Tensor out, mean, rstd;
};
LayernormOutputs layernorm_forward(const Tensor& inp, const Tensor& weight, const Tensor& bias, float eps = 1e-5f,
                                   const Tensor& out = Tensor(), const Tensor& mean = Tensor(),
                                   const Tensor& rstd = Tensor());
struct LayernormGrads {
    Tensor dinp, dweight, dbias;
};
LayernormGrads layernorm_backward(const Tensor& dout, const Tensor& inp, const Tensor& weight, const Tensor& mean,
                                  const Tensor& rstd, const Tensor& dinp = Tensor(), const Tensor& dweight = Tensor(),
                                  const Tensor& dbias = Tensor(), bool accumulate = false);

// ------------------------------------------------------------------------------------------------ GELU (tanh form)
Tensor gelu_forward(const Tensor& inp, const Tensor& out = Tensor());
Tensor gelu_backward(const Tensor& dout, const Tensor& inp, const Tensor& dinp = Tensor(), bool accumulate = false);

// ------------------------------------------------------------------------------------------------ embedding
// out (B, T, C) = wte[idx] + wpe[pos_offset + t]; idx (B, T) int32 in [0, V); wte (V, C); wpe (maxT, C) with
// pos_offset + T <= maxT.
Tensor embedding_forward(const Tensor& idx, const Tensor& wte, const Tensor& wpe, int64_t pos_offset = 0,
                         const Tensor& out = Tensor());
// dwte (V, C) += scatter of dout by idx; dwpe (maxT, C) += sum over B. Always accumulates (parameter gradients),
// deterministic: each element is summed in (b, t) order whatever the thread count.
void embedding_backward(const Tensor& dout, const Tensor& idx, const Tensor& dwte, const Tensor& dwpe,
                        int64_t pos_offset = 0);

// ------------------------------------------------------------------------------------------------ add (residual)
// out = a + b (same shapes). out may be a or b (in place).
Tensor add_forward(const Tensor& a, const Tensor& b, const Tensor& out = Tensor());

// ------------------------------------------------------------------------------------------------ dropout
// out = (residual +) inp * Z over inp viewed as (rows, cols), cols its last dim: element (r, c) uses row r, column c
// of the mask (gptx's GPT passes (B*T, C): a row is a token). residual, when given, has inp's shape and is added
// after the product (the fused residual branch of a transformer block). out may be inp or residual (in place).
Tensor dropout_forward(const Tensor& inp, const Dropout& dropout, const Tensor& residual = Tensor(),
                       const Tensor& out = Tensor());
// dinp = dout * Z with the same mask (regenerated, not stored); dinp may be dout (in place).
Tensor dropout_backward(const Tensor& dout, const Dropout& dropout, const Tensor& dinp = Tensor());

// ------------------------------------------------------------------------------------------------ cross-entropy
// Fused softmax + cross-entropy. logits (..., Vp) of which the first V columns are the real vocabulary
// (V <= 0: V = Vp); targets (...) int32 in [0, V) or == ignore_index (those rows: loss 0, gradient 0).
// losses (...) per position; lse (...) saved for backward.
// With `loss` (one float32 element), also the mean of losses over the rows whose target is not ignore_index, summed
// in double (NaN when every row is ignored), computed on the op's device without waiting for it.
struct CrossEntropyOutputs {
    Tensor losses, lse, loss;
};
CrossEntropyOutputs cross_entropy_forward(const Tensor& logits, const Tensor& targets, int64_t V = 0,
                                          int32_t ignore_index = -100, const Tensor& losses = Tensor(),
                                          const Tensor& lse = Tensor(), const Tensor& loss = Tensor());
// dlogits = dlosses * (softmax - onehot(target)) on the V real columns, 0 on padding columns. dlogits may be the
// logits tensor itself (in place: saves a (N, Vp) buffer); any other overlap is an error.
Tensor cross_entropy_backward(const Tensor& logits, const Tensor& lse, const Tensor& targets, const Tensor& dlosses,
                              int64_t V = 0, int32_t ignore_index = -100, const Tensor& dlogits = Tensor(),
                              bool accumulate = false);

// ------------------------------------------------------------------------------------------------ weights for decoding
// A weight matrix W (N, K) packed for qmatmul_forward: bfloat16, or int8 with one float16 scale per block of 32
// along K (GGUF's q8_0). `data` holds the bytes of the layout documented in backend/params.h (N padded to 16, K to
// 32 with zeros); N output features, K the reduction.
struct PackedWeight {
    Tensor data;         // uint8 (bytes,), on the CPU
    std::string format;  // "bf16" or "int8"
    int64_t N = 0, K = 0;
    bool defined() const { return data.defined(); }
};
// w: (K, N) float32, the Conv1D layout y = x @ w; with trans, (N, K) (a tied embedding used as the LM head).
// Throws for a format other than "bf16" / "int8", a w that is not 2-D float32 on a backend with qmatmul kernels,
// and (int8) a non-finite weight or a block whose scale overflows float16, naming the argument.
PackedWeight pack_weight(const Tensor& w, const std::string& format, bool trans = false);
// The (N, K) float32 values a packed weight stands for (each weight dequantized).
Tensor unpack_weight(const PackedWeight& w);
// out (..., N) = a (..., K) @ W^T + bias (N), a and out float32: activations are converted once per call (rounded to
// bfloat16, or quantized per block of 32 to int8 with a float32 scale), products accumulate in float32 / int32.
// Backends without qmatmul kernels (CUDA) refuse with an error naming the op.
Tensor qmatmul_forward(const Tensor& a, const PackedWeight& w, const Tensor& bias = Tensor(),
                       const Tensor& out = Tensor());

// ------------------------------------------------------------------------------------------------ optimizer
struct AdamWOptions {
    float lr = 1e-3f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, weight_decay = 0.0f;
    int64_t step = 1;         // 1-based, for the bias corrections
    float grad_scale = 1.0f;  // multiplies the gradient first (1/grad_accum, loss scaling)
    // Weight decay for every element (decay_all), or only inside these sorted, disjoint [begin, end) ranges of the
    // flattened buffers (the rest gets none): one call updates all parameters of a model stored in one flat buffer.
    bool decay_all = true;
    std::vector<std::pair<int64_t, int64_t>> decay_ranges;
    // Gradient clipping with the norm given to adamw_step: clip = min(1, max_norm / (norm * norm_scale + 1e-6))
    // (torch.nn.utils.clip_grad_norm_'s coefficient, float32); max_norm <= 0: no clipping.
    float max_norm = 0.0f;
    float norm_scale = 1.0f;
};
// One fused AdamW step in place on param, m, v (torch.optim.AdamW arithmetic, decoupled weight decay). With `norm`
// (one float32 element on the op's device, e.g. global_norm's `out`) the gradients are clipped by it, and a norm
// (times norm_scale) that is not finite skips the step: param, m and v stay as they were. Nothing waits for the
// device: the clip factor is computed where the norm is.
void adamw_step(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v, const AdamWOptions& opt,
                const Tensor& norm = Tensor());
// sqrt(sum of squares) over all tensors, accumulated in double. The first form returns the number (on CUDA it waits
// for the device); the second writes it, rounded to float32, into `out` (one float32 element on the tensors' device)
// and returns at once.
double global_norm(const std::vector<Tensor>& tensors);
Tensor global_norm(const std::vector<Tensor>& tensors, const Tensor& out);

}  // namespace gptx
