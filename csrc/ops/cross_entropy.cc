// cross_entropy.cc — validation and dispatch of the fused softmax cross-entropy (forward and backward).
#include "cpu/kernel_table.h"
#include "cuda/kernels.h"
#include "cuda/runtime.h"
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
                                          int32_t ignore_index, const Tensor& losses_, const Tensor& lse_) {
    const Check c("cross_entropy_forward");
    c.act(logits, "logits");
    c.ndim(logits, "logits", 1, 8);
    const int64_t Vp = logits.size(-1), N = detail::leading(logits.shape(), 1);
    const int64_t V = real_vocab(c, V_, Vp);
    c.i32(targets, "targets");
    c.shape(targets, "targets", row_shape(logits));
    c.indices_in_range(targets, "targets", V, true, ignore_index);
    CrossEntropyOutputs r;
    r.losses = c.output(losses_, "losses", row_shape(logits));
    r.lse = c.output(lse_, "lse", row_shape(logits));
    for (const Tensor* o : {&r.losses, &r.lse}) {
        const char* name = o == &r.losses ? "losses" : "lse";
        c.no_overlap(*o, name, logits, "logits");
        c.no_overlap(*o, name, targets, "targets");
    }
    c.no_overlap(r.losses, "losses", r.lse, "lse");
    if (N == 0) return r;
    if (Vp == 0) c.fail("logits", "must have at least one column");
    if (c.on_cuda()) {
        cuda::DeviceGuard guard(c.device().index);
        cuda::cross_entropy_forward(r.losses.data<float>(), r.lse.data<float>(), logits.data_ptr(),
                                    targets.data<int32_t>(), c.act_dtype(), N, V, Vp, ignore_index);
        return r;
    }
    cpu::active().cross_entropy_forward(r.losses.data<float>(), r.lse.data<float>(), logits.data<float>(),
                                        targets.data<int32_t>(), N, V, Vp, ignore_index);
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
    c.i32(targets, "targets");
    c.shape(targets, "targets", row_shape(logits));
    c.indices_in_range(targets, "targets", V, true, ignore_index);
    c.f32(dlosses, "dlosses");
    c.shape(dlosses, "dlosses", row_shape(logits));
    if (accumulate && !dlogits_.defined()) c.fail("dlogits", "is required when accumulate is true");
    Tensor dlogits = c.output(dlogits_, "dlogits", logits.shape(), c.act_dtype());
    if (!dlogits.same_memory(logits)) c.no_overlap(dlogits, "dlogits", logits, "logits");  // exact in place is fine
    c.no_overlap(dlogits, "dlogits", lse, "lse");
    c.no_overlap(dlogits, "dlogits", targets, "targets");
    c.no_overlap(dlogits, "dlogits", dlosses, "dlosses");
    if (N == 0 || Vp == 0) return dlogits;
    if (c.on_cuda()) {
        cuda::DeviceGuard guard(c.device().index);
        cuda::cross_entropy_backward(dlogits.data_ptr(), logits.data_ptr(), lse.data<float>(), targets.data<int32_t>(),
                                     dlosses.data<float>(), c.act_dtype(), N, V, Vp, ignore_index, accumulate);
        return dlogits;
    }
    cpu::active().cross_entropy_backward(dlogits.data<float>(), logits.data<float>(), lse.data<float>(),
                                         targets.data<int32_t>(), dlosses.data<float>(), N, V, Vp, ignore_index,
                                         accumulate);
    return dlogits;
}

}  // namespace gptx
