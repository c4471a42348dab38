// softmax.cc — validation and dispatch of softmax_forward / softmax_backward.
#include <cmath>

#include "gptx/ops.h"
#include "ops/check.h"

namespace gptx {

using detail::Check;

Tensor softmax_forward(const Tensor& inp, float scale, bool causal, const Tensor& out_) {
    const Check c("softmax_forward");
    c.act(inp, "inp");
    c.ndim(inp, "inp", causal ? 2 : 1, 8);
    // A NaN or infinite scale would turn every row into NaN (inf * 0 too); a negative one is a valid reversal.
    if (!std::isfinite(scale)) c.fail("scale", "must be a finite number, got " + std::to_string(scale));
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
    backend::SoftmaxParams p;
    p.out = out.data_ptr();
    p.inp = inp.data_ptr();
    p.dtype = c.act_dtype();
    p.rows = rows;
    p.L = L;
    p.scale = scale;
    p.causal_Tq = Tq;
    c.backend()->softmax_forward(p);
    return out;
}

Tensor softmax_backward(const Tensor& dout, const Tensor& out, float scale, const Tensor& dinp_) {
    const Check c("softmax_backward");
    c.act(dout, "dout");
    c.act(out, "out");
    c.ndim(out, "out", 1, 8);
    if (!std::isfinite(scale)) c.fail("scale", "must be a finite number, got " + std::to_string(scale));
    c.shape(dout, "dout", out.shape());
    Tensor dinp = c.output(dinp_, "dinp", out.shape(), c.act_dtype());
    if (!dinp.same_memory(dout)) c.no_overlap(dinp, "dinp", dout, "dout");
    c.no_overlap(dinp, "dinp", out, "out");
    const int64_t L = out.size(-1), rows = detail::leading(out.shape(), 1);
    if (rows == 0 || L == 0) return dinp;
    backend::SoftmaxBackwardParams p;
    p.dinp = dinp.data_ptr();
    p.dout = dout.data_ptr();
    p.out = out.data_ptr();
    p.dtype = c.act_dtype();
    p.rows = rows;
    p.L = L;
    p.scale = scale;
    c.backend()->softmax_backward(p);
    return dinp;
}

}  // namespace gptx
