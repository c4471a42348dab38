// model.h — a GPT-2 model for inference: parameters by Hugging Face name, a KV cache, prefill / decode, a loader.
//
// The one inference forward pass of gptx (the Python sampler calls the same functions): prompt prefill in one pass,
// then one token per sequence per step against a KV cache, the LM head only over the rows asked for.
// - Device-agnostic: every buffer is allocated on the device of the model's parameters, activations and the cache
//   in the dtype of wte (float32 on the CPU; e.g. bfloat16 2-D weights with float32 biases/layernorms on CUDA).
//   Logits always come back as float32 CPU tensors.
// - Errors: gptx::Error (bad value: missing/extra parameter, shape, slot, length, token id; unreadable file) or
//   gptx::TypeError (dtype, device), with a message naming the function and the argument or the parameter.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "gptx/gpt_spec.h"
#include "gptx/ops.h"
#include "gptx/tensor.h"

namespace gptx {

// The parameters of a GPT. Tensors are held, not copied: they may wrap memory owned elsewhere (numpy arrays, a
// training run's flat buffer), and in-place updates of that memory are seen by the next forward pass.
class GPTModel {
public:
    GPTModel() = default;
    // params: exactly the names of parameter_table(config), each with its shape, contiguous, on one device.
    // A parameter may also come in its storage shape: wte as the padded table (padded_vocab_size, C) is used as is
    // (the LM head runs over it); a (vocab_size, C) table with vocab_size not a multiple of 64 is copied once into a
    // zero-padded one.
    // Dtypes: 2-D weights all of wte's dtype (float32, bfloat16 or float16); 1-D ones float32 or wte's dtype.
    // Throws gptx::Error naming the missing / unexpected parameter or the one with a wrong shape.
    GPTModel(const GPTConfig& config, const std::map<std::string, Tensor>& params);

    const GPTConfig& config() const { return config_; }
    // A parameter by Hugging Face name (wte: the (vocab_size, C) rows). Throws gptx::Error for an unknown name.
    const Tensor& param(const std::string& name) const;
    const Tensor& wte_padded() const { return wte_; }  // (padded_vocab_size, C): embedding and tied LM head
    Device device() const { return wte_.device(); }
    DType dtype() const { return wte_.dtype(); }  // the activation and KV-cache dtype

    // The per-layer parameters, in forward order (internal to the forward pass, public for tools).
    struct Layer {
        Tensor ln_1_w, ln_1_b, c_attn_w, c_attn_b, c_proj_w, c_proj_b, ln_2_w, ln_2_b, c_fc_w, c_fc_b, mlp_proj_w,
            mlp_proj_b;
        PackedWeight c_attn_q, c_proj_q, c_fc_q, mlp_proj_q;  // defined once quantize() packed them
    };
    const std::vector<Layer>& layers() const { return layers_; }
    const Tensor& wpe() const { return wpe_; }
    const Tensor& ln_f_w() const { return ln_f_w_; }
    const Tensor& ln_f_b() const { return ln_f_b_; }

    // Weights for decoding: packs the four matmul weights of every layer and the tied LM head (wte, padded rows
    // included) in "bf16" or "int8" (one float16 scale per 32 weights along K, as GGUF's q8_0); prefill and decode
    // then run those matmuls through qmatmul_forward. "f32" drops the packed copies. The float32 parameters stay as
    // they are (the embedding reads wte's rows; Python's forward and checkpoints are unchanged), so it can be undone;
    // packed copies are snapshots, taken again by another quantize() after the parameters change. CPU models only:
    // throws gptx::TypeError elsewhere, gptx::Error for another name.
    void quantize(const std::string& weights);
    const std::string& weights() const { return weights_; }  // "f32", "bf16" or "int8"
    const PackedWeight& lm_head_q() const { return lm_head_q_; }
    // The packed copy of a quantized weight by Hugging Face name ("transformer.wte.weight" is the LM head); throws
    // gptx::Error when the model is not quantized or the name is not one of them.
    const PackedWeight& packed(const std::string& name) const;

private:
    GPTConfig config_;
    std::map<std::string, Tensor> params_;
    Tensor wte_, wpe_, ln_f_w_, ln_f_b_;
    std::vector<Layer> layers_;
    std::string weights_ = "f32";
    PackedWeight lm_head_q_;
};

// Keys and values of every layer for `batch` independent sequences ("slots") of up to max_len positions each.
// k, v: kv_cache_shape's (L, B, Tmax, NH, HS), so k[l][b] is the contiguous (Tmax, NH, HS) block attention reads;
// lengths: (B) int64 on the CPU, the number of valid positions per slot (rows past it are stale and never read).
class KVCache {
public:
    KVCache() = default;
    // New zeroed storage in `dtype` on `device`; the sizes in kv_cache_shape's order. Throws for a size < 1.
    KVCache(int64_t n_layer, int64_t batch, int64_t max_len, int64_t n_head, int64_t head_size, DType dtype,
            Device device);
    // For a model: kv_cache_shape(model.config(), batch, max_len) (max_len -1: block_size), its dtype and device.
    static KVCache for_model(const GPTModel& model, int64_t batch, int64_t max_len = -1);
    // Wraps existing tensors (no copy): k and v (L, B, Tmax, NH, HS) alike, lengths (B) int64 CPU. Writes through
    // prefill / decode land in them.
    KVCache(Tensor k, Tensor v, Tensor lengths);

