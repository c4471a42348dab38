// gelu.cc — GELU, tanh approximation (GPT-2), forward and backward, elementwise.
#include "../kernels.h"
#include "../threads.h"
#include "../vec.h"
#include "misc_common.h"

namespace gptx {
namespace cpu {
namespace GPTX_ISA_NS {
namespace {

// gelu(x) = 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3). With 1 + tanh(u) = 2 / (1 + exp(-2u)) this is
// x * s, s = sigmoid(2u): one exp and one division, no cancellation near tanh(u) = -1 (x << 0), exact 0.5 x near 0.
// u is taken from x clamped to [-20, 20] (beyond that s is 1 or below 1e-38) so x^3 stays finite, and the exp
// argument is clamped to +-88: x >= 20 gives x, x <= -9.4 gives |gelu| < 1e-36 (true value ~0), never NaN.
constexpr float kS2Pi = 0.7978845608028654f;  // sqrt(2/pi)
constexpr float kC = 0.044715f;
constexpr float kClamp = 20.0f;

// -2u of the clamped x, and the clamped x itself
static inline Vf neg2u(Vf xc) {
    Vf x2 = xc * xc;
    return xc * vfmadd(x2, vset1(-2.0f * kS2Pi * kC), vset1(-2.0f * kS2Pi));
}

// Clamps put the constant first so NaN propagates (x86 max/min return the second operand for NaN).
static inline Vf clamp_x(Vf x) { return vmin(vset1(kClamp), vmax(vset1(-kClamp), x)); }

static inline Vf gelu_v(Vf x) {
    return vmax(vset1(-kClamp), x) / (vset1(1.0f) + vexp_clamped(neg2u(clamp_x(x))));
}

// gelu'(x) = s + x s (1 - s) 2u'(x), u' = sqrt(2/pi)(1 + 3 * 0.044715 x^2). 1 - s is computed as e * s
// (e = exp(-2u)), which keeps its relative accuracy where s -> 1; e is capped at exp(80) so e * s never becomes
// inf * 0 (for x < -9.5 the result is then ~1e-32 instead of ~0, far below float resolution of any gradient sum).
static inline Vf gelu_grad_v(Vf x) {
    Vf xc = clamp_x(x);
    Vf e = vexp_clamped(vmin(vset1(80.0f), neg2u(xc)));
    Vf s = vset1(1.0f) / (vset1(1.0f) + e);
    Vf x2 = xc * xc;
    Vf du2 = vfmadd(x2, vset1(2.0f * kS2Pi * 3.0f * kC), vset1(2.0f * kS2Pi));  // 2u'(x)
    return s * vfmadd(xc * (e * s), du2, vset1(1.0f));
}

}  // namespace

void gelu_forward(const GeluParams& p) {
    float* out = f32(p.out);
    const float* inp = f32(p.inp);
    const int64_t n = p.n;
    const bool stream = want_stream(n) && out != inp;
    parallel_range(n, kParallelMinHeavy, [&](int64_t lo, int64_t hi) {
        const float* x = inp + lo;
        write_row(out + lo, hi - lo, stream,
                  [&](int64_t i, int64_t cnt) { return gelu_v(vload_n(x + i, cnt, 0.0f)); });
        if (stream) stream_fence();
    });
}

void gelu_backward(const GeluBackwardParams& p) {
    float* dinp = f32(p.dinp);
    const float* inp = f32(p.inp);
    const float* dout = f32(p.dout);
    const int64_t n = p.n;
    const bool accumulate = p.accumulate;
    const bool stream = !accumulate && want_stream(n) && dinp != inp && dinp != dout;
    parallel_range(n, kParallelMinHeavy, [&](int64_t lo, int64_t hi) {
        const float* x = inp + lo;
        const float* d = dout + lo;
        float* o = dinp + lo;
        write_row(o, hi - lo, stream, [&](int64_t i, int64_t cnt) {
            Vf g = gelu_grad_v(vload_n(x + i, cnt, 0.0f)) * vload_n(d + i, cnt, 0.0f);
            return accumulate ? vload_n(o + i, cnt, 0.0f) + g : g;
        });
        if (stream) stream_fence();
    });
}

}  // namespace GPTX_ISA_NS
}  // namespace cpu
}  // namespace gptx
