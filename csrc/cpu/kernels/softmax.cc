// softmax.cc — softmax over the last dim of (rows, L), optionally causal-masked, and its backward.
#include <stdlib.h>

#include "../kernels.h"
#include "../threads.h"
#include "../vec.h"
#include "misc_common.h"

namespace gptx {
namespace cpu {
namespace GPTX_ISA_NS {
namespace {

// Columns row r keeps: all of them, or with causal_Tq, j <= r % causal_Tq + (L - causal_Tq).
static inline int64_t kept_cols(int64_t r, int64_t L, int64_t causal_Tq) {
    if (causal_Tq <= 0) return L;
    int64_t k = r % causal_Tq + (L - causal_Tq) + 1;
    return k < 0 ? 0 : (k > L ? L : k);
}

// One row: max pass over the input (the only DRAM read), exp pass into buf (an L1/L2-resident scratch row; null
// means recompute the exponentials in the write pass instead), then the scaled write of the whole row. The exp pass
// prefetches the row the thread does next (nx, length nk), so the max pass of that row reads from cache.
static void softmax_row(float* out, const float* x, int64_t L, int64_t k, float scale, float* buf, bool stream,
                        const float* nx, int64_t nk) {
    const Vf vs = vset1(scale);
    // max of scale * x; for scale > 0 (the usual case) that is scale * max(x) exactly (rounding is monotonic), which
    // saves a multiply per element
    const bool pos = scale > 0.0f;
    const Vf vps = pos ? vset1(1.0f) : vs;
    Vf m0 = vset1(-INFINITY), m1 = m0;
    int64_t j = 0;
    if (pos) {
        for (; j + 2 * kW <= k; j += 2 * kW) {
            m0 = vmax(m0, vload(x + j));
            m1 = vmax(m1, vload(x + j + kW));
        }
        for (; j + kW <= k; j += kW) m0 = vmax(m0, vload(x + j));
    } else {
        for (; j + kW <= k; j += kW) m0 = vmax(m0, vload(x + j) * vs);
    }
    if (j < k) m0 = vmax(m0, vkeep(vload_part(x + j, k - j, 0.0f) * vps, k - j, -INFINITY));
    const float m = pos ? vhmax(vmax(m0, m1)) * scale : vhmax(vmax(m0, m1));
    if (m == -INFINITY) {  // nothing kept, or every kept score is -inf: the row is all zeros
        write_row(out, L, stream, [&](int64_t, int64_t) { return vzero(); });
        return;
    }

    const Vf vnm = vset1(-m);
    Vf s0 = vzero(), s1 = vzero();
    j = 0;
    if (buf) {
        for (; j + 2 * kW <= k; j += 2 * kW) {
            // the next row at the same offset (rows of a batch have about the same kept length)
            for (int64_t q = 0; q < 2 * kW; q += 16)
                if (j + q < nk) prefetch_line(nx + j + q);
            Vf e0 = vexp_neg(vfmadd(vload(x + j), vs, vnm)), e1 = vexp_neg(vfmadd(vload(x + j + kW), vs, vnm));
            vstore(buf + j, e0);
            vstore(buf + j + kW, e1);
            s0 = s0 + e0;
            s1 = s1 + e1;
        }
        for (; j + kW <= k; j += kW) {
            Vf e = vexp_neg(vfmadd(vload(x + j), vs, vnm));
            vstore(buf + j, e);
            s0 = s0 + e;
        }
        if (j < k) {
            Vf e = vkeep(vexp_neg(vfmadd(vload_part(x + j, k - j, 0.0f), vs, vnm)), k - j, 0.0f);
            vstore_part(buf + j, e, k - j);
            s0 = s0 + e;
        }
    } else {
        for (; j + kW <= k; j += kW) s0 = s0 + vexp_neg(vfmadd(vload(x + j), vs, vnm));
        if (j < k) s0 = s0 + vkeep(vexp_neg(vfmadd(vload_part(x + j, k - j, 0.0f), vs, vnm)), k - j, 0.0f);
    }
    for (int64_t q = j & ~int64_t(15); q < nk; q += 16) prefetch_line(nx + q);  // the rest of a longer next row
    const Vf inv = vset1(1.0f / vsum(s0 + s1));

    write_row(out, L, stream, [&](int64_t i, int64_t cnt) {
        int64_t n = k - i < cnt ? k - i : cnt;  // kept lanes of this step
        if (n <= 0) return vzero();
        if (buf) return vload_n(buf + i, n, 0.0f) * inv;
        Vf e = vexp_neg(vfmadd(vload_n(x + i, n, 0.0f), vs, vnm));
        return (n < kW ? vkeep(e, n, 0.0f) : e) * inv;
    });
}

}  // namespace

void softmax_forward(const SoftmaxParams& p) {
    float* out = f32(p.out);
    const float* inp = f32(p.inp);
    const int64_t rows = p.rows, L = p.L, causal_Tq = p.causal_Tq;
    const float scale = p.scale;
    const int nt = num_threads();
    const bool stream = want_stream(rows * L) && out != inp;
    const bool par = nt > 1 && rows > 1 && rows * L >= kParallelMinHeavy;
#pragma omp parallel num_threads(nt) if (par)
    {
        float* buf = (float*)malloc((size_t)L * sizeof(float));
#pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            // with the static schedule a thread's rows are contiguous, so r + 1 is (almost always) its next row
            const int64_t nk = r + 1 < rows ? kept_cols(r + 1, L, causal_Tq) : 0;
            softmax_row(out + r * L, inp + r * L, L, kept_cols(r, L, causal_Tq), scale, buf, stream,
                        inp + (r + 1) * L, nk);
        }
        free(buf);
        if (stream) stream_fence();
    }
}

void softmax_backward(const SoftmaxBackwardParams& p) {
    float* dinp = f32(p.dinp);
    const float* dout = f32(p.dout);
    const float* out = f32(p.out);
    const int64_t rows = p.rows, L = p.L;
    const float scale = p.scale;
    const int nt = num_threads();
    const bool stream = want_stream(rows * L) && dinp != dout && dinp != out;
    const bool par = nt > 1 && rows > 1 && rows * L >= kParallelMinHeavy;
    const Vf vs = vset1(scale);
#pragma omp parallel num_threads(nt) if (par)
    {
#pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            const float* d = dout + r * L;
            const float* o = out + r * L;
            // dot(dout, out) while the row streams in; the write pass below re-reads both rows from L1.
            Vf a0 = vzero(), a1 = vzero();
            int64_t j = 0;
            for (; j + 2 * kW <= L; j += 2 * kW) {
                a0 = vfmadd(vload(d + j), vload(o + j), a0);
                a1 = vfmadd(vload(d + j + kW), vload(o + j + kW), a1);
            }
            for (; j + kW <= L; j += kW) a0 = vfmadd(vload(d + j), vload(o + j), a0);
            if (j < L) a0 = vfmadd(vload_part(d + j, L - j, 0.0f), vload_part(o + j, L - j, 0.0f), a0);
            const Vf dot = vset1(vsum(a0 + a1));
            write_row(dinp + r * L, L, stream, [&](int64_t i, int64_t cnt) {
                Vf ov = vload_n(o + i, cnt, 0.0f);
                return ov * vs * (vload_n(d + i, cnt, 0.0f) - dot);
            });
        }
        if (stream) stream_fence();
    }
}

}  // namespace GPTX_ISA_NS
}  // namespace cpu
}  // namespace gptx
