// dropout.cc — validation and dispatch of dropout_forward / dropout_backward, and the mask every op that drops
// (these two and attention) hands its backend.
#include <cmath>

#include "gptx/ops.h"
#include "ops/check.h"
#include "ops/dropout_spec.h"

namespace gptx {

using detail::Check;

namespace detail {

backend::DropoutMask dropout_mask(const Check& c, const Dropout& d) {
    if (!(d.p >= 0.0f && d.p < 1.0f))
        c.fail("dropout", "probability p must be in [0, 1), got " + std::to_string(d.p));
    backend::DropoutMask m;
    if (d.p == 0.0f) return m;
    m.key = backend::dropout_key(d.seed, d.step, d.layer, d.site);
    // keep iff bits >= round(p * 2^32); p < 1 so the threshold fits (clamped for p within 2^-33 of 1)
    const double t = std::nearbyint(static_cast<double>(d.p) * 4294967296.0);
    m.threshold = t >= 4294967295.0 ? 4294967295u : (t < 1.0 ? 1u : static_cast<uint32_t>(t));
    m.scale = static_cast<float>(1.0 / (1.0 - static_cast<double>(d.p)));
    return m;
}

}  // namespace detail

namespace {

Tensor dropout_run(const Check& c, const Tensor& inp, const char* inp_name, const Dropout& d, const Tensor& residual,
                   const Tensor& out_, const char* out_name, bool backward) {
    c.act(inp, inp_name);
    const backend::DropoutMask mask = detail::dropout_mask(c, d);
    if (residual.defined()) {
        c.act(residual, "residual");
        c.shape(residual, "residual", inp.shape());
    }
    Tensor out = c.output(out_, out_name, inp.shape(), c.act_dtype());
    if (!out.same_memory(inp)) c.no_overlap(out, out_name, inp, inp_name);
    if (residual.defined() && !out.same_memory(residual)) c.no_overlap(out, out_name, residual, "residual");
    if (inp.numel() == 0) return out;
    backend::DropoutParams p;
    p.out = out.data_ptr();
    p.inp = inp.data_ptr();
    p.residual = residual.defined() ? residual.data_ptr() : nullptr;
    p.dtype = c.act_dtype();
    p.cols = inp.dim() == 0 ? 1 : inp.size(inp.dim() - 1);
    p.rows = inp.numel() / p.cols;
    p.mask = mask;
    if (backward)
        c.backend()->dropout_backward(p);
    else
        c.backend()->dropout_forward(p);
    return out;
}

}  // namespace

Tensor dropout_forward(const Tensor& inp, const Dropout& dropout, const Tensor& residual, const Tensor& out) {
    const Check c("dropout_forward");
    return dropout_run(c, inp, "inp", dropout, residual, out, "out", false);
}

Tensor dropout_backward(const Tensor& dout, const Dropout& dropout, const Tensor& dinp) {
    const Check c("dropout_backward");
    return dropout_run(c, dout, "dout", dropout, Tensor(), dinp, "dinp", true);
}

}  // namespace gptx
