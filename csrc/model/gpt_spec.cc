// gpt_spec.cc — GPTConfig rules, the parameter table (names, shapes, flat-buffer offsets) and the KV-cache shape.
#include "gptx/gpt_spec.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "gptx/error.h"

namespace gptx {

namespace {

const char* const kSizeFields[] = {"n_layer", "n_head", "n_embd", "block_size", "vocab_size"};

// How a number reads in an error message: integers in full, reals in the shortest form that reads back exactly
// (with ".0" when that form looks like an integer), as Python's repr writes them.
std::string number_text(double x, bool integer) {
    if (std::isnan(x)) return "nan";
    if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
    if (integer && std::fabs(x) < 9e18) return std::to_string(static_cast<long long>(x));
    char buf[48];
    for (int p = 1; p <= 17; ++p) {
        std::snprintf(buf, sizeof buf, "%.*g", p, x);
        if (std::strtod(buf, nullptr) == x) break;
    }
    std::string s = buf;
    if (!integer && s.find_first_of(".e") == std::string::npos) s += ".0";
    return s;
}

std::string value_text(const ConfigValue& v) {
    return v.kind == ConfigValue::Kind::other ? v.text : number_text(v.number, v.kind == ConfigValue::Kind::integer);
}

[[noreturn]] void bad_size(const std::string& field, const std::string& got) {
    throw Error("GPTConfig." + field + " must be a positive integer (at most " + std::to_string(kMaxConfigSize) +
                "), got " + got);
}

// The kernels take epsilon as float32: it must stay positive there. 1e30 bounds it far below float32's 3.4e38;
// a larger epsilon would only make LayerNorm return its bias.
bool epsilon_ok(double x) {
    if (!(x > 0 && x < 1e31)) return false;  // also refuses nan; the bound keeps the float conversion defined
    const float f = static_cast<float>(x);
    return f > 0 && f <= 1e30f;
}

[[noreturn]] void bad_epsilon(const std::string& got) {
    throw Error("GPTConfig.layer_norm_epsilon must be a number > 0 and <= 1e30 that stays > 0 in float32, got " + got);
}

bool dropout_ok(double x) { return x >= 0.0 && x < 1.0 && static_cast<float>(x) < 1.0f; }

[[noreturn]] void bad_dropout(const std::string& got) {
    throw Error("GPTConfig.dropout must be a number in [0, 1) (a probability; 0 turns dropout off), got " + got);
}

int64_t product(const std::vector<int64_t>& shape) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
}

int64_t aligned(int64_t n) { return (n + kParamAlign - 1) / kParamAlign * kParamAlign; }

}  // namespace

int64_t padded_vocab_size(int64_t vocab_size) {
    return (vocab_size + kVocabMultiple - 1) / kVocabMultiple * kVocabMultiple;
}

int64_t GPTConfig::padded_vocab_size() const { return gptx::padded_vocab_size(vocab_size); }

void GPTConfig::validate() const {
    const int64_t sizes[] = {n_layer, n_head, n_embd, block_size, vocab_size};
    for (size_t i = 0; i < 5; ++i)
        if (sizes[i] < 1 || sizes[i] > kMaxConfigSize) bad_size(kSizeFields[i], std::to_string(sizes[i]));
    if (!epsilon_ok(layer_norm_epsilon)) bad_epsilon(number_text(layer_norm_epsilon, false));
    if (!dropout_ok(dropout)) bad_dropout(number_text(dropout, false));
    if (n_embd % n_head)
        throw Error("GPTConfig.n_embd (" + std::to_string(n_embd) + ") must be a multiple of n_head (" +
                    std::to_string(n_head) + ")");
    // Each size fits in int32, but their products need not fit in int64: bound the table (estimated in double)
    // so parameter_table's offsets cannot overflow. 2^60 floats is 4 EiB, far past any memory.
    const double C = static_cast<double>(n_embd);
    const double total = (static_cast<double>(padded_vocab_size()) + static_cast<double>(block_size) + 2) * C +
                         static_cast<double>(n_layer) * (12 * C * C + 13 * C + 12 * kParamAlign) + 16 * kParamAlign;
    if (total > std::ldexp(1.0, 60))
        throw Error("GPTConfig: n_layer=" + std::to_string(n_layer) + ", n_embd=" + std::to_string(n_embd) +
                    ", block_size=" + std::to_string(block_size) + ", vocab_size=" + std::to_string(vocab_size) +
                    " make more than 2^60 parameters");
}

const std::vector<std::string>& config_fields() {
    static const std::vector<std::string> fields = {"n_layer",    "n_head",     "n_embd",
                                                    "block_size", "vocab_size", "layer_norm_epsilon",
                                                    "dropout"};
    return fields;
}

