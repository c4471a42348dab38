// ops_bind.cc — the ops as gptx._core functions: convert arguments (numpy or gptx.Tensor), release the GIL, call.
#include <pybind11/stl.h>

#include "gptx/error.h"
#include "gptx/ops.h"
#include "convert.h"

namespace gptx {
namespace python {

namespace {
using py::arg;
const py::none None;
}  // namespace

namespace {
// Python's scale: None for 1/sqrt(HS); anything given must be a positive number (the C++ op reads 0 as the default,
// so an explicit 0 or a negative scale would otherwise silently become it).
float attention_scale(py::handle scale, const char* op) {
    if (scale.is_none()) return 0.0f;
    const double s = scale.cast<double>();
    if (!(s > 0.0))
        throw Error(std::string(op) + ": argument 'scale' must be a positive number (omit it for 1/sqrt(HS)), got " +
                    std::string(py::str(scale)));
    return static_cast<float>(s);
}

// Python's dropout argument: None (no dropout) or a gptx.ops.Dropout.
Dropout as_dropout(py::handle d, const char* op) {
    if (d.is_none()) return Dropout();
    if (!py::isinstance<Dropout>(d))
        throw TypeError(std::string(op) + ": argument 'dropout' must be a gptx.ops.Dropout or None, got " +
                        std::string(py::str(py::type::of(d).attr("__name__"))));
    return d.cast<Dropout>();
}
}  // namespace

void bind_ops(py::module_& m) {
    py::class_<Dropout>(m, "Dropout", "Dropout probability p and the key of its mask: (seed, step, layer, site).")
        .def(py::init([](float p, uint64_t seed, int64_t step, int64_t layer, int64_t site) {
                 Dropout d;
                 d.p = p;
                 d.seed = seed;
                 d.step = step;
                 d.layer = layer;
                 d.site = site;
                 return d;
             }),
             arg("p"), arg("seed") = 0, arg("step") = 0, arg("layer") = 0, arg("site") = 0)
        .def_readonly("p", &Dropout::p)
        .def_readonly("seed", &Dropout::seed)
        .def_readonly("step", &Dropout::step)
        .def_readonly("layer", &Dropout::layer)
        .def_readonly("site", &Dropout::site)
        .def("__repr__", [](const Dropout& d) {
            return "Dropout(p=" + std::string(py::str(py::float_(d.p))) + ", seed=" + std::to_string(d.seed) +
                   ", step=" + std::to_string(d.step) + ", layer=" + std::to_string(d.layer) +
                   ", site=" + std::to_string(d.site) + ")";
        });

    m.def("matmul_forward", [](py::object a, py::object b, py::object bias, bool trans_a, bool trans_b, py::object out,
                               bool accumulate) {
        const char* op = "matmul_forward";
        Tensor ta = as_tensor(a, op, "a"), tb = as_tensor(b, op, "b"), tbias = as_tensor(bias, op, "bias", true);
        Tensor tout = as_output(out, op, "out");
        py::gil_scoped_release nogil;
        return matmul_forward(ta, tb, tbias, trans_a, trans_b, tout, accumulate);
    }, arg("a"), arg("b"), arg("bias") = None, arg("trans_a") = false, arg("trans_b") = false, arg("out") = None,
       arg("accumulate") = false,
       "out = op(a) @ op(b) (+ bias) (+ out if accumulate); op transposes the last two dims when asked.");

    py::class_<PackedWeight>(m, "PackedWeight",
                             "A weight W (N, K) packed for qmatmul_forward in bf16 or int8 (q8_0 blocks): see pack_weight.")
        .def_readonly("data", &PackedWeight::data)
        .def_readonly("format", &PackedWeight::format)
        .def_readonly("N", &PackedWeight::N)
        .def_readonly("K", &PackedWeight::K)
        .def_property_readonly("nbytes", [](const PackedWeight& w) { return w.data.nbytes(); })
        .def("__repr__", [](const PackedWeight& w) {
            return "PackedWeight(format='" + w.format + "', N=" + std::to_string(w.N) + ", K=" + std::to_string(w.K) +
                   ", nbytes=" + std::to_string(w.data.nbytes()) + ")";
        });

    m.def("pack_weight", [](py::object w, const std::string& format, bool trans) {
        Tensor tw = as_tensor(w, "pack_weight", "w");
        py::gil_scoped_release nogil;
        return pack_weight(tw, format, trans);
    }, arg("w"), arg("format"), arg("trans") = false,
       "Pack w (K, N) float32 (or (N, K) with trans) for qmatmul_forward: format 'bf16' or 'int8'.");

    m.def("unpack_weight", [](const PackedWeight& w) {
        py::gil_scoped_release nogil;
        return unpack_weight(w);
    }, arg("w"), "The (N, K) float32 values of a packed weight.");

    m.def("qmatmul_forward", [](py::object a, const PackedWeight& w, py::object bias, py::object out) {
        const char* op = "qmatmul_forward";
        Tensor ta = as_tensor(a, op, "a"), tbias = as_tensor(bias, op, "bias", true);
        Tensor tout = as_output(out, op, "out");
        py::gil_scoped_release nogil;
        return qmatmul_forward(ta, w, tbias, tout);
    }, arg("a"), arg("w"), arg("bias") = None, arg("out") = None,
       "out (..., N) = a (..., K) @ W^T (+ bias) with W a PackedWeight (activations converted once per call).");

    m.def("matmul_backward", [](py::object dout, py::object a, py::object b, bool trans_a, bool trans_b, bool need_da,
                                bool need_db, bool need_dbias, py::object da, py::object db, py::object dbias,
                                bool accumulate) {
        const char* op = "matmul_backward";
        Tensor td = as_tensor(dout, op, "dout"), ta = as_tensor(a, op, "a"), tb = as_tensor(b, op, "b");
        Tensor tda = as_output(da, op, "da"), tdb = as_output(db, op, "db"), tdbias = as_output(dbias, op, "dbias");
        MatmulGrads g;
        {
            py::gil_scoped_release nogil;
            g = matmul_backward(td, ta, tb, trans_a, trans_b, need_da || tda.defined(), need_db || tdb.defined(),
                                need_dbias || tdbias.defined(), tda, tdb, tdbias, accumulate);
        }
        auto opt = [](const Tensor& t) { return t.defined() ? py::cast(t) : py::object(py::none()); };
        return py::make_tuple(opt(g.da), opt(g.db), opt(g.dbias));
    }, arg("dout"), arg("a"), arg("b"), arg("trans_a") = false, arg("trans_b") = false, arg("need_da") = true,
       arg("need_db") = true, arg("need_dbias") = false, arg("da") = None, arg("db") = None, arg("dbias") = None,
       arg("accumulate") = false, "Gradients (da, db, dbias) of matmul_forward; None for those not asked for.");

    m.def("bias_backward", [](py::object dout, py::object dbias, bool accumulate) {
        const char* op = "bias_backward";
        Tensor td = as_tensor(dout, op, "dout"), tb = as_output(dbias, op, "dbias");
        py::gil_scoped_release nogil;
        return bias_backward(td, tb, accumulate);
    }, arg("dout"), arg("dbias") = None, arg("accumulate") = false);

    m.def("softmax_forward", [](py::object inp, float scale, bool causal, py::object out) {
        const char* op = "softmax_forward";
        Tensor ti = as_tensor(inp, op, "inp"), to = as_output(out, op, "out");
        py::gil_scoped_release nogil;
        return softmax_forward(ti, scale, causal, to);
    }, arg("inp"), arg("scale") = 1.0f, arg("causal") = false, arg("out") = None);

    m.def("softmax_backward", [](py::object dout, py::object out, float scale, py::object dinp) {
        const char* op = "softmax_backward";
        Tensor td = as_tensor(dout, op, "dout"), to = as_tensor(out, op, "out"), ti = as_output(dinp, op, "dinp");
        py::gil_scoped_release nogil;
        return softmax_backward(td, to, scale, ti);
    }, arg("dout"), arg("out"), arg("scale") = 1.0f, arg("dinp") = None);

    m.def("attention_forward", [](py::object q, py::object k, py::object v, bool causal, py::object scale_,
                                  int64_t kv_len, py::object out, py::object lse, py::object dropout) {
        const char* op = "attention_forward";
        const float scale = attention_scale(scale_, op);
        const Dropout drop = as_dropout(dropout, op);
        Tensor tq = as_tensor(q, op, "q"), tk = as_tensor(k, op, "k", true), tv = as_tensor(v, op, "v", true);
        Tensor to = as_output(out, op, "out"), tl = as_output(lse, op, "lse");
        AttentionOutputs r;
        {
            py::gil_scoped_release nogil;
            r = attention_forward(tq, tk, tv, causal, scale, kv_len, to, tl, drop);
        }
        return py::make_tuple(r.out, r.lse);
    }, arg("q"), arg("k") = None, arg("v") = None, arg("causal") = true, arg("scale") = None, arg("kv_len") = -1,
       arg("out") = None, arg("lse") = None, arg("dropout") = None,
       "(out, lse). q (B, Tq, NH, HS) with k, v (B, Tk, NH, HS); or packed qkv (B, T, 3, NH, HS) as q alone. "
       "dropout: a Dropout applied to the probabilities inside the kernel.");

    m.def("attention_backward", [](py::object dout, py::object q, py::object k, py::object v, py::object out,
                                   py::object lse, bool causal, py::object scale_, int64_t kv_len, py::object dq,
                                   py::object dk, py::object dv, bool accumulate, py::object dropout) {
        const char* op = "attention_backward";
        const float scale = attention_scale(scale_, op);
        const Dropout drop = as_dropout(dropout, op);
        Tensor tdo = as_tensor(dout, op, "dout"), tq = as_tensor(q, op, "q"), tk = as_tensor(k, op, "k", true),
               tv = as_tensor(v, op, "v", true), to = as_tensor(out, op, "out"), tl = as_tensor(lse, op, "lse");
        Tensor tdq = as_output(dq, op, "dq"), tdk = as_output(dk, op, "dk"), tdv = as_output(dv, op, "dv");
        AttentionGrads g;
        {
            py::gil_scoped_release nogil;
            g = attention_backward(tdo, tq, tk, tv, to, tl, causal, scale, kv_len, tdq, tdk, tdv, accumulate, drop);
        }
        auto opt = [](const Tensor& t) { return t.defined() ? py::cast(t) : py::object(py::none()); };
        return py::make_tuple(opt(g.dq), opt(g.dk), opt(g.dv));
    }, arg("dout"), arg("q"), arg("k"), arg("v"), arg("out"), arg("lse"), arg("causal") = true, arg("scale") = None,
       arg("kv_len") = -1, arg("dq") = None, arg("dk") = None, arg("dv") = None, arg("accumulate") = false,
       arg("dropout") = None,
       "(dq, dk, dv); in the packed layout (k = v = None) dq is dqkv and dk = dv = None. dropout: the forward's.");

    m.def("layernorm_forward", [](py::object inp, py::object weight, py::object bias, float eps, py::object out,
                                  py::object mean, py::object rstd) {
        const char* op = "layernorm_forward";
        Tensor ti = as_tensor(inp, op, "inp"), tw = as_tensor(weight, op, "weight"), tb = as_tensor(bias, op, "bias");
        Tensor to = as_output(out, op, "out"), tm = as_output(mean, op, "mean"), tr = as_output(rstd, op, "rstd");
        LayernormOutputs r;
        {
            py::gil_scoped_release nogil;
            r = layernorm_forward(ti, tw, tb, eps, to, tm, tr);
        }
        return py::make_tuple(r.out, r.mean, r.rstd);
    }, arg("inp"), arg("weight"), arg("bias"), arg("eps") = 1e-5f, arg("out") = None, arg("mean") = None,
       arg("rstd") = None, "(out, mean, rstd)");

    m.def("layernorm_backward", [](py::object dout, py::object inp, py::object weight, py::object mean,
                                   py::object rstd, py::object dinp, py::object dweight, py::object dbias,
                                   bool accumulate) {
        const char* op = "layernorm_backward";
        Tensor tdo = as_tensor(dout, op, "dout"), ti = as_tensor(inp, op, "inp"), tw = as_tensor(weight, op, "weight"),
               tm = as_tensor(mean, op, "mean"), tr = as_tensor(rstd, op, "rstd");
        Tensor tdi = as_output(dinp, op, "dinp"), tdw = as_output(dweight, op, "dweight"),
               tdb = as_output(dbias, op, "dbias");
        LayernormGrads g;
        {
            py::gil_scoped_release nogil;
            g = layernorm_backward(tdo, ti, tw, tm, tr, tdi, tdw, tdb, accumulate);
        }
        return py::make_tuple(g.dinp, g.dweight, g.dbias);
    }, arg("dout"), arg("inp"), arg("weight"), arg("mean"), arg("rstd"), arg("dinp") = None, arg("dweight") = None,
       arg("dbias") = None, arg("accumulate") = false, "(dinp, dweight, dbias)");

    m.def("gelu_forward", [](py::object inp, py::object out) {
        Tensor ti = as_tensor(inp, "gelu_forward", "inp"), to = as_output(out, "gelu_forward", "out");
        py::gil_scoped_release nogil;
        return gelu_forward(ti, to);
    }, arg("inp"), arg("out") = None);

    m.def("gelu_backward", [](py::object dout, py::object inp, py::object dinp, bool accumulate) {
        const char* op = "gelu_backward";
        Tensor td = as_tensor(dout, op, "dout"), ti = as_tensor(inp, op, "inp"), tdi = as_output(dinp, op, "dinp");
        py::gil_scoped_release nogil;
        return gelu_backward(td, ti, tdi, accumulate);
    }, arg("dout"), arg("inp"), arg("dinp") = None, arg("accumulate") = false);

    m.def("embedding_forward", [](py::object idx, py::object wte, py::object wpe, int64_t pos_offset, py::object out) {
        const char* op = "embedding_forward";
        Tensor ti = as_tensor(idx, op, "idx"), tte = as_tensor(wte, op, "wte"), tpe = as_tensor(wpe, op, "wpe");
        Tensor to = as_output(out, op, "out");
        py::gil_scoped_release nogil;
        return embedding_forward(ti, tte, tpe, pos_offset, to);
    }, arg("idx"), arg("wte"), arg("wpe"), arg("pos_offset") = 0, arg("out") = None);

    m.def("embedding_backward", [](py::object dout, py::object idx, py::object dwte, py::object dwpe,
                                   int64_t pos_offset) {
        const char* op = "embedding_backward";
        Tensor td = as_tensor(dout, op, "dout"), ti = as_tensor(idx, op, "idx");
        Tensor tte = as_tensor(dwte, op, "dwte", false, true), tpe = as_tensor(dwpe, op, "dwpe", false, true);
        py::gil_scoped_release nogil;
        embedding_backward(td, ti, tte, tpe, pos_offset);
    }, arg("dout"), arg("idx"), arg("dwte"), arg("dwpe"), arg("pos_offset") = 0,
       "dwte and dwpe accumulate (+=) the gradient.");

    m.def("add_forward", [](py::object a, py::object b, py::object out) {
        const char* op = "add_forward";
        Tensor ta = as_tensor(a, op, "a"), tb = as_tensor(b, op, "b"), to = as_output(out, op, "out");
        py::gil_scoped_release nogil;
        return add_forward(ta, tb, to);
    }, arg("a"), arg("b"), arg("out") = None);

    m.def("dropout_forward", [](py::object inp, py::object dropout, py::object residual, py::object out) {
        const char* op = "dropout_forward";
        const Dropout drop = as_dropout(dropout, op);
        Tensor ti = as_tensor(inp, op, "inp"), tr = as_tensor(residual, op, "residual", true);
        Tensor to = as_output(out, op, "out");
        py::gil_scoped_release nogil;
        return dropout_forward(ti, drop, tr, to);
    }, arg("inp"), arg("dropout"), arg("residual") = None, arg("out") = None,
       "out = (residual +) inp * mask / (1 - p); rows of the mask are inp's rows over its last dim.");

    m.def("dropout_backward", [](py::object dout, py::object dropout, py::object dinp) {
        const char* op = "dropout_backward";
        const Dropout drop = as_dropout(dropout, op);
        Tensor td = as_tensor(dout, op, "dout"), ti = as_output(dinp, op, "dinp");
        py::gil_scoped_release nogil;
        return dropout_backward(td, drop, ti);
    }, arg("dout"), arg("dropout"), arg("dinp") = None, "dinp = dout * mask / (1 - p), the forward's mask.");

    m.def("cross_entropy_forward", [](py::object logits, py::object targets, int64_t V, int32_t ignore_index,
                                      py::object losses, py::object lse, py::object loss) {
        const char* op = "cross_entropy_forward";
        Tensor tl = as_tensor(logits, op, "logits"), tt = as_tensor(targets, op, "targets");
        Tensor tlo = as_output(losses, op, "losses"), tls = as_output(lse, op, "lse"), tmean = as_output(loss, op, "loss");
        CrossEntropyOutputs r;
        {
            py::gil_scoped_release nogil;
            r = cross_entropy_forward(tl, tt, V, ignore_index, tlo, tls, tmean);
        }
        return py::make_tuple(r.losses, r.lse);
    }, arg("logits"), arg("targets"), arg("V") = 0, arg("ignore_index") = -100, arg("losses") = None,
       arg("lse") = None, arg("loss") = None,
       "(losses, lse); with loss (one float32 element) also the mean loss over the rows not ignored, written there.");

    m.def("cross_entropy_backward", [](py::object logits, py::object lse, py::object targets, py::object dlosses,
                                       int64_t V, int32_t ignore_index, py::object dlogits, bool accumulate) {
        const char* op = "cross_entropy_backward";
        Tensor tl = as_tensor(logits, op, "logits"), tls = as_tensor(lse, op, "lse"),
               tt = as_tensor(targets, op, "targets"), td = as_tensor(dlosses, op, "dlosses");
        Tensor tdl = as_output(dlogits, op, "dlogits");
        py::gil_scoped_release nogil;
        return cross_entropy_backward(tl, tls, tt, td, V, ignore_index, tdl, accumulate);
    }, arg("logits"), arg("lse"), arg("targets"), arg("dlosses"), arg("V") = 0, arg("ignore_index") = -100,
       arg("dlogits") = None, arg("accumulate") = false);

    m.def("adamw_step", [](py::object param, py::object grad, py::object m_, py::object v_, float lr, float beta1,
                           float beta2, float eps, float weight_decay, int64_t step, float grad_scale,
                           py::object decay_ranges, py::object norm, float max_norm, float norm_scale) {
        const char* op = "adamw_step";
        Tensor tp = as_tensor(param, op, "param", false, true), tg = as_tensor(grad, op, "grad"),
               tm = as_tensor(m_, op, "m", false, true), tv = as_tensor(v_, op, "v", false, true),
               tn = as_tensor(norm, op, "norm", true);
        AdamWOptions o;
        o.lr = lr;
        o.beta1 = beta1;
        o.beta2 = beta2;
        o.eps = eps;
        o.weight_decay = weight_decay;
        o.step = step;
        o.grad_scale = grad_scale;
        o.max_norm = max_norm;
        o.norm_scale = norm_scale;
        if (!decay_ranges.is_none()) {
            // any (R, 2) integer array-like of [begin, end) pairs
            o.decay_all = false;
            for (py::handle row : decay_ranges) {
                const py::sequence pair = py::reinterpret_borrow<py::sequence>(row);
                if (!py::isinstance<py::sequence>(row) || py::len(pair) != 2)
                    throw Error("adamw_step: argument 'decay_ranges' must be (R, 2) [begin, end) pairs");
                o.decay_ranges.emplace_back(pair[0].cast<int64_t>(), pair[1].cast<int64_t>());
            }
        }
        py::gil_scoped_release nogil;
        adamw_step(tp, tg, tm, tv, o, tn);
    }, arg("param"), arg("grad"), arg("m"), arg("v"), py::kw_only(), arg("lr"), arg("beta1") = 0.9f,
       arg("beta2") = 0.999f, arg("eps") = 1e-8f, arg("weight_decay") = 0.0f, arg("step"), arg("grad_scale") = 1.0f,
       arg("decay_ranges") = None, arg("norm") = None, arg("max_norm") = 0.0f, arg("norm_scale") = 1.0f,
       "One fused AdamW step, in place on param, m and v (any float32 buffers, e.g. every parameter at once).\n"
       "decay_ranges: (R, 2) sorted [begin, end) element ranges that get weight_decay (None: all elements).\n"
       "norm: the global gradient norm (one float32 element, e.g. global_norm(..., out=)); with max_norm > 0 the\n"
       "gradients are clipped by min(1, max_norm / (norm * norm_scale + 1e-6)); a non-finite norm skips the step.");

    m.def("global_norm", [](py::iterable tensors, py::object out) -> py::object {
        std::vector<Tensor> ts;
        size_t i = 0;
        for (py::handle h : tensors) {
            const std::string name = "tensors[" + std::to_string(i++) + "]";
            ts.push_back(as_tensor(h, "global_norm", name.c_str()));
        }
        if (out.is_none()) {
            double r;
            {
                py::gil_scoped_release nogil;
                r = global_norm(ts);
            }
            return py::float_(r);
        }
        Tensor to = as_output(out, "global_norm", "out");
        {
            py::gil_scoped_release nogil;
            global_norm(ts, to);
        }
        return out;
    }, arg("tensors"), arg("out") = None,
       "sqrt of the sum of squares of every element of every tensor (double accumulation): a float, or with out (one\n"
       "float32 element on the tensors' device) written there without waiting for the device, and out returned.");
}

}  // namespace python
}  // namespace gptx
