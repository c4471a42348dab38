// cross_entropy.cc — validation and dispatch of the fused softmax cross-entropy (forward and backward).
#include <limits>

#include "gptx/ops.h"
#include "ops/check.h"

namespace gptx {

using detail::Check;

namespace {
int64_t real_vocab(const Check& c, int64_t V, int64_t Vp) {
    if (V <= 0) return Vp;
    if (V > Vp) c.fail("V", "is " + std::to_string(V) + " but logits have only " + std::to_string(Vp) + " columns");
    return V;
}
std::vector<int64_t> row_shape(const Tensor& logits) { return {logits.shape().begin(), logits.shape().end() - 1}; }
}  // namespace

CrossEntropyOutputs cross_entropy_forward(const Tensor& logits, const Tensor& targets, int64_t V_,
                                          int32_t ignore_index, const Tensor& losses_, const Tensor& lse_,
                                          const Tensor& loss) {
    const Check c("cross_entropy_forward");
    c.act(logits, "logits");
    c.ndim(logits, "logits", 1, 8);
    const int64_t Vp = logits.size(-1), N = detail::leading(logits.shape(), 1);
    const int64_t V = real_vocab(c, V_, Vp);
    if (targets.defined()) c.shape(targets, "targets", row_shape(logits));
    const Tensor tg = c.ids(targets, "targets", V, true, ignore_index);
    CrossEntropyOutputs r;
    r.losses = c.output(losses_, "losses", row_shape(logits));
    r.lse = c.output(lse_, "lse", row_shape(logits));
    for (const Tensor* o : {&r.losses, &r.lse}) {
        const char* name = o == &r.losses ? "losses" : "lse";
        c.no_overlap(*o, name, logits, "logits");
        c.no_overlap(*o, name, tg, "targets");
    }
    c.no_overlap(r.losses, "losses", r.lse, "lse");
    if (loss.defined()) {
        c.f32(loss, "loss");
        if (loss.numel() != 1) c.fail("loss", "must have one element, got shape " + loss.shape_str());
        c.writable(loss, "loss");
        c.no_overlap(loss, "loss", logits, "logits");
        c.no_overlap(loss, "loss", tg, "targets");
        c.no_overlap(loss, "loss", r.losses, "losses");
        c.no_overlap(loss, "loss", r.lse, "lse");
        r.loss = loss;
    }
    if (N > 0 && Vp == 0) c.fail("logits", "must have at least one column");
    if (N == 0) {
        if (r.loss.defined()) r.loss.fill(std::numeric_limits<double>::quiet_NaN());  // the mean of nothing
        return r;
    }
    backend::CrossEntropyParams p;
    p.losses = r.losses.data<float>();
    p.lse = r.lse.data<float>();
    p.loss = r.loss.defined() ? r.loss.data<float>() : nullptr;
    p.logits = logits.data_ptr();
    p.targets = tg.data<int32_t>();
    p.dtype = c.act_dtype();
    p.N = N;
    p.V = V;
    p.Vp = Vp;
    p.ignore_index = ignore_index;
    c.backend()->cross_entropy_forward(p);
    return r;
}

Tensor cross_entropy_backward(const Tensor& logits, const Tensor& lse, const Tensor& targets, const Tensor& dlosses,
                              int64_t V_, int32_t ignore_index, const Tensor& dlogits_, bool accumulate) {
    const Check c("cross_entropy_backward");
    c.act(logits, "logits");
    c.ndim(logits, "logits", 1, 8);
    const int64_t Vp = logits.size(-1), N = detail::leading(logits.shape(), 1);
    const int64_t V = real_vocab(c, V_, Vp);
    c.f32(lse, "lse");
    c.shape(lse, "lse", row_shape(logits));
    if (targets.defined()) c.shape(targets, "targets", row_shape(logits));
    const Tensor tg = c.ids(targets, "targets", V, true, ignore_index);
    c.f32(dlosses, "dlosses");
    c.shape(dlosses, "dlosses", row_shape(logits));
    if (accumulate && !dlogits_.defined()) c.fail("dlogits", "is required when accumulate is true");
    Tensor dlogits = c.output(dlogits_, "dlogits", logits.shape(), c.act_dtype());
    if (!dlogits.same_memory(logits)) c.no_overlap(dlogits, "dlogits", logits, "logits");  // exact in place is fine
    c.no_overlap(dlogits, "dlogits", lse, "lse");
    c.no_overlap(dlogits, "dlogits", tg, "targets");
    c.no_overlap(dlogits, "dlogits", dlosses, "dlosses");
    if (N == 0 || Vp == 0) return dlogits;
    backend::CrossEntropyBackwardParams p;
    p.dlogits = dlogits.data_ptr();
    p.logits = logits.data_ptr();
    p.lse = lse.data<float>();
    p.targets = tg.data<int32_t>();
    p.dlosses = dlosses.data<float>();
    p.dtype = c.act_dtype();
    p.N = N;
    p.V = V;
    p.Vp = Vp;
    p.ignore_index = ignore_index;
    p.accumulate = accumulate;
    c.backend()->cross_entropy_backward(p);
    return dlogits;
}

}  // namespace gptx
