// elementwise.cc — validation and dispatch of gelu_forward / gelu_backward / add_forward.
#include "cpu/kernel_table.h"
#include "gptx/ops.h"
#include "ops/check.h"

namespace gptx {

using detail::Check;

Tensor gelu_forward(const Tensor& inp, const Tensor& out_) {
    const Check c("gelu_forward");
    c.f32(inp, "inp");
    Tensor out = c.output(out_, "out", inp.shape());
    if (!out.same_memory(inp)) c.no_overlap(out, "out", inp, "inp");  // elementwise: in place is fine
    if (inp.numel()) cpu::active().gelu_forward(out.data<float>(), inp.data<float>(), inp.numel());
    return out;
}

Tensor gelu_backward(const Tensor& dout, const Tensor& inp, const Tensor& dinp_, bool accumulate) {
    const Check c("gelu_backward");
    c.f32(inp, "inp");
    c.f32(dout, "dout");
    c.shape(dout, "dout", inp.shape());
    if (accumulate && !dinp_.defined()) c.fail("dinp", "is required when accumulate is true");
    Tensor dinp = c.output(dinp_, "dinp", inp.shape());
    if (!dinp.same_memory(dout)) c.no_overlap(dinp, "dinp", dout, "dout");
    c.no_overlap(dinp, "dinp", inp, "inp");
    if (inp.numel())
        cpu::active().gelu_backward(dinp.data<float>(), inp.data<float>(), dout.data<float>(), inp.numel(),
                                    accumulate);
    return dinp;
}

Tensor add_forward(const Tensor& a, const Tensor& b, const Tensor& out_) {
    const Check c("add_forward");
    c.f32(a, "a");
    c.f32(b, "b");
    c.shape(b, "b", a.shape());
    Tensor out = c.output(out_, "out", a.shape());
    if (!out.same_memory(a)) c.no_overlap(out, "out", a, "a");
    if (!out.same_memory(b)) c.no_overlap(out, "out", b, "b");
    if (a.numel()) cpu::active().add_forward(out.data<float>(), a.data<float>(), b.data<float>(), a.numel());
    return out;
}

}  // namespace gptx
