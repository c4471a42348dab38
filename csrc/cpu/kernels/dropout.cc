// dropout.cc — dropout_forward / dropout_backward: out = (residual +) inp * Z with the mask regenerated from the
// counter-based generator (backend/dropout_mask.h). Nothing is stored between forward and backward: regenerating a
// row's bits costs ~10 integer vector ops per element, while a stored byte mask would add a write in forward and a
// read in backward to ops that are already bound by memory traffic.
#include <string.h>

#include "../kernels.h"
#include "../threads.h"
#include "../vec.h"
#include "misc_common.h"

namespace gptx {
namespace cpu {
namespace GPTX_ISA_NS {
namespace {

// v where keep, else +0.0, as a bit mask (a float select in this loop stayed a branch: GCC would not vectorise it).
static inline float keep_or_zero(float v, bool keep) {
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    u &= 0u - (uint32_t)keep;
    float r;
    memcpy(&r, &u, sizeof r);
    return r;
}

// Row by row (the row state is one 64-bit mix); the column loop is plain integer and float arithmetic that the
// compiler vectorises for this unit's ISA (32-bit multiplies: pmulld on AVX2/AVX-512, emulated on SSE2).
static void dropout_rows(const DropoutParams& p) {
    const float* inp = f32(p.inp);
    const float* res = f32(p.residual);
    float* out = f32(p.out);
    const int64_t rows = p.rows, cols = p.cols;
    const uint64_t key = p.mask.key;
    const uint32_t thr = p.mask.threshold;
    const float scale = p.mask.scale;
    const int nt = rows * cols >= kParallelMinHeavy && rows > 1 ? num_threads() : 1;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const uint32_t rs = dropout_row(key, (uint64_t)r);
        const float* x = inp + r * cols;
        float* o = out + r * cols;
        // the product is formed unconditionally, then masked
        if (res != nullptr) {
            const float* a = res + r * cols;
            for (int64_t c = 0; c < cols; c++)
                o[c] = a[c] + keep_or_zero(x[c] * scale, dropout_bits(rs, (uint32_t)c) >= thr);
        } else {
            for (int64_t c = 0; c < cols; c++) o[c] = keep_or_zero(x[c] * scale, dropout_bits(rs, (uint32_t)c) >= thr);
        }
    }
}

}  // namespace

void dropout_forward(const DropoutParams& p) { dropout_rows(p); }

void dropout_backward(const DropoutParams& p) { dropout_rows(p); }

}  // namespace GPTX_ISA_NS
}  // namespace cpu
}  // namespace gptx
