// check.h — argument validation shared by the op dispatchers (every failure names the op and the argument), and the
// call into the backend that serves the op's device.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "backend/kernel_table.h"
#include "cuda/runtime.h"
#include "gptx/error.h"
#include "gptx/tensor.h"

namespace gptx {
namespace detail {

std::string shape_to_string(const std::vector<int64_t>& shape);

// The kernel table of the backend serving an op's device, with that device current for as long as this lives. Used
// in one expression, after validation: c.backend()->softmax_forward(params).
class BackendCall {
public:
    BackendCall(const backend::KernelTable& table, const Device& device) : table_(table) {
        if (device.kind == Device::Kind::cuda) guard_.emplace(device.index);
    }
    const backend::KernelTable* operator->() const { return &table_; }

private:
    const backend::KernelTable& table_;
    std::optional<cuda::DeviceGuard> guard_;
};

class Check {
public:
    explicit Check(const char* op) : op_(op) {}

    [[noreturn]] void fail(const std::string& arg, const std::string& msg) const;
    [[noreturn]] void fail_type(const std::string& arg, const std::string& msg) const;

    // Defined, of the given dtype, on the op's device. The first tensor an op checks fixes the device (a CUDA device
    // must exist in this build); every later one must be on the same device.
    void tensor(const Tensor& t, const char* arg, DType dtype) const;
    // An activation: float32, or bfloat16 / float16 (with allow_f16: matmul operands) where the device's backend
    // declares them in its Capabilities. The first one checked fixes the op's activation dtype; later ones must
    // match it.
    void act(const Tensor& t, const char* arg, bool allow_f16 = false) const;
    DType act_dtype() const { return act_set_ ? act_dtype_ : DType::float32; }
    const Device& device() const { return device_; }
    bool on_cuda() const { return device_.kind == Device::Kind::cuda; }
    void f32(const Tensor& t, const char* arg) const { tensor(t, arg, DType::float32); }
    void i32(const Tensor& t, const char* arg) const { tensor(t, arg, DType::int32); }
    void ndim(const Tensor& t, const char* arg, int64_t lo, int64_t hi) const;
    void shape(const Tensor& t, const char* arg, const std::vector<int64_t>& expected) const;
    void positive(int64_t value, const char* arg) const;
    // A tensor the op writes into: not read-only.
    void writable(const Tensor& t, const char* arg) const;
    // An output: allocated (on the op's device) when undefined, else checked for dtype, device, exact shape and
    // writability.
    Tensor output(const Tensor& given, const char* arg, const std::vector<int64_t>& shape,
                  DType dtype = DType::float32) const;
    // Outputs may not share memory with inputs (or each other) unless the op allows it explicitly.
    void no_overlap(const Tensor& out, const char* out_arg, const Tensor& other, const char* other_arg) const;
    // Token ids (int32) for an op whose device another argument fixed: on that device, or on the CPU for a CUDA op
    // (checked where they are, then uploaded on the current stream: the range check costs no device sync). Every
    // element in [0, limit) (or equal to `allowed`, when allow_extra is set). Returns the ids on the op's device.
    Tensor ids(const Tensor& idx, const char* arg, int64_t limit, bool allow_extra = false, int32_t allowed = 0) const;
    // Every element of idx (int32) in [0, limit) (or equal to `allowed`, when allow_extra is set).
    void indices_in_range(const Tensor& idx, const char* arg, int64_t limit, bool allow_extra = false,
                          int32_t allowed = 0) const;

    const char* op() const { return op_; }

    // The backend serving the op's device (the first tensor checked fixed it; the CPU when none was).
    const backend::KernelTable& kernels() const;
    BackendCall backend() const { return BackendCall(kernels(), device_); }

private:
    void on_device(const Tensor& t, const char* arg) const;

    const char* op_;
    mutable Device device_;
    mutable bool device_set_ = false;
    mutable DType act_dtype_ = DType::float32;
    mutable const char* act_arg_ = "";
    mutable bool act_set_ = false;
};

// The leading dims of a shape (all but the last `keep`), multiplied.
int64_t leading(const std::vector<int64_t>& shape, int64_t keep);

}  // namespace detail
}  // namespace gptx
