// forward.cc — the inference pass over the public ops: one-pass prefill, per-sequence decode, greedy generate.
//
// Every buffer lives on the model's device in its activation dtype; the only host reads are of CPU tensors (token
// ids going in, logits coming out). The op sequence is the one the Python sampler has always run, so CPU results
// are bitwise those of the training forward's kernels at the same shapes.
#include <algorithm>
#include <cstring>

#include "gptx/error.h"
#include "gptx/model.h"
#include "gptx/ops.h"

namespace gptx {

namespace {

// ids (R values) as an int32 tensor of `shape` on `device` (built on the host, copied over when needed).
Tensor ids_tensor(const std::vector<int32_t>& ids, const std::vector<int64_t>& shape, Device device) {
    Tensor host = Tensor::empty(shape, DType::int32, Device::cpu());
    std::copy(ids.begin(), ids.end(), host.data<int32_t>());
    if (device == Device::cpu()) return host;
    Tensor dev = Tensor::empty(shape, DType::int32, device);
    dev.copy_from(host);
    return dev;
}

void check_ids(const GPTModel& m, const std::vector<int32_t>& ids, const char* fn) {
    const int64_t V = m.config().vocab_size;
    for (int32_t t : ids)
        if (t < 0 || t >= V)
            throw Error(std::string(fn) + ": token id " + std::to_string(t) + " out of range [0, " +
                        std::to_string(V) + ")");
}

// The cache must be laid out for this model: (n_layer, B, Tmax, n_head, head_size) in its dtype, on its device.
void check_cache(const GPTModel& m, const KVCache& cache, const char* fn) {
    const GPTConfig& c = m.config();
    const Tensor& k = cache.k();
    if (!k.defined()) throw Error(std::string(fn) + ": the cache is empty (default-constructed)");
    if (k.size(0) != c.n_layer || k.size(3) != c.n_head || k.size(4) != c.head_size() || k.size(2) > c.block_size)
        throw Error(std::string(fn) + ": cache of shape " + k.shape_str() + " does not fit the model (expected (" +
                    std::to_string(c.n_layer) + ", B, Tmax <= " + std::to_string(c.block_size) + ", " +
                    std::to_string(c.n_head) + ", " + std::to_string(c.head_size()) + "))");
    if (k.dtype() != m.dtype() || k.device() != m.device())
        throw TypeError(std::string(fn) + ": the cache is " + dtype_name(k.dtype()) + " on " + k.device().str() +
                        " but the model computes in " + dtype_name(m.dtype()) + " on " + m.device().str());
}

// The (Tmax, C) block of layer l, slot s of a cache tensor (L, B, Tmax, NH, HS): contiguous.
Tensor cache_block(const Tensor& kv, int64_t l, int64_t s) {
    const int64_t B = kv.size(1), Tmax = kv.size(2), NH = kv.size(3), HS = kv.size(4);
    return kv.view({kv.size(0) * B, Tmax, NH, HS}).slice(l * B + s, l * B + s + 1);  // (1, Tmax, NH, HS)
}

// x @ w + b through the packed copy of w when the model is quantized (GPTModel::quantize).
Tensor linear(const Tensor& x, const Tensor& w, const PackedWeight& q, const Tensor& b) {
    return q.defined() ? qmatmul_forward(x, q, b) : matmul_forward(x, w, b);
}

// The rest of a block after attention: x + proj(att), then + MLP(LN2(.)). Shapes (..., C).
Tensor mlp_and_proj(const GPTModel::Layer& p, const Tensor& x, const Tensor& att, float eps) {
    Tensor res2 = linear(att, p.c_proj_w, p.c_proj_q, p.c_proj_b);
    add_forward(x, res2, res2);
    Tensor ln2 = layernorm_forward(res2, p.ln_2_w, p.ln_2_b, eps).out;
    Tensor h = linear(ln2, p.c_fc_w, p.c_fc_q, p.c_fc_b);
    gelu_forward(h, h);
    Tensor out = linear(h, p.mlp_proj_w, p.mlp_proj_q, p.mlp_proj_b);
    add_forward(res2, out, out);
    return out;
}

// Final LayerNorm and the tied LM head for rows (n, C) -> float32 CPU logits (n, vocab_size).
Tensor head(const GPTModel& m, const Tensor& rows) {
    const GPTConfig& c = m.config();
    const int64_t n = rows.size(0), V = c.vocab_size, Vp = m.wte_padded().size(0);
    Tensor ln = layernorm_forward(rows, m.ln_f_w(), m.ln_f_b(), c.layer_norm_epsilon).out;
    Tensor logits = m.lm_head_q().defined() ? qmatmul_forward(ln, m.lm_head_q())
                                            : matmul_forward(ln, m.wte_padded(), Tensor(), false, /*trans_b=*/true);  // (n, Vp)
    if (logits.dtype() != DType::float32) logits = logits.to(DType::float32);
    logits = logits.to(Device::cpu());
    if (Vp == V) return logits;
    Tensor out = Tensor::empty({n, V}, DType::float32, Device::cpu());  // drop the padding columns
    for (int64_t i = 0; i < n; ++i)
        std::memcpy(out.data<float>() + i * V, logits.data<float>() + i * Vp, static_cast<size_t>(V) * sizeof(float));
    return out;
}

}  // namespace

Tensor prefill(const GPTModel& model, const KVCache& cache, int64_t slot, const std::vector<int32_t>& ids,
               bool all_logits) {
    const GPTConfig& c = model.config();
    const int64_t T = static_cast<int64_t>(ids.size());
    check_cache(model, cache, "prefill");
    const int64_t p0 = cache.length(slot);  // range-checks the slot
    if (T < 1) throw Error("prefill: no tokens");
    if (T > cache.max_len() - p0)  // not p0 + T: that sum can overflow
        throw Error("prefill: " + std::to_string(p0) + " cached + " + std::to_string(T) +
                    " new tokens exceed the cache length " + std::to_string(cache.max_len()));
    check_ids(model, ids, "prefill");
    const int64_t C = c.n_embd, NH = c.n_head, HS = c.head_size();
    const float eps = c.layer_norm_epsilon;
    Tensor idx = ids_tensor(ids, {1, T}, model.device());
    Tensor x = embedding_forward(idx, model.wte_padded(), model.wpe(), p0);  // (1, T, C)
    for (int64_t l = 0; l < c.n_layer; ++l) {
        const GPTModel::Layer& p = model.layers()[static_cast<size_t>(l)];
        Tensor ln1 = layernorm_forward(x, p.ln_1_w, p.ln_1_b, eps).out;
        Tensor qkv = linear(ln1, p.c_attn_w, p.c_attn_q, p.c_attn_b).view({T, 3 * C});  // parts q | k | v per row
        Tensor kc = cache_block(cache.k(), l, slot), vc = cache_block(cache.v(), l, slot);
        Tensor krows = kc.view({cache.max_len(), C}), vrows = vc.view({cache.max_len(), C});
        Tensor q = Tensor::empty({1, T, NH, HS}, x.dtype(), x.device());
        Tensor q2 = q.view({T, C});
        // one strided copy per part: q into its own buffer, k and v straight into the cache rows
        q2.copy_columns_from(qkv, 0);
        krows.slice(p0, p0 + T).copy_columns_from(qkv, C);
        vrows.slice(p0, p0 + T).copy_columns_from(qkv, 2 * C);
        Tensor att = attention_forward(q, kc, vc, /*causal=*/true, 0.0f, p0 + T).out.view({1, T, C});
        x = mlp_and_proj(p, x, att, eps);
    }
    cache.set_length(slot, p0 + T);
    Tensor rows = x.view({T, C});
    return head(model, all_logits ? rows : rows.slice(T - 1, T));
}

Tensor decode(const GPTModel& model, const KVCache& cache, const std::vector<int64_t>& slots,
              const std::vector<int32_t>& tokens) {
    const GPTConfig& c = model.config();
    const int64_t n = static_cast<int64_t>(slots.size());
    check_cache(model, cache, "decode");
    std::vector<int64_t> pos(slots.size());
    for (size_t i = 0; i < slots.size(); ++i) pos[i] = cache.length(slots[i]);  // range-checks every slot
    std::vector<int64_t> sorted = slots;
    std::sort(sorted.begin(), sorted.end());
    if (n == 0 || static_cast<size_t>(n) != tokens.size() ||
        std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end())
        throw Error("decode: need one token per distinct slot, got " + std::to_string(n) + " slots and " +
                    std::to_string(tokens.size()) + " tokens");
    if (*std::max_element(pos.begin(), pos.end()) >= cache.max_len())
        throw Error("decode: a slot is full (cache length " + std::to_string(cache.max_len()) + ")");
    check_ids(model, tokens, "decode");
    const int64_t C = c.n_embd, NH = c.n_head, HS = c.head_size();
    const float eps = c.layer_norm_epsilon;
    const Device dev = model.device();
    const DType dt = model.dtype();
    // wte[id] + wpe[pos] per row: embedding_forward with each row's own position offset.
    Tensor idx = ids_tensor(tokens, {n, 1}, dev);
    Tensor x = Tensor::empty({n, 1, C}, dt, dev);
    for (int64_t i = 0; i < n; ++i)
        embedding_forward(idx.slice(i, i + 1), model.wte_padded(), model.wpe(), pos[static_cast<size_t>(i)],
                          x.slice(i, i + 1));
    Tensor att = Tensor::empty({n, 1, NH, HS}, dt, dev);
    Tensor q = Tensor::empty({n, 1, NH, HS}, dt, dev);
    Tensor q2 = q.view({n, C});
    for (int64_t l = 0; l < c.n_layer; ++l) {
        const GPTModel::Layer& p = model.layers()[static_cast<size_t>(l)];
        Tensor ln1 = layernorm_forward(x, p.ln_1_w, p.ln_1_b, eps).out;
        Tensor qkv = linear(ln1, p.c_attn_w, p.c_attn_q, p.c_attn_b).view({n, 3 * C});  // parts q | k | v per row
        q2.copy_columns_from(qkv, 0);
        for (int64_t i = 0; i < n; ++i) {  // each sequence writes its own cache slot at its own position
            const int64_t s = slots[static_cast<size_t>(i)], t = pos[static_cast<size_t>(i)];
            Tensor kc = cache_block(cache.k(), l, s), vc = cache_block(cache.v(), l, s);
            const Tensor row = qkv.slice(i, i + 1);
            kc.view({cache.max_len(), C}).slice(t, t + 1).copy_columns_from(row, C);
            vc.view({cache.max_len(), C}).slice(t, t + 1).copy_columns_from(row, 2 * C);
            attention_forward(q.slice(i, i + 1), kc, vc, /*causal=*/true, 0.0f, t + 1, att.slice(i, i + 1));
        }
        x = mlp_and_proj(p, x, att.view({n, 1, C}), eps);
    }
    for (int64_t i = 0; i < n; ++i) cache.set_length(slots[static_cast<size_t>(i)], pos[static_cast<size_t>(i)] + 1);
    return head(model, x.view({n, C}));
}

std::vector<int32_t> generate_greedy(const GPTModel& model, const std::vector<int32_t>& prompt,
                                     int64_t max_new_tokens) {
    if (prompt.empty()) throw Error("generate_greedy: the prompt is empty: give at least one token");
    check_ids(model, prompt, "generate_greedy");
    std::vector<int32_t> out;
    if (max_new_tokens <= 0) return out;
    const int64_t block = model.config().block_size, V = model.config().vocab_size;
    std::vector<int32_t> history(prompt.end() - std::min<int64_t>(block, static_cast<int64_t>(prompt.size())),
                                 prompt.end());
    // The cache holds what the run needs, at most the context (the last token is never fed back).
    const int64_t need = static_cast<int64_t>(history.size()) + max_new_tokens - 1;
    KVCache cache = KVCache::for_model(model, 1, std::max<int64_t>(1, std::min(block, need)));
    Tensor logits = prefill(model, cache, 0, history);
    while (true) {
        const float* z = logits.data<float>();
        const int32_t tok = static_cast<int32_t>(std::max_element(z, z + V) - z);  // the first maximum
        history.push_back(tok);
        out.push_back(tok);
        if (static_cast<int64_t>(out.size()) >= max_new_tokens) return out;
        if (cache.length(0) >= cache.max_len()) {  // full: predict from the last max_len tokens, re-prefilled
            cache.reset(0);
            logits = prefill(model, cache, 0, std::vector<int32_t>(history.end() - cache.max_len(), history.end()));
        } else {
            logits = decode(model, cache, {0}, {tok});
        }
    }
}

}  // namespace gptx
