// elementwise.cc — validation and dispatch of gelu_forward / gelu_backward / add_forward.
#include "gptx/ops.h"
#include "ops/check.h"

namespace gptx {

using detail::Check;

Tensor gelu_forward(const Tensor& inp, const Tensor& out_) {
    const Check c("gelu_forward");
    c.act(inp, "inp");
    Tensor out = c.output(out_, "out", inp.shape(), c.act_dtype());
    if (!out.same_memory(inp)) c.no_overlap(out, "out", inp, "inp");  // elementwise: in place is fine
    if (inp.numel() == 0) return out;
    backend::GeluParams p;
    p.out = out.data_ptr();
    p.inp = inp.data_ptr();
    p.dtype = c.act_dtype();
    p.n = inp.numel();
    c.backend()->gelu_forward(p);
    return out;
}

Tensor gelu_backward(const Tensor& dout, const Tensor& inp, const Tensor& dinp_, bool accumulate) {
    const Check c("gelu_backward");
    c.act(inp, "inp");
    c.act(dout, "dout");
    c.shape(dout, "dout", inp.shape());
    if (accumulate && !dinp_.defined()) c.fail("dinp", "is required when accumulate is true");
    Tensor dinp = c.output(dinp_, "dinp", inp.shape(), c.act_dtype());
    if (!dinp.same_memory(dout)) c.no_overlap(dinp, "dinp", dout, "dout");
    c.no_overlap(dinp, "dinp", inp, "inp");
    if (inp.numel() == 0) return dinp;
    backend::GeluBackwardParams p;
    p.dinp = dinp.data_ptr();
    p.inp = inp.data_ptr();
    p.dout = dout.data_ptr();
    p.dtype = c.act_dtype();
    p.n = inp.numel();
    p.accumulate = accumulate;
    c.backend()->gelu_backward(p);
    return dinp;
}

Tensor add_forward(const Tensor& a, const Tensor& b, const Tensor& out_) {
    const Check c("add_forward");
    c.act(a, "a");
    c.act(b, "b");
    c.shape(b, "b", a.shape());
    Tensor out = c.output(out_, "out", a.shape(), c.act_dtype());
    if (!out.same_memory(a)) c.no_overlap(out, "out", a, "a");
    if (!out.same_memory(b)) c.no_overlap(out, "out", b, "b");
    if (a.numel() == 0) return out;
    backend::AddParams p;
    p.out = out.data_ptr();
    p.a = a.data_ptr();
    p.b = b.data_ptr();
    p.dtype = c.act_dtype();
    p.n = a.numel();
    c.backend()->add_forward(p);
    return out;
}

}  // namespace gptx
