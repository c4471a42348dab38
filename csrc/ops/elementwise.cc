// elementwise.cc — validation and dispatch of gelu_forward / gelu_backward / add_forward.
#include "cpu/kernel_table.h"
#include "cuda/kernels.h"
#include "cuda/runtime.h"
#include "gptx/ops.h"
#include "ops/check.h"

namespace gptx {

using detail::Check;

Tensor gelu_forward(const Tensor& inp, const Tensor& out_) {
    const Check c("gelu_forward");
    c.act(inp, "inp");
    Tensor out = c.output(out_, "out", inp.shape(), c.act_dtype());
    if (!out.same_memory(inp)) c.no_overlap(out, "out", inp, "inp");  // elementwise: in place is fine
    if (inp.numel() && c.on_cuda()) {
        cuda::DeviceGuard guard(c.device().index);
        cuda::gelu_forward(out.data_ptr(), inp.data_ptr(), c.act_dtype(), inp.numel());
    } else if (inp.numel()) cpu::active().gelu_forward(out.data<float>(), inp.data<float>(), inp.numel());
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
    if (inp.numel() && c.on_cuda()) {
        cuda::DeviceGuard guard(c.device().index);
        cuda::gelu_backward(dinp.data_ptr(), inp.data_ptr(), dout.data_ptr(), c.act_dtype(), inp.numel(), accumulate);
    } else if (inp.numel())
        cpu::active().gelu_backward(dinp.data<float>(), inp.data<float>(), dout.data<float>(), inp.numel(),
                                    accumulate);
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
    if (a.numel() && c.on_cuda()) {
        cuda::DeviceGuard guard(c.device().index);
        cuda::add_forward(out.data_ptr(), a.data_ptr(), b.data_ptr(), c.act_dtype(), a.numel());
    } else if (a.numel()) cpu::active().add_forward(out.data<float>(), a.data<float>(), b.data<float>(), a.numel());
    return out;
}

}  // namespace gptx
