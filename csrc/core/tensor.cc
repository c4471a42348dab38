// tensor.cc — storage, views, copies and dtype conversion of gptx::Tensor on the CPU and (through csrc/cuda/) on
// CUDA devices.
#include "gptx/tensor.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "core/dtype_convert.h"
#include "cuda/runtime.h"
#include "gptx/error.h"

namespace gptx {

size_t dtype_size(DType dtype) {
    switch (dtype) {
        case DType::float32: return 4;
        case DType::bfloat16: return 2;
        case DType::float16: return 2;
        case DType::int32: return 4;
        case DType::int64: return 8;
        case DType::uint16: return 2;
        case DType::uint8: return 1;
    }
    return 0;
}

const char* dtype_name(DType dtype) {
    switch (dtype) {
        case DType::float32: return "float32";
        case DType::bfloat16: return "bfloat16";
        case DType::float16: return "float16";
        case DType::int32: return "int32";
        case DType::int64: return "int64";
        case DType::uint16: return "uint16";
        case DType::uint8: return "uint8";
    }
    return "?";
}

DType dtype_from_name(const std::string& n) {
    if (n == "float32" || n == "f32") return DType::float32;
    if (n == "bfloat16" || n == "bf16") return DType::bfloat16;
    if (n == "float16" || n == "f16" || n == "half") return DType::float16;
    if (n == "int32" || n == "i32") return DType::int32;
    if (n == "int64" || n == "i64") return DType::int64;
    if (n == "uint16" || n == "u16") return DType::uint16;
    if (n == "uint8" || n == "u8") return DType::uint8;
    throw TypeError("unknown dtype '" + n + "' (float32, bfloat16, float16, int32, int64, uint16, uint8)");
}

Device Device::parse(const std::string& text) {
    if (text == "cpu") return cpu();
    if (text == "cuda") return cuda(0);
    if (text.rfind("cuda:", 0) == 0) {
        const std::string idx = text.substr(5);
        if (!idx.empty() && idx.find_first_not_of("0123456789") == std::string::npos && idx.size() < 6)
            return cuda(std::stoi(idx));
    }
    throw TypeError("unknown device '" + text + "' (cpu, cuda, cuda:N)");
}

std::string Device::str() const { return kind == Kind::cpu ? "cpu" : "cuda:" + std::to_string(index); }

int64_t checked_numel(const std::vector<int64_t>& shape, size_t elem_size, const std::string& what) {
    // Keep numel * elem_size within int64 so every byte offset computed later fits.
    const int64_t limit = std::numeric_limits<int64_t>::max() / static_cast<int64_t>(elem_size ? elem_size : 1);
    int64_t n = 1;
    for (int64_t s : shape) {
        if (s < 0) throw Error(what + ": negative dimension in shape");
        if (s != 0 && n > limit / s) throw Error(what + ": shape is too large (size overflows 64 bits)");
        n *= s;
    }
    return n;
}

std::string Tensor::shape_str() const {
    std::string s = "(";
    for (size_t i = 0; i < shape_.size(); i++) {
        if (i) s += ", ";
        s += std::to_string(shape_[i]);
    }
    if (shape_.size() == 1) s += ",";
    return s + ")";
}

namespace {

// n copies of one element's bit pattern (W: an unsigned word of the element's size).
template <typename W>
void fill_bits(void* data, int64_t n, const unsigned char* bits) {
    W w;
    std::memcpy(&w, bits, sizeof(W));
    std::fill_n(static_cast<W*>(data), n, w);
}

}  // namespace

Tensor Tensor::empty(const std::vector<int64_t>& shape, DType dtype, Device device) {
    const int64_t n = checked_numel(shape, dtype_size(dtype), "Tensor.empty");
    size_t bytes = static_cast<size_t>(n) * dtype_size(dtype);
    Tensor t;
    if (device.kind == Device::Kind::cuda) {
        cuda::require_device(device, "Tensor.empty");
        t.owner_ = cuda::allocate(bytes, device.index);
        t.data_ = t.owner_.get();
    } else {
        // Large buffers start on a 2 MiB boundary and ask for transparent huge pages, as numpy does from 4 MiB: the
        // streaming kernels over a GPT-2's parameters ran ~8% faster on them (AdamW over 124M floats, 1 thread: 131
        // vs 142 ms).
        const bool huge = bytes >= (size_t{4} << 20);
        const size_t align = huge ? (size_t{2} << 20) : 64;
        bytes = (bytes + align - 1) / align * align;  // aligned_alloc wants a multiple of the alignment
        void* p = std::aligned_alloc(align, bytes ? bytes : align);
        if (p == nullptr) throw std::bad_alloc();
#if defined(MADV_HUGEPAGE)
        if (huge) madvise(p, bytes, MADV_HUGEPAGE);  // a hint: where huge pages are off nothing changes
#endif
        t.owner_ = std::shared_ptr<void>(p, [](void* q) { std::free(q); });
        t.data_ = p;
    }
    t.shape_ = shape;
    t.dtype_ = dtype;
    t.device_ = device;
    return t;
}

Tensor Tensor::zeros(const std::vector<int64_t>& shape, DType dtype, Device device) {
    Tensor t = empty(shape, dtype, device);
    if (device.kind == Device::Kind::cuda)
        cuda::zero(t.data_, t.nbytes(), device.index);
    else
        std::memset(t.data_, 0, t.nbytes());
    return t;
}

Tensor Tensor::from_blob(void* data, const std::vector<int64_t>& shape, DType dtype, Device device,
                         std::shared_ptr<void> owner) {
    checked_numel(shape, dtype_size(dtype), "Tensor.from_blob");
    Tensor t;
    t.owner_ = std::move(owner);
    t.data_ = data;
    t.shape_ = shape;
    t.dtype_ = dtype;
    t.device_ = device;
    if (t.owner_ == nullptr && data == nullptr) t.owner_ = std::make_shared<int>(0);  // empty but defined
    return t;
}

int64_t Tensor::size(int64_t d) const {
    const int64_t nd = dim();
    if (d < -nd || d >= nd) throw Error("Tensor.size: dim " + std::to_string(d) + " out of range for " + shape_str());
    return shape_[static_cast<size_t>(d < 0 ? d + nd : d)];
}

int64_t Tensor::numel() const {
    int64_t n = 1;
    for (int64_t s : shape_) n *= s;
    return n;
}

Tensor Tensor::view(const std::vector<int64_t>& shape) const {
    std::vector<int64_t> s = shape;
    int64_t known = 1, infer = -1;
    for (size_t i = 0; i < s.size(); i++) {
        if (s[i] == -1) {
            if (infer >= 0) throw Error("Tensor.view: only one dimension may be -1");
            infer = static_cast<int64_t>(i);
        } else if (s[i] < 0) {
            throw Error("Tensor.view: negative dimension");
        } else if (__builtin_mul_overflow(known, s[i], &known)) {
            throw Error("Tensor.view: the shape asked for has too many elements to view " + shape_str());
        }
    }
    if (infer >= 0) {
        if (known == 0 || numel() % known != 0) throw Error("Tensor.view: cannot infer the -1 dimension");
        s[static_cast<size_t>(infer)] = numel() / known;
    }
    if (checked_numel(s, dtype_size(dtype_), "Tensor.view") != numel())
        throw Error("Tensor.view: shape has a different number of elements than " + shape_str());
    Tensor t = *this;
    t.shape_ = s;
    return t;
}

Tensor Tensor::slice(int64_t begin, int64_t end) const {
    if (dim() < 1) throw Error("Tensor.slice: a 0-d tensor has no rows");
    if (begin < 0 || end < begin || end > shape_[0]) throw Error("Tensor.slice: rows out of range");
    const int64_t row = shape_[0] ? numel() / shape_[0] : 0;
    Tensor t = *this;
    t.shape_[0] = end - begin;
    t.data_ = static_cast<char*>(data_) + static_cast<size_t>(begin * row) * dtype_size(dtype_);
    return t;
}

Tensor Tensor::clone() const {
    Tensor t = empty(shape_, dtype_, device_);  // a fresh, writable copy
    t.copy_from(*this);
    return t;
}

void Tensor::copy_columns_from(const Tensor& src, int64_t first_column) const {
    if (!defined() || !src.defined() || dim() < 1 || src.dim() < 1)
        throw Error("Tensor.copy_columns_from: both tensors must be defined with at least one dimension");
    if (read_only_) throw Error("Tensor.copy_columns_from: the destination is read-only");
    if (src.dtype_ != dtype_)
        throw TypeError(std::string("Tensor.copy_columns_from: dtype ") + dtype_name(src.dtype_) + " != " +
                        dtype_name(dtype_));
    const int64_t W = shape_.back(), S = src.shape_.back();
    const int64_t rows = W ? numel() / W : 0, src_rows = S ? src.numel() / S : 0;
    if (first_column < 0 || first_column > S - W || (W && rows != src_rows))
        throw Error("Tensor.copy_columns_from: columns [" + std::to_string(first_column) + ", " +
                    std::to_string(first_column + W) + ") of " + src.shape_str() + " do not fit " + shape_str());
    if (rows == 0 || W == 0) return;
    const size_t es = dtype_size(dtype_), width = static_cast<size_t>(W) * es, spitch = static_cast<size_t>(S) * es;
    const char* from = static_cast<const char*>(src.data_) + static_cast<size_t>(first_column) * es;
    if (device_.kind == Device::Kind::cpu && src.device_.kind == Device::Kind::cpu) {
        for (int64_t r = 0; r < rows; r++)
            std::memmove(static_cast<char*>(data_) + static_cast<size_t>(r) * width, from + static_cast<size_t>(r) * spitch,
                         width);
    } else {
        cuda::copy_2d(data_, width, device_, from, spitch, src.device_, width, static_cast<size_t>(rows));
    }
}

Tensor Tensor::to(Device device) const {
    if (device == device_) return *this;
    Tensor t = empty(shape_, dtype_, device);
    t.copy_from(*this);
    return t;
}

void Tensor::copy_from(const Tensor& src) const {
    if (!defined() || !src.defined()) throw Error("Tensor.copy_from: both tensors must be defined");
    if (read_only_) throw Error("Tensor.copy_from: the destination is read-only");
    if (src.numel() != numel())
        throw Error("Tensor.copy_from: source " + src.shape_str() + " and destination " + shape_str() +
                    " have different sizes");
    if (src.dtype_ != dtype_) {  // a conversion: on one device only
        if (src.device_ != device_)
            throw TypeError(std::string("Tensor.copy_from: converting ") + dtype_name(src.dtype_) + " to " +
                            dtype_name(dtype_) + " needs both tensors on one device (" + src.device_.str() +
                            " vs " + device_.str() + ")");
        if (overlaps(src)) throw Error("Tensor.copy_from: a converting copy may not overlap its source");
        const int64_t n = numel();
        if (device_.kind == Device::Kind::cuda) {
            cuda::DeviceGuard g(device_.index);
            if (n) cuda::cast(data_, dtype_, src.data_, src.dtype_, n);
        } else {
            for (int64_t i = 0; i < n; i++)
                detail::store_element(data_, dtype_, i, detail::load_element(src.data_, src.dtype_, i));
        }
        return;
    }
    if (nbytes() == 0 || data_ == src.data_) return;
    if (device_.kind == Device::Kind::cpu && src.device_.kind == Device::Kind::cpu)
        std::memmove(data_, src.data_, nbytes());
    else
        cuda::copy(data_, device_, src.data_, src.device_, nbytes());
}


Tensor Tensor::to(DType dtype) const {
    if (dtype == dtype_) return clone();
    Tensor t = empty(shape_, dtype, device_);
    if (device_.kind == Device::Kind::cuda) {
        cuda::DeviceGuard g(device_.index);
        cuda::cast(t.data_, dtype, data_, dtype_, numel());
        return t;
    }
    const int64_t n = numel();
    // float32 -> float32 is the only exact path through double for every value; other pairs round once.
    for (int64_t i = 0; i < n; i++) detail::store_element(t.data_, dtype, i, detail::load_element(data_, dtype_, i));
    return t;
}

void Tensor::fill(double value) const {
    if (read_only_) throw Error("Tensor.fill: the tensor is read-only");
    const int64_t n = numel();
    if (device_.kind == Device::Kind::cuda) {
        cuda::DeviceGuard g(device_.index);
        if (n) cuda::fill(data_, dtype_, n, value);
        return;
    }
    // The value converted once, then copied as a bit pattern (memset for zero): the per-element conversion ran at a
    // sixth of numpy's fill speed.
    unsigned char bits[8] = {0};
    detail::store_element(bits, dtype_, 0, value);
    const size_t es = dtype_size(dtype_);
    bool zero = true;
    for (size_t i = 0; i < es; i++) zero = zero && bits[i] == 0;
    if (zero) {
        std::memset(data_, 0, nbytes());
        return;
    }
    switch (es) {
        case 1: std::fill_n(static_cast<uint8_t*>(data_), n, bits[0]); return;
        case 2: fill_bits<uint16_t>(data_, n, bits); return;
        case 4: fill_bits<uint32_t>(data_, n, bits); return;
        default: fill_bits<uint64_t>(data_, n, bits); return;
    }
}

bool Tensor::overlaps(const Tensor& o) const {
    if (!defined() || !o.defined() || nbytes() == 0 || o.nbytes() == 0 || device_ != o.device_) return false;
    const char* a0 = static_cast<const char*>(data_);
    const char* b0 = static_cast<const char*>(o.data_);
    return a0 < b0 + o.nbytes() && b0 < a0 + nbytes();
}

bool Tensor::same_memory(const Tensor& o) const {
    return data_ == o.data_ && nbytes() == o.nbytes() && dtype_ == o.dtype_ && device_ == o.device_;
}

}  // namespace gptx
