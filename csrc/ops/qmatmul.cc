// qmatmul.cc — packing of decoding weights (bf16, int8 q8_0-style blocks) and the validating dispatcher of
// qmatmul_forward.
#include <cmath>
#include <cstring>

#include "backend/qformat.h"
#include "gptx/ops.h"
#include "ops/check.h"

namespace gptx {

namespace {

using backend::QFormat;
using detail::Check;
namespace qfmt = backend::qfmt;

QFormat parse_format(const Check& c, const std::string& format) {
    if (format == "bf16") return QFormat::bf16;
    if (format == "int8") return QFormat::int8;
    c.fail("format", "must be 'bf16' or 'int8', got '" + format + "'");
}

// The device must have qmatmul kernels (the CPU; CUDA declares none yet).
void require_qmatmul(const Check& c, const char* arg) {
    if (!c.kernels().caps.qmatmul)
        c.fail_type(arg, std::string("is on ") + c.device().str() + ", whose backend (" + c.kernels().name +
                             ") has no kernels for bf16 / int8 packed weights: run quantized matmuls on the CPU");
}

void check_packed(const Check& c, const PackedWeight& w, const char* arg) {
    if (!w.defined()) c.fail(arg, "is required (an empty PackedWeight)");
    const QFormat f = parse_format(c, w.format);
    if (w.N < 1 || w.K < 1) c.fail(arg, "has N = " + std::to_string(w.N) + ", K = " + std::to_string(w.K));
    c.tensor(w.data, arg, DType::uint8);
    require_qmatmul(c, arg);
    const int64_t want = backend::qweight_bytes(f, w.N, w.K);
    if (w.data.dim() != 1 || w.data.numel() != want)
        c.fail(arg, "holds " + w.data.shape_str() + " bytes but a " + w.format + " weight of N = " +
                        std::to_string(w.N) + ", K = " + std::to_string(w.K) + " needs (" + std::to_string(want) +
                        ",)");
}

}  // namespace

PackedWeight pack_weight(const Tensor& w, const std::string& format, bool trans) {
    const Check c("pack_weight");
    const QFormat f = parse_format(c, format);
    c.f32(w, "w");
    require_qmatmul(c, "w");
    c.ndim(w, "w", 2, 2);
    const int64_t N = trans ? w.size(0) : w.size(1), K = trans ? w.size(1) : w.size(0);
    if (N < 1 || K < 1) c.fail("w", "is empty: " + w.shape_str());
    const int64_t Np = backend::qround_up(N, backend::kQPanel), Kp = backend::qround_up(K, backend::kQBlock);
    const float* src = w.data<float>();
    auto at = [&](int64_t k, int64_t n) -> float {  // W^T (k, n); zero in the padding
        if (k >= K || n >= N) return 0.0f;
        return trans ? src[n * K + k] : src[k * N + n];
    };
    PackedWeight out;
    out.format = format;
    out.N = N;
    out.K = K;
    out.data = Tensor::empty({backend::qweight_bytes(f, N, K)}, DType::uint8, Device::cpu());
    const int64_t panels = Np / backend::kQPanel;
    if (f == QFormat::bf16) {
        uint16_t* dst = out.data.data<uint16_t>();
        for (int64_t j = 0; j < panels; j++)
            for (int64_t k = 0; k < Kp; k++)
                for (int64_t l = 0; l < backend::kQPanel; l++)
                    dst[j * Kp * backend::kQPanel + ((k / 2) * backend::kQPanel + l) * 2 + k % 2] =
                        qfmt::to_bf16(at(k, j * backend::kQPanel + l));
        return out;
    }
    const int64_t Kb = Kp / backend::kQBlock;
    uint8_t* dst = out.data.data<uint8_t>();
    for (int64_t j = 0; j < panels; j++) {
        uint8_t* panel = dst + j * Kb * backend::kQInt8PanelBlockBytes;
        for (int64_t b = 0; b < Kb; b++)
            for (int64_t l = 0; l < backend::kQPanel; l++) {
                const int64_t n = j * backend::kQPanel + l;
                float amax = 0.0f;
                for (int64_t r = 0; r < backend::kQBlock; r++) {
                    const float v = at(b * backend::kQBlock + r, n);
                    if (!std::isfinite(v))
                        c.fail("w", "has a non-finite value at " +
                                        std::string(trans ? "(" + std::to_string(n) + ", " +
                                                                std::to_string(b * backend::kQBlock + r) + ")"
                                                          : "(" + std::to_string(b * backend::kQBlock + r) + ", " +
                                                                std::to_string(n) + ")") +
                                        ": int8 blocks need finite weights");
                    amax = std::fabs(v) > amax ? std::fabs(v) : amax;
                }
                // q8_0's scale, stored as float16 like GGUF's; the quants are rounded against the stored scale.
                const uint16_t h = qfmt::f32_to_f16(amax / 127.0f);
                const float d = qfmt::f16_to_f32(h);
                if (!std::isfinite(d))
                    c.fail("w", "has a block of column " + std::to_string(n) + " with max |w| = " +
                                    std::to_string(amax) + ": its int8 scale overflows float16");
                std::memcpy(panel + (b * backend::kQPanel + l) * 2, &h, 2);
                for (int64_t r = 0; r < backend::kQBlock; r++) {
                    float q = d > 0.0f ? std::nearbyint(at(b * backend::kQBlock + r, n) / d) : 0.0f;
                    q = q > 127.0f ? 127.0f : (q < -127.0f ? -127.0f : q);
                    panel[Kb * backend::kQPanel * 2 + b * 512 + (r / 4) * 64 + l * 4 + r % 4] =
                        static_cast<uint8_t>(static_cast<int8_t>(q));
                }
            }
    }
    return out;
}

Tensor unpack_weight(const PackedWeight& w) {
    const Check c("unpack_weight");
    check_packed(c, w, "w");
    const int64_t N = w.N, K = w.K, Kp = backend::qround_up(K, backend::kQBlock), Kb = Kp / backend::kQBlock;
    Tensor out = Tensor::empty({N, K}, DType::float32, Device::cpu());
    float* o = out.data<float>();
    for (int64_t n = 0; n < N; n++) {
        const int64_t j = n / backend::kQPanel, l = n % backend::kQPanel;
        for (int64_t k = 0; k < K; k++) {
            if (w.format == "bf16") {
                const uint16_t* src = w.data.data<uint16_t>();
                o[n * K + k] =
                    qfmt::bf16_to_f32(src[j * Kp * backend::kQPanel + ((k / 2) * backend::kQPanel + l) * 2 + k % 2]);
            } else {
                const uint8_t* panel = w.data.data<uint8_t>() + j * Kb * backend::kQInt8PanelBlockBytes;
                const int64_t b = k / backend::kQBlock, r = k % backend::kQBlock;
                uint16_t h;
                std::memcpy(&h, panel + (b * backend::kQPanel + l) * 2, 2);
                const int8_t q = static_cast<int8_t>(panel[Kb * backend::kQPanel * 2 + b * 512 + (r / 4) * 64 + l * 4 + r % 4]);
                o[n * K + k] = static_cast<float>(q) * qfmt::f16_to_f32(h);
            }
        }
    }
    return out;
}

Tensor qmatmul_forward(const Tensor& a, const PackedWeight& w, const Tensor& bias, const Tensor& out_) {
    const Check c("qmatmul_forward");
    c.f32(a, "a");
    c.ndim(a, "a", 1, 8);
    check_packed(c, w, "w");
    const int64_t K = a.size(-1), M = detail::leading(a.shape(), 1);
    if (K != w.K)
        c.fail("a", "has last dimension " + std::to_string(K) + " but the packed weight has K = " +
                        std::to_string(w.K));
    if (bias.defined()) {
        c.f32(bias, "bias");
        c.shape(bias, "bias", {w.N});
    }
    std::vector<int64_t> shape = a.shape();
    shape.back() = w.N;
    Tensor out = c.output(out_, "out", shape);
    c.no_overlap(out, "out", a, "a");
    c.no_overlap(out, "out", w.data, "w");
    if (bias.defined()) c.no_overlap(out, "out", bias, "bias");
    if (M == 0) return out;
    const QFormat f = w.format == "bf16" ? QFormat::bf16 : QFormat::int8;
    Tensor work = Tensor::empty({backend::qmatmul_workspace_bytes(f, M, K)}, DType::uint8, Device::cpu());
    backend::QMatmulParams p;
    p.M = M;
    p.N = w.N;
    p.K = K;
    p.A = a.data<float>();
    p.lda = K;
    p.W = w.data.data_ptr();
    p.format = f;
    p.C = out.data<float>();
    p.ldc = w.N;
    p.bias = bias.defined() ? bias.data<float>() : nullptr;
    p.work = work.data_ptr();
    c.backend()->qmatmul_forward(p);
    return out;
}

}  // namespace gptx
