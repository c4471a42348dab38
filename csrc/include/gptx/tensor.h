// tensor.h — gptx::Tensor: a dtype, a device, a shape and contiguous row-major storage shared by views.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace gptx {

enum class DType : uint8_t { float32, bfloat16, float16, int32, int64, uint16, uint8 };

size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);           // "float32", "bfloat16", ...
DType dtype_from_name(const std::string& name);  // accepts the names above and "f32", "bf16", "f16", "i32", ...

struct Device {
    enum class Kind : uint8_t { cpu, cuda };
    Kind kind = Kind::cpu;
    int index = 0;

    static Device cpu() { return {}; }
    static Device cuda(int index = 0) { return {Kind::cuda, index}; }
    static Device parse(const std::string& text);  // "cpu", "cuda", "cuda:1"
    std::string str() const;
    bool operator==(const Device& o) const { return kind == o.kind && index == o.index; }
    bool operator!=(const Device& o) const { return !(*this == o); }
};

// A handle: copies share the storage. A default-constructed Tensor is "undefined" and stands for an argument
// that was not given (ops allocate such outputs themselves).
class Tensor {
public:
    Tensor() = default;

    // New uninitialised storage, 64-byte aligned. Throws gptx::Error on a negative or overflowing shape.
    static Tensor empty(const std::vector<int64_t>& shape, DType dtype, Device device = Device::cpu());
    static Tensor zeros(const std::vector<int64_t>& shape, DType dtype, Device device = Device::cpu());
    // Wraps memory owned elsewhere without a copy; `owner` is kept alive as long as any view of the tensor.
    static Tensor from_blob(void* data, const std::vector<int64_t>& shape, DType dtype, Device device,
                            std::shared_ptr<void> owner);

    bool defined() const { return data_ != nullptr || owner_ != nullptr; }
    DType dtype() const { return dtype_; }
    Device device() const { return device_; }
    const std::vector<int64_t>& shape() const { return shape_; }
    int64_t dim() const { return static_cast<int64_t>(shape_.size()); }
    int64_t size(int64_t d) const;  // negative d counts from the end
    int64_t numel() const;
    size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }
    void* data_ptr() const { return data_; }
    template <typename T>
    T* data() const { return static_cast<T*>(data_); }
    const std::shared_ptr<void>& owner() const { return owner_; }
    std::string shape_str() const;  // "(2, 3)"

    // Views sharing storage.
    Tensor view(const std::vector<int64_t>& shape) const;  // same numel; one entry may be -1
    Tensor slice(int64_t begin, int64_t end) const;        // rows [begin, end) of dim 0
    // Copies. All of these work on CPU and CUDA tensors (a CUDA copy is enqueued on the current stream; a copy to
    // the host waits for it).
    Tensor clone() const;
    // Conversion on the same device (float32 <-> bfloat16/float16 round to nearest even, ints like a C cast).
    Tensor to(DType dtype) const;
    // A copy on another device (same dtype); returns *this when already there.
    Tensor to(Device device) const;
    // Copies src's elements into this tensor in place (same numel; devices may differ when the dtypes are equal, a
    // dtype conversion happens on one device). Throws gptx::Error / gptx::TypeError on a mismatch or a read-only
    // destination.
    void copy_from(const Tensor& src) const;
    // A column band: this (..., W) viewed as rows of W elements gets columns [first_column, first_column + W) of
    // the same rows of src (..., S) (same dtype and row count; devices may differ). One strided copy, e.g. the k
    // part of a fused (T, 3C) qkv into a (T, C) cache block.
    void copy_columns_from(const Tensor& src, int64_t first_column) const;
    void fill(double value) const;

    // Memory that must not be written (a read-only numpy array, a read-only DLPack export). Ops refuse such a
    // tensor as an output. Views inherit the flag; clone() and to() give writable copies.
    bool read_only() const { return read_only_; }
    Tensor as_read_only() const {
        Tensor t = *this;
        t.read_only_ = true;
        return t;
    }

    // True if the byte ranges of the two tensors intersect.
    bool overlaps(const Tensor& other) const;
    bool same_memory(const Tensor& other) const;  // identical start, dtype and size

private:
    std::shared_ptr<void> owner_;
    void* data_ = nullptr;
    std::vector<int64_t> shape_;
    DType dtype_ = DType::float32;
    Device device_;
    bool read_only_ = false;
};

// numel of a shape with overflow and negativity checks; `what` names the caller in the error.
int64_t checked_numel(const std::vector<int64_t>& shape, size_t elem_size, const std::string& what);

}  // namespace gptx