    const Tensor& k() const { return k_; }
    const Tensor& v() const { return v_; }
    const Tensor& lengths() const { return lengths_; }
    int64_t n_layer() const { return k_.size(0); }
    int64_t batch() const { return k_.size(1); }
    int64_t max_len() const { return k_.size(2); }
    int64_t length(int64_t slot) const;               // throws gptx::Error for a slot out of range
    void set_length(int64_t slot, int64_t length) const;  // 0 <= length <= max_len
    void reset(int64_t slot = -1) const;                 // forget one slot (all when slot < 0); memory is kept
    // Slot dst[i] takes the length of slot src[i] and its keys/values at positions [first_row, that length), all at
    // once: every source is read before any destination is written, so the same slot may be a source and a
    // destination, and a source may feed several destinations (beam search reorders its beams this way after each
    // step). Rows below first_row are left as they are: the caller knows they already agree (a prompt every beam
    // shares). dst must hold distinct slots; src[i] == dst[i] copies nothing. Works on any device (device copies).
    // Throws gptx::Error for a count mismatch, a slot out of range, a repeated destination or first_row < 0.
    void copy_slots(const std::vector<int64_t>& dst, const std::vector<int64_t>& src, int64_t first_row = 0) const;

private:
    Tensor k_, v_, lengths_;
};

// Runs ids (T >= 1 token ids in [0, vocab_size)) through the model in one pass at positions length(slot) ..
// length(slot) + T - 1, appending their keys/values to the cache slot (a slot may be prefilled in chunks).
// Returns float32 CPU logits (T, vocab_size) with all_logits, else (1, vocab_size) for the last token only.
// Throws gptx::Error if the slot is out of range, an id is out of range or the tokens exceed the cache length.
Tensor prefill(const GPTModel& model, const KVCache& cache, int64_t slot, const std::vector<int32_t>& ids,
               bool all_logits = false);

// One new token for each of n distinct slots (tokens[i] for slots[i], at position length(slots[i])).
// Returns float32 CPU logits (n, vocab_size). The matmuls run over all n rows together; attention per sequence.
// Throws gptx::Error for repeated or out-of-range slots, a count mismatch, a bad token or a full slot.
Tensor decode(const GPTModel& model, const KVCache& cache, const std::vector<int64_t>& slots,
              const std::vector<int32_t>& tokens);

// Greedy continuation of one prompt (argmax, the first maximum on ties; Python's generate(temperature=0)): the
// max_new_tokens new ids. Past block_size it slides: each further token is predicted from the last block_size
// tokens (Python's sliding_window=True). Throws gptx::Error for an empty prompt or a bad token id.
std::vector<int32_t> generate_greedy(const GPTModel& model, const std::vector<int32_t>& prompt,
                                     int64_t max_new_tokens);

// Loads a gptx checkpoint directory (config.json with gptx's GPTConfig keys + model.safetensors, as
// gptx.save_checkpoint writes; a run directory is followed through its latest.json, or to its newest step folder
// whose manifest verifies when latest.json is missing or a newer complete step exists, as gptx.load_checkpoint
// does) or a Hugging Face GPT-2 directory (config.json with n_positions, as save_pretrained writes). Tensors in
// F32, BF16 or F16 are converted to `dtype` (2-D weights; 1-D ones stay float32) and placed on `device`. Old names
// without "transformer." and the causal-mask buffers ".attn.bias" are accepted; a tied "lm_head.weight" is skipped.
// Throws gptx::Error naming the file for a missing, unreadable, truncated or inconsistent file, an unsupported
// architecture or a bad parameter.
// A gptx checkpoint's manifest.json is checked first (every file present, of the listed size and sha256), and the
// safetensors tensors must tile its data region exactly: corrupted weights are an error, never a model.
GPTConfig load_config(const std::string& dir);
GPTModel load_model(const std::string& dir, DType dtype = DType::float32, Device device = Device::cpu());

// What load_config reads: the directory holding config.json (a run directory resolved as load_model does), the file's
// values under GPTConfig's field names as written (layer_norm_epsilon keeps its double value; absent when the file
// has none), and the config they make. The rules are config_from_values' plus, for a Hugging Face file, the
// architecture refusals (model_type, architectures, activation_function, attention flags, n_inner).
struct ConfigFile {
    std::string dir;
    std::map<std::string, ConfigValue> values;
    GPTConfig config;
};
ConfigFile read_config_file(const std::string& dir);

}  // namespace gptx
