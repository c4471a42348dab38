// cross_entropy.cc — fused softmax cross-entropy over (N, Vp) logits, first V columns real: loss + lse, and dlogits.
#include "../kernels.h"
#include "../threads.h"
#include "../vec.h"
#include "misc_common.h"

namespace gptx {
namespace cpu {
namespace GPTX_ISA_NS {
namespace {

// A row (V = 50257: 200 KB) is walked in blocks that fit L1: the block max is taken as it streams in from DRAM,
// then the exponentials re-read it from L1. One DRAM pass and one exp per logit, versus two passes (max, then sum)
// or two exps per logit for a per-element online rescale.
constexpr int64_t kBlock = 2048;

// log sum_{j < V} exp(x[j]), online over blocks. While a block's exponentials are computed, the next block (or the
// first block of the thread's next row, nx; null for none) is prefetched so its DRAM read overlaps the exp work.
static float row_lse(const float* x, int64_t V, const float* nx) {
    float m = -INFINITY;
    double s = 0.0;
    for (int64_t j0 = 0; j0 < V; j0 += kBlock) {
        const int64_t n = V - j0 < kBlock ? V - j0 : kBlock;
        const float* xb = x + j0;
        const int64_t rest = V - j0 - kBlock;  // prefetch the next block of this row, else the next row's first
        const float* pb = rest > 0 ? xb + kBlock : nx;
        const int64_t pn = rest > 0 ? (rest < kBlock ? rest : kBlock) : (nx ? (V < kBlock ? V : kBlock) : 0);
        Vf m0 = vset1(-INFINITY), m1 = m0;
        int64_t j = 0;
        for (; j + 2 * kW <= n; j += 2 * kW) {
            m0 = vmax(m0, vload(xb + j));
            m1 = vmax(m1, vload(xb + j + kW));
        }
        for (; j + kW <= n; j += kW) m0 = vmax(m0, vload(xb + j));
        if (j < n) m0 = vmax(m0, vload_part(xb + j, n - j, -INFINITY));
        const float bm = vhmax(vmax(m0, m1));
        if (bm == -INFINITY) continue;  // nothing to add
        if (bm > m) {
            s *= (double)expf(m - bm);  // m = -inf at the first block: s is 0 anyway
            m = bm;
        }
        const Vf vnm = vset1(-m);
        Vf s0 = vzero(), s1 = vzero();
        j = 0;
        for (; j + 2 * kW <= n; j += 2 * kW) {
            for (int64_t q = 0; q < 2 * kW; q += 16)
                if (j + q < pn) prefetch_line(pb + j + q);
            s0 = s0 + vexp_clamped(vload(xb + j) + vnm);
            s1 = s1 + vexp_clamped(vload(xb + j + kW) + vnm);
        }
        for (; j + kW <= n; j += kW) s0 = s0 + vexp_clamped(vload(xb + j) + vnm);
        if (j < n) s0 = s0 + vexp_neg(vload_part(xb + j, n - j, -INFINITY) + vnm);
        s += (double)vsum(s0 + s1);
    }
    return m + logf((float)s);
}

}  // namespace

void cross_entropy_forward(const CrossEntropyParams& p) {
    float* losses = p.losses;
    float* lse = p.lse;
    const float* logits = f32(p.logits);
    const int32_t* targets = p.targets;
    const int64_t N = p.N, V = p.V, Vp = p.Vp;
    const int32_t ignore_index = p.ignore_index;
    const int nt = num_threads();
    const bool par = nt > 1 && N > 1 && N * V >= kParallelMinHeavy;
#pragma omp parallel for schedule(static) num_threads(nt) if (par)
    for (int64_t i = 0; i < N; i++) {
        const float* x = logits + i * Vp;
        const float l = row_lse(x, V, i + 1 < N ? x + Vp : nullptr);
        lse[i] = l;
        losses[i] = targets[i] == ignore_index ? 0.0f : l - x[targets[i]];
    }
    if (p.loss != nullptr) *p.loss = mean_loss(losses, targets, N, ignore_index);
}

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
    // in place the destination was just read, so plain stores cost nothing extra
    const bool stream = !accumulate && want_stream(N * Vp) && dlogits != logits;
    const bool par = nt > 1 && N > 1 && N * Vp >= kParallelMinHeavy;
#pragma omp parallel num_threads(nt) if (par)
    {
#pragma omp for schedule(static)
        for (int64_t i = 0; i < N; i++) {
            const float* x = logits + i * Vp;
            float* g = dlogits + i * Vp;
            const int64_t t = targets[i];
            if (t == ignore_index) {
                if (!accumulate) write_row(g, Vp, stream, [](int64_t, int64_t) { return vzero(); });
                continue;
            }
            const Vf vnl = vset1(-lse[i]), vd = vset1(dlosses[i]);
            write_row(g, V, stream, [&](int64_t j, int64_t cnt) {
                // x - lse <= 0 for the forward's lse; the upper clamp only guards against a foreign lse
                Vf p = vexp_neg(vmin(vset1(kExpHi), vload_n(x + j, cnt, 0.0f) + vnl));
                if ((uint64_t)(t - j) < (uint64_t)cnt) {  // the target column is in this step: p - 1 there
                    float tmp[kW];
                    vstore(tmp, p);
                    tmp[t - j] -= 1.0f;
                    p = vload(tmp);
                }
                Vf r = p * vd;
                return accumulate ? vload_n(g + j, cnt, 0.0f) + r : r;
            });
            if (!accumulate && Vp > V) write_row(g + V, Vp - V, false, [](int64_t, int64_t) { return vzero(); });
        }
        if (stream) stream_fence();
    }
}

}  // namespace GPTX_ISA_NS
}  // namespace cpu
}  // namespace gptx
