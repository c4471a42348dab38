// tensor_bind.cc — gptx.Tensor in Python: buffer protocol (numpy without a copy), DLPack both ways, conversions.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <cstring>
#include <string>
#include <vector>

#include "gptx/error.h"
#include "gptx/runtime.h"
#include "convert.h"
#include "dlpack.h"

namespace gptx {
namespace python {

namespace {

// The buffer-protocol format character of a dtype ("" where numpy has none: bfloat16).
const char* buffer_format(DType dt) {
    switch (dt) {
        case DType::float32: return "f";
        case DType::float16: return "e";
        case DType::int32: return "i";
        case DType::int64: return "q";
        case DType::uint16: return "H";
        case DType::uint8: return "B";
        case DType::bfloat16: return "";
    }
    return "";
}

// numpy has no bfloat16: say so instead of letting numpy fall back from the buffer protocol to __array__ (which
// would ask for the buffer again, forever).
void require_numpy_dtype(const Tensor& t) {
    if (!*buffer_format(t.dtype()))
        throw TypeError("Tensor: bfloat16 has no numpy dtype; convert with .to('float32') first");
}

bool dtype_from_numpy(const py::dtype& d, DType* out) {
    const char kind = d.kind();
    const ssize_t size = d.itemsize();
    if (kind == 'f' && size == 4) *out = DType::float32;
    else if (kind == 'f' && size == 2) *out = DType::float16;
    else if (kind == 'i' && size == 4) *out = DType::int32;
    else if (kind == 'i' && size == 8) *out = DType::int64;
    else if (kind == 'u' && size == 2) *out = DType::uint16;
    else if (kind == 'u' && size == 1) *out = DType::uint8;
    else return false;
    return true;
}

// Keeps a Python object alive for as long as a Tensor views its memory; the GIL is taken to release it.
std::shared_ptr<void> hold(py::object obj) {
    return std::shared_ptr<void>(new py::object(std::move(obj)), [](void* p) {
        py::gil_scoped_acquire gil;
        delete static_cast<py::object*>(p);
    });
}

Tensor from_numpy(py::handle obj, const char* op, const char* arg, bool writable) {
    const std::string where = std::string(op) + ": argument '" + arg + "' ";
    py::array a = py::reinterpret_borrow<py::array>(obj);
    DType dt;
    // '>f4' on this little-endian machine has float32's kind and size but other bytes: refuse it, never reinterpret.
    if (!a.dtype().attr("isnative").cast<bool>())
        throw TypeError(where + "has numpy dtype " + std::string(py::str(a.dtype())) +
                        " in non-native byte order (convert with .astype(x.dtype.newbyteorder('=')))");
    if (!dtype_from_numpy(a.dtype(), &dt))
        throw TypeError(where + "has numpy dtype " + std::string(py::str(a.dtype())) +
                        ", which gptx does not take here (float32, float16, int32, int64, uint16, uint8)");
    if (!(a.flags() & py::array::c_style))
        throw Error(where + "is not C-contiguous (pass np.ascontiguousarray(...))");
    if (writable && !a.writeable()) throw Error(where + "is read-only memory but this op writes into it");
    const size_t item = dtype_size(dt);
    if (a.nbytes() && reinterpret_cast<uintptr_t>(a.data()) % item != 0)
        throw Error(where + "is not aligned to its element size");
    std::vector<int64_t> shape(a.shape(), a.shape() + a.ndim());
    Tensor t = Tensor::from_blob(const_cast<void*>(a.data()), shape, dt, Device::cpu(),
                                 hold(py::reinterpret_borrow<py::object>(obj)));
    return a.writeable() ? t : t.as_read_only();
}

// ---------------------------------------------------------------- DLPack export
struct ExportCtx {
    Tensor tensor;  // keeps the storage alive
    std::vector<int64_t> shape, strides;
    DLManagedTensor legacy;
    DLManagedTensorVersioned versioned;
};

DLDataType dl_dtype(DType dt) {
    switch (dt) {
        case DType::float32: return {kDLFloat, 32, 1};
        case DType::float16: return {kDLFloat, 16, 1};
        case DType::bfloat16: return {kDLBfloat, 16, 1};
        case DType::int32: return {kDLInt, 32, 1};
        case DType::int64: return {kDLInt, 64, 1};
        case DType::uint16: return {kDLUInt, 16, 1};
        case DType::uint8: return {kDLUInt, 8, 1};
    }
    return {kDLFloat, 32, 1};
}

void fill_dl_tensor(ExportCtx* ctx, DLTensor* t) {
    t->data = ctx->tensor.data_ptr();
    t->device = {ctx->tensor.device().kind == Device::Kind::cpu ? kDLCPU : kDLCUDA, ctx->tensor.device().index};
    t->ndim = static_cast<int32_t>(ctx->shape.size());
    t->dtype = dl_dtype(ctx->tensor.dtype());
    t->shape = ctx->shape.data();
    t->strides = ctx->strides.data();
    t->byte_offset = 0;
}

ExportCtx* make_ctx(const Tensor& t) {
    auto* ctx = new ExportCtx();
    ctx->tensor = t;
    ctx->shape = t.shape();
    ctx->strides.assign(ctx->shape.size(), 1);
    for (int64_t i = static_cast<int64_t>(ctx->shape.size()) - 2; i >= 0; i--)
        ctx->strides[static_cast<size_t>(i)] = ctx->strides[static_cast<size_t>(i + 1)] * ctx->shape[static_cast<size_t>(i + 1)];
    return ctx;
}

// Capsule destructors: run the deleter only if no consumer took ownership (the capsule was not renamed).
void legacy_capsule_destructor(PyObject* cap) {
    if (PyCapsule_IsValid(cap, "dltensor")) {
        auto* m = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(cap, "dltensor"));
        if (m && m->deleter) m->deleter(m);
    } else {
        PyErr_Clear();
    }
}

void versioned_capsule_destructor(PyObject* cap) {
    if (PyCapsule_IsValid(cap, "dltensor_versioned")) {
        auto* m = static_cast<DLManagedTensorVersioned*>(PyCapsule_GetPointer(cap, "dltensor_versioned"));
        if (m && m->deleter) m->deleter(m);
    } else {
        PyErr_Clear();
    }
}

py::object to_dlpack(const Tensor& t, py::object max_version) {
    bool versioned = false;
    if (!max_version.is_none()) {
        auto mv = max_version.cast<std::pair<int, int>>();
        versioned = mv.first >= 1;
    }
    ExportCtx* ctx = make_ctx(t);
    if (versioned) {
        DLManagedTensorVersioned* m = &ctx->versioned;
        m->version = {1, 0};
        m->manager_ctx = ctx;
        m->flags = t.read_only() ? kDLPackFlagReadOnly : 0;
        m->deleter = [](DLManagedTensorVersioned* self) { delete static_cast<ExportCtx*>(self->manager_ctx); };
        fill_dl_tensor(ctx, &m->dl_tensor);
        PyObject* cap = PyCapsule_New(m, "dltensor_versioned", versioned_capsule_destructor);
        if (!cap) {
            delete ctx;
            throw py::error_already_set();
        }
        return py::reinterpret_steal<py::object>(cap);
    }
    DLManagedTensor* m = &ctx->legacy;
    m->manager_ctx = ctx;
    m->deleter = [](DLManagedTensor* self) { delete static_cast<ExportCtx*>(self->manager_ctx); };
    fill_dl_tensor(ctx, &m->dl_tensor);
    PyObject* cap = PyCapsule_New(m, "dltensor", legacy_capsule_destructor);
    if (!cap) {
        delete ctx;
        throw py::error_already_set();
    }
    return py::reinterpret_steal<py::object>(cap);
}

// ---------------------------------------------------------------- DLPack import
DType dtype_from_dl(DLDataType d) {
    if (d.lanes != 1) throw TypeError("from_dlpack: vector dtypes (lanes > 1) are not supported");
    if (d.code == kDLFloat && d.bits == 32) return DType::float32;
    if (d.code == kDLFloat && d.bits == 16) return DType::float16;
    if (d.code == kDLBfloat && d.bits == 16) return DType::bfloat16;
    if (d.code == kDLInt && d.bits == 32) return DType::int32;
    if (d.code == kDLInt && d.bits == 64) return DType::int64;
    if (d.code == kDLUInt && d.bits == 16) return DType::uint16;
    if (d.code == kDLUInt && d.bits == 8) return DType::uint8;
    throw TypeError("from_dlpack: unsupported dtype (code " + std::to_string(d.code) + ", " + std::to_string(d.bits) +
                    " bits)");
}

// Throws for anything gptx cannot view; called before ownership is taken so a rejected capsule stays intact.
// The gptx device of a DLPack device, or a TypeError for one gptx cannot use.
Device device_from_dl(int32_t type, int32_t id) {
    if (type == kDLCPU) return Device::cpu();
    if (type == kDLCUDA) {
        const Device d = Device::cuda(id);
        cuda::require_device(d, "from_dlpack");
        return d;
    }
    throw TypeError("from_dlpack: the tensor is on a device gptx cannot use (DLPack device type " +
                    std::to_string(type) + "); CPU and CUDA tensors are supported");
}

void validate_dl(const DLTensor& t) {
    device_from_dl(t.device.device_type, t.device.device_id);
    dtype_from_dl(t.dtype);
    std::vector<int64_t> shape(t.shape, t.shape + t.ndim);
    if (t.strides) {  // must be compact row-major (size-1 dims may carry any stride)
        int64_t expect = 1;
        for (int32_t i = t.ndim - 1; i >= 0; i--) {
            if (shape[static_cast<size_t>(i)] != 1 && t.strides[i] != expect)
                throw Error("from_dlpack: the tensor is not C-contiguous (call .contiguous() on it first)");
            expect *= shape[static_cast<size_t>(i)];
        }
    }
}

Tensor wrap_dl(const DLTensor& t, std::shared_ptr<void> owner) {
    std::vector<int64_t> shape(t.shape, t.shape + t.ndim);
    const DType dt = dtype_from_dl(t.dtype);
    char* data = static_cast<char*>(t.data) + t.byte_offset;
    return Tensor::from_blob(data, shape, dt, device_from_dl(t.device.device_type, t.device.device_id),
                             std::move(owner));
}

Tensor from_dlpack(py::object obj) {
    py::object cap;
    if (py::isinstance<py::capsule>(obj)) {
        cap = obj;
    } else if (py::hasattr(obj, "__dlpack__")) {
        py::object stream = py::none();
        if (py::hasattr(obj, "__dlpack_device__")) {
            auto dev = obj.attr("__dlpack_device__")().cast<std::pair<int, int>>();
            const Device d = device_from_dl(dev.first, dev.second);
            if (d.kind == Device::Kind::cuda) {
                // Ask the producer to order its work before our current stream (1 = the legacy default stream).
                const auto s = reinterpret_cast<uintptr_t>(cuda::current_stream(d.index));
                stream = py::int_(s == 0 ? 1 : s);
            }
        }
        try {
            cap = obj.attr("__dlpack__")(py::arg("stream") = stream, py::arg("max_version") = py::make_tuple(1, 0));
        } catch (py::error_already_set& e) {
            if (!e.matches(PyExc_TypeError)) throw;
            cap = stream.is_none() ? obj.attr("__dlpack__")()  // a producer that predates versioned DLPack
                                   : obj.attr("__dlpack__")(py::arg("stream") = stream);
        }
    } else {
        throw TypeError("from_dlpack: argument 'x' has no __dlpack__ method and is not a DLPack capsule");
    }
    PyObject* c = cap.ptr();
    if (PyCapsule_IsValid(c, "dltensor_versioned")) {
        auto* m = static_cast<DLManagedTensorVersioned*>(PyCapsule_GetPointer(c, "dltensor_versioned"));
        if (m->version.major > 1)
            throw Error("from_dlpack: DLPack major version " + std::to_string(m->version.major) + " is not supported");
        validate_dl(m->dl_tensor);
        std::shared_ptr<void> owner(m, [](void* p) {
            auto* mt = static_cast<DLManagedTensorVersioned*>(p);
            if (mt->deleter) mt->deleter(mt);
        });
        Tensor t = wrap_dl(m->dl_tensor, owner);
        if (m->flags & kDLPackFlagReadOnly) t = t.as_read_only();
        PyCapsule_SetName(c, "used_dltensor_versioned");
        return t;
    }
    if (PyCapsule_IsValid(c, "dltensor")) {
        auto* m = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(c, "dltensor"));
        validate_dl(m->dl_tensor);
        std::shared_ptr<void> owner(m, [](void* p) {
            auto* mt = static_cast<DLManagedTensor*>(p);
            if (mt->deleter) mt->deleter(mt);
        });
        Tensor t = wrap_dl(m->dl_tensor, owner);
        PyCapsule_SetName(c, "used_dltensor");
        return t;
    }
    throw Error("from_dlpack: the capsule is not an unused DLPack tensor");
}

std::vector<int64_t> shape_from_args(py::args args) {
    // t.view(2, 3) and t.view((2, 3)) both work
    if (args.size() == 1 && !py::isinstance<py::int_>(args[0])) return args[0].cast<std::vector<int64_t>>();
    return args.cast<std::vector<int64_t>>();
}

}  // namespace

