// ref_gelu.cc — scalar reference of GELU, tanh approximation (GPT-2), and its derivative.
#include <cmath>

#include "../cpu/kernels.h"
#include "../cpu/threads.h"

namespace gptx {
namespace cpu {
namespace GPTX_ISA_NS {

namespace {
const double kSqrt2OverPi = 0.79788456080286535588;  // sqrt(2 / pi)
const double kCubic = 0.044715;

// 0.5 (1 + tanh(u)) evaluated as sigmoid(2u) = 1 / (1 + exp(-2u)), the same function without the cancellation
// 1 + tanh(u) suffers for u << 0 (at x = -10 the tanh form is all rounding error even in double).
double half_one_plus_tanh(double u) {
    return 1.0 / (1.0 + std::exp(-2.0 * u));
}

}  // namespace

// out = 0.5 x (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3). out may equal inp.
void gelu_forward(const GeluParams& p) {
    float* out = f32(p.out);
    const float* inp = f32(p.inp);
    const int64_t n = p.n;
    const int nt = num_threads();
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        const double x = inp[i];
        const double u = kSqrt2OverPi * (x + kCubic * x * x * x);
        out[i] = (float)(x * half_one_plus_tanh(u));
    }
}

// gelu'(x) = 0.5 (1 + tanh(u)) + 0.5 x (1 - tanh(u)^2) du/dx,  du/dx = sqrt(2/pi) (1 + 3 * 0.044715 x^2);
// with s = 0.5 (1 + tanh(u)) and 1 - s = 0.5 (1 - tanh(u)): 0.5 (1 - tanh(u)^2) = 2 s (1 - s).
// dinp (+)= gelu'(inp) * dout. dinp may equal inp or dout.
void gelu_backward(const GeluBackwardParams& p) {
    float* dinp = f32(p.dinp);
    const float* inp = f32(p.inp);
    const float* dout = f32(p.dout);
    const int64_t n = p.n;
    const bool accumulate = p.accumulate;
    const int nt = num_threads();
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        const double x = inp[i];
        const double u = kSqrt2OverPi * (x + kCubic * x * x * x);
        const double s = half_one_plus_tanh(u), one_minus_s = half_one_plus_tanh(-u);
        const double du_dx = kSqrt2OverPi * (1.0 + 3.0 * kCubic * x * x);
        const double grad = s + 2.0 * x * s * one_minus_s * du_dx;
        const double d = grad * dout[i];
        dinp[i] = (float)(accumulate ? dinp[i] + d : d);
    }
}

}  // namespace GPTX_ISA_NS
}  // namespace cpu
}  // namespace gptx
