// embedding.cc — token + position embedding: forward gather-add and deterministic scatter-add backward.
#include <omp.h>

#include "../kernels.h"
#include "../threads.h"
#include "../vec.h"
#include "misc_common.h"

namespace gptx {
namespace cpu {
namespace GPTX_ISA_NS {
namespace {

// dst[0..n) += src[0..n)
static inline void add_into(float* dst, const float* src, int64_t n) {
    int64_t j = 0;
    for (; j + kW <= n; j += kW) vstore(dst + j, vload(dst + j) + vload(src + j));
    if (j < n) vstore_part(dst + j, vload_part(dst + j, n - j, 0.0f) + vload_part(src + j, n - j, 0.0f), n - j);
}

}  // namespace

void embedding_forward(const EmbeddingParams& p) {
    float* out = f32(p.out);
    const int32_t* idx = p.idx;
    const float* wte = f32(p.wte);
    const float* wpe = f32(p.wpe);
    const int64_t B = p.B, T = p.T, C = p.C, pos_offset = p.pos_offset;
    const int nt = num_threads();
    const int64_t rows = B * T;
    const bool stream = want_stream(rows * C);
    const bool par = nt > 1 && rows > 1 && rows * C >= kParallelMinWork;
#pragma omp parallel num_threads(nt) if (par)
    {
#pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            const float* te = wte + (int64_t)idx[r] * C;
            const float* pe = wpe + (pos_offset + r % T) * C;
            write_row(out + r * C, C, stream, [&](int64_t i, int64_t cnt) {
                return vload_n(te + i, cnt, 0.0f) + vload_n(pe + i, cnt, 0.0f);
            });
        }
        if (stream) stream_fence();
    }
}

// Each thread owns a slice of the C columns (on 16-float boundaries, so no cache line is shared) and walks the tokens
// in (b, t) order: every element of dwte/dwpe receives its additions in the same order whatever the thread count,
// with no atomics. Repeated tokens hit the same slice of dwte, which then stays in L1.
void embedding_backward(const EmbeddingBackwardParams& p) {
    float* dwte = p.dwte;
    float* dwpe = p.dwpe;
    const float* dout = f32(p.dout);
    const int32_t* idx = p.idx;
    const int64_t B = p.B, T = p.T, C = p.C, pos_offset = p.pos_offset;
    const int nt = num_threads();
    const bool par = nt > 1 && C >= 32 && B * T * C >= kParallelMinWork;
#pragma omp parallel num_threads(nt) if (par)
    {
        const int64_t parts = omp_get_num_threads(), t = omp_get_thread_num();
        const int64_t per = ((C + parts - 1) / parts + 15) & ~int64_t(15);
        const int64_t c0 = per * t < C ? per * t : C;
        const int64_t c1 = c0 + per < C ? c0 + per : C;
        if (c0 < c1) {
            for (int64_t b = 0; b < B; b++)
                for (int64_t tt = 0; tt < T; tt++) {
                    const float* d = dout + (b * T + tt) * C + c0;
                    add_into(dwte + (int64_t)idx[b * T + tt] * C + c0, d, c1 - c0);
                    add_into(dwpe + (pos_offset + tt) * C + c0, d, c1 - c0);
                }
        }
    }
}

}  // namespace GPTX_ISA_NS
}  // namespace cpu
}  // namespace gptx
