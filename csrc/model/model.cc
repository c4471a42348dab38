// model.cc — GPTModel (parameters by Hugging Face name, checked against the parameter table) and KVCache storage.
#include <algorithm>
#include <cstring>

#include "gptx/error.h"
#include "gptx/model.h"

namespace gptx {

namespace {

std::string shape_text(const std::vector<int64_t>& s) {
    std::string out = "(";
    for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
    return out + (s.size() == 1 ? ",)" : ")");
}

}  // namespace

// ------------------------------------------------------------------------------------------------ GPTModel
GPTModel::GPTModel(const GPTConfig& config, const std::map<std::string, Tensor>& params) : config_(config) {
    config_.validate();
    const char* who = "GPTModel: ";
    const ParamTable table = parameter_table(config_);
    std::vector<std::string> missing, unexpected;
    for (const ParamSpec& s : table.params)
        if (!params.count(s.name)) missing.push_back(s.name);
    for (const auto& p : params)
        if (std::none_of(table.params.begin(), table.params.end(),
                         [&](const ParamSpec& s) { return s.name == p.first; }))
            unexpected.push_back(p.first);
    if (!missing.empty() || !unexpected.empty()) {
        std::string msg = who;
        auto more = [](const std::vector<std::string>& v) {
            return v.size() > 1 ? " (and " + std::to_string(v.size() - 1) + " more)" : std::string();
        };
        if (!missing.empty()) msg += "missing parameter " + missing.front() + more(missing);
        if (!unexpected.empty())
            msg += std::string(missing.empty() ? "" : "; ") + "unexpected parameter " + unexpected.front() +
                   more(unexpected);
        throw Error(msg);
    }
    const ParamSpec& wte_spec = table.at("transformer.wte.weight");
    const Tensor& wte = params.at(wte_spec.name);
    if (!wte.defined()) throw Error(std::string(who) + "parameter transformer.wte.weight is undefined");
    const DType dt = wte.dtype();
    const Device dev = wte.device();
    if (dt != DType::float32 && dt != DType::bfloat16 && dt != DType::float16)
        throw TypeError(std::string(who) + "parameter transformer.wte.weight has dtype " + dtype_name(dt) +
                        " (expected float32, bfloat16 or float16)");
    for (const ParamSpec& s : table.params) {
        const Tensor& t = params.at(s.name);
        const std::string where = std::string(who) + "parameter " + s.name;
        if (!t.defined()) throw Error(where + " is undefined");
        if (t.shape() != s.shape && t.shape() != s.storage)
            throw Error(where + " has shape " + t.shape_str() + ", expected " + shape_text(s.shape) +
                        (s.storage != s.shape ? " or " + shape_text(s.storage) : ""));
        if (t.device() != dev)
            throw TypeError(where + " is on " + t.device().str() + " but transformer.wte.weight is on " + dev.str());
        const bool ok = s.shape.size() == 2 ? t.dtype() == dt : (t.dtype() == dt || t.dtype() == DType::float32);
        if (!ok)
            throw TypeError(where + " has dtype " + dtype_name(t.dtype()) + "; expected " + dtype_name(dt) +
                            (s.shape.size() == 2 ? " (the dtype of transformer.wte.weight)" : " or float32"));
    }
    const int64_t V = wte_spec.shape[0];
    if (wte.shape() != wte_spec.storage) {
        // One copy into a zero-padded table: the embedding and the LM head run over Vp rows, as in training.
        const int64_t Vp = wte_spec.storage[0], C = wte_spec.storage[1];
        wte_ = Tensor::empty(wte_spec.storage, dt, dev);
        wte_.slice(0, V).copy_from(wte);
        wte_.slice(V, Vp).copy_from(Tensor::zeros({Vp - V, C}, dt, Device::cpu()));
    } else {
        wte_ = wte;
    }
    params_ = params;
    params_["transformer.wte.weight"] = wte_.slice(0, V);
    wpe_ = params_.at("transformer.wpe.weight");
    ln_f_w_ = params_.at("transformer.ln_f.weight");
    ln_f_b_ = params_.at("transformer.ln_f.bias");
    for (int64_t i = 0; i < config_.n_layer; ++i) {
        const std::string h = "transformer.h." + std::to_string(i) + ".";
        auto p = [&](const char* n) { return params_.at(h + n); };
        layers_.push_back({p("ln_1.weight"), p("ln_1.bias"), p("attn.c_attn.weight"), p("attn.c_attn.bias"),
                           p("attn.c_proj.weight"), p("attn.c_proj.bias"), p("ln_2.weight"), p("ln_2.bias"),
                           p("mlp.c_fc.weight"), p("mlp.c_fc.bias"), p("mlp.c_proj.weight"), p("mlp.c_proj.bias")});
    }
}

const Tensor& GPTModel::param(const std::string& name) const {
    auto it = params_.find(name);
    if (it == params_.end()) throw Error("GPTModel.param: no parameter named " + name);
    return it->second;
}

void GPTModel::quantize(const std::string& weights) {
    if (weights != "f32" && weights != "bf16" && weights != "int8")
        throw Error("GPTModel.quantize: argument 'weights' must be 'f32', 'bf16' or 'int8', got '" + weights + "'");
    if (weights != "f32" && device() != Device::cpu())
        throw TypeError("GPTModel.quantize: bf16 / int8 weights run on the CPU only; this model is on " +
                        device().str());
    if (weights != "f32" && dtype() != DType::float32)
        throw TypeError(std::string("GPTModel.quantize: packs float32 weights; this model computes in ") +
                        dtype_name(dtype()));
    for (Layer& l : layers_) {
        if (weights == "f32") {
            l.c_attn_q = l.c_proj_q = l.c_fc_q = l.mlp_proj_q = PackedWeight();
            continue;
        }
        l.c_attn_q = pack_weight(l.c_attn_w, weights);
        l.c_proj_q = pack_weight(l.c_proj_w, weights);
        l.c_fc_q = pack_weight(l.c_fc_w, weights);
        l.mlp_proj_q = pack_weight(l.mlp_proj_w, weights);
    }
    lm_head_q_ = weights == "f32" ? PackedWeight() : pack_weight(wte_, weights, /*trans=*/true);
    weights_ = weights;
}

const PackedWeight& GPTModel::packed(const std::string& name) const {
    if (weights_ == "f32") throw Error("GPTModel.packed: the model is not quantized (call quantize first)");
    if (name == "transformer.wte.weight") return lm_head_q_;
    const std::string pre = "transformer.h.";
    if (name.compare(0, pre.size(), pre) == 0) {
        const size_t dot = name.find('.', pre.size());
        if (dot != std::string::npos) {
            const std::string idx = name.substr(pre.size(), dot - pre.size()), rest = name.substr(dot + 1);
            if (!idx.empty() && idx.find_first_not_of("0123456789") == std::string::npos && idx.size() < 9) {
                const size_t i = std::stoul(idx);
                if (i < layers_.size()) {
                    const Layer& l = layers_[i];
                    if (rest == "attn.c_attn.weight") return l.c_attn_q;
                    if (rest == "attn.c_proj.weight") return l.c_proj_q;
                    if (rest == "mlp.c_fc.weight") return l.c_fc_q;
                    if (rest == "mlp.c_proj.weight") return l.mlp_proj_q;
                }
            }
        }
    }
    throw Error("GPTModel.packed: no packed weight named '" + name + "'");
}

// ------------------------------------------------------------------------------------------------ KVCache
KVCache::KVCache(int64_t n_layer, int64_t batch, int64_t max_len, int64_t n_head, int64_t head_size, DType dtype,
                 Device device) {
    const std::pair<const char*, int64_t> sizes[] = {{"n_layer", n_layer}, {"batch", batch}, {"max_len", max_len},
                                                     {"n_head", n_head},   {"head_size", head_size}};
    for (const auto& s : sizes)
        if (s.second < 1) throw Error(std::string("KVCache: ") + s.first + " must be >= 1, got " +
                                      std::to_string(s.second));
    // Rows past a slot's length are never read, so the storage need not be cleared.
    k_ = Tensor::empty({n_layer, batch, max_len, n_head, head_size}, dtype, device);
    v_ = Tensor::empty({n_layer, batch, max_len, n_head, head_size}, dtype, device);
    lengths_ = Tensor::zeros({batch}, DType::int64, Device::cpu());
}

KVCache KVCache::for_model(const GPTModel& model, int64_t batch, int64_t max_len) {
    const std::vector<int64_t> s = kv_cache_shape(model.config(), batch, max_len);
    return KVCache(s[0], s[1], s[2], s[3], s[4], model.dtype(), model.device());
}

KVCache::KVCache(Tensor k, Tensor v, Tensor lengths) {
    if (!k.defined() || !v.defined() || !lengths.defined()) throw Error("KVCache: k, v and lengths are required");
    if (k.dim() != 5) throw Error("KVCache: k must be (L, B, Tmax, NH, HS), got shape " + k.shape_str());
    if (v.shape() != k.shape()) throw Error("KVCache: v has shape " + v.shape_str() + " but k has " + k.shape_str());
    if (v.dtype() != k.dtype() || v.device() != k.device())
        throw TypeError("KVCache: k and v must have the same dtype and device");
    if (k.read_only() || v.read_only()) throw Error("KVCache: k and v must be writable");
    if (lengths.dtype() != DType::int64 || lengths.device() != Device::cpu())
        throw TypeError("KVCache: lengths must be an int64 CPU tensor");
    if (lengths.shape() != std::vector<int64_t>{k.size(1)})
        throw Error("KVCache: lengths must have shape (" + std::to_string(k.size(1)) + ",), got " +
                    lengths.shape_str());
    if (lengths.read_only()) throw Error("KVCache: lengths must be writable");
    if (k.numel() == 0) throw Error("KVCache: k has no elements: " + k.shape_str());
    k_ = std::move(k);
    v_ = std::move(v);
    lengths_ = std::move(lengths);
}

int64_t KVCache::length(int64_t slot) const {
    if (slot < 0 || slot >= batch())
        throw Error("cache slot " + std::to_string(slot) + " out of range [0, " + std::to_string(batch()) + ")");
    return lengths_.data<int64_t>()[slot];
}

void KVCache::set_length(int64_t slot, int64_t length) const {
    this->length(slot);  // range check
    if (length < 0 || length > max_len())
        throw Error("KVCache.set_length: " + std::to_string(length) + " not in [0, " + std::to_string(max_len()) +
                    "]");
    lengths_.data<int64_t>()[slot] = length;
}

void KVCache::reset(int64_t slot) const {
    if (slot < 0) {
        std::fill(lengths_.data<int64_t>(), lengths_.data<int64_t>() + batch(), int64_t{0});
    } else {
        set_length(slot, 0);
    }
}

void KVCache::copy_slots(const std::vector<int64_t>& dst, const std::vector<int64_t>& src, int64_t first_row) const {
    const std::string what = "KVCache.copy_slots: ";
    if (dst.size() != src.size())
        throw Error(what + "dst has " + std::to_string(dst.size()) + " slots but src has " + std::to_string(src.size()));
    if (first_row < 0) throw Error(what + "first_row must be >= 0, got " + std::to_string(first_row));
    const int64_t B = batch(), L = n_layer(), T = max_len(), W = k_.size(3) * k_.size(4);
    std::vector<char> written(static_cast<size_t>(B), 0);
    for (size_t i = 0; i < dst.size(); i++) {
        for (int64_t s : {dst[i], src[i]})
            if (s < 0 || s >= B)
                throw Error(what + "slot " + std::to_string(s) + " out of range [0, " + std::to_string(B) + ")");
        if (written[dst[i]]) throw Error(what + "slot " + std::to_string(dst[i]) + " appears twice in dst");
        written[dst[i]] = 1;
    }
    int64_t* len = lengths_.data<int64_t>();
    struct Move {
        int64_t dst, src, end;  // rows [first_row, end) of src go to dst
    };
    std::vector<Move> moves;
    for (size_t i = 0; i < dst.size(); i++)
        if (dst[i] != src[i]) moves.push_back({dst[i], src[i], len[src[i]]});
    if (moves.empty()) return;
    std::fill(written.begin(), written.end(), 0);
    for (const Move& m : moves) written[m.dst] = 1;

    // A source that is itself overwritten is saved first; every other source is still intact when it is read.
    std::vector<int64_t> saved(static_cast<size_t>(B), -1);
    int64_t n_saved = 0, most = 0;
    for (const Move& m : moves)
        if (written[m.src] && saved[m.src] < 0) {
            saved[m.src] = n_saved++;
            most = std::max(most, m.end - first_row);
        }
    Tensor k = k_.view({L * B * T, W}), v = v_.view({L * B * T, W});  // (l, slot, position) rows
    auto rows = [&](const Tensor& t, int64_t l, int64_t slot, int64_t n) {
        const int64_t at = (l * B + slot) * T + first_row;
        return t.slice(at, at + n);
    };
    Tensor k_keep, v_keep;  // (n_saved, L, most) rows of W
    if (n_saved && most > 0) {
        k_keep = Tensor::empty({n_saved * L * most, W}, k_.dtype(), k_.device());
        v_keep = Tensor::empty({n_saved * L * most, W}, v_.dtype(), v_.device());
    }
    auto kept = [&](const Tensor& t, int64_t l, int64_t slot, int64_t n) {
        const int64_t at = (saved[slot] * L + l) * most;
        return t.slice(at, at + n);
    };
    for (int64_t s = 0; s < B; s++) {
        const int64_t n = len[s] - first_row;
        if (saved[s] < 0 || n <= 0) continue;
        for (int64_t l = 0; l < L; l++) {
            kept(k_keep, l, s, n).copy_from(rows(k, l, s, n));
            kept(v_keep, l, s, n).copy_from(rows(v, l, s, n));
        }
    }
    for (const Move& m : moves) {
        const int64_t n = m.end - first_row;
        for (int64_t l = 0; n > 0 && l < L; l++) {
            rows(k, l, m.dst, n).copy_from(saved[m.src] < 0 ? rows(k, l, m.src, n) : kept(k_keep, l, m.src, n));
            rows(v, l, m.dst, n).copy_from(saved[m.src] < 0 ? rows(v, l, m.src, n) : kept(v_keep, l, m.src, n));
        }
    }
    for (const Move& m : moves) len[m.dst] = m.end;
}

}  // namespace gptx
