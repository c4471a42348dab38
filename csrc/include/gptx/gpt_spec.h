// gpt_spec.h — the one definition of gptx's GPT: config rules, the parameter table, the KV-cache layout.
//
// Everything that says what a valid GPT is and how its parameters are laid out lives here; the C++ model and loader
// and the Python layer (gptx.config, through gptx._core) all read it, so the two sides cannot drift.
// Errors: gptx::Error naming the field ("GPTConfig.n_head ...") or the argument.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace gptx {

// wte is padded to a multiple of 64 rows (50257 -> 50304) so the LM-head matmul's N dimension tiles evenly; the
// padding rows are zero and their logits are never read.
constexpr int64_t kVocabMultiple = 64;
// Every parameter starts on a 16-float (64-byte) boundary inside the flat buffer: a cache line, and the widest SIMD
// load (AVX-512) never straddles two parameters. Checkpoints and resume depend on this layout staying as it is.
constexpr int64_t kParamAlign = 16;
// Largest value of any size field: token ids and positions are int32 in the kernels.
constexpr int64_t kMaxConfigSize = 2147483647;

// The architecture (GPT-2: learned positions, pre-LayerNorm blocks, tanh GELU, LM head tied to wte).
struct GPTConfig {
    int64_t n_layer = 12;
    int64_t n_head = 12;
    int64_t n_embd = 768;
    int64_t block_size = 1024;  // the context: wpe has this many rows
    int64_t vocab_size = 50257;
    float layer_norm_epsilon = 1e-5f;
    // Training-time dropout probability in [0, 1) at GPT-2's three places (embeddings, attention probabilities,
    // residual branches); inference ignores it. One value for the three sites: see config_file.cc for how a
    // Hugging Face config's resid_pdrop / embd_pdrop / attn_pdrop map onto it.
    float dropout = 0.0f;

    int64_t head_size() const { return n_embd / n_head; }
    int64_t padded_vocab_size() const;
    // The rules (the same ones config_from_values applies): each size in [1, kMaxConfigSize]; n_embd a multiple of
    // n_head; layer_norm_epsilon > 0 and <= 1e30; dropout in [0, 1); the parameter table small enough that its
    // offsets fit in int64.
    // Throws gptx::Error naming the field.
    void validate() const;
};

// vocab_size rounded up to a multiple of kVocabMultiple.
int64_t padded_vocab_size(int64_t vocab_size);

// The GPTConfig field names, in declaration order (the keys of a gptx config.json and of Python's to_dict()).
const std::vector<std::string>& config_fields();

// One config value as its source wrote it (a config.json member, a Python keyword argument), before any check.
struct ConfigValue {
    enum class Kind { integer, real, other } kind = Kind::other;
    double number = 0;  // integer, real: the value (an integer too large for a double is +-inf)
    std::string text;   // other: how the source writes it ("true", "None", "'12'"), for the error message
};

// Builds a GPTConfig from named values and validates it. Integer fields need an integer (a JSON literal without
// '.' or exponent; a Python int, not bool): 64.0 is refused. layer_norm_epsilon and dropout need a number (integer or
// real): not a boolean, string or null; dropout may be absent (0: files written before it existed). Absent fields take GPTConfig{}'s defaults, except that with require_sizes the five
// sizes must be present (a config file: silently defaulting a size would describe another model); a key that is
// not a field is an error. Throws gptx::Error naming the key or the field.
GPTConfig config_from_values(const std::map<std::string, ConfigValue>& values, bool require_sizes);

// One parameter of the GPT.
struct ParamSpec {
    std::string name;              // Hugging Face GPT2LMHeadModel name ("transformer.h.0.attn.c_attn.weight")
    std::vector<int64_t> shape;    // as the model exposes it; Conv1D weights are (in, out); wte is (vocab_size, C)
    std::vector<int64_t> storage;  // as stored: shape, except wte (padded_vocab_size, C)
    int64_t offset = 0;            // elements from the start of the flat buffer; a multiple of kParamAlign
    bool decay = false;            // weight decay applies: the >= 2-D parameters (matmul weights, embeddings)

    int64_t numel() const;
    int64_t storage_numel() const;
};

// All parameters in Hugging Face GPT2LMHeadModel order, each at its aligned offset in one flat buffer of `size`
// elements (every storage rounded up to kParamAlign: parameters and their gradients live in buffers this size).
struct ParamTable {
    std::vector<ParamSpec> params;
    int64_t size = 0;

    // The entry named `name`; throws gptx::Error for an unknown name.
    const ParamSpec& at(const std::string& name) const;
};

// The table for a config (validated first).
ParamTable parameter_table(const GPTConfig& config);

// (name, shape) of every parameter, in table order.
std::vector<std::pair<std::string, std::vector<int64_t>>> parameter_shapes(const GPTConfig& config);

// The shape of the KV cache's k and v: (n_layer, batch, max_len, n_head, head_size), so k[l][b] is the contiguous
// (max_len, n_head, head_size) block attention reads. This order is also the order of every KV-cache constructor's
// size arguments. max_len -1 means block_size. Throws gptx::Error for batch < 1 or max_len outside [1, block_size].
std::vector<int64_t> kv_cache_shape(const GPTConfig& config, int64_t batch, int64_t max_len = -1);

}  // namespace gptx
