// model_bind.cc — gptx/gpt_spec.h (config rules, parameter table) and gptx/model.h (inference) as gptx._core.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <climits>
#include <cmath>

#include "gptx/error.h"
#include "gptx/model.h"
#include "convert.h"

namespace gptx {
namespace python {

namespace {

using py::arg;
using Ids = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;

// Token ids (any integer sequence, flattened) as int32; values outside int32 are reported like any bad id.
std::vector<int32_t> to_ids(const Ids& a, const char* fn, int64_t V) {
    std::vector<int32_t> out(static_cast<size_t>(a.size()));
    const int64_t* p = a.data();
    for (size_t i = 0; i < out.size(); ++i) {
        if (p[i] < INT32_MIN || p[i] > INT32_MAX)
            throw Error(std::string(fn) + ": token id " + std::to_string(p[i]) + " out of range [0, " +
                        std::to_string(V) + ")");
        out[i] = static_cast<int32_t>(p[i]);
    }
    return out;
}

// A Python value as the config rules see it: an int (numbers.Integral, not bool) is an integer, any other
// numbers.Real a real; everything else is described by its repr.
ConfigValue config_value(py::handle v) {
    py::module_ numbers = py::module_::import("numbers");
    ConfigValue out;
    if (!PyBool_Check(v.ptr()) && py::isinstance(v, numbers.attr("Integral"))) {
        out.kind = ConfigValue::Kind::integer;
        py::int_ i(py::reinterpret_borrow<py::object>(v));
        try {
            out.number = py::float_(i).cast<double>();
        } catch (const py::error_already_set&) {  // beyond a double's range
            out.number = i < py::int_(0) ? -HUGE_VAL : HUGE_VAL;
        }
    } else if (!PyBool_Check(v.ptr()) && py::isinstance(v, numbers.attr("Real"))) {
        out.kind = ConfigValue::Kind::real;
        out.number = py::float_(py::reinterpret_borrow<py::object>(v)).cast<double>();
    } else {
        out.text = py::repr(v).cast<std::string>();
    }
    return out;
}

py::tuple as_tuple(const std::vector<int64_t>& v) { return py::cast(v).cast<py::tuple>(); }

void bind_gpt_spec(py::module_& m) {
    m.attr("VOCAB_MULTIPLE") = kVocabMultiple;
    m.attr("PARAM_ALIGN") = kParamAlign;

    py::class_<GPTConfig>(m, "GPTConfig", "GPT-2 architecture sizes, validated (gptx/gpt_spec.h).")
        .def(py::init([](int64_t n_layer, int64_t n_head, int64_t n_embd, int64_t block_size, int64_t vocab_size,
                         float eps, float dropout) {
                 GPTConfig c{n_layer, n_head, n_embd, block_size, vocab_size, eps, dropout};
                 c.validate();
                 return c;
             }),
             arg("n_layer"), arg("n_head"), arg("n_embd"), arg("block_size"), arg("vocab_size"),
             arg("layer_norm_epsilon") = 1e-5f, arg("dropout") = 0.0f)
        .def_static("from_values", [](py::dict values, bool require_sizes) {
                std::map<std::string, ConfigValue> vs;
                for (auto item : values) vs[py::str(item.first)] = config_value(item.second);
                return config_from_values(vs, require_sizes);
            }, arg("values"), arg("require_sizes"),
            "The config of named values (Python objects), checked by the rules of gptx/gpt_spec.h.")
        .def_readonly("n_layer", &GPTConfig::n_layer)
        .def_readonly("n_head", &GPTConfig::n_head)
        .def_readonly("n_embd", &GPTConfig::n_embd)
        .def_readonly("block_size", &GPTConfig::block_size)
        .def_readonly("vocab_size", &GPTConfig::vocab_size)
        .def_readonly("layer_norm_epsilon", &GPTConfig::layer_norm_epsilon)
        .def_readonly("dropout", &GPTConfig::dropout)
        .def_property_readonly("head_size", &GPTConfig::head_size)
        .def_property_readonly("padded_vocab_size", [](const GPTConfig& c) { return c.padded_vocab_size(); });

    m.def("padded_vocab_size", py::overload_cast<int64_t>(&padded_vocab_size), arg("vocab_size"));
    m.def("config_fields", &config_fields);

    py::class_<ParamSpec>(m, "ParamSpec", "One parameter: name, shape, storage shape, flat-buffer offset, decay.")
        .def_readonly("name", &ParamSpec::name)
        .def_property_readonly("shape", [](const ParamSpec& p) { return as_tuple(p.shape); })
        .def_property_readonly("storage", [](const ParamSpec& p) { return as_tuple(p.storage); })
        .def_readonly("offset", &ParamSpec::offset)
        .def_readonly("decay", &ParamSpec::decay)
        .def_property_readonly("numel", &ParamSpec::numel)
        .def_property_readonly("storage_numel", &ParamSpec::storage_numel)
        .def("__repr__", [](const ParamSpec& p) {
            return "ParamSpec(" + p.name + ", shape=" + py::repr(as_tuple(p.shape)).cast<std::string>() +
                   ", offset=" + std::to_string(p.offset) + ")";
        });
    py::class_<ParamTable>(m, "ParamTable", "Every parameter in Hugging Face order, in one flat buffer of `size`.")
        .def_readonly("params", &ParamTable::params)
        .def_readonly("size", &ParamTable::size)
        .def("at", &ParamTable::at, arg("name"), py::return_value_policy::reference_internal);
    m.def("parameter_table", &parameter_table, arg("config"));
    m.def("kv_cache_shape", [](const GPTConfig& c, int64_t batch, int64_t max_len) {
        return as_tuple(kv_cache_shape(c, batch, max_len));
    }, arg("config"), arg("batch"), arg("max_len") = -1,
       "(n_layer, batch, max_len, n_head, head_size): the KV cache's k and v, and its constructor's order.");
}

}  // namespace

void bind_model(py::module_& m) {
    bind_gpt_spec(m);

    py::class_<GPTModel>(m, "GPTModel", "GPT parameters by Hugging Face name, held without a copy (gptx/model.h).")
        .def(py::init([](const GPTConfig& config, py::dict params) {
                 std::map<std::string, Tensor> ps;
                 for (auto item : params) {
                     std::string name = py::str(item.first);
                     ps[name] = as_tensor(item.second, "GPTModel", name.c_str());
                 }
                 return GPTModel(config, ps);
             }),
             arg("config"), arg("params"))
        .def_property_readonly("config", &GPTModel::config)
        .def_property_readonly("device", [](const GPTModel& g) { return g.device().str(); })
        .def_property_readonly("dtype", [](const GPTModel& g) { return std::string(dtype_name(g.dtype())); })
        .def("param", &GPTModel::param, arg("name"))
        .def("quantize", [](GPTModel& g, const std::string& weights) {
            py::gil_scoped_release nogil;
            g.quantize(weights);
        }, arg("weights"), "Pack the matmul weights for decoding: 'bf16', 'int8', or 'f32' to drop them.")
        .def_property_readonly("weights", &GPTModel::weights)
        .def("packed", &GPTModel::packed, arg("name"), py::return_value_policy::copy);

    py::class_<KVCache>(m, "KVCache", "Keys/values (L, B, Tmax, NH, HS) and per-slot lengths (gptx/model.h).")
        .def(py::init([](py::object k, py::object v, py::object lengths) {
                 return KVCache(as_output(k, "KVCache", "k"), as_output(v, "KVCache", "v"),
                                as_output(lengths, "KVCache", "lengths"));
             }),
             arg("k"), arg("v"), arg("lengths"), "Wrap existing arrays (no copy).")
        .def_static("for_model", &KVCache::for_model, arg("model"), arg("batch"), arg("max_len") = -1)
        .def_property_readonly("k", &KVCache::k)
        .def_property_readonly("v", &KVCache::v)
        .def_property_readonly("lengths", &KVCache::lengths)
        .def("reset", &KVCache::reset, arg("slot") = -1)
        .def("copy_slots", [](const KVCache& c, std::vector<int64_t> dst, std::vector<int64_t> src,
                              int64_t first_row) {
                 py::gil_scoped_release nogil;
                 c.copy_slots(dst, src, first_row);
             },
             arg("dst"), arg("src"), arg("first_row") = 0,
             "Slot dst[i] takes slot src[i]'s length and its rows [first_row, length), all sources read first.");

    m.def("model_prefill", [](const GPTModel& model, const KVCache& cache, int64_t slot, const Ids& ids,
                              bool all_logits) {
        std::vector<int32_t> v = to_ids(ids, "prefill", model.config().vocab_size);
        py::gil_scoped_release nogil;
        return prefill(model, cache, slot, v, all_logits);
    }, arg("model"), arg("cache"), arg("slot"), arg("ids"), arg("all_logits") = false,
       "Logits (T or 1, vocab_size) float32 of ids run into cache slot `slot`.");

    m.def("model_decode", [](const GPTModel& model, const KVCache& cache, std::vector<int64_t> slots,
                             const Ids& tokens) {
        std::vector<int32_t> v = to_ids(tokens, "decode", model.config().vocab_size);
        py::gil_scoped_release nogil;
        return decode(model, cache, slots, v);
    }, arg("model"), arg("cache"), arg("slots"), arg("tokens"), "Logits (n, vocab_size) float32, one token per slot.");

    m.def("model_generate_greedy", [](const GPTModel& model, const Ids& prompt, int64_t max_new_tokens) {
        std::vector<int32_t> v = to_ids(prompt, "generate_greedy", model.config().vocab_size);
        py::gil_scoped_release nogil;
        return generate_greedy(model, v, max_new_tokens);
    }, arg("model"), arg("prompt"), arg("max_new_tokens"));

    m.def("load_model", [](const std::string& path, const std::string& dtype, const std::string& device) {
        return load_model(path, dtype_from_name(dtype), Device::parse(device));
    }, arg("path"), arg("dtype") = "float32", arg("device") = "cpu",
       "A GPTModel from a gptx checkpoint or GPT-2 directory (config.json + model.safetensors).");
    m.def("load_config", &load_config, arg("path"));
    m.def("read_config_file", [](const std::string& path) {
        const ConfigFile f = read_config_file(path);
        py::dict values;
        for (const auto& kv : f.values)
            values[py::str(kv.first)] = kv.second.kind == ConfigValue::Kind::integer
                                            ? py::object(py::int_(static_cast<int64_t>(kv.second.number)))
                                            : py::object(py::float_(kv.second.number));
        return py::make_tuple(f.dir, values);
    }, arg("path"), "(directory, values): config.json's values under GPTConfig's field names, checked as "
       "load_config checks them (the directory is the one holding config.json).");
}

}  // namespace python
}  // namespace gptx
