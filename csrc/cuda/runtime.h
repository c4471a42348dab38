// runtime.h — the CUDA runtime services the core needs (memory, copies, streams, device selection), as plain C++
// so that csrc/core and csrc/ops compile without the CUDA toolkit. Implemented by runtime.cu (CUDA builds) and
// no_cuda.cc (builds without CUDA: every call throws a clear gptx::TypeError).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>

#include "gptx/tensor.h"

namespace gptx {
namespace cuda {

// Throws gptx::TypeError unless this build has CUDA and `device` names an existing GPU.
void require_device(const Device& device, const char* what);

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

// The stream the calling thread enqueues work on for `device` (a cudaStream_t as void*; nullptr = the legacy
// default stream, shared with PyTorch and CuPy unless they were told otherwise).
void* current_stream(int device);
void set_current_stream(int device, void* stream);

// Waits until every piece of work queued on `device` is done; throws on an asynchronous kernel error.
void synchronize(int device);

// Streams owned by the caller (gptx.cuda.Stream): non-blocking with respect to the legacy default stream is NOT
// requested, so work on them still orders against PyTorch's default stream.
void* stream_create(int device);
void stream_destroy(int device, void* stream);
void stream_synchronize(int device, void* stream);

// Allocator statistics and control for one device (bytes).
struct MemoryStats {
    size_t allocated = 0;  // in live tensors
    size_t reserved = 0;   // allocated + cached
    size_t peak_allocated = 0;
};
MemoryStats memory_stats(int device);
void empty_cache(int device);  // returns cached blocks to the driver
void reset_peak(int device);

// A device's name, compute capability and memory, for gptx.info().
struct DeviceProperties {
    char name[256] = {0};
    int major = 0, minor = 0, multiprocessors = 0;
    size_t total_memory = 0;
};
DeviceProperties properties(int device);

}  // namespace cuda
}  // namespace gptx
