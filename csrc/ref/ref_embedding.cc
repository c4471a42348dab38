// ref_embedding.cc — scalar reference of the token + position embedding and its (deterministic) backward.
#include <algorithm>
#include <numeric>
#include <vector>

#include "../cpu/kernels.h"
#include "../cpu/threads.h"

namespace gptx {
namespace cpu {
namespace GPTX_ISA_NS {

// out[b, t, :] = wte[idx[b, t], :] + wpe[pos_offset + t, :]
// (one rounded float addition: a sum of two floats needs no wider accumulator).
void embedding_forward(const EmbeddingParams& p) {
    float* out = f32(p.out);
    const int32_t* idx = p.idx;
    const float* wte = f32(p.wte);
    const float* wpe = f32(p.wpe);
    const int64_t B = p.B, T = p.T, C = p.C, pos_offset = p.pos_offset;
    const int nt = num_threads();
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t bt = 0; bt < B * T; bt++) {
        const int64_t t = bt % T;
        const float* tok = wte + (int64_t)idx[bt] * C;
        const float* pos = wpe + (pos_offset + t) * C;
        float* o = out + bt * C;
        for (int64_t c = 0; c < C; c++) o[c] = tok[c] + pos[c];
    }
}

// dwpe[pos_offset + t, :] += sum_b dout[b, t, :];  dwte[v, :] += sum over (b, t) with idx[b, t] == v of
// dout[b, t, :], taken in (b, t) order. Each sum starts from the old value and is held in double until stored.
void embedding_backward(const EmbeddingBackwardParams& p) {
    float* dwte = p.dwte;
    float* dwpe = p.dwpe;
    const float* dout = f32(p.dout);
    const int32_t* idx = p.idx;
    const int64_t B = p.B, T = p.T, C = p.C, pos_offset = p.pos_offset;
    const int nt = num_threads();
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t t = 0; t < T; t++) {
        float* dpos = dwpe + (pos_offset + t) * C;
        for (int64_t c = 0; c < C; c++) {
            double acc = dpos[c];
            for (int64_t b = 0; b < B; b++) acc += dout[(b * T + t) * C + c];
            dpos[c] = (float)acc;
        }
    }

    // Group the positions by token, keeping (b, t) order inside each group; each group owns one row of dwte.
    std::vector<int64_t> order(B * T);
    std::iota(order.begin(), order.end(), int64_t(0));
    std::stable_sort(order.begin(), order.end(), [idx](int64_t x, int64_t y) { return idx[x] < idx[y]; });
    std::vector<int64_t> group_start;
    for (int64_t k = 0; k < B * T; k++)
        if (k == 0 || idx[order[k]] != idx[order[k - 1]]) group_start.push_back(k);
    group_start.push_back(B * T);

    const int64_t groups = (int64_t)group_start.size() - 1;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t gi = 0; gi < groups; gi++) {
        float* dtok = dwte + (int64_t)idx[order[group_start[gi]]] * C;
        for (int64_t c = 0; c < C; c++) {
            double acc = dtok[c];
            for (int64_t k = group_start[gi]; k < group_start[gi + 1]; k++) acc += dout[order[k] * C + c];
            dtok[c] = (float)acc;
        }
    }
}

}  // namespace GPTX_ISA_NS
}  // namespace cpu
}  // namespace gptx
