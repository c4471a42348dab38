// main.cc — loads a gptx checkpoint (config.json + model.safetensors) and generates greedily with the gptx ops.
// Usage: gptx_generate STEP_DIR MAX_NEW_TOKENS ID [ID ...]   (token ids in, token ids out: no tokenizer in C++)
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <gptx/gptx.h>

using gptx::DType;
using gptx::Tensor;

namespace {

std::string read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw std::runtime_error("cannot open " + path);
    std::ostringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

// config.json is one flat object of numbers: find "key" and read the number after its colon.
double json_number(const std::string& json, const std::string& key) {
    size_t at = json.find("\"" + key + "\"");
    if (at == std::string::npos) throw std::runtime_error("config.json: no " + key);
    return std::strtod(json.c_str() + json.find(':', at) + 1, nullptr);
}

// The safetensors header: {"name": {"dtype": "F32", "shape": [..], "data_offsets": [a, b]}, "__metadata__": {..}}.
// A scanner for exactly that shape of JSON (no escapes in names), enough for gptx checkpoints.
struct Scanner {
    const std::string& s;
    size_t i = 0;
    void ws() { while (i < s.size() && std::strchr(" \t\r\n,:", s[i])) ++i; }
    void expect(char c) {
        ws();
        if (i >= s.size() || s[i] != c) throw std::runtime_error(std::string("safetensors header: expected ") + c);
        ++i;
    }
    bool peek(char c) { ws(); return i < s.size() && s[i] == c; }
    std::string str() {
        expect('"');
        size_t end = s.find('"', i);
        std::string out = s.substr(i, end - i);
        i = end + 1;
        return out;
    }
    std::vector<int64_t> ints() {
        std::vector<int64_t> out;
        expect('[');
        while (!peek(']')) {
            char* end;
            out.push_back(std::strtoll(s.c_str() + i, &end, 10));
            i = end - s.c_str();
        }
        ++i;
        return out;
    }
    void skip_object() {
        expect('{');
        for (int depth = 1; depth; ++i) depth += s[i] == '{' ? 1 : s[i] == '}' ? -1 : 0;
    }
};

std::map<std::string, Tensor> load_safetensors(const std::string& path) {
    std::string file = read_file(path);
    uint64_t n = 0;
    std::memcpy(&n, file.data(), 8);  // little-endian u64 header size (x86-64)
    std::string header = file.substr(8, n);
    const char* data = file.data() + 8 + n;
    std::map<std::string, Tensor> out;
    Scanner sc{header};
    sc.expect('{');
    while (!sc.peek('}')) {
        std::string name = sc.str();
        if (name == "__metadata__") {
            sc.skip_object();
            continue;
        }
        std::string dtype;
        std::vector<int64_t> shape, off;
        sc.expect('{');
        while (!sc.peek('}')) {
            std::string key = sc.str();
            if (key == "dtype") dtype = sc.str();
            else if (key == "shape") shape = sc.ints();
            else if (key == "data_offsets") off = sc.ints();
        }
        ++sc.i;
        if (dtype != "F32" || off.size() != 2) throw std::runtime_error(name + ": only F32 tensors are supported");
        Tensor t = Tensor::empty(shape, DType::float32);  // a copy: the file's data need not be 4-byte aligned
        if (static_cast<int64_t>(t.nbytes()) != off[1] - off[0]) throw std::runtime_error(name + ": bad size");
        std::memcpy(t.data_ptr(), data + off[0], t.nbytes());
        out[name] = t;
    }
    return out;
}

struct GPT2 {
    int64_t L, NH, C, maxT, V;
    float eps;
    std::map<std::string, Tensor> w;
    const Tensor& p(const std::string& name) const {
        auto it = w.find(name);
        if (it == w.end()) throw std::runtime_error("checkpoint has no " + name);
        return it->second;
    }

    // Full forward over the whole sequence (no KV cache: the example stays short), logits of the last position.
    Tensor last_logits(const std::vector<int32_t>& ids) const {
        const int64_t T = static_cast<int64_t>(ids.size());
        Tensor idx = Tensor::empty({1, T}, DType::int32);
        std::copy(ids.begin(), ids.end(), idx.data<int32_t>());
        Tensor x = gptx::embedding_forward(idx, p("transformer.wte.weight"), p("transformer.wpe.weight"));
        for (int64_t l = 0; l < L; ++l) {
            const std::string h = "transformer.h." + std::to_string(l) + ".";
            Tensor a = gptx::layernorm_forward(x, p(h + "ln_1.weight"), p(h + "ln_1.bias"), eps).out;
            Tensor qkv = gptx::matmul_forward(a, p(h + "attn.c_attn.weight"), p(h + "attn.c_attn.bias"));
            Tensor y = gptx::attention_forward(qkv.view({1, T, 3, NH, C / NH})).out.view({1, T, C});
            x = gptx::add_forward(x, gptx::matmul_forward(y, p(h + "attn.c_proj.weight"), p(h + "attn.c_proj.bias")));
            Tensor m = gptx::layernorm_forward(x, p(h + "ln_2.weight"), p(h + "ln_2.bias"), eps).out;
            Tensor f = gptx::gelu_forward(gptx::matmul_forward(m, p(h + "mlp.c_fc.weight"), p(h + "mlp.c_fc.bias")));
            x = gptx::add_forward(x, gptx::matmul_forward(f, p(h + "mlp.c_proj.weight"), p(h + "mlp.c_proj.bias")));
        }
        Tensor last = x.view({T, C}).slice(T - 1, T);
        Tensor n = gptx::layernorm_forward(last, p("transformer.ln_f.weight"), p("transformer.ln_f.bias"), eps).out;
        return gptx::matmul_forward(n, p("transformer.wte.weight"), Tensor(), false, /*trans_b=*/true);  // tied head
    }
};

}  // namespace

int main(int argc, char** argv) {
    if (argc < 4) {
        std::fprintf(stderr, "usage: %s STEP_DIR MAX_NEW_TOKENS ID [ID ...]\n", argv[0]);
        return 2;
    }
    try {
        const std::string dir = argv[1];
        const std::string cfg = read_file(dir + "/config.json");
        auto num = [&](const char* key) { return static_cast<int64_t>(json_number(cfg, key)); };
        GPT2 g{num("n_layer"), num("n_head"), num("n_embd"), num("block_size"), num("vocab_size"), 1e-5f,
               load_safetensors(dir + "/model.safetensors")};
        if (cfg.find("\"layer_norm_epsilon\"") != std::string::npos)
            g.eps = static_cast<float>(json_number(cfg, "layer_norm_epsilon"));
        std::vector<int32_t> ids;
        for (int i = 3; i < argc; ++i) ids.push_back(std::atoi(argv[i]));
        for (int n = std::atoi(argv[2]); n > 0 && static_cast<int64_t>(ids.size()) < g.maxT; --n) {
            Tensor logits = g.last_logits(ids);
            const float* z = logits.data<float>();
            ids.push_back(static_cast<int32_t>(std::max_element(z, z + g.V) - z));  // first maximum, like argmax
        }
        for (size_t i = 0; i < ids.size(); ++i) std::printf(i ? " %d" : "%d", ids[i]);
        std::printf("\n");
    } catch (const std::exception& e) {
        std::fprintf(stderr, "gptx_generate: %s\n", e.what());
        return 1;
    }
    return 0;
}
