// ref_cross_entropy.cc — scalar reference of the fused softmax cross-entropy over padded logits (N, Vp).
#include <cmath>

#include "../cpu/kernels.h"
#include "../cpu/threads.h"

namespace gptx {
namespace cpu {
namespace GPTX_ISA_NS {

// lse_i = log sum_{j<V} exp(logits[i, j]) (computed for every row, ignored or not; lse may be null),
// losses[i] = lse_i - logits[i, targets[i]], or 0 where targets[i] == ignore_index. Columns >= V are never read.
void cross_entropy_forward(const CrossEntropyParams& p) {
    float* losses = p.losses;
    float* lse = p.lse;
    const float* logits = f32(p.logits);
    const int32_t* targets = p.targets;
    const int64_t N = p.N, V = p.V, Vp = p.Vp;
    const int32_t ignore_index = p.ignore_index;
    const int nt = num_threads();
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t i = 0; i < N; i++) {
        const float* z = logits + i * Vp;
        double mx = -INFINITY;
        for (int64_t j = 0; j < V; j++)
            if (z[j] > mx || std::isnan(z[j])) mx = z[j];
        double sum = 0.0;
        for (int64_t j = 0; j < V; j++) sum += std::exp(z[j] - mx);
        // all -inf logits: log(0) = -inf, taken as is (the loss is then +inf or NaN, as in torch)
        const double row_lse = mx == -INFINITY ? -INFINITY : mx + std::log(sum);
        if (lse != nullptr) lse[i] = (float)row_lse;
        losses[i] = targets[i] == ignore_index ? 0.0f : (float)(row_lse - z[targets[i]]);
    }
    if (p.loss != nullptr) *p.loss = mean_loss(losses, targets, N, ignore_index);
}

// With the saved lse: dlogits[i, j] = dlosses[i] * (exp(logits[i, j] - lse_i) - [j == targets[i]]) for j < V,
// 0 for V <= j < Vp, and 0 on the whole row where targets[i] == ignore_index; with accumulate these are added to
// the old contents instead. Each element is read before it is written, so dlogits may equal logits.
void cross_entropy_backward(const CrossEntropyBackwardParams& p) {
    float* dlogits = f32(p.dlogits);
    const float* logits = f32(p.logits);
    const float* lse = p.lse;
    const int32_t* targets = p.targets;
    const float* dlosses = p.dlosses;
    const int64_t N = p.N, V = p.V, Vp = p.Vp;
    const int32_t ignore_index = p.ignore_index;
    const bool accumulate = p.accumulate;
    const int nt = num_threads();
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t i = 0; i < N; i++) {
        const float* z = logits + i * Vp;
        float* dz = dlogits + i * Vp;
        const bool ignored = targets[i] == ignore_index;
        const double row_lse = lse[i];
        const double dl = ignored ? 0.0 : (double)dlosses[i];
        for (int64_t j = 0; j < Vp; j++) {
            double d = 0.0;
            if (!ignored && j < V) d = dl * (std::exp(z[j] - row_lse) - (j == targets[i] ? 1.0 : 0.0));
            dz[j] = (float)(accumulate ? dz[j] + d : d);
        }
    }
}

}  // namespace GPTX_ISA_NS
}  // namespace cpu
}  // namespace gptx
