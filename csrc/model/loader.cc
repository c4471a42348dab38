// loader.cc — a gptx checkpoint or Hugging Face GPT-2 directory (config.json + model.safetensors) into a GPTModel.
//
// safetensors: 8-byte little-endian header size, a JSON header {name: {dtype, shape, data_offsets: [begin, end]}},
// then the data. Nothing in the file is trusted: sizes and offsets are checked against the file before reading.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <utility>
#include <vector>

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

std::string shape_text(const std::vector<int64_t>& s) {
    std::string out = "(";
    for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
    return out + (s.size() == 1 ? ",)" : ")");
}

bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

struct Entry {
    DType dtype;
    std::vector<int64_t> shape;
    uint64_t begin = 0, end = 0;
};

DType safetensors_dtype(const std::string& s, const std::string& where) {
    if (s == "F32") return DType::float32;
    if (s == "BF16") return DType::bfloat16;
    if (s == "F16") return DType::float16;
    throw TypeError(where + ": dtype " + s + " is not supported (F32, BF16 or F16)");
}

// "h.0.attn.c_attn.weight" (old GPT-2 files) -> "transformer.h.0.attn.c_attn.weight".
std::string canonical(const std::string& key) {
    if (key.rfind("transformer.", 0) == 0 || key.rfind("lm_head.", 0) == 0) return key;
    return "transformer." + key;
}

class SafetensorsFile {
public:
    explicit SafetensorsFile(const std::string& path) : path_(path), f_(path, std::ios::binary) {
        if (!f_) throw Error(path + ": not found or not readable");
        f_.seekg(0, std::ios::end);
        const uint64_t size = static_cast<uint64_t>(f_.tellg());
        f_.seekg(0);
        unsigned char b[8];
        if (size < 8 || !f_.read(reinterpret_cast<char*>(b), 8)) throw Error(path + ": truncated (no header)");
        uint64_t n = 0;
        for (int i = 7; i >= 0; --i) n = n << 8 | b[i];
        if (n > size - 8 || n > (uint64_t{100} << 20))
            throw Error(path + ": bad header size (truncated or not safetensors)");
        std::string header(n, '\0');
        if (!f_.read(&header[0], static_cast<std::streamsize>(n))) throw Error(path + ": truncated header");
        data_start_ = 8 + n;
        const uint64_t data_size = size - data_start_;
        json::Value h = json::parse(header, path + ": safetensors header");
        if (h.kind != json::Value::Kind::object) throw Error(path + ": the safetensors header is not a JSON object");
        for (const auto& kv : h.obj) {
            if (kv.first == "__metadata__") continue;
            const std::string where = path + ": tensor " + kv.first;
            const json::Value* dt = kv.second.find("dtype");
            const json::Value* sh = kv.second.find("shape");
            const json::Value* off = kv.second.find("data_offsets");
            if (!dt || dt->kind != json::Value::Kind::string || !sh || sh->kind != json::Value::Kind::array || !off ||
                off->kind != json::Value::Kind::array || off->arr.size() != 2)
                throw Error(where + ": malformed header entry");
            Entry e;
            e.dtype = safetensors_dtype(dt->str, where);
            for (const json::Value& d : sh->arr) {
                if (d.kind != json::Value::Kind::number || d.num < 0 || d.num != std::floor(d.num) || d.num > 1e12)
                    throw Error(where + ": bad shape");
                e.shape.push_back(static_cast<int64_t>(d.num));
            }
            for (const json::Value& o : off->arr)
                if (o.kind != json::Value::Kind::number || o.num < 0 || o.num != std::floor(o.num))
                    throw Error(where + ": bad data_offsets");
            e.begin = static_cast<uint64_t>(off->arr[0].num);
            e.end = static_cast<uint64_t>(off->arr[1].num);
            const uint64_t nbytes = static_cast<uint64_t>(checked_numel(e.shape, dtype_size(e.dtype), where)) *
                                    dtype_size(e.dtype);
            if (e.end < e.begin || e.end - e.begin != nbytes)
                throw Error(where + ": data_offsets do not match its shape and dtype");
            if (e.end > data_size)
                throw Error(where + ": data runs past the end of the file (truncated: " + std::to_string(size) +
                            " bytes)");
            entries_[kv.first] = e;
        }
        // The tensors must tile the data region exactly, as the safetensors format requires: a header a few bytes
        // short, or offsets shifted or shared between tensors, would otherwise load as garbage.
        std::vector<std::pair<uint64_t, const std::string*>> spans;
        for (const auto& kv : entries_) spans.emplace_back(kv.second.begin, &kv.first);
        std::sort(spans.begin(), spans.end());
        uint64_t at = 0;
        for (const auto& sp : spans) {
            const Entry& e = entries_.at(*sp.second);
            if (e.begin != at)
                throw Error(path + ": tensor " + *sp.second + " starts at byte " + std::to_string(e.begin) +
                            " of the data but the previous tensors end at " + std::to_string(at) +
                            " (overlapping or missing bytes: corrupt header)");
            at = e.end;
        }
        if (at != data_size)
            throw Error(path + ": the tensors cover " + std::to_string(at) + " of the " + std::to_string(data_size) +
                        " data bytes (corrupt header or trailing bytes)");
        data_bytes_ = data_size;
    }