Tensor as_tensor(py::handle obj, const char* op, const char* arg, bool allow_none, bool writable) {
    if (obj.is_none()) {
        if (allow_none) return Tensor();
        throw Error(std::string(op) + ": argument '" + arg + "' is required (got None)");
    }
    if (py::isinstance<Tensor>(obj)) {
        Tensor t = obj.cast<Tensor>();
        if (writable && t.read_only())
            throw Error(std::string(op) + ": argument '" + arg + "' is read-only memory but this op writes into it");
        return t;
    }
    if (py::isinstance<py::array>(obj)) return from_numpy(obj, op, arg, writable);
    throw TypeError(std::string(op) + ": argument '" + arg + "' must be a gptx.Tensor or a numpy array, got " +
                    std::string(py::str(py::type::of(obj).attr("__name__"))));
}

// The value of a one-element tensor on the host (a copy from the device waits for it).
static py::object tensor_item(const Tensor& t) {
    if (t.numel() != 1)
        throw Error("Tensor.item: only a tensor with one element has an item, got shape " + t.shape_str());
    Tensor h;
    {
        py::gil_scoped_release nogil;
        h = t.to(Device::cpu());
    }
    switch (h.dtype()) {
        case DType::int32: return py::int_(*h.data<int32_t>());
        case DType::int64: return py::int_(*h.data<int64_t>());
        case DType::uint16: return py::int_(*h.data<uint16_t>());
        case DType::uint8: return py::int_(*h.data<uint8_t>());
        case DType::float32: return py::float_(*h.data<float>());
        default: return py::float_(*h.to(DType::float32).data<float>());
    }
}

