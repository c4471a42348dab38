// layernorm.cc — layer normalisation over C (biased variance, as GPT-2/torch) and its backward.
#include <stdlib.h>

#include "../kernels.h"
#include "../threads.h"
#include "../vec.h"
#include "misc_common.h"

namespace gptx {
namespace cpu {
namespace GPTX_ISA_NS {
namespace {

// dweight/dbias are reduced over fixed chunks of rows: each chunk's partial sum is computed by one thread in row
// order and the chunks are added in order, so the result does not depend on the thread count.
constexpr int64_t kRowsPerChunk = 64;

static inline float row_sum(const float* x, int64_t C) {
    Vf a0 = vzero(), a1 = vzero();
    int64_t j = 0;
    for (; j + 2 * kW <= C; j += 2 * kW) {
        a0 = a0 + vload(x + j);
        a1 = a1 + vload(x + j + kW);
    }
    for (; j + kW <= C; j += kW) a0 = a0 + vload(x + j);
    if (j < C) a0 = a0 + vload_part(x + j, C - j, 0.0f);
    return vsum(a0 + a1);
}

// sum (x - mean)^2; the tail is filled with the mean so it adds nothing.
static inline float row_sq_dev(const float* x, int64_t C, float mean) {
    const Vf vm = vset1(mean);
    Vf a0 = vzero(), a1 = vzero();
    int64_t j = 0;
    for (; j + 2 * kW <= C; j += 2 * kW) {
        Vf d0 = vload(x + j) - vm, d1 = vload(x + j + kW) - vm;
        a0 = vfmadd(d0, d0, a0);
        a1 = vfmadd(d1, d1, a1);
    }
    for (; j + kW <= C; j += kW) {
        Vf d = vload(x + j) - vm;
        a0 = vfmadd(d, d, a0);
    }
    if (j < C) {
        Vf d = vload_part(x + j, C - j, mean) - vm;
        a0 = vfmadd(d, d, a0);
    }
    return vsum(a0 + a1);
}

// One row of the backward. Adds this row's dweight/dbias contributions into pdw/pdb (the chunk's partials).
static void ln_backward_row(float* dinp, float* pdw, float* pdb, const float* dout, const float* x, const float* w,
                            float mean, float rstd, int64_t C, bool accumulate, bool stream) {
    const Vf vm = vset1(mean), vr = vset1(rstd);
    // sums of dnorm = dout * w and dnorm * norm, norm = (x - mean) * rstd; tails load dout as 0
    Vf a0 = vzero(), b0 = vzero();
    int64_t j = 0;
    for (; j + kW <= C; j += kW) {
        Vf dn = vload(dout + j) * vload(w + j);
        a0 = a0 + dn;
        b0 = vfmadd(dn, (vload(x + j) - vm) * vr, b0);
    }
    if (j < C) {
        int64_t n = C - j;
        Vf dn = vload_part(dout + j, n, 0.0f) * vload_part(w + j, n, 0.0f);
        a0 = a0 + dn;
        b0 = vfmadd(dn, (vload_part(x + j, n, mean) - vm) * vr, b0);
    }
    const float invC = 1.0f / (float)C;
    const Vf mdn = vset1(vsum(a0) * invC), mdnn = vset1(vsum(b0) * invC);

    // dinp = rstd * (dnorm - mean(dnorm) - norm * mean(dnorm * norm)); the row is now in L1
    write_row(dinp, C, stream, [&](int64_t i, int64_t cnt) {
        Vf d = vload_n(dout + i, cnt, 0.0f);
        Vf nrm = (vload_n(x + i, cnt, mean) - vm) * vr;
        Vf g = (vfnmadd(nrm, mdnn, d * vload_n(w + i, cnt, 0.0f) - mdn)) * vr;
        vstore_n(pdw + i, vfmadd(d, nrm, vload_n(pdw + i, cnt, 0.0f)), cnt);
        vstore_n(pdb + i, vload_n(pdb + i, cnt, 0.0f) + d, cnt);
        return accumulate ? vload_n(dinp + i, cnt, 0.0f) + g : g;
    });
}

}  // namespace

void layernorm_forward(const LayernormParams& p) {
    float* out = f32(p.out);
    float* mean = p.mean;
    float* rstd = p.rstd;
    const float* inp = f32(p.inp);
    const float* weight = p.weight;
    const float* bias = p.bias;
    const int64_t N = p.N, C = p.C;
    const float eps = p.eps;
    const int nt = num_threads();
    const bool stream = want_stream(N * C) && out != inp;
    const bool par = nt > 1 && N > 1 && N * C >= kParallelMinWork;
    const float invC = 1.0f / (float)C;
#pragma omp parallel num_threads(nt) if (par)
    {
#pragma omp for schedule(static)
        for (int64_t r = 0; r < N; r++) {
            const float* x = inp + r * C;
            // two-pass statistics: the second pass reads the row from L1 and avoids E[x^2] - E[x]^2 cancellation
            const float m = row_sum(x, C) * invC;
            const float rs = 1.0f / sqrtf(row_sq_dev(x, C, m) * invC + eps);
            mean[r] = m;
            rstd[r] = rs;
            const Vf vm = vset1(m), vr = vset1(rs);
            write_row(out + r * C, C, stream, [&](int64_t i, int64_t cnt) {
                Vf nrm = (vload_n(x + i, cnt, 0.0f) - vm) * vr;
                return vfmadd(nrm, vload_n(weight + i, cnt, 0.0f), vload_n(bias + i, cnt, 0.0f));
            });
        }
        if (stream) stream_fence();
    }
}

void layernorm_backward(const LayernormBackwardParams& p) {
    float* dinp = f32(p.dinp);
    float* dweight = p.dweight;
    float* dbias = p.dbias;
    const float* dout = f32(p.dout);
    const float* inp = f32(p.inp);
    const float* weight = p.weight;
    const float* mean = p.mean;
    const float* rstd = p.rstd;
    const int64_t N = p.N, C = p.C;
    const bool accumulate = p.accumulate;
    const int nt = num_threads();
    const bool stream = !accumulate && want_stream(N * C) && dinp != dout && dinp != inp;
    const bool par = nt > 1 && N * C >= kParallelMinWork;
    const int64_t nchunks = (N + kRowsPerChunk - 1) / kRowsPerChunk;
    // per chunk: dweight partial (C) then dbias partial (C); then the ordered sums over chunks in double
    float* part = (float*)malloc((size_t)(nchunks * 2 * C) * sizeof(float));
    double* tot = (double*)malloc((size_t)(2 * C) * sizeof(double));
    if (!part || !tot) abort();  // scratch of (N / 64 + 2) * C * 8 bytes; nothing sensible to do without it
#pragma omp parallel num_threads(nt) if (par)
    {
#pragma omp for schedule(static)
        for (int64_t ch = 0; ch < nchunks; ch++) {
            float* pdw = part + ch * 2 * C;
            float* pdb = pdw + C;
            for (int64_t c = 0; c < 2 * C; c++) pdw[c] = 0.0f;
            const int64_t r1 = (ch + 1) * kRowsPerChunk < N ? (ch + 1) * kRowsPerChunk : N;
            for (int64_t r = ch * kRowsPerChunk; r < r1; r++)
                ln_backward_row(dinp + r * C, pdw, pdb, dout + r * C, inp + r * C, weight, mean[r], rstd[r], C,
                                accumulate, stream);
        }
        if (stream) stream_fence();
        // ordered reduction of the chunk partials, each thread owning a slice of the 2C columns
#pragma omp for schedule(static)
        for (int64_t c = 0; c < 2 * C; c++) {
            double s = 0.0;
            for (int64_t ch = 0; ch < nchunks; ch++) s += (double)part[ch * 2 * C + c];
            tot[c] = s;
        }
    }
    for (int64_t c = 0; c < C; c++) {
        dweight[c] = accumulate ? (float)((double)dweight[c] + tot[c]) : (float)tot[c];
        dbias[c] = accumulate ? (float)((double)dbias[c] + tot[C + c]) : (float)tot[C + c];
    }
    free(part);
    free(tot);
}

}  // namespace GPTX_ISA_NS
}  // namespace cpu
}  // namespace gptx
