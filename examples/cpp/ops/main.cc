// main.cc — runs matmul, softmax and attention through the gptx C++ API and checks them against naive loops.
#include <cmath>
#include <cstdio>

#include <gptx/gptx.h>

using gptx::DType;
using gptx::Tensor;

static Tensor ramp(const std::vector<int64_t>& shape, float step) {
    Tensor t = Tensor::empty(shape, DType::float32);
    for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = std::sin(step * float(i + 1));
    return t;
}

static bool close(const char* what, float got, float want) {
    bool ok = std::fabs(got - want) <= 1e-4f + 1e-4f * std::fabs(want);
    if (!ok) std::fprintf(stderr, "%s: got %.7g, want %.7g\n", what, got, want);
    return ok;
}

int main() {
    const int M = 3, K = 5, N = 4, T = 4, HS = 8;  // attention: B = 1, one head
    Tensor a = ramp({M, K}, 0.3f), b = ramp({K, N}, 0.7f);
    Tensor c = gptx::matmul_forward(a, b);
    float dot = 0;  // c[2][3]
    for (int k = 0; k < K; ++k) dot += a.data<float>()[2 * K + k] * b.data<float>()[k * N + 3];
    bool ok = close("matmul_forward", c.data<float>()[2 * N + 3], dot);

    Tensor s = gptx::softmax_forward(c);  // row 1, column 0
    float den = 0, *r = c.data<float>() + N;
    for (int j = 0; j < N; ++j) den += std::exp(r[j]);
    ok &= close("softmax_forward", s.data<float>()[N], std::exp(r[0]) / den);

    Tensor q = ramp({1, T, 1, HS}, 0.11f), k = ramp({1, T, 1, HS}, 0.23f), v = ramp({1, T, 1, HS}, 0.37f);
    Tensor o = gptx::attention_forward(q, k, v, /*causal=*/true).out;
    const float *qp = q.data<float>() + (T - 1) * HS, *kp = k.data<float>(), *vp = v.data<float>();
    float w[T], wsum = 0, want = 0;  // last query sees every key; output channel 0
    for (int j = 0; j < T; ++j) {
        float d = 0;
        for (int h = 0; h < HS; ++h) d += qp[h] * kp[j * HS + h];
        wsum += (w[j] = std::exp(d / std::sqrt(float(HS))));
    }
    for (int j = 0; j < T; ++j) want += w[j] / wsum * vp[j * HS];
    ok &= close("attention_forward", o.data<float>()[(T - 1) * HS], want);

    std::printf("gptx %s: %s\n", gptx::version(), ok ? "OK" : "MISMATCH");
    return ok ? 0 : 1;
}
