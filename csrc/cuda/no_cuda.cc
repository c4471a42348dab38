// no_cuda.cc — the CUDA queries of a build without the CUDA backend.
#include "gptx/runtime.h"

namespace gptx {
bool cuda_built() { return false; }
int cuda_device_count() { return 0; }
}  // namespace gptx
