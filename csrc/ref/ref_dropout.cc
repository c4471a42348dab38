// ref_dropout.cc — scalar reference of dropout_forward / dropout_backward (the spec of the mask and the scaling).
#include "../cpu/kernels.h"
#include "../cpu/threads.h"

namespace gptx {
namespace cpu {
namespace GPTX_ISA_NS {

namespace {

// Element (r, c) of (rows, cols): kept when the generator's bits of (row r, column c) reach the threshold, and then
// multiplied by scale = float32(1 / (1 - p)) (one rounding); dropped elements are 0. The residual, when given, is
// added after that product.
void dropout_ref(const DropoutParams& p) {
    const float* inp = f32(p.inp);
    const float* res = f32(p.residual);
    float* out = f32(p.out);
    const int nt = num_threads();
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t r = 0; r < p.rows; r++) {
        const uint32_t rs = dropout_row(p.mask.key, (uint64_t)r);
        for (int64_t c = 0; c < p.cols; c++) {
            const int64_t i = r * p.cols + c;
            const bool keep = dropout_keep(p.mask, rs, (uint32_t)c);
            const float d = keep ? inp[i] * p.mask.scale : 0.0f;
            out[i] = res != nullptr ? res[i] + d : d;
        }
    }
}

}  // namespace

void dropout_forward(const DropoutParams& p) { dropout_ref(p); }

void dropout_backward(const DropoutParams& p) { dropout_ref(p); }

}  // namespace GPTX_ISA_NS
}  // namespace cpu
}  // namespace gptx
