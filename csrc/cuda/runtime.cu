// runtime.cu — device memory (a caching allocator), copies, streams and device selection for the CUDA backend.
#include <cstdio>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "cuda/common.cuh"
#include "gptx/runtime.h"

namespace gptx {
namespace cuda {

void throw_cuda_error(cudaError_t err, const char* what, const char* file, int line) {
    cudaGetLastError();  // clear a non-sticky error so the next call starts clean
    std::string where = file;
    const size_t slash = where.find_last_of('/');
    if (slash != std::string::npos) where = where.substr(slash + 1);
    throw CudaError(std::string("CUDA error in ") + what + " (" + where + ":" + std::to_string(line) +
                    "): " + cudaGetErrorName(err) + ": " + cudaGetErrorString(err));
}

void require_device(const Device& device, const char* what) {
    const int n = cuda_device_count();
    if (device.kind != Device::Kind::cuda || device.index < 0 || device.index >= n)
        // Not an argument of the wrong kind but hardware that is absent: RuntimeError, as gptx.GPT(device=) raises.
        throw CudaError(std::string(what) + ": device " + device.str() + " is not available (" + std::to_string(n) +
                        " CUDA device" + (n == 1 ? "" : "s") + " visible)");
}

DeviceGuard::DeviceGuard(int device) {
    GPTX_CUDA_CHECK(cudaGetDevice(&previous_));
    if (previous_ != device) GPTX_CUDA_CHECK(cudaSetDevice(device));
}

DeviceGuard::~DeviceGuard() {
    int now = -1;
    if (previous_ >= 0 && cudaGetDevice(&now) == cudaSuccess && now != previous_) cudaSetDevice(previous_);
}

// ------------------------------------------------------------------------------------------------ streams
namespace {
thread_local std::unordered_map<int, void*> t_streams;  // per thread: device -> current stream (absent: legacy)
}

void* current_stream(int device) {
    auto it = t_streams.find(device);
    return it == t_streams.end() ? nullptr : it->second;
}

void set_current_stream(int device, void* stream) {
    if (stream == nullptr)
        t_streams.erase(device);
    else
        t_streams[device] = stream;
}

void synchronize(int device) {
    DeviceGuard g(device);
    GPTX_CUDA_CHECK(cudaDeviceSynchronize());
}

void* stream_create(int device) {
    DeviceGuard g(device);
    cudaStream_t s = nullptr;
    GPTX_CUDA_CHECK(cudaStreamCreate(&s));
    return s;
}

void stream_destroy(int device, void* stream) {
    if (stream == nullptr) return;
    DeviceGuard g(device);
    GPTX_CUDA_CHECK(cudaStreamDestroy(static_cast<cudaStream_t>(stream)));
}

void stream_synchronize(int device, void* stream) {
    DeviceGuard g(device);
    GPTX_CUDA_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(stream)));
}

void set_device(int device) { GPTX_CUDA_CHECK(cudaSetDevice(device)); }

void stream_wait_stream(int device, void* waiter, void* waited) {
    if (waiter == waited) return;
    DeviceGuard g(device);
    cudaEvent_t e = nullptr;
    GPTX_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    GPTX_CUDA_CHECK(cudaEventRecord(e, static_cast<cudaStream_t>(waited)));
    GPTX_CUDA_CHECK(cudaStreamWaitEvent(static_cast<cudaStream_t>(waiter), e, 0));
    GPTX_CUDA_CHECK(cudaEventDestroy(e));  // legal once waited on: the wait keeps what it needs
}

// ------------------------------------------------------------------------------------------------ allocator
// Blocks are cached by (device, stream, rounded size) and handed out again only to the same stream: work on one
// stream runs in order, so a block freed while its last kernels are still queued is safe to reuse there. A tensor
// used on another stream than the one it was allocated on must be kept alive by the caller until that work is done
// (as with PyTorch's record_stream). Sizes round up (512 B below 1 MiB, 2 MiB above) so that the shapes a training
// step repeats hit the cache exactly.
namespace {

size_t round_size(size_t bytes) {
    if (bytes == 0) bytes = 1;
    const size_t unit = bytes < (1u << 20) ? 512 : (2u << 20);
    return (bytes + unit - 1) / unit * unit;
}

struct Key {
    int device;
    void* stream;
    size_t size;
    bool operator==(const Key& o) const { return device == o.device && stream == o.stream && size == o.size; }
};
struct KeyHash {
    size_t operator()(const Key& k) const {
        return std::hash<size_t>()(k.size) ^ (std::hash<void*>()(k.stream) << 1) ^ static_cast<size_t>(k.device);
    }
};

class CachingAllocator {
public:
    void* allocate(size_t bytes, int device, void* stream, size_t* rounded) {
        const size_t size = round_size(bytes);
        *rounded = size;
        {
            std::lock_guard<std::mutex> lock(mu_);
            auto it = free_.find(Key{device, stream, size});
            if (it != free_.end() && !it->second.empty()) {
                void* p = it->second.back();
                it->second.pop_back();
                account(device, size, true, false);
                return p;
            }
        }
        DeviceGuard g(device);
        void* p = nullptr;
        cudaError_t err = cudaMalloc(&p, size);
        if (err == cudaErrorMemoryAllocation) {  // give the cache back to the driver and try once more
            cudaGetLastError();
            release(device);
            err = cudaMalloc(&p, size);
        }
        if (err != cudaSuccess) {
            cudaGetLastError();
            throw CudaError("CUDA out of memory or allocation failure: asked for " + std::to_string(size) +
                            " bytes on cuda:" + std::to_string(device) + " (" + cudaGetErrorString(err) + "; " +
                            std::to_string(stats(device).reserved) + " bytes reserved by gptx)");
        }
        std::lock_guard<std::mutex> lock(mu_);
        account(device, size, true, true);
        return p;
    }

