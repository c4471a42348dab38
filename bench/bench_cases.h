// bench_cases.h — the table of benchmarked ops: how each builds its inputs, runs, and counts its work.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <gptx/gptx.h>

namespace bench {

struct MatmulShape {
    std::string tag;  // which GPT-2 layer: c_attn, c_fc, c_proj, lm_head (or "custom")
    int64_t M, N, K;  // out (M, N) = a (M, K) @ w^T, w stored (N, K) as GPT-2 keeps its weights
};

struct AttentionShape {
    int64_t B, NH, T, HS;
};

// Every size the cases use. The defaults are GPT-2 small (124M) with B*T = 2048 tokens.
struct Sizes {
    int64_t tokens = 2048;          // rows of the token-shaped ops (B*T)
    int64_t emb_B = 4, emb_T = 512;  // embedding idx (B, T)
    int64_t C = 768, Vp = 50304, V = 50257, maxT = 1024;
    int64_t softmax_rows = 49152, softmax_cols = 1024;  // B4 x NH12 x T1024 rows of a T1024 score matrix
    AttentionShape attn{4, 12, 1024, 64};
    std::vector<MatmulShape> matmuls;  // matmul_forward shapes
    MatmulShape matmul_bwd{"c_fc", 2048, 3072, 768};
    int64_t params = 124475904;  // GPT-2 small with the vocabulary padded to 50304
};

Sizes gpt2_small_sizes();
// The same forms with fewer rows / a shorter sequence / fewer parameters: for smoke tests, not for reporting.
Sizes quick_sizes();

// One benchmark instance on one device. run() must be repeatable: it writes preallocated outputs (ops that
// accumulate, like embedding_backward and adamw_step, just keep accumulating while timed; reset() restores them for
// validation). On a GPU run() only enqueues the work: the caller synchronises before reading a clock or a result.
struct Problem {
    std::string shape;
    double flops = 0.0;  // per run; > 0 for the compute-bound ops (reported in GFLOP/s)
    double bytes = 0.0;  // per run: every input read and output written once (reported in GB/s when flops == 0)
    std::function<void()> run;
    std::function<void()> reset;  // restores what run() mutates; set where the validation needs it, else empty
    std::function<std::vector<gptx::Tensor>()> results;  // outputs the validation compares (on the problem's device)
};

struct Case {
    std::string name;   // the op, e.g. "matmul_forward" (what --op matches)
    std::string label;  // unique row name, e.g. "matmul_forward/c_fc" (--op matches it too)
    double tol;         // tolerance on the normwise relative error vs the scalar reference
    // reduced = true: a smaller shape of the same form (same row length / head size / vocabulary), for validating
    // ops whose scalar reference would take too long at full size. Inputs are made on the host (the same values for
    // a given case and shape, whatever the device) and copied to `device`, where the outputs are allocated.
    std::function<Problem(bool reduced, const gptx::Device& device)> make;
};

std::vector<Case> make_cases(const Sizes& s);

}  // namespace bench
