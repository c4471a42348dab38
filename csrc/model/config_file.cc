// config_file.cc — a config.json (gptx checkpoint or Hugging Face GPT-2) into checked GPTConfig values.
//
// The Python layer reads configs through this too (gptx.hf_io), so a file is refused or accepted, with the same
// message, whichever side opens it.
#include <fstream>
#include <sstream>

#include "gptx/error.h"
#include "gptx/model.h"
#include "model/checkpoint_dir.h"
#include "model/json.h"

namespace gptx {

namespace {

bool file_exists(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return static_cast<bool>(f);
}

std::string read_text(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw Error(path + ": not found or not readable");
    std::ostringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

// A JSON value as a message shows it: strings quoted as Python quotes them, the rest as JSON writes it.
std::string json_text(const json::Value& v) {
    switch (v.kind) {
        case json::Value::Kind::null: return "null";
        case json::Value::Kind::boolean: return v.b ? "true" : "false";
        case json::Value::Kind::number: {
            std::ostringstream ss;
            ss << v.num;
            return ss.str();
        }
        case json::Value::Kind::string: return "'" + v.str + "'";
        case json::Value::Kind::array: {
            std::string out = "[";
            for (size_t i = 0; i < v.arr.size(); ++i) out += (i ? ", " : "") + json_text(v.arr[i]);
            return out + "]";
        }
        case json::Value::Kind::object: break;
    }
    return "{...}";
}

// A config.json member as the config rules see it (gpt_spec.h): numbers with their integer-ness, the rest as text.
ConfigValue config_value(const json::Value& v) {
    ConfigValue out;
    if (v.kind == json::Value::Kind::number) {
        out.kind = v.integer ? ConfigValue::Kind::integer : ConfigValue::Kind::real;
        out.number = v.num;
    } else {
        out.text = json_text(v);
    }
    return out;
}

bool is_string(const json::Value* v, const char* s) { return v->kind == json::Value::Kind::string && v->str == s; }

// Hugging Face GPT-2: refuse what this GPT does not compute, then map the sizes onto GPTConfig's field names.
std::map<std::string, ConfigValue> hf_values(const json::Value& cfg, const std::string& file) {
    const json::Value* type = cfg.find("model_type");
    const json::Value* archs = cfg.find("architectures");
    bool gpt2 = !type || is_string(type, "gpt2");
    if (archs && !archs->is_null() && !(archs->kind == json::Value::Kind::array && archs->arr.empty())) {
        bool any = false;
        for (const json::Value& a : archs->arr) any |= is_string(&a, "GPT2LMHeadModel") || is_string(&a, "GPT2Model");
        gpt2 &= any;
    }
    if (!gpt2)
        throw Error(file + ": model_type " + (type ? json_text(*type) : "'gpt2'") + " / architectures " +
                    (archs ? json_text(*archs) : "[]") + " is not GPT-2 (GPT2LMHeadModel)");
    // Both are the tanh approximation of GELU that gptx's kernel computes; "gelu" (erf) and "gelu_fast" differ by
    // up to ~1e-3 and would silently change the model, so they are refused.
    const json::Value* act = cfg.find("activation_function");
    if (act && !is_string(act, "gelu_new") && !is_string(act, "gelu_pytorch_tanh"))
        throw Error(file + ": activation_function " + json_text(*act) +
                    " is not supported (only gelu_new, gelu_pytorch_tanh)");
    struct Flag {
        const char* key;
        bool supported;
        const char* otherwise;
    };
    const Flag flags[] = {{"scale_attn_weights", true, "attention without the 1/sqrt(head_size) scale"},
                          {"scale_attn_by_inverse_layer_idx", false, "attention scaled by 1/layer_idx"},
                          {"add_cross_attention", false, "cross-attention"},
                          {"tie_word_embeddings", true, "an LM head not tied to wte"}};
    for (const Flag& f : flags) {
        const json::Value* v = cfg.find(f.key);
        if (v && !(v->kind == json::Value::Kind::boolean && v->b == f.supported))
            throw Error(file + ": " + f.key + "=" + json_text(*v) + " (" + f.otherwise + ") is not supported");
    }
    std::map<std::string, ConfigValue> values;
    const char* context = cfg.find("n_positions") ? "n_positions" : cfg.find("n_ctx") ? "n_ctx" : nullptr;
    if (!context) throw Error(file + ": missing key 'n_positions'");
    values["block_size"] = config_value(*cfg.find(context));
    for (const char* key : {"n_layer", "n_head", "n_embd", "vocab_size", "layer_norm_epsilon"})
        if (const json::Value* v = cfg.find(key)) values[key] = config_value(*v);
    // GPT-2's three dropout probabilities become gptx's one: the largest of those given (GPT-2's own configs set all
    // three to 0.1; one value keeps the config and `--dropout` a single knob). Each must be a probability in [0, 1);
    // a folder whose three differ is read with the most regularisation its author asked for at any site.
    const json::Value* largest = nullptr;
    for (const char* key : {"resid_pdrop", "embd_pdrop", "attn_pdrop"}) {
        const json::Value* v = cfg.find(key);
        if (!v) continue;
        if (v->kind != json::Value::Kind::number || !(v->num >= 0.0 && v->num < 1.0))
            throw Error(file + ": " + key + "=" + json_text(*v) + " is not a dropout probability in [0, 1)");
        if (!largest || v->num > largest->num) largest = v;
    }
    if (largest) values["dropout"] = config_value(*largest);
    return values;
}

}  // namespace

ConfigFile read_config_file(const std::string& dir_in) {
    ConfigFile out;
    out.dir = resolve_checkpoint_dir(dir_in);
    const std::string file = out.dir + "/config.json";
    if (!file_exists(file)) throw Error(file + ": not found (expected a gptx checkpoint or GPT-2 model directory)");
    json::Value cfg = json::parse(read_text(file), file);
    if (cfg.kind != json::Value::Kind::object) throw Error(file + ": is not a JSON object");
    const bool hf = !cfg.find("block_size");
    if (!hf) {  // gptx's GPTConfig.to_dict(): read as GPTConfig.from_dict reads it
        for (const auto& kv : cfg.obj) out.values[kv.first] = config_value(kv.second);
    } else {
        out.values = hf_values(cfg, file);
    }
    try {
        out.config = config_from_values(out.values, /*require_sizes=*/true);
    } catch (const Error& e) {
        const std::string what = e.what();
        const bool context = hf && what.find("GPTConfig.block_size") != std::string::npos;
        throw Error(file + ": " + what + (context ? " (block_size is the file's n_positions or n_ctx)" : ""));
    }
    const json::Value* inner = cfg.find("n_inner");
    if (inner && !inner->is_null() &&
        !(inner->kind == json::Value::Kind::number && inner->num == 4.0 * static_cast<double>(out.config.n_embd)))
        throw Error(file + ": n_inner=" + json_text(*inner) + " is not supported (only 4 * n_embd = " +
                    std::to_string(4 * out.config.n_embd) + ")");
    return out;
}

GPTConfig load_config(const std::string& dir) { return read_config_file(dir).config; }

}  // namespace gptx
