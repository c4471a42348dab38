// ref_softmax.cc — scalar reference of the (optionally causal) row softmax and its backward.
#include <cmath>

#include "../cpu/kernels.h"
#include "../cpu/threads.h"

namespace gptx {
namespace cpu {
namespace GPTX_ISA_NS {

namespace {

// Number of leading columns row r keeps: all L, or with causal_Tq > 0 the columns j <= i + (L - causal_Tq) where
// i = r % causal_Tq. When L < causal_Tq the first rows keep nothing (and come out all zero).
int64_t kept_columns(int64_t r, int64_t L, int64_t causal_Tq) {
    if (causal_Tq <= 0) return L;
    const int64_t last = r % causal_Tq + (L - causal_Tq);  // last kept column
    if (last < 0) return 0;
    return last + 1 < L ? last + 1 : L;
}

}  // namespace

// out[r, j] = exp(scale * inp[r, j] - max) / sum_{kept j'} exp(scale * inp[r, j'] - max) on kept columns, else 0.
// A row whose kept scaled entries are all -inf (or that keeps none) is all zeros; a NaN makes the kept row NaN.
// Each element is read before it is written, so out may equal inp.
void softmax_forward(const SoftmaxParams& p) {
    float* out = f32(p.out);
    const float* inp = f32(p.inp);
    const int64_t rows = p.rows, L = p.L, causal_Tq = p.causal_Tq;
    const float scale = p.scale;
    const int nt = num_threads();
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float* x = inp + r * L;
        float* y = out + r * L;
        const int64_t keep = kept_columns(r, L, causal_Tq);

        double mx = -INFINITY;
        for (int64_t j = 0; j < keep; j++) {
            const double s = (double)scale * x[j];
            if (s > mx || std::isnan(s)) mx = s;
        }
        if (mx == -INFINITY) {  // nothing to normalise: the row carries no probability mass
            for (int64_t j = 0; j < L; j++) y[j] = 0.0f;
            continue;
        }
        double sum = 0.0;
        for (int64_t j = 0; j < keep; j++) sum += std::exp((double)scale * x[j] - mx);
        for (int64_t j = 0; j < keep; j++) y[j] = (float)(std::exp((double)scale * x[j] - mx) / sum);
        for (int64_t j = keep; j < L; j++) y[j] = 0.0f;
    }
}

// dinp[r, j] = scale * out[r, j] * (dout[r, j] - sum_j' dout[r, j'] * out[r, j'])
// The row's dot product is taken before anything is written, so dinp may equal dout or out.
void softmax_backward(const SoftmaxBackwardParams& p) {
    float* dinp = f32(p.dinp);
    const float* dout = f32(p.dout);
    const float* out = f32(p.out);
    const int64_t rows = p.rows, L = p.L;
    const float scale = p.scale;
    const int nt = num_threads();
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float* dy = dout + r * L;
        const float* y = out + r * L;
        float* dx = dinp + r * L;
        double dot = 0.0;
        for (int64_t j = 0; j < L; j++) dot += (double)dy[j] * y[j];
        for (int64_t j = 0; j < L; j++) dx[j] = (float)((double)scale * y[j] * ((double)dy[j] - dot));
    }
}

}  // namespace GPTX_ISA_NS
}  // namespace cpu
}  // namespace gptx