    uint64_t data_bytes() const { return data_bytes_; }

    const std::map<std::string, Entry>& entries() const { return entries_; }

    // Reads entry `key` into dst (CPU, contiguous, the entry's dtype and numel).
    void read(const std::string& key, const Tensor& dst) {
        const Entry& e = entries_.at(key);
        f_.seekg(static_cast<std::streamoff>(data_start_ + e.begin));
        if (!f_.read(static_cast<char*>(dst.data_ptr()), static_cast<std::streamsize>(e.end - e.begin)))
            throw Error(path_ + ": tensor " + key + ": read failed (truncated?)");
    }

private:
    std::string path_;
    std::ifstream f_;
    uint64_t data_start_ = 0, data_bytes_ = 0;
    std::map<std::string, Entry> entries_;
};

}  // namespace

GPTModel load_model(const std::string& dir_in, DType dtype, Device device) {
    const ConfigFile cf = read_config_file(dir_in);  // a run directory: its latest (or newest verified) step
    const std::string& dir = cf.dir;
    const GPTConfig& c = cf.config;
    verify_manifest(dir);
    const std::string file = dir + "/model.safetensors";
    if (!file_exists(file)) {
        if (file_exists(dir + "/model.safetensors.index.json"))
            throw Error(file + ": not found (sharded safetensors are not read by the C++ loader)");
        throw Error(file + ": not found");
    }
    SafetensorsFile st(file);
    std::map<std::string, std::string> by_name;  // canonical name -> key in the file
    std::string lm_head;
    for (const auto& kv : st.entries()) {
        const std::string name = canonical(kv.first);
        if (ends_with(name, ".attn.bias") || ends_with(name, ".attn.masked_bias")) continue;  // causal-mask buffers
        if (name == "lm_head.weight") {
            lm_head = kv.first;
            continue;
        }
        if (by_name.count(name)) throw Error(file + ": tensor " + name + " appears twice");
        by_name[name] = kv.first;
    }
    // Bound the config by what the file holds before anything is sized from it: a config.json of a few bytes can
    // describe billions of parameters.
    const long double elements = static_cast<long double>(c.vocab_size + c.block_size + 2) * c.n_embd +
                                 static_cast<long double>(c.n_layer) * (12.0L * c.n_embd * c.n_embd + 13.0L * c.n_embd);
    if (static_cast<uint64_t>(c.n_layer) > st.entries().size() || elements * 2 > st.data_bytes())
        throw Error(file + ": holds " + std::to_string(st.entries().size()) + " tensors (" +
                    std::to_string(st.data_bytes()) + " bytes), too few for the " + std::to_string(c.n_layer) +
                    "-layer model config.json describes");
    const ParamTable table = parameter_table(c);
    for (const auto& kv : by_name)
        if (std::none_of(table.params.begin(), table.params.end(),
                         [&](const ParamSpec& p) { return p.name == kv.first; }))
            throw Error(file + ": unexpected tensor " + kv.first + " (not a GPT-2 parameter)");
    std::map<std::string, Tensor> params;
    Tensor wte_host;
    for (const ParamSpec& p : table.params) {
        auto it = by_name.find(p.name);
        if (it == by_name.end()) throw Error(file + ": missing tensor " + p.name);
        const Entry& e = st.entries().at(it->second);
        if (e.shape != p.shape)
            throw Error(file + ": tensor " + p.name + " has shape " + shape_text(e.shape) + ", expected " +
                        shape_text(p.shape));
        // Read into the storage shape (wte: straight into the zero-padded table); the model sees the whole storage.
        Tensor host = p.storage == p.shape ? Tensor::empty(p.storage, e.dtype, Device::cpu())
                                           : Tensor::zeros(p.storage, e.dtype, Device::cpu());
        st.read(it->second, host.slice(0, p.shape[0]));
        if (p.name == "transformer.wte.weight") wte_host = host.slice(0, p.shape[0]);
        const DType want = p.shape.size() == 2 ? dtype : DType::float32;
        Tensor t = host.dtype() == want ? host : host.to(want);
        params[p.name] = t.to(device);
    }
    if (!lm_head.empty()) {  // must be the tied wte
        const Entry& e = st.entries().at(lm_head);
        bool same = e.shape == wte_host.shape() && e.dtype == wte_host.dtype();
        if (same) {
            Tensor h = Tensor::empty(e.shape, e.dtype, Device::cpu());
            st.read(lm_head, h);
            same = std::memcmp(h.data_ptr(), wte_host.data_ptr(), h.nbytes()) == 0;
        }
        if (!same)
            throw Error(file + ": lm_head.weight differs from transformer.wte.weight (an untied LM head is not "
                        "supported)");
    }
    return GPTModel(c, params);
}

}  // namespace gptx
