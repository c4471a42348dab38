// no_cuda.cc — the CUDA entry points of a build without the CUDA backend: queries say "none" (no kernel table),
// everything else throws a clear gptx::TypeError (the op layer rejects CUDA tensors before any could be reached).
#include <string>

#include "backend/kernel_table.h"
#include "cuda/runtime.h"
#include "gptx/error.h"
#include "gptx/runtime.h"

namespace gptx {
bool cuda_built() { return false; }

namespace backend {
const KernelTable* cuda_kernels() { return nullptr; }
}  // namespace backend
int cuda_device_count() { return 0; }

namespace cuda {
namespace {
[[noreturn]] void unavailable(const char* what) {
    // RuntimeError in Python, like an absent device in a CUDA build and like gptx.GPT(device="cuda").
    throw CudaError(std::string(what) + ": this build of gptx has no CUDA backend (rebuild with GPTX_CUDA=ON)");
}
}  // namespace

void require_device(const Device&, const char* what) { unavailable(what); }
std::shared_ptr<void> allocate(size_t, int) { unavailable("cuda allocate"); }
void copy(void*, const Device&, const void*, const Device&, size_t) { unavailable("cuda copy"); }
void copy_2d(void*, size_t, const Device&, const void*, size_t, const Device&, size_t, size_t) {
    unavailable("cuda copy");
}
void zero(void*, size_t, int) { unavailable("cuda zero"); }
DeviceGuard::DeviceGuard(int) { unavailable("cuda device"); }
DeviceGuard::~DeviceGuard() = default;
void* current_stream(int) { return nullptr; }
void set_current_stream(int, void*) { unavailable("cuda stream"); }
void synchronize(int) { unavailable("cuda synchronize"); }
void* stream_create(int) { unavailable("cuda stream"); }
void stream_destroy(int, void*) {}
void stream_synchronize(int, void*) { unavailable("cuda stream"); }
void stream_wait_stream(int, void*, void*) { unavailable("cuda stream"); }
void set_device(int) { unavailable("cuda device"); }
MemoryStats memory_stats(int) { return {}; }
void empty_cache(int) {}
void reset_peak(int) {}
DeviceProperties device_properties(int) { unavailable("cuda device_properties"); }

void fill(void*, DType, int64_t, double) { unavailable("fill"); }
void cast(void*, DType, const void*, DType, int64_t) { unavailable("cast"); }

}  // namespace cuda
}  // namespace gptx
