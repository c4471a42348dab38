// ref_attention.cc — scalar reference of multi-head attention forward/backward, one row of scores at a time.
#include <cmath>
#include <vector>

#include "../cpu/kernels.h"
#include "../cpu/threads.h"

namespace gptx {
namespace cpu {
namespace GPTX_ISA_NS {

namespace {

// Address of element (b, t, h, 0) of a strided (B, T, NH, HS) view.
template <typename T>
T* at(T* base, int64_t batch_stride, int64_t row_stride, int64_t head_stride, int64_t b, int64_t t, int64_t h) {
    return base + b * batch_stride + t * row_stride + h * head_stride;
}

double dot(const float* x, const float* y, int64_t n) {
    double acc = 0.0;
    for (int64_t d = 0; d < n; d++) acc += (double)x[d] * y[d];
    return acc;
}

// Keys query row i may look at: all Tk, or with causal those j <= (Tk - Tq) + i. If Tq > Tk (outside the
// contract) the first Tq - Tk causal rows see no key at all.
int64_t kept_keys(const AttentionParams& p, int64_t i) {
    if (!p.causal) return p.Tk;
    const int64_t last = p.Tk - p.Tq + i;
    if (last < 0) return 0;
    return last + 1 < p.Tk ? last + 1 : p.Tk;
}

// The dropout factor Z_ij of probability (row, j): mask.scale when kept, 0 when dropped, 1 without dropout.
double dropout_factor(const DropoutMask& m, uint32_t row_state, int64_t j) {
    if (m.threshold == 0) return 1.0;
    return dropout_keep(m, row_state, (uint32_t)j) ? (double)m.scale : 0.0;
}

}  // namespace

// For each (b, h, i): s_j = scale * q_i . k_j over the kept keys j, P_j = softmax_j(s),
// out_i = sum_j P_j Z_j v_j (Z: the dropout factors of row (b, h, i); 1 without dropout), lse_i = log sum_j exp(s_j).
// A row with no kept key gets out_i = 0, lse_i = -inf.
void attention_forward(const AttentionParams& p) {
    const int nt = num_threads();
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t bh = 0; bh < p.B * p.NH; bh++) {
        const int64_t b = bh / p.NH, h = bh % p.NH;
        std::vector<double> s(p.Tk), o(p.HS);
        for (int64_t i = 0; i < p.Tq; i++) {
            const float* qi = at(f32(p.q), p.q_batch_stride, p.q_row_stride, p.q_head_stride, b, i, h);
            float* oi = at(f32(p.out), p.o_batch_stride, p.o_row_stride, p.o_head_stride, b, i, h);
            float* lse = p.lse != nullptr ? &p.lse[bh * p.Tq + i] : nullptr;
            const int64_t keep = kept_keys(p, i);
            if (keep == 0) {
                for (int64_t d = 0; d < p.HS; d++) oi[d] = 0.0f;
                if (lse != nullptr) *lse = -INFINITY;
                continue;
            }

            double mx = -INFINITY;
            for (int64_t j = 0; j < keep; j++) {
                const float* kj = at(f32(p.k), p.k_batch_stride, p.k_row_stride, p.k_head_stride, b, j, h);
                s[j] = (double)p.scale * dot(qi, kj, p.HS);
                if (s[j] > mx) mx = s[j];
            }
            double sum = 0.0;
            for (int64_t j = 0; j < keep; j++) {
                s[j] = std::exp(s[j] - mx);  // unnormalised probability
                sum += s[j];
            }
            for (int64_t d = 0; d < p.HS; d++) o[d] = 0.0;
            const uint32_t rs = dropout_row(p.dropout.key, (uint64_t)(bh * p.Tq + i));
            for (int64_t j = 0; j < keep; j++) {
                const float* vj = at(f32(p.v), p.v_batch_stride, p.v_row_stride, p.v_head_stride, b, j, h);
                const double pz = s[j] * dropout_factor(p.dropout, rs, j);
                for (int64_t d = 0; d < p.HS; d++) o[d] += pz * vj[d];
            }
            for (int64_t d = 0; d < p.HS; d++) oi[d] = (float)(o[d] / sum);
            if (lse != nullptr) *lse = (float)(mx + std::log(sum));
        }
    }
}

// With the saved lse and out (as given, not recomputed):
//   P_ij = exp(scale * q_i . k_j - lse_i),  D_i = dout_i . out_i,  dS_ij = P_ij * (Z_ij dout_i . v_j - D_i)
//   dq_i = scale * sum_j dS_ij k_j,  dk_j = scale * sum_i dS_ij q_i,  dv_j = sum_i P_ij Z_ij dout_i
// (Z: the forward's dropout factors, regenerated; D needs no Z since out already holds them)
// over kept (i, j) pairs only. Every (b, h) is independent; its sums are held in double until stored.
void attention_backward(const AttentionBackwardParams& bp) {
    const AttentionParams& p = bp.fwd;
    const int64_t HS = p.HS;
    const int nt = num_threads();
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t bh = 0; bh < p.B * p.NH; bh++) {
        const int64_t b = bh / p.NH, h = bh % p.NH;
        std::vector<double> dk(p.Tk * HS, 0.0), dv(p.Tk * HS, 0.0), dq(HS);
        for (int64_t i = 0; i < p.Tq; i++) {
            const float* qi = at(f32(p.q), p.q_batch_stride, p.q_row_stride, p.q_head_stride, b, i, h);
            const float* oi = at(f32(p.out), p.o_batch_stride, p.o_row_stride, p.o_head_stride, b, i, h);
            const float* doi = at(f32(bp.dout), p.o_batch_stride, p.o_row_stride, p.o_head_stride, b, i, h);
            float* dqi = at(f32(bp.dq), p.q_batch_stride, p.q_row_stride, p.q_head_stride, b, i, h);
            const int64_t keep = kept_keys(p, i);
            const double lse = p.lse[bh * p.Tq + i];
            const double D = dot(doi, oi, HS);

            for (int64_t d = 0; d < HS; d++) dq[d] = 0.0;
            const uint32_t rs = dropout_row(p.dropout.key, (uint64_t)(bh * p.Tq + i));
            for (int64_t j = 0; j < keep; j++) {
                const float* kj = at(f32(p.k), p.k_batch_stride, p.k_row_stride, p.k_head_stride, b, j, h);
                const float* vj = at(f32(p.v), p.v_batch_stride, p.v_row_stride, p.v_head_stride, b, j, h);
                const double P = std::exp((double)p.scale * dot(qi, kj, HS) - lse);
                const double Z = dropout_factor(p.dropout, rs, j);
                const double dS = P * (Z * dot(doi, vj, HS) - D);
                for (int64_t d = 0; d < HS; d++) {
                    dq[d] += (double)p.scale * dS * kj[d];
                    dk[j * HS + d] += (double)p.scale * dS * qi[d];
                    dv[j * HS + d] += P * Z * doi[d];
                }
            }
            for (int64_t d = 0; d < HS; d++) dqi[d] = (float)(bp.accumulate ? dqi[d] + dq[d] : dq[d]);
        }
        for (int64_t j = 0; j < p.Tk; j++) {
            float* dkj = at(f32(bp.dk), p.k_batch_stride, p.k_row_stride, p.k_head_stride, b, j, h);
            float* dvj = at(f32(bp.dv), p.v_batch_stride, p.v_row_stride, p.v_head_stride, b, j, h);
            for (int64_t d = 0; d < HS; d++) {
                dkj[d] = (float)(bp.accumulate ? dkj[d] + dk[j * HS + d] : dk[j * HS + d]);
                dvj[d] = (float)(bp.accumulate ? dvj[d] + dv[j * HS + d] : dv[j * HS + d]);
            }
        }
    }
}

}  // namespace GPTX_ISA_NS
}  // namespace cpu
}  // namespace gptx
