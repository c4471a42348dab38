// check.cc — argument validation shared by the op dispatchers.
#include "ops/check.h"

namespace gptx {
namespace detail {

std::string shape_to_string(const std::vector<int64_t>& shape) {
    std::string s = "(";
    for (size_t i = 0; i < shape.size(); i++) {
        if (i) s += ", ";
        s += std::to_string(shape[i]);
    }
    if (shape.size() == 1) s += ",";
    return s + ")";
}

void Check::fail(const std::string& arg, const std::string& msg) const {
    throw Error(std::string(op_) + ": argument '" + arg + "' " + msg);
}

void Check::fail_type(const std::string& arg, const std::string& msg) const {
    throw TypeError(std::string(op_) + ": argument '" + arg + "' " + msg);
}

void Check::on_device(const Tensor& t, const char* arg) const {
    if (!device_set_) {
        if (t.device().kind == Device::Kind::cuda) {
            try {
                cuda::require_device(t.device(), op_);
            } catch (const TypeError& e) {
                fail_type(arg, std::string("is on ") + t.device().str() + ", which is not usable: " + e.what());
            }
        }
        device_ = t.device();
        device_set_ = true;
    } else if (t.device() != device_) {
        fail_type(arg, "is on " + t.device().str() + " but the op's other arguments are on " + device_.str());
    }
}

void Check::tensor(const Tensor& t, const char* arg, DType dtype) const {
    if (!t.defined()) fail(arg, "is required");
    on_device(t, arg);
    if (t.dtype() != dtype)
        fail_type(arg, std::string("must be ") + dtype_name(dtype) + ", got " + dtype_name(t.dtype()));
}

void Check::act(const Tensor& t, const char* arg, bool allow_f16) const {
    if (!t.defined()) fail(arg, "is required");
    on_device(t, arg);
    const DType d = t.dtype();
    if (act_set_) {
        if (d != act_dtype_)
            fail_type(arg, std::string("must be ") + dtype_name(act_dtype_) + " like '" + act_arg_ + "', got " +
                               dtype_name(d));
        return;
    }
    const backend::Capabilities& caps = kernels().caps;
    const bool ok = d == DType::float32 || (caps.bfloat16 && d == DType::bfloat16) ||
                    (allow_f16 && caps.float16_matmul && d == DType::float16);
    if (!ok) {
        if (caps.bfloat16)
            fail_type(arg, std::string("must be float32 or bfloat16") +
                               (allow_f16 && caps.float16_matmul ? " or float16" : "") + ", got " + dtype_name(d));
        fail_type(arg, std::string("must be float32 on the CPU, got ") + dtype_name(d) +
                           (d == DType::bfloat16 || d == DType::float16 ? " (16-bit floats run on CUDA only)" : ""));
    }
    act_dtype_ = d;
    act_arg_ = arg;
    act_set_ = true;
}

const backend::KernelTable& Check::kernels() const {
    if (on_cuda()) return *backend::cuda_kernels();  // on_device() made sure this build has CUDA and the device
    return backend::cpu_kernels();
}

void Check::ndim(const Tensor& t, const char* arg, int64_t lo, int64_t hi) const {
    if (t.dim() < lo || t.dim() > hi) {
        const std::string want = lo == hi ? std::to_string(lo) : std::to_string(lo) + " to " + std::to_string(hi);
        fail(arg, "must have " + want + " dimensions, got shape " + t.shape_str());
    }
}

void Check::shape(const Tensor& t, const char* arg, const std::vector<int64_t>& expected) const {
    if (t.shape() != expected) fail(arg, "must have shape " + shape_to_string(expected) + ", got " + t.shape_str());
}

void Check::positive(int64_t value, const char* arg) const {
    if (value < 1) fail(arg, "must be >= 1, got " + std::to_string(value));
}

void Check::writable(const Tensor& t, const char* arg) const {
    if (t.read_only()) fail(arg, "is read-only memory but this op writes into it");
}

Tensor Check::output(const Tensor& given, const char* arg, const std::vector<int64_t>& shp, DType dtype) const {
    if (!given.defined()) return Tensor::empty(shp, dtype, device_);
    tensor(given, arg, dtype);
    shape(given, arg, shp);
    writable(given, arg);
    return given;
}

void Check::no_overlap(const Tensor& out, const char* out_arg, const Tensor& other, const char* other_arg) const {
    if (out.overlaps(other))
        fail(out_arg, std::string("shares memory with '") + other_arg + "'; pass a separate buffer");
}

Tensor Check::ids(const Tensor& idx, const char* arg, int64_t limit, bool allow_extra, int32_t allowed) const {
    if (!idx.defined()) fail(arg, "is required");
    if (idx.dtype() != DType::int32) fail_type(arg, std::string("must be int32, got ") + dtype_name(idx.dtype()));
    if (on_cuda() && idx.device().kind == Device::Kind::cpu) {
        indices_in_range(idx, arg, limit, allow_extra, allowed);  // host memory: read in place
        return idx.to(device_);
    }
    on_device(idx, arg);
    indices_in_range(idx, arg, limit, allow_extra, allowed);
    return idx;
}

void Check::indices_in_range(const Tensor& idx, const char* arg, int64_t limit, bool allow_extra,
                             int32_t allowed) const {
    // Device ids are checked on a host copy (a device sync): an out-of-range id must be an error here, not a fault in a
    // kernel. Callers that have the ids on the host pass them as they are (ids()).
    const Tensor host = idx.to(Device::cpu());
    const int32_t* p = host.data<int32_t>();
    const int64_t n = idx.numel();
    for (int64_t i = 0; i < n; i++) {
        if ((p[i] < 0 || p[i] >= limit) && !(allow_extra && p[i] == allowed)) {
            std::string msg = "has value " + std::to_string(p[i]) + " at flat index " + std::to_string(i) +
                              ", outside [0, " + std::to_string(limit) + ")";
            if (allow_extra) msg += " and not the ignore index " + std::to_string(allowed);
            fail(arg, msg);
        }
    }
}

int64_t leading(const std::vector<int64_t>& shape, int64_t keep) {
    int64_t n = 1;
    for (int64_t i = 0; i + keep < static_cast<int64_t>(shape.size()); i++) n *= shape[static_cast<size_t>(i)];
    return n;
}

}  // namespace detail
}  // namespace gptx
