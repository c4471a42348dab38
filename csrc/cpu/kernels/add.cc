// add.cc — add_forward: out = a + b elementwise (the residual connections; out may be a or b).
#include "../kernels.h"
#include "../threads.h"
#include "../vec.h"
#include "misc_common.h"

namespace gptx {
namespace cpu {
namespace GPTX_ISA_NS {

void add_forward(const AddParams& p) {
    float* out = f32(p.out);
    const float* a = f32(p.a);
    const float* b = f32(p.b);
    const int64_t n = p.n;
    // In place the destination lines were just read, so plain stores cost no extra traffic; streaming only helps
    // a fresh output.
    const bool stream = want_stream(n) && out != a && out != b;
    parallel_range(n, kParallelMinWork, [&](int64_t lo, int64_t hi) {
        const float* pa = a + lo;
        const float* pb = b + lo;
        write_row(out + lo, hi - lo, stream,
                  [&](int64_t i, int64_t cnt) { return vload_n(pa + i, cnt, 0.0f) + vload_n(pb + i, cnt, 0.0f); });
        if (stream) stream_fence();
    });
}

}  // namespace GPTX_ISA_NS
}  // namespace cpu
}  // namespace gptx
