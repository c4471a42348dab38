// adamw.cc — fused AdamW step (torch.optim.AdamW arithmetic) and the global norm (double-precision sum of squares).
#include <math.h>
#include <stdlib.h>

#include "../kernels.h"
#include "../threads.h"
#include "../vec.h"
#include "misc_common.h"

namespace gptx {
namespace cpu {
namespace GPTX_ISA_NS {
namespace {

// global_norm adds fixed chunks of this many floats; chunk sums are combined in chunk order, so the result is the
// same for any thread count (and the partial array for 124M floats is only 7.6K doubles).
constexpr int64_t kSqChunk = 16384;
// Chunks handled per parallel round: bounds the partials to a stack array for any n.
constexpr int64_t kSqGroup = 1024;

// Sum of squares of x[0..n) in double: 16 independent double lanes (the compiler vectorises the lane loop),
// combined in a fixed order. 0.11 ns/element in L1 on AVX2, far above DRAM speed.
static double chunk_sum_squares(const float* x, int64_t n) {
    double acc[16] = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int k = 0; k < 16; k++) {
            double d = (double)x[i + k];
            acc[k] += d * d;
        }
    for (int k = 0; i + k < n; k++) {
        double d = (double)x[i + k];
        acc[k] += d * d;
    }
    for (int w = 8; w >= 1; w /= 2)
        for (int k = 0; k < w; k++) acc[k] += acc[k + w];
    return acc[0];
}

}  // namespace

void adamw_step(const AdamWParams& hp) {
    float scale = 1.0f;
    if (!adamw_grad_scale(hp, &scale)) return;
    float *param = hp.param, *m = hp.m, *v = hp.v;
    const float* grad = hp.grad;
    const int64_t n = hp.n;
    // bias corrections once, in double, as torch does with Python floats
    const double bc1 = 1.0 - pow((double)hp.beta1, (double)hp.step);
    const double bc2 = 1.0 - pow((double)hp.beta2, (double)hp.step);
    const Vf decay = vset1((float)(1.0 - (double)hp.lr * (double)hp.weight_decay));
    const Vf step_size = vset1((float)((double)hp.lr / bc1));
    const Vf bc2_sqrt = vset1((float)sqrt(bc2));
    const Vf gs = vset1(scale), w1 = vset1(1.0f - hp.beta1), b2 = vset1(hp.beta2),
             w2 = vset1(1.0f - hp.beta2), eps = vset1(hp.eps);
    // Per element, in torch's order: p *= 1 - lr*wd; m.lerp_(g, 1-b1) (= m + (1-b1)(g - m)); v = v*b2 + (1-b2) g g;
    // denom = sqrt(v) / sqrt(bc2) + eps; p += (-lr/bc1) * m / denom.
    auto step = [&](float* p, const float* g, float* mm, float* vv, int64_t cnt) {
        Vf gv = vload_n(g, cnt, 0.0f) * gs;
        Vf mv = vload_n(mm, cnt, 0.0f);
        mv = vfmadd(w1, gv - mv, mv);
        Vf vvv = vfmadd(w2 * gv, gv, vload_n(vv, cnt, 0.0f) * b2);
        Vf denom = vsqrt(vvv) / bc2_sqrt + eps;
        Vf pv = vload_n(p, cnt, 0.0f) * decay;
        pv = pv - (step_size * mv) / denom;
        vstore_n(mm, mv, cnt);
        vstore_n(vv, vvv, cnt);
        vstore_n(p, pv, cnt);
    };
    parallel_range(n, kParallelMinHeavy, [&](int64_t lo, int64_t hi) {
        int64_t i = lo;
        for (; i + kW <= hi; i += kW) step(param + i, grad + i, m + i, v + i, kW);
        if (i < hi) step(param + i, grad + i, m + i, v + i, hi - i);
    });
}

static double sum_squares(const float* x, int64_t n) {
    const int nt = num_threads();
    const int64_t nchunks = (n + kSqChunk - 1) / kSqChunk;
    double part[kSqGroup];
    double total = 0.0;
    for (int64_t g0 = 0; g0 < nchunks; g0 += kSqGroup) {
        const int64_t g1 = g0 + kSqGroup < nchunks ? g0 + kSqGroup : nchunks;
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1 && g1 - g0 > 1)
        for (int64_t c = g0; c < g1; c++) {
            const int64_t lo = c * kSqChunk, hi = lo + kSqChunk < n ? lo + kSqChunk : n;
            part[c - g0] = chunk_sum_squares(x + lo, hi - lo);
        }
        for (int64_t c = g0; c < g1; c++) total += part[c - g0];
    }
    return total;
}

void global_norm(const GlobalNormParams& p) {
    double total = 0.0;  // arrays in order, each summed in its fixed chunk order
    for (int64_t t = 0; t < p.count; t++) total += sum_squares(f32(p.x[t]), p.n[t]);
    if (p.sumsq != nullptr) *p.sumsq = total;
    if (p.norm != nullptr) *p.norm = (float)sqrt(total);
}

}  // namespace GPTX_ISA_NS
}  // namespace cpu
}  // namespace gptx
