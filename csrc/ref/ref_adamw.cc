// ref_adamw.cc — scalar reference of the fused AdamW step (torch.optim.AdamW arithmetic) and of global_norm.
#include <cmath>

#include "../cpu/kernels.h"
#include "../cpu/threads.h"

namespace gptx {
namespace cpu {
namespace GPTX_ISA_NS {

// g = grad * grad_scale * clip;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2   (m, v stored as float)
// p = p (1 - lr wd) - (lr / (1 - b1^step)) * m / (sqrt(v) / sqrt(1 - b2^step) + eps)
// Scalars and the update are evaluated in double; the update uses the stored (float) m and v, as torch does.
void adamw_step(const AdamWParams& hp) {
    float scale = 1.0f;
    if (!adamw_grad_scale(hp, &scale)) return;
    float *param = hp.param, *m = hp.m, *v = hp.v;
    const float* grad = hp.grad;
    const int64_t n = hp.n;
    const double b1 = hp.beta1, b2 = hp.beta2, lr = hp.lr, eps = hp.eps;
    const double bias_correction1 = 1.0 - std::pow(b1, (double)hp.step);
    const double bias_correction2_sqrt = std::sqrt(1.0 - std::pow(b2, (double)hp.step));
    const double step_size = lr / bias_correction1;
    const double decay = 1.0 - lr * (double)hp.weight_decay;
    const int nt = num_threads();
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        const double g = (double)grad[i] * scale;
        m[i] = (float)(b1 * m[i] + (1.0 - b1) * g);
        v[i] = (float)(b2 * v[i] + (1.0 - b2) * g * g);
        const double denom = std::sqrt((double)v[i]) / bias_correction2_sqrt + eps;
        param[i] = (float)(param[i] * decay - step_size * (double)m[i] / denom);
    }
}

// sum of x[i]^2 over every array in double, in index order (serial, so the result does not depend on the thread
// count).
void global_norm(const GlobalNormParams& p) {
    double acc = 0.0;
    for (int64_t t = 0; t < p.count; t++) {
        const float* x = f32(p.x[t]);
        for (int64_t i = 0; i < p.n[t]; i++) acc += (double)x[i] * x[i];
    }
    if (p.sumsq != nullptr) *p.sumsq = acc;
    if (p.norm != nullptr) *p.norm = (float)std::sqrt(acc);
}

}  // namespace GPTX_ISA_NS
}  // namespace cpu
}  // namespace gptx
