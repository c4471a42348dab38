// runtime.h — the CUDA runtime services only the library itself uses (memory, copies, fill and dtype conversion of
// device memory, device selection), as plain
// C++ so that csrc/core and csrc/ops compile without the CUDA toolkit; what users see (streams, synchronise, memory
// statistics, device properties) is declared in the public gptx/runtime.h. Implemented by runtime.cu (CUDA builds) and
// no_cuda.cc (builds without CUDA: every call throws a clear gptx::TypeError).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>

#include "gptx/runtime.h"
#include "gptx/tensor.h"

namespace gptx {
namespace cuda {

// Device memory from the caching allocator (freed blocks are kept per device and stream and reused; see
// allocator.cu). The returned owner frees the block back to the cache. 256-byte aligned.
std::shared_ptr<void> allocate(size_t bytes, int device);

// Copy `bytes` between any two of host / device memory on the current stream. A copy whose destination is the
// host waits for its completion (the host may read the bytes at once); other copies are only enqueued.
void copy(void* dst, const Device& dst_device, const void* src, const Device& src_device, size_t bytes);

// A 2-D copy of `height` rows of `width` bytes, rows `dpitch` / `spitch` bytes apart, on the current stream (the
// host waits when the destination is the host, as with copy()). Both sides on one device or the host.
void copy_2d(void* dst, size_t dpitch, const Device& dst_device, const void* src, size_t spitch,
             const Device& src_device, size_t width, size_t height);

// Sets `bytes` bytes at p to zero (enqueued on the current stream of `device`).
void zero(void* p, size_t bytes, int device);

// out = value for n elements of `dtype` (the element's bytes are the CPU's conversion of value, so a fill writes
// exactly the bits the CPU's fill would). Enqueued on the current stream.
void fill(void* out, DType dtype, int64_t n, double value);
// out = in converted (float32 <-> bfloat16/float16 round to nearest even, ints like a C cast), on the current stream.
void cast(void* out, DType out_dtype, const void* in, DType in_dtype, int64_t n);

// Makes `device` current for the lifetime of the guard (restores the previous one).
class DeviceGuard {
public:
    explicit DeviceGuard(int device);
    ~DeviceGuard();
    DeviceGuard(const DeviceGuard&) = delete;
    DeviceGuard& operator=(const DeviceGuard&) = delete;

private:
    int previous_ = -1;
};

}  // namespace cuda
}  // namespace gptx
