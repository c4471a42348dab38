// ref_qmatmul.cc — scalar reference of qmatmul_forward (the spec): reads the packed layouts element by element and
// sums in double; activations rounded to bfloat16 or quantized per block of 32 exactly as params.h says.
#include <cmath>
#include <cstring>

#include "../cpu/kernels.h"
#include "../cpu/threads.h"
#include "backend/qformat.h"

namespace gptx {
namespace cpu {
namespace GPTX_ISA_NS {

namespace {

using backend::qfmt::bf16_to_f32;
using backend::qfmt::f16_to_f32;
using backend::qfmt::to_bf16;

// Weight (k, n) of a packed bf16 matrix.
double w_bf16(const QMatmulParams& p, int64_t Kp, int64_t k, int64_t n) {
    const uint16_t* W = static_cast<const uint16_t*>(p.W);
    const int64_t j = n / kQPanel, lane = n % kQPanel;
    return bf16_to_f32(W[j * Kp * kQPanel + ((k / 2) * kQPanel + lane) * 2 + k % 2]);
}

// Quant and scale of weight (k, n) of a packed int8 matrix.
void w_int8(const QMatmulParams& p, int64_t Kb, int64_t k, int64_t n, int* q, double* scale) {
    const uint8_t* W = static_cast<const uint8_t*>(p.W);
    const int64_t j = n / kQPanel, lane = n % kQPanel, b = k / kQBlock, r = k % kQBlock;
    const uint8_t* panel = W + j * Kb * kQInt8PanelBlockBytes;
    uint16_t h;
    std::memcpy(&h, panel + (b * kQPanel + lane) * 2, 2);
    *scale = f16_to_f32(h);
    *q = static_cast<int8_t>(panel[Kb * kQPanel * 2 + b * 512 + (r / 4) * 64 + lane * 4 + r % 4]);
}

// One activation block (a[k0 .. k0 + n), n <= 32) quantized as the contract says: scale max|a| / 127 and
// q = round-half-even(a * (127 / max|a|)) in float32; a NaN or infinity makes the scale NaN.
double quantize_block(const float* a, int64_t n, int* q) {
    float amax = 0.0f;
    bool finite = true;
    for (int64_t i = 0; i < n; i++) {
        if (!std::isfinite(a[i])) finite = false;
        amax = std::fabs(a[i]) > amax ? std::fabs(a[i]) : amax;
    }
    for (int64_t i = 0; i < kQBlock; i++) q[i] = 0;
    if (!finite) return std::nan("");
    const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
    for (int64_t i = 0; i < n; i++) {
        const float r = std::nearbyint(a[i] * id);
        q[i] = static_cast<int>(r > 127.0f ? 127.0f : (r < -127.0f ? -127.0f : r));
    }
    return static_cast<double>(amax / 127.0f);
}

}  // namespace

void qmatmul_forward(const QMatmulParams& p) {
    const int nt = num_threads();
    const int64_t Kp = qround_up(p.K, kQBlock), Kb = Kp / kQBlock;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t m = 0; m < p.M; m++) {
        const float* a = p.A + m * p.lda;
        float* c = p.C + m * p.ldc;
        if (p.format == QFormat::bf16) {
            for (int64_t n = 0; n < p.N; n++) {
                double acc = 0.0;
                for (int64_t k = 0; k < p.K; k++) acc += (double)bf16_to_f32(to_bf16(a[k])) * w_bf16(p, Kp, k, n);
                if (p.bias != nullptr) acc += p.bias[n];
                c[n] = (float)acc;
            }
            continue;
        }
        for (int64_t n = 0; n < p.N; n++) {
            double acc = p.bias != nullptr ? (double)p.bias[n] : 0.0;
            for (int64_t b = 0; b < Kb; b++) {
                const int64_t k0 = b * kQBlock, len = p.K - k0 < kQBlock ? p.K - k0 : kQBlock;
                int qa[kQBlock];
                const double da = quantize_block(a + k0, len, qa);
                long long isum = 0;
                double dw = 0.0;
                for (int64_t i = 0; i < len; i++) {
                    int qw;
                    w_int8(p, Kb, k0 + i, n, &qw, &dw);
                    isum += (long long)qa[i] * qw;
                }
                acc += da * dw * (double)isum;
            }
            c[n] = (float)acc;
        }
    }
}

}  // namespace GPTX_ISA_NS
}  // namespace cpu
}  // namespace gptx