void bind_tensor(py::module_& m) {
    py::class_<Tensor>(m, "Tensor", py::buffer_protocol(), R"doc(
An n-dimensional array with a dtype, a device and contiguous row-major storage.
CPU tensors share memory with numpy both ways (np.asarray(t), gptx.Tensor(array)) and all tensors speak DLPack.)doc")
        .def(py::init([](py::object obj) { return as_tensor(obj, "Tensor", "data"); }), py::arg("data"),
             "Wrap a C-contiguous numpy array (or gptx.Tensor) without copying.")
        .def_buffer([](const Tensor& t) -> py::buffer_info {
            if (t.device().kind != Device::Kind::cpu)
                throw TypeError("Tensor: a " + t.device().str() + " tensor has no CPU buffer; use .to('cpu')");
            require_numpy_dtype(t);
            const char* fmt = buffer_format(t.dtype());
            std::vector<py::ssize_t> shape(t.shape().begin(), t.shape().end()), strides(shape.size());
            py::ssize_t s = static_cast<py::ssize_t>(dtype_size(t.dtype()));
            for (int64_t i = t.dim() - 1; i >= 0; i--) {
                strides[static_cast<size_t>(i)] = s;
                s *= shape[static_cast<size_t>(i)];
            }
            return py::buffer_info(t.data_ptr(), static_cast<py::ssize_t>(dtype_size(t.dtype())), fmt,
                                   static_cast<py::ssize_t>(shape.size()), shape, strides, t.read_only());
        })
        .def_static("empty", [](std::vector<int64_t> shape, const std::string& dtype, const std::string& device) {
            return Tensor::empty(shape, dtype_from_name(dtype), Device::parse(device));
        }, py::arg("shape"), py::arg("dtype") = "float32", py::arg("device") = "cpu")
        .def_static("zeros", [](std::vector<int64_t> shape, const std::string& dtype, const std::string& device) {
            return Tensor::zeros(shape, dtype_from_name(dtype), Device::parse(device));
        }, py::arg("shape"), py::arg("dtype") = "float32", py::arg("device") = "cpu")
        .def_property_readonly("shape", [](const Tensor& t) { return py::tuple(py::cast(t.shape())); })
        .def_property_readonly("dtype", [](const Tensor& t) { return std::string(dtype_name(t.dtype())); })
        .def_property_readonly("device", [](const Tensor& t) { return t.device().str(); })
        .def_property_readonly("ndim", &Tensor::dim)
        .def_property_readonly("size", &Tensor::numel, "number of elements")
        .def_property_readonly("nbytes", &Tensor::nbytes)
        .def_property_readonly("data_ptr", [](const Tensor& t) { return reinterpret_cast<uintptr_t>(t.data_ptr()); })
        .def("__len__", [](const Tensor& t) {
            if (t.dim() == 0) throw py::type_error("len() of a 0-d tensor");
            return t.size(0);
        })
        .def("numpy", [](py::object self) {
            const Tensor& t = self.cast<const Tensor&>();
            require_numpy_dtype(t);
            if (t.device().kind != Device::Kind::cpu) return py::array(py::cast(t.to(Device::cpu())));
            return py::array(self);
        }, "A numpy array sharing this tensor's memory (CPU), or a host copy (CUDA).")
        .def("__array__", [](py::object self, py::object dtype, py::object copy) {
            const Tensor& t = self.cast<const Tensor&>();
            require_numpy_dtype(t);
            if (t.device().kind != Device::Kind::cpu) {
                if (!copy.is_none() && !copy.cast<bool>())
                    throw Error("Tensor.__array__: a " + t.device().str() + " tensor needs a copy to reach numpy");
                py::array h(py::cast(t.to(Device::cpu())));
                if (!dtype.is_none()) return h.attr("astype")(dtype, py::arg("copy") = false);
                return py::object(h);
            }
            py::array a(self);
            if (!dtype.is_none()) return a.attr("astype")(dtype, py::arg("copy") = !copy.is(py::bool_(false)));
            if (!copy.is_none() && copy.cast<bool>()) return a.attr("copy")();
            return py::object(a);
        }, py::arg("dtype") = py::none(), py::arg("copy") = py::none())
        .def("to", [](const Tensor& t, const std::string& what) {
            if (what == "cpu" || what.rfind("cuda", 0) == 0) {
                const Device d = Device::parse(what);
                if (d.kind == Device::Kind::cuda && d != t.device()) cuda::require_device(d, "Tensor.to");
                py::gil_scoped_release nogil;
                return t.to(d);
            }
            return t.to(dtype_from_name(what));
        }, py::arg("dtype_or_device"),
           "Convert to a dtype (a copy on the same device) or move to a device ('cpu', 'cuda', 'cuda:N'; the same "
           "tensor when already there).")
        .def("cpu", [](const Tensor& t) {
            py::gil_scoped_release nogil;
            return t.to(Device::cpu());
        }, "This tensor on the CPU (itself when already there).")
        .def("cuda", [](const Tensor& t, int index) {
            cuda::require_device(Device::cuda(index), "Tensor.cuda");
            py::gil_scoped_release nogil;
            return t.to(Device::cuda(index));
        }, py::arg("index") = 0, "This tensor on CUDA device `index` (itself when already there).")
        .def("copy_", [](const Tensor& t, py::object src) {
            Tensor s = as_tensor(src, "Tensor.copy_", "src");
            if (s.shape() != t.shape())
                throw Error("Tensor.copy_: argument 'src' has shape " + s.shape_str() + ", expected " + t.shape_str());
            t.copy_from(s);
            return t;
        }, py::arg("src"), "Copy src (same shape and dtype, any device, or a numpy array) into this tensor.")
        .def("copy_columns_from", [](const Tensor& t, py::object src, int64_t first_column) {
            Tensor s = as_tensor(src, "Tensor.copy_columns_from", "src");
            py::gil_scoped_release nogil;
            t.copy_columns_from(s, first_column);
            return t;
        }, py::arg("src"), py::arg("first_column"),
           "This (..., W) tensor, as rows of W, gets columns [first_column, first_column + W) of the same rows of src "
           "(..., S): one strided copy, on any device (e.g. the first V columns of padded logits).")
        .def("__getitem__", [](const Tensor& t, py::object key) {
            // Rows of dim 0 only (views): t[i] drops the dim, t[a:b] keeps it.
            if (t.dim() == 0) throw py::index_error("a 0-d tensor cannot be indexed");
            const int64_t n = t.size(0);
            if (py::isinstance<py::slice>(key)) {
                py::ssize_t start, stop, step, len;
                if (!key.cast<py::slice>().compute(static_cast<py::ssize_t>(n), &start, &stop, &step, &len))
                    throw py::error_already_set();
                if (step != 1) throw py::index_error("Tensor: only step-1 slices of dim 0 are views");
                return t.slice(start, start + len);
            }
            int64_t i = key.cast<int64_t>();
            if (i < 0) i += n;
            if (i < 0 || i >= n) throw py::index_error("Tensor index out of range");
            std::vector<int64_t> rest(t.shape().begin() + 1, t.shape().end());
            return t.slice(i, i + 1).view(rest);
        }, py::arg("key"))
        .def("view", [](const Tensor& t, py::args shape) { return t.view(shape_from_args(shape)); })
        .def("reshape", [](const Tensor& t, py::args shape) { return t.view(shape_from_args(shape)); })
        .def("item", &tensor_item,
             "The value of a one-element tensor as a Python float (int for integer dtypes); waits for the device.")
        .def("__float__", [](const Tensor& t) { return py::float_(tensor_item(t)); })
        .def("__format__", [](const Tensor& t, const std::string& spec) {
            // f"{loss:.4f}" formats the value of a one-element tensor, like a number
            if (t.numel() != 1) return py::str(py::repr(py::cast(t))).attr("__format__")(spec);
            return tensor_item(t).attr("__format__")(spec);
        }, py::arg("spec"))
        .def("clone", &Tensor::clone)
        .def("fill_", [](const Tensor& t, double v) {
            t.fill(v);
            return t;
        }, py::arg("value"))
        .def("__dlpack__", [](const Tensor& t, py::object stream, py::object max_version, py::object dl_device,
                              py::object copy) {
            const bool on_gpu = t.device().kind == Device::Kind::cuda;
            if (!dl_device.is_none()) {
                auto d = dl_device.cast<std::pair<int, int>>();
                const bool same = on_gpu ? (d.first == kDLCUDA && d.second == t.device().index) : d.first == kDLCPU;
                if (!same) throw py::buffer_error("Tensor.__dlpack__: cannot export to another device");
            }
            Tensor out = (!copy.is_none() && copy.cast<bool>()) ? t.clone() : t;
            // A legacy capsule cannot say "read-only" and consumers then write into it: read-only memory leaves
            // only through the versioned capsule (which carries the flag), or as a writable copy.
            const bool versioned = !max_version.is_none() && max_version.cast<std::pair<int, int>>().first >= 1;
            if (out.read_only() && !versioned) {
                if (!copy.is_none() && !copy.cast<bool>())
                    throw py::buffer_error("Tensor.__dlpack__: read-only memory cannot be exported without a copy "
                                           "through a legacy capsule (it has no read-only flag)");
                out = out.clone();
            }
            // The consumer may read on any stream (`stream`): make everything queued on this tensor's device
            // finished before handing it over (simple and always correct; the stream number is not needed).
            (void)stream;
            if (on_gpu) {
                py::gil_scoped_release nogil;
                cuda::synchronize(t.device().index);
            }
            return to_dlpack(out, max_version);
        }, py::kw_only(), py::arg("stream") = py::none(), py::arg("max_version") = py::none(),
           py::arg("dl_device") = py::none(), py::arg("copy") = py::none())
        .def("__dlpack_device__", [](const Tensor& t) {
            return py::make_tuple(static_cast<int>(t.device().kind == Device::Kind::cpu ? kDLCPU : kDLCUDA), t.device().index);
        })
        .def("__repr__", [](const Tensor& t) {
            return "gptx.Tensor(shape=" + t.shape_str() + ", dtype=" + dtype_name(t.dtype()) + ", device=" +
                   t.device().str() + ")";
        });

    m.def("from_dlpack", &from_dlpack, py::arg("x"),
          "A gptx.Tensor sharing memory with any DLPack producer (torch, numpy, cupy, jax) or capsule.");
    m.def("from_numpy", [](py::object a) { return as_tensor(a, "from_numpy", "a"); }, py::arg("a"),
          "Wrap a C-contiguous numpy array without copying.");
}

}  // namespace python
}  // namespace gptx
