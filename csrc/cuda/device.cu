// device.cu — CUDA device discovery. Any runtime error (35: no driver, 100: no device) means "no CUDA here".
#include <cuda_runtime.h>

#include "gptx/runtime.h"

namespace gptx {
bool cuda_built() { return true; }

int cuda_device_count() {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();  // clear the sticky error so later queries start clean
        return 0;
    }
    return n;
}
}  // namespace gptx
