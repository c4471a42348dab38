// ref_layernorm.cc — scalar reference of layernorm forward/backward over the last dim C (two-pass statistics).
#include <cmath>

#include "../cpu/kernels.h"
#include "../cpu/threads.h"

namespace gptx {
namespace cpu {
namespace GPTX_ISA_NS {

// mean = sum_c x / C, var = sum_c (x - mean)^2 / C (biased, as torch), rstd = 1 / sqrt(var + eps),
// out = (x - mean) * rstd * weight + bias. mean and rstd may be null (nothing saved, e.g. for inference).
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
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const float* x = inp + n * C;
        float* y = out + n * C;
        double mu = 0.0;
        for (int64_t c = 0; c < C; c++) mu += x[c];
        mu /= (double)C;
        double var = 0.0;
        for (int64_t c = 0; c < C; c++) var += (x[c] - mu) * (x[c] - mu);
        var /= (double)C;
        const double rs = 1.0 / std::sqrt(var + (double)eps);
        for (int64_t c = 0; c < C; c++) y[c] = (float)((x[c] - mu) * rs * weight[c] + bias[c]);
        if (mean != nullptr) mean[n] = (float)mu;
        if (rstd != nullptr) rstd[n] = (float)rs;
    }
}

// With the saved mean/rstd: xhat = (x - mean) * rstd, g = dout * weight (the gradient w.r.t. xhat),
//   dinp = rstd * (g - mean_c(g) - xhat * mean_c(g * xhat))
//   dweight[c] = sum_n dout[n, c] * xhat[n, c],  dbias[c] = sum_n dout[n, c]
// each written, or with accumulate added into the old contents.
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
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const float* x = inp + n * C;
        const float* dy = dout + n * C;
        float* dx = dinp + n * C;
        const double mu = mean[n], rs = rstd[n];
        double g_mean = 0.0, gx_mean = 0.0;
        for (int64_t c = 0; c < C; c++) {
            const double g = (double)dy[c] * weight[c];
            g_mean += g;
            gx_mean += g * ((x[c] - mu) * rs);
        }
        g_mean /= (double)C;
        gx_mean /= (double)C;
        for (int64_t c = 0; c < C; c++) {
            const double xhat = (x[c] - mu) * rs;
            const double g = (double)dy[c] * weight[c];
            const double d = rs * (g - g_mean - xhat * gx_mean);
            dx[c] = (float)(accumulate ? dx[c] + d : d);
        }
    }

#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t c = 0; c < C; c++) {
        double dw = accumulate ? (double)dweight[c] : 0.0;
        double db = accumulate ? (double)dbias[c] : 0.0;
        for (int64_t n = 0; n < N; n++) {
            const double dy = dout[n * C + c];
            dw += dy * ((inp[n * C + c] - (double)mean[n]) * (double)rstd[n]);
            db += dy;
        }
        dweight[c] = (float)dw;
        dbias[c] = (float)db;
    }
}

}  // namespace GPTX_ISA_NS
}  // namespace cpu
}  // namespace gptx