    void free(void* p, int device, void* stream, size_t size) {
        std::lock_guard<std::mutex> lock(mu_);
        free_[Key{device, stream, size}].push_back(p);
        account(device, size, false, false);
    }

    void release(int device) {
        std::vector<std::pair<void*, size_t>> blocks;
        {
            std::lock_guard<std::mutex> lock(mu_);
            for (auto& kv : free_) {
                if (kv.first.device != device) continue;
                for (void* p : kv.second) blocks.emplace_back(p, kv.first.size);
                kv.second.clear();
            }
        }
        if (blocks.empty()) return;
        DeviceGuard g(device);
        cudaDeviceSynchronize();  // cached blocks may still be read by queued work
        for (auto& b : blocks) cudaFree(b.first);
        std::lock_guard<std::mutex> lock(mu_);
        for (auto& b : blocks) stats_[device].reserved -= b.second;
    }

    MemoryStats stats(int device) {
        std::lock_guard<std::mutex> lock(mu_);
        return stats_[device];
    }

    void reset_peak(int device) {
        std::lock_guard<std::mutex> lock(mu_);
        stats_[device].peak_allocated = stats_[device].allocated;
    }

private:
    void account(int device, size_t size, bool alloc, bool fresh) {
        MemoryStats& s = stats_[device];
        if (alloc) {
            s.allocated += size;
            if (fresh) s.reserved += size;
            if (s.allocated > s.peak_allocated) s.peak_allocated = s.allocated;
        } else {
            s.allocated -= size;
        }
    }

    std::mutex mu_;
    std::unordered_map<Key, std::vector<void*>, KeyHash> free_;
    std::unordered_map<int, MemoryStats> stats_;
};

// Never destroyed: tensors may be freed during interpreter shutdown, after static destructors ran.
CachingAllocator& allocator() {
    static CachingAllocator* a = new CachingAllocator();
    return *a;
}

}  // namespace

std::shared_ptr<void> allocate(size_t bytes, int device) {
    void* stream = current_stream(device);
    size_t size = 0;
    void* p = allocator().allocate(bytes, device, stream, &size);
    return std::shared_ptr<void>(p, [device, stream, size](void* q) { allocator().free(q, device, stream, size); });
}

MemoryStats memory_stats(int device) { return allocator().stats(device); }
void empty_cache(int device) { allocator().release(device); }
void reset_peak(int device) { allocator().reset_peak(device); }

// ------------------------------------------------------------------------------------------------ copies
void copy(void* dst, const Device& dst_device, const void* src, const Device& src_device, size_t bytes) {
    if (bytes == 0) return;
    const bool dst_gpu = dst_device.kind == Device::Kind::cuda, src_gpu = src_device.kind == Device::Kind::cuda;
    const int device = dst_gpu ? dst_device.index : src_device.index;
    DeviceGuard g(device);
    cudaStream_t s = static_cast<cudaStream_t>(current_stream(device));
    if (dst_gpu && src_gpu && dst_device.index != src_device.index) {
        GPTX_CUDA_CHECK(cudaMemcpyPeerAsync(dst, dst_device.index, src, src_device.index, bytes, s));
    } else {
        GPTX_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, s));
    }
    if (!dst_gpu) GPTX_CUDA_CHECK(cudaStreamSynchronize(s));  // the host reads the bytes right after
}

void copy_2d(void* dst, size_t dpitch, const Device& dst_device, const void* src, size_t spitch,
             const Device& src_device, size_t width, size_t height) {
    if (width == 0 || height == 0) return;
    const bool dst_gpu = dst_device.kind == Device::Kind::cuda, src_gpu = src_device.kind == Device::Kind::cuda;
    if (dst_gpu && src_gpu && dst_device.index != src_device.index)
        throw TypeError("copy_2d: between two GPUs (" + src_device.str() + " -> " + dst_device.str() +
                        "): copy through one device first");
    const int device = dst_gpu ? dst_device.index : src_device.index;
    DeviceGuard g(device);
    cudaStream_t s = static_cast<cudaStream_t>(current_stream(device));
    GPTX_CUDA_CHECK(cudaMemcpy2DAsync(dst, dpitch, src, spitch, width, height, cudaMemcpyDefault, s));
    if (!dst_gpu) GPTX_CUDA_CHECK(cudaStreamSynchronize(s));
}

void zero(void* p, size_t bytes, int device) {
    if (bytes == 0) return;
    DeviceGuard g(device);
    GPTX_CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, static_cast<cudaStream_t>(current_stream(device))));
}

DeviceProperties device_properties(int device) {
    cudaDeviceProp p;
    GPTX_CUDA_CHECK(cudaGetDeviceProperties(&p, device));
    DeviceProperties out;
    snprintf(out.name, sizeof(out.name), "%s", p.name);
    out.major = p.major;
    out.minor = p.minor;
    out.multiprocessors = p.multiProcessorCount;
    out.total_memory = p.totalGlobalMem;
    return out;
}

}  // namespace cuda
}  // namespace gptx
