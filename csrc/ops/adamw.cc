// adamw.cc — validation and dispatch of the fused AdamW step and the global gradient norm.
#include <cmath>

#include "cpu/kernel_table.h"
#include "cuda/kernels.h"
#include "cuda/runtime.h"
#include "gptx/ops.h"
#include "ops/check.h"

namespace gptx {

using detail::Check;

namespace {
// The kernel interfaces' hyperparameter structs (cpu:: and cuda::) have the same fields as AdamWOptions.
template <typename Params>
Params hyperparameters(const AdamWOptions& o) {
    Params hp;
    hp.lr = o.lr;
    hp.beta1 = o.beta1;
    hp.beta2 = o.beta2;
    hp.eps = o.eps;
    hp.weight_decay = o.weight_decay;
    hp.step = o.step;
    hp.grad_scale = o.grad_scale;
    return hp;
}
}  // namespace

void adamw_step(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v, const AdamWOptions& o) {
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
    if (!std::isfinite(o.lr) || o.lr < 0.0f) c.fail("lr", "must be a finite number >= 0");
    if (!(o.beta1 >= 0.0f && o.beta1 < 1.0f)) c.fail("beta1", "must be in [0, 1)");
    if (!(o.beta2 >= 0.0f && o.beta2 < 1.0f)) c.fail("beta2", "must be in [0, 1)");
    if (!(o.eps > 0.0f) || !std::isfinite(o.eps)) c.fail("eps", "must be a positive finite number");
    if (!std::isfinite(o.weight_decay) || o.weight_decay < 0.0f) c.fail("weight_decay", "must be a finite number >= 0");
    if (o.step < 1) c.fail("step", "must be >= 1 (1-based, for the bias corrections)");
    if (!std::isfinite(o.grad_scale)) c.fail("grad_scale", "must be finite");
    if (param.numel() == 0) return;
    if (c.on_cuda()) {
        cuda::DeviceGuard guard(c.device().index);
        cuda::adamw_step(param.data<float>(), grad.data<float>(), m.data<float>(), v.data<float>(), param.numel(),
                         hyperparameters<cuda::AdamWParams>(o));
        return;
    }
    cpu::active().adamw_step(param.data<float>(), grad.data<float>(), m.data<float>(), v.data<float>(),
                             param.numel(), hyperparameters<cpu::AdamWParams>(o));
}

double global_norm(const std::vector<Tensor>& tensors) {
    const Check c("global_norm");
    double total = 0.0;
    for (size_t i = 0; i < tensors.size(); i++) {
        const std::string name = "tensors[" + std::to_string(i) + "]";
        const Tensor& t = tensors[i];
        if (t.defined() && t.dtype() == DType::bfloat16 && t.device().kind == Device::Kind::cuda)
            c.tensor(t, name.c_str(), DType::bfloat16);  // summed in double like float32
        else
            c.f32(t, name.c_str());
        if (!t.numel()) continue;
        if (c.on_cuda()) {
            cuda::DeviceGuard guard(c.device().index);
            total += cuda::sum_squares(t.data_ptr(), t.dtype(), t.numel());
        } else {
            total += cpu::active().sum_squares(t.data<float>(), t.numel());
        }
    }
    return std::sqrt(total);
}

}  // namespace gptx
