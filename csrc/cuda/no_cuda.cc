// no_cuda.cc — the CUDA entry points of a build without the CUDA backend: queries say "none", everything else
// throws a clear gptx::TypeError (the op layer rejects CUDA tensors before any of these could be reached).
#include <string>

#include "cuda/kernels.h"
#include "cuda/runtime.h"
#include "gptx/error.h"
#include "gptx/runtime.h"

namespace gptx {
bool cuda_built() { return false; }
int cuda_device_count() { return 0; }

namespace cuda {
namespace {
[[noreturn]] void unavailable(const char* what) {
    throw TypeError(std::string(what) + ": this build of gptx has no CUDA backend (rebuild with GPTX_CUDA=ON)");
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
MemoryStats memory_stats(int) { return {}; }
void empty_cache(int) {}
void reset_peak(int) {}
DeviceProperties device_properties(int) { unavailable("cuda device_properties"); }

void gemm(const GemmArgs&) { unavailable("matmul"); }
void bias_backward(float*, const void*, DType, int64_t, int64_t, bool) { unavailable("bias_backward"); }
void softmax_forward(void*, const void*, DType, int64_t, int64_t, float, int64_t) { unavailable("softmax_forward"); }
void softmax_backward(void*, const void*, const void*, DType, int64_t, int64_t, float) {
    unavailable("softmax_backward");
}
void attention_forward(const AttentionParams&) { unavailable("attention_forward"); }
void attention_backward(const AttentionBackwardParams&) { unavailable("attention_backward"); }
void layernorm_forward(void*, float*, float*, const void*, const float*, const float*, DType, int64_t, int64_t,
                       float) {
    unavailable("layernorm_forward");
}
void layernorm_backward(void*, float*, float*, const void*, const void*, const float*, const float*, const float*,
                        DType, int64_t, int64_t, bool) {
    unavailable("layernorm_backward");
}
void gelu_forward(void*, const void*, DType, int64_t) { unavailable("gelu_forward"); }
void gelu_backward(void*, const void*, const void*, DType, int64_t, bool) { unavailable("gelu_backward"); }
void add_forward(void*, const void*, const void*, DType, int64_t) { unavailable("add_forward"); }
void fill(void*, DType, int64_t, double) { unavailable("fill"); }
void cast(void*, DType, const void*, DType, int64_t) { unavailable("cast"); }
void embedding_forward(void*, const int32_t*, const void*, const void*, DType, int64_t, int64_t, int64_t, int64_t) {
    unavailable("embedding_forward");
}
void embedding_backward(float*, float*, const void*, const int32_t*, DType, int64_t, int64_t, int64_t, int64_t) {
    unavailable("embedding_backward");
}
void cross_entropy_forward(float*, float*, const void*, const int32_t*, DType, int64_t, int64_t, int64_t, int32_t) {
    unavailable("cross_entropy_forward");
}
void cross_entropy_backward(void*, const void*, const float*, const int32_t*, const float*, DType, int64_t, int64_t,
                            int64_t, int32_t, bool) {
    unavailable("cross_entropy_backward");
}
void adamw_step(float*, const float*, float*, float*, int64_t, const AdamWParams&) { unavailable("adamw_step"); }
double sum_squares(const void*, DType, int64_t) { unavailable("global_norm"); }

}  // namespace cuda
}  // namespace gptx
