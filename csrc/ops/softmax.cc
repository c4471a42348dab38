// softmax.cc — validation and dispatch of softmax_forward / softmax_backward.
#include "cpu/kernel_table.h"
#include "cuda/kernels.h"
#include "cuda/runtime.h"
#include "gptx/ops.h"
#include "ops/check.h"

namespace gptx {

using detail::Check;

Tensor softmax_forward(const Tensor& inp, float scale, bool causal, const Tensor& out_) {
    const Check c("softmax_forward");
    c.act(inp, "inp");
    c.ndim(inp, "inp", causal ? 2 : 1, 8);
    const int64_t L = inp.size(-1), rows = detail::leading(inp.shape(), 1);
    int64_t Tq = 0;
    if (causal) {
        Tq = inp.size(-2);
        if (Tq > L) c.fail("inp", "has " + std::to_string(Tq) + " query rows but only " + std::to_string(L) +
                                      " columns; causal softmax needs Tq <= L");
    }
    Tensor out = c.output(out_, "out", inp.shape(), c.act_dtype());
    if (!out.same_memory(inp)) c.no_overlap(out, "out", inp, "inp");  // in place is fine: each row is read first
    if (rows == 0 || L == 0) return out;
    if (c.on_cuda()) {
        cuda::DeviceGuard guard(c.device().index);
        cuda::softmax_forward(out.data_ptr(), inp.data_ptr(), c.act_dtype(), rows, L, scale, Tq);
        return out;
    }
    cpu::active().softmax_forward(out.data<float>(), inp.data<float>(), rows, L, scale, Tq);
    return out;
}

Tensor softmax_backward(const Tensor& dout, const Tensor& out, float scale, const Tensor& dinp_) {
    const Check c("softmax_backward");
    c.act(dout, "dout");
    c.act(out, "out");
    c.ndim(out, "out", 1, 8);
    c.shape(dout, "dout", out.shape());
    Tensor dinp = c.output(dinp_, "dinp", out.shape(), c.act_dtype());
    if (!dinp.same_memory(dout)) c.no_overlap(dinp, "dinp", dout, "dout");
    c.no_overlap(dinp, "dinp", out, "out");
    const int64_t L = out.size(-1), rows = detail::leading(out.shape(), 1);
    if (rows == 0 || L == 0) return dinp;
    if (c.on_cuda()) {
        cuda::DeviceGuard guard(c.device().index);
        cuda::softmax_backward(dinp.data_ptr(), dout.data_ptr(), out.data_ptr(), c.act_dtype(), rows, L, scale);
        return dinp;
    }
    cpu::active().softmax_backward(dinp.data<float>(), dout.data<float>(), out.data<float>(), rows, L, scale);
    return dinp;
}

}  // namespace gptx
