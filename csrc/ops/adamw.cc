// adamw.cc — validation and dispatch of the fused AdamW step (over any float32 buffer, e.g. all parameters at once)
// and of the global gradient norm.
#include <cmath>

#include "gptx/ops.h"
#include "ops/check.h"

namespace gptx {

using detail::Check;

namespace {

void check_hyperparameters(const Check& c, const AdamWOptions& o) {
    if (!std::isfinite(o.lr) || o.lr < 0.0f) c.fail("lr", "must be a finite number >= 0");
    if (!(o.beta1 >= 0.0f && o.beta1 < 1.0f)) c.fail("beta1", "must be in [0, 1)");
    if (!(o.beta2 >= 0.0f && o.beta2 < 1.0f)) c.fail("beta2", "must be in [0, 1)");
    if (!(o.eps > 0.0f) || !std::isfinite(o.eps)) c.fail("eps", "must be a positive finite number");
    if (!std::isfinite(o.weight_decay) || o.weight_decay < 0.0f) c.fail("weight_decay", "must be a finite number >= 0");
    if (o.step < 1) c.fail("step", "must be >= 1 (1-based, for the bias corrections)");
    if (!std::isfinite(o.grad_scale)) c.fail("grad_scale", "must be finite");
    if (!std::isfinite(o.max_norm)) c.fail("max_norm", "must be finite (<= 0 disables clipping)");
    if (!std::isfinite(o.norm_scale)) c.fail("norm_scale", "must be finite");
    // Ranges sorted and disjoint, inside the buffer: checked before anything is written.
    int64_t prev_end = 0;
    for (size_t i = 0; i < o.decay_ranges.size(); i++) {
        const auto& r = o.decay_ranges[i];
        if (r.first < prev_end || r.second < r.first)
            c.fail("decay_ranges", "must be sorted, disjoint [begin, end) pairs; pair " + std::to_string(i) + " is [" +
                                       std::to_string(r.first) + ", " + std::to_string(r.second) + ")");
        prev_end = r.second;
    }
}

}  // namespace

void adamw_step(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v, const AdamWOptions& o,
                const Tensor& norm) {
    const Check c("adamw_step");
    c.f32(param, "param");
    c.f32(grad, "grad");
    c.shape(grad, "grad", param.shape());
    c.f32(m, "m");
    c.shape(m, "m", param.shape());
    c.f32(v, "v");
    c.shape(v, "v", param.shape());
    c.writable(param, "param");
    c.writable(m, "m");
    c.writable(v, "v");
    c.no_overlap(param, "param", grad, "grad");
    c.no_overlap(param, "param", m, "m");
    c.no_overlap(param, "param", v, "v");
    c.no_overlap(m, "m", v, "v");
    c.no_overlap(m, "m", grad, "grad");
    c.no_overlap(v, "v", grad, "grad");
    check_hyperparameters(c, o);
    const int64_t n = param.numel();
    if (!o.decay_all && !o.decay_ranges.empty() && o.decay_ranges.back().second > n)
        c.fail("decay_ranges", "ends at " + std::to_string(o.decay_ranges.back().second) + " but param has " +
                                   std::to_string(n) + " elements");
    if (norm.defined()) {
        c.f32(norm, "norm");
        if (norm.numel() != 1) c.fail("norm", "must have one element (the global norm), got shape " + norm.shape_str());
        for (const Tensor* t : {&param, &m, &v})
            c.no_overlap(*t, t == &param ? "param" : t == &m ? "m" : "v", norm, "norm");
    }
    if (n == 0) return;

    backend::AdamWParams p;
    p.lr = o.lr;
    p.beta1 = o.beta1;
    p.beta2 = o.beta2;
    p.eps = o.eps;
    p.step = o.step;
    p.grad_scale = o.grad_scale;
    p.norm = norm.defined() ? norm.data<float>() : nullptr;
    p.max_norm = o.max_norm;
    p.norm_scale = o.norm_scale;
    // One kernel call per stretch of equal weight decay (for GPT-2 about 100 stretches, all in this one call).
    auto segment = [&](int64_t begin, int64_t end, float weight_decay) {
        if (end <= begin) return;
        p.param = param.data<float>() + begin;
        p.grad = grad.data<float>() + begin;
        p.m = m.data<float>() + begin;
        p.v = v.data<float>() + begin;
        p.n = end - begin;
        p.weight_decay = weight_decay;
        c.backend()->adamw_step(p);
    };
    if (o.decay_all) {
        segment(0, n, o.weight_decay);
        return;
    }
    int64_t at = 0;
    for (const auto& r : o.decay_ranges) {
        segment(at, r.first, 0.0f);
        segment(r.first, r.second, o.weight_decay);
        at = r.second;
    }
    segment(at, n, 0.0f);
}

namespace {

// Validates the arrays of a global norm and fills the kernel's views of them.
struct NormInputs {
    std::vector<const void*> x;
    std::vector<DType> dtype;
    std::vector<int64_t> n;
};

NormInputs norm_inputs(const Check& c, const std::vector<Tensor>& tensors) {
    NormInputs in;
    for (size_t i = 0; i < tensors.size(); i++) {
        const std::string name = "tensors[" + std::to_string(i) + "]";
        const Tensor& t = tensors[i];
        c.tensor(t, name.c_str(), t.defined() ? t.dtype() : DType::float32);  // fixes the op's device first
        // float32, or bfloat16 where the backend has it (summed in double like float32)
        if (t.dtype() != DType::float32 && !(t.dtype() == DType::bfloat16 && c.kernels().caps.bfloat16))
            c.f32(t, name.c_str());
        if (!t.numel()) continue;
        in.x.push_back(t.data_ptr());
        in.dtype.push_back(t.dtype());
        in.n.push_back(t.numel());
    }
    return in;
}

// The kernel over the arrays `in` describes; the sum of squares into *sumsq (host) and/or the norm into *norm.
void run_global_norm(const Check& c, const NormInputs& in, double* sumsq, float* norm) {
    backend::GlobalNormParams p;
    p.x = in.x.data();
    p.dtype = in.dtype.data();
    p.n = in.n.data();
    p.count = static_cast<int64_t>(in.x.size());
    p.sumsq = sumsq;
    p.norm = norm;
    c.backend()->global_norm(p);
}

}  // namespace

double global_norm(const std::vector<Tensor>& tensors) {
    const Check c("global_norm");
    const NormInputs in = norm_inputs(c, tensors);
    if (in.x.empty()) return 0.0;
    double sumsq = 0.0;
    run_global_norm(c, in, &sumsq, nullptr);
    return std::sqrt(sumsq);
}

Tensor global_norm(const std::vector<Tensor>& tensors, const Tensor& out) {
    const Check c("global_norm");
    const NormInputs in = norm_inputs(c, tensors);
    c.f32(out, "out");
    if (out.numel() != 1) c.fail("out", "must have one element, got shape " + out.shape_str());
    c.writable(out, "out");
    for (size_t i = 0; i < tensors.size(); i++)
        c.no_overlap(out, "out", tensors[i], ("tensors[" + std::to_string(i) + "]").c_str());
    if (in.x.empty()) {
        out.fill(0.0);
        return out;
    }
    run_global_norm(c, in, nullptr, out.data<float>());
    return out;
}

}  // namespace gptx
