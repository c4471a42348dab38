// embedding.cc — validation and dispatch of embedding_forward / embedding_backward (token + position).
#include "gptx/ops.h"
#include "ops/check.h"

namespace gptx {

using detail::Check;

namespace {
void check_positions(const Check& c, int64_t pos_offset, int64_t T, int64_t maxT, const char* table) {
    if (pos_offset < 0) c.fail("pos_offset", "must be >= 0, got " + std::to_string(pos_offset));
    if (pos_offset > maxT - T)  // not pos_offset + T > maxT: that sum can overflow
        c.fail(table, "has " + std::to_string(maxT) + " positions but positions up to pos_offset + T = " +
                          std::to_string(pos_offset) + " + " + std::to_string(T) + " are needed");
}
}  // namespace

Tensor embedding_forward(const Tensor& idx, const Tensor& wte, const Tensor& wpe, int64_t pos_offset,
                         const Tensor& out_) {
    const Check c("embedding_forward");
    c.act(wte, "wte");
    c.ndim(wte, "wte", 2, 2);
    c.act(wpe, "wpe");
    c.ndim(wpe, "wpe", 2, 2);
    if (idx.defined()) c.ndim(idx, "idx", 2, 2);
    const int64_t V = wte.size(0), C = wte.size(1);
    const Tensor ids = c.ids(idx, "idx", V);
    const int64_t B = ids.size(0), T = ids.size(1);
    if (wpe.size(1) != C) c.fail("wpe", "must have " + std::to_string(C) + " columns like wte, got " + wpe.shape_str());
    check_positions(c, pos_offset, T, wpe.size(0), "wpe");
    Tensor out = c.output(out_, "out", {B, T, C}, c.act_dtype());
    c.no_overlap(out, "out", ids, "idx");
    c.no_overlap(out, "out", wte, "wte");
    c.no_overlap(out, "out", wpe, "wpe");
    if (out.numel() == 0) return out;
    backend::EmbeddingParams p;
    p.out = out.data_ptr();
    p.idx = ids.data<int32_t>();
    p.wte = wte.data_ptr();
    p.wpe = wpe.data_ptr();
    p.dtype = c.act_dtype();
    p.B = B;
    p.T = T;
    p.C = C;
    p.pos_offset = pos_offset;
    c.backend()->embedding_forward(p);
    return out;
}

void embedding_backward(const Tensor& dout, const Tensor& idx, const Tensor& dwte, const Tensor& dwpe,
                        int64_t pos_offset) {
    const Check c("embedding_backward");
    c.f32(dwte, "dwte");
    c.ndim(dwte, "dwte", 2, 2);
    c.f32(dwpe, "dwpe");
    c.ndim(dwpe, "dwpe", 2, 2);
    if (idx.defined()) c.ndim(idx, "idx", 2, 2);
    const int64_t V = dwte.size(0), C = dwte.size(1);
    const Tensor ids = c.ids(idx, "idx", V);
    const int64_t B = ids.size(0), T = ids.size(1);
    c.act(dout, "dout");
    c.shape(dout, "dout", {B, T, C});
    if (dwpe.size(1) != C) c.fail("dwpe", "must have " + std::to_string(C) + " columns like dwte, got " + dwpe.shape_str());
    check_positions(c, pos_offset, T, dwpe.size(0), "dwpe");
    c.writable(dwte, "dwte");
    c.writable(dwpe, "dwpe");
    c.no_overlap(dwte, "dwte", dout, "dout");
    c.no_overlap(dwte, "dwte", ids, "idx");
    c.no_overlap(dwpe, "dwpe", dout, "dout");
    c.no_overlap(dwpe, "dwpe", ids, "idx");
    c.no_overlap(dwte, "dwte", dwpe, "dwpe");
    if (dout.numel() == 0) return;
    backend::EmbeddingBackwardParams p;
    p.dwte = dwte.data<float>();
    p.dwpe = dwpe.data<float>();
    p.dout = dout.data_ptr();
    p.idx = ids.data<int32_t>();
    p.dtype = c.act_dtype();
    p.B = B;
    p.T = T;
    p.C = C;
    p.pos_offset = pos_offset;
    c.backend()->embedding_backward(p);
}

}  // namespace gptx
