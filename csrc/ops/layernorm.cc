// layernorm.cc — validation and dispatch of layernorm_forward / layernorm_backward.
#include <cmath>

#include "gptx/ops.h"
#include "ops/check.h"

namespace gptx {

using detail::Check;

namespace {
std::vector<int64_t> row_shape(const Tensor& inp) { return {inp.shape().begin(), inp.shape().end() - 1}; }
}  // namespace

LayernormOutputs layernorm_forward(const Tensor& inp, const Tensor& weight, const Tensor& bias, float eps,
                                   const Tensor& out_, const Tensor& mean_, const Tensor& rstd_) {
    const Check c("layernorm_forward");
    c.act(inp, "inp");
    c.ndim(inp, "inp", 1, 8);
    const int64_t C = inp.size(-1), N = detail::leading(inp.shape(), 1);
    c.f32(weight, "weight");
    c.shape(weight, "weight", {C});
    c.f32(bias, "bias");
    c.shape(bias, "bias", {C});
    if (!(eps > 0.0f) || !std::isfinite(eps)) c.fail("eps", "must be a positive finite number");
    if (C == 0 && N > 0) c.fail("inp", "has no features (last dim 0): layernorm's mean and rstd are undefined");
    LayernormOutputs r;
    r.out = c.output(out_, "out", inp.shape(), c.act_dtype());
    r.mean = c.output(mean_, "mean", row_shape(inp));
    r.rstd = c.output(rstd_, "rstd", row_shape(inp));
    const Tensor* outs[3] = {&r.out, &r.mean, &r.rstd};
    const char* names[3] = {"out", "mean", "rstd"};
    for (int i = 0; i < 3; i++) {
        c.no_overlap(*outs[i], names[i], inp, "inp");
        c.no_overlap(*outs[i], names[i], weight, "weight");
        c.no_overlap(*outs[i], names[i], bias, "bias");
        for (int j = i + 1; j < 3; j++) c.no_overlap(*outs[i], names[i], *outs[j], names[j]);
    }
    if (N == 0 || C == 0) return r;
    backend::LayernormParams p;
    p.out = r.out.data_ptr();
    p.mean = r.mean.data<float>();
    p.rstd = r.rstd.data<float>();
    p.inp = inp.data_ptr();
    p.weight = weight.data<float>();
    p.bias = bias.data<float>();
    p.dtype = c.act_dtype();
    p.N = N;
    p.C = C;
    p.eps = eps;
    c.backend()->layernorm_forward(p);
    return r;
}

LayernormGrads layernorm_backward(const Tensor& dout, const Tensor& inp, const Tensor& weight, const Tensor& mean,
                                  const Tensor& rstd, const Tensor& dinp_, const Tensor& dweight_,
                                  const Tensor& dbias_, bool accumulate) {
    const Check c("layernorm_backward");
    c.act(inp, "inp");
    c.ndim(inp, "inp", 1, 8);
    const int64_t C = inp.size(-1), N = detail::leading(inp.shape(), 1);
    c.act(dout, "dout");
    c.shape(dout, "dout", inp.shape());
    c.f32(weight, "weight");
    c.shape(weight, "weight", {C});
    c.f32(mean, "mean");
    c.shape(mean, "mean", row_shape(inp));
    c.f32(rstd, "rstd");
    c.shape(rstd, "rstd", row_shape(inp));
    if (C == 0 && N > 0) c.fail("inp", "has no features (last dim 0): layernorm's mean and rstd are undefined");
    if (accumulate && (!dinp_.defined() || !dweight_.defined() || !dbias_.defined()))
        c.fail(!dinp_.defined() ? "dinp" : !dweight_.defined() ? "dweight" : "dbias",
               "is required when accumulate is true");
    LayernormGrads g;
    g.dinp = c.output(dinp_, "dinp", inp.shape(), c.act_dtype());
    g.dweight = c.output(dweight_, "dweight", {C});
    g.dbias = c.output(dbias_, "dbias", {C});
    const Tensor* ins[5] = {&dout, &inp, &weight, &mean, &rstd};
    const char* in_names[5] = {"dout", "inp", "weight", "mean", "rstd"};
    const Tensor* outs[3] = {&g.dinp, &g.dweight, &g.dbias};
    const char* out_names[3] = {"dinp", "dweight", "dbias"};
    for (int i = 0; i < 3; i++) {
        for (int j = 0; j < 5; j++) c.no_overlap(*outs[i], out_names[i], *ins[j], in_names[j]);
        for (int j = i + 1; j < 3; j++) c.no_overlap(*outs[i], out_names[i], *outs[j], out_names[j]);
    }
    if (C == 0) return g;
    if (N == 0) {
        if (!accumulate) {
            g.dweight.fill(0.0);
            g.dbias.fill(0.0);
        }
        return g;
    }
    backend::LayernormBackwardParams p;
    p.dinp = g.dinp.data_ptr();
    p.dweight = g.dweight.data<float>();
    p.dbias = g.dbias.data<float>();
    p.dout = dout.data_ptr();
    p.inp = inp.data_ptr();
    p.weight = weight.data<float>();
    p.mean = mean.data<float>();
    p.rstd = rstd.data<float>();
    p.dtype = c.act_dtype();
    p.N = N;
    p.C = C;
    p.accumulate = accumulate;
    c.backend()->layernorm_backward(p);
    return g;
}

}  // namespace gptx
