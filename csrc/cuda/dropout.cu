// dropout.cu — dropout_forward / dropout_backward on the GPU: out = (residual +) inp * Z, the mask regenerated from
// the counter-based generator (backend/dropout_mask.h), so it is the CPU's mask bit for bit. Memory-bound: one block
// per row (a token), threads stride over its columns; each thread mixes the row state once and then spends one
// 32-bit mix per element. __fmul_rn keeps the product a separate rounding (no fma with the residual), as on the CPU.
#include <cstdint>

#include "cuda/common.cuh"
#include "cuda/kernels.h"

namespace gptx {
namespace cuda {
namespace {

constexpr int kThreads = 256;

template <typename T>
__global__ void __launch_bounds__(kThreads) dropout_kernel(T* out, const T* inp, const T* res, int64_t rows,
                                                           int64_t cols, backend::DropoutMask m) {
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const uint32_t rs = backend::dropout_row(m.key, (uint64_t)r);
        const int64_t base = r * cols;
        for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
            const bool keep = backend::dropout_bits(rs, (uint32_t)c) >= m.threshold;
            const float d = keep ? __fmul_rn(to_float(inp[base + c]), m.scale) : 0.0f;
            out[base + c] = from_float<T>(res != nullptr ? to_float(res[base + c]) + d : d);
        }
    }
}

void launch(const DropoutParams& p, const char* what) {
    if (p.rows <= 0 || p.cols <= 0) return;
    dispatch_float(p.dtype, what, [&](auto tag) {
        using T = decltype(tag);
        const unsigned grid = (unsigned)(p.rows < (1LL << 30) ? p.rows : (1LL << 30));
        dropout_kernel<T><<<grid, kThreads, 0, stream()>>>(static_cast<T*>(p.out), static_cast<const T*>(p.inp),
                                                           static_cast<const T*>(p.residual), p.rows, p.cols, p.mask);
        GPTX_CUDA_CHECK_LAUNCH(what);
    });
}

}  // namespace

void dropout_forward(const DropoutParams& p) { launch(p, "dropout_forward"); }

void dropout_backward(const DropoutParams& p) { launch(p, "dropout_backward"); }

}  // namespace cuda
}  // namespace gptx