GPTConfig config_from_values(const std::map<std::string, ConfigValue>& values, bool require_sizes) {
    const auto& fields = config_fields();
    std::string unknown;
    for (const auto& kv : values)
        if (std::find(fields.begin(), fields.end(), kv.first) == fields.end())
            unknown += (unknown.empty() ? "'" : ", '") + kv.first + "'";
    if (!unknown.empty()) {
        std::string all;
        for (const auto& f : fields) all += (all.empty() ? "" : ", ") + f;
        throw Error("GPTConfig: unknown key " + unknown + " (the fields are " + all + ")");
    }
    GPTConfig c;
    int64_t* slots[] = {&c.n_layer, &c.n_head, &c.n_embd, &c.block_size, &c.vocab_size};
    for (size_t i = 0; i < 5; ++i) {
        auto it = values.find(kSizeFields[i]);
        if (it == values.end()) {
            if (require_sizes) throw Error(std::string("GPTConfig: missing key '") + kSizeFields[i] + "'");
            continue;
        }
        const ConfigValue& v = it->second;
        if (v.kind != ConfigValue::Kind::integer || !(v.number >= 1 && v.number <= kMaxConfigSize))
            bad_size(kSizeFields[i], value_text(v));
        *slots[i] = static_cast<int64_t>(v.number);
    }
    auto eps = values.find("layer_norm_epsilon");
    if (eps != values.end()) {
        const ConfigValue& v = eps->second;
        if (v.kind == ConfigValue::Kind::other || !epsilon_ok(v.number)) bad_epsilon(value_text(v));
        c.layer_norm_epsilon = static_cast<float>(v.number);
    }
    auto drop = values.find("dropout");
    if (drop != values.end()) {
        const ConfigValue& v = drop->second;
        if (v.kind == ConfigValue::Kind::other || !dropout_ok(v.number)) bad_dropout(value_text(v));
        c.dropout = static_cast<float>(v.number);
    }
    c.validate();
    return c;
}

int64_t ParamSpec::numel() const { return product(shape); }
int64_t ParamSpec::storage_numel() const { return product(storage); }

const ParamSpec& ParamTable::at(const std::string& name) const {
    for (const ParamSpec& p : params)
        if (p.name == name) return p;
    throw Error("parameter table: no parameter named " + name);
}

ParamTable parameter_table(const GPTConfig& c) {
    c.validate();
    const int64_t C = c.n_embd;
    ParamTable t;
    auto add = [&](const std::string& name, std::vector<int64_t> shape) {
        ParamSpec p;
        p.name = name;
        p.storage = shape;
        if (name == "transformer.wte.weight") p.storage[0] = c.padded_vocab_size();
        p.decay = shape.size() >= 2;
        p.shape = std::move(shape);
        p.offset = t.size;
        t.size += aligned(p.storage_numel());
        t.params.push_back(std::move(p));
    };
    add("transformer.wte.weight", {c.vocab_size, C});
    add("transformer.wpe.weight", {c.block_size, C});
    for (int64_t i = 0; i < c.n_layer; ++i) {
        const std::string h = "transformer.h." + std::to_string(i) + ".";
        add(h + "ln_1.weight", {C});
        add(h + "ln_1.bias", {C});
        add(h + "attn.c_attn.weight", {C, 3 * C});
        add(h + "attn.c_attn.bias", {3 * C});
        add(h + "attn.c_proj.weight", {C, C});
        add(h + "attn.c_proj.bias", {C});
        add(h + "ln_2.weight", {C});
        add(h + "ln_2.bias", {C});
        add(h + "mlp.c_fc.weight", {C, 4 * C});
        add(h + "mlp.c_fc.bias", {4 * C});
        add(h + "mlp.c_proj.weight", {4 * C, C});
        add(h + "mlp.c_proj.bias", {C});
    }
    add("transformer.ln_f.weight", {C});
    add("transformer.ln_f.bias", {C});
    return t;
}

std::vector<std::pair<std::string, std::vector<int64_t>>> parameter_shapes(const GPTConfig& config) {
    std::vector<std::pair<std::string, std::vector<int64_t>>> out;
    for (const ParamSpec& p : parameter_table(config).params) out.emplace_back(p.name, p.shape);
    return out;
}

std::vector<int64_t> kv_cache_shape(const GPTConfig& c, int64_t batch, int64_t max_len) {
    c.validate();
    if (batch < 1) throw Error("KVCache: batch must be >= 1, got " + std::to_string(batch));
    if (max_len == -1) max_len = c.block_size;
    if (max_len < 1 || max_len > c.block_size)
        throw Error("KVCache: max_len must be in [1, " + std::to_string(c.block_size) +
                    "] (the model's block_size), got " + std::to_string(max_len));
    return {c.n_layer, batch, max_len, c.n_head, c.head_size()};
}

}  // namespace gptx
