// runtime.h — process-wide settings and facts: threads, the CPU kernel path (ISA) in use, the CUDA build and its
// runtime (streams, synchronisation, memory statistics).
#pragma once
#include <cstddef>
#include <string>
#include <vector>

#include "gptx/tensor.h"

namespace gptx {

// Threads the CPU kernels use (OpenMP). Defaults to the OpenMP default (OMP_NUM_THREADS or the core count).
int get_num_threads();
void set_num_threads(int n);  // 1 <= n <= 1024, else gptx::Error

// The CPU kernel path in use: "generic", "avx2", "avx512", or "reference" (the scalar spec, slow).
// Chosen once at load from cpuid, or forced with the environment variable GPTX_FORCE_ISA.
std::string cpu_isa();
// Paths this CPU can run, best last (always contains "generic" and "reference").
std::vector<std::string> available_cpu_isas();
// Switch the path for the whole process (tests use it). Throws gptx::Error if unknown or unsupported by this CPU.
void set_cpu_isa(const std::string& name);

// CUDA: whether this build contains the CUDA backend, and how many devices the driver reports (0 without a driver).
bool cuda_built();
int cuda_device_count();

// ------------------------------------------------------------------------------------------------ CUDA runtime
// Streams, synchronisation, allocator statistics and device facts. In a build without CUDA (or with no device)
// every call throws gptx::TypeError naming what was asked for. Streams travel as void* (a cudaStream_t; nullptr is
// the legacy default stream, shared with PyTorch and CuPy unless they were told otherwise).
namespace cuda {

// Throws gptx::TypeError unless this build has CUDA and `device` names an existing GPU.
void require_device(const Device& device, const char* what);

// The stream the calling thread enqueues work on for `device`.
void* current_stream(int device);
void set_current_stream(int device, void* stream);

// Waits until every piece of work queued on `device` is done; throws on an asynchronous kernel error.
void synchronize(int device);

// Streams owned by the caller (gptx.cuda.Stream): non-blocking with respect to the legacy default stream is NOT
// requested, so work on them still orders against PyTorch's default stream.
void* stream_create(int device);
void stream_destroy(int device, void* stream);
void stream_synchronize(int device, void* stream);
// Work enqueued on `waiter` after this call starts only once the work enqueued on `waited` so far is done (an event
// recorded on `waited` and waited for on `waiter`; the host does not wait). How collectives on their own stream are
// ordered with the compute stream.
void stream_wait_stream(int device, void* waiter, void* waited);
// Makes `device` the calling thread's current device (libraries loaded beside gptx, such as NCCL, use it).
void set_device(int device);

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
DeviceProperties device_properties(int device);

}  // namespace cuda
}  // namespace gptx
