// ref_add.cc — scalar reference of add_forward.
#include "../cpu/kernels.h"
#include "../cpu/threads.h"

namespace gptx {
namespace cpu {
namespace GPTX_ISA_NS {

// out = a + b, one correctly rounded float addition per element; out may equal a or b.
void add_forward(const AddParams& p) {
    float* out = f32(p.out);
    const float* a = f32(p.a);
    const float* b = f32(p.b);
    const int64_t n = p.n;
    const int nt = num_threads();
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

}  // namespace GPTX_ISA_NS
}  // namespace cpu
}  // namespace gptx
