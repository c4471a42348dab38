// bench_cases.cc — the benchmark table: one builder per op (inputs, preallocated outputs, work counts).
#include "bench_cases.h"

#include <omp.h>

#include <algorithm>
#include <memory>

namespace bench {

namespace {

using gptx::Device;
using gptx::DType;
using gptx::Tensor;
using Shape = std::vector<int64_t>;

// splitmix64: a counter-based generator, so tensors fill in parallel and come out the same at any thread count.
uint64_t mix(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

Tensor uniform(const Shape& shape, uint64_t seed, float lo, float hi) {
    Tensor t = Tensor::empty(shape, DType::float32);
    float* p = t.data<float>();
    const int64_t n = t.numel();
    const uint64_t base = mix(seed) << 20;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        const float u = static_cast<float>(mix(base + i) >> 40) * (1.0f / 16777216.0f);  // [0, 1), 24 bits
        p[i] = lo + (hi - lo) * u;
    }
    return t;
}

Tensor uniform(const Shape& shape, uint64_t seed, float lo, float hi, const Device& d) {
    return uniform(shape, seed, lo, hi).to(d);
}

Tensor ints(const Shape& shape, uint64_t seed, int64_t bound) {  // int32 in [0, bound)
    Tensor t = Tensor::empty(shape, DType::int32);
    int32_t* p = t.data<int32_t>();
    const uint64_t base = mix(seed) << 20;
    for (int64_t i = 0; i < t.numel(); i++) p[i] = static_cast<int32_t>(mix(base + i) % bound);
    return t;
}

Tensor empty(const Shape& shape, const Device& d) { return Tensor::empty(shape, DType::float32, d); }

Tensor filled(const Shape& shape, double value, const Device& d) {
    Tensor t = empty(shape, d);
    t.fill(value);
    return t;
}

std::string dims(const Shape& s) {
    std::string r;
    for (size_t i = 0; i < s.size(); i++) r += (i ? "x" : "") + std::to_string(s[i]);
    return r;
}

using Outs = std::vector<Tensor>;
constexpr double F = sizeof(float);

// ---------------------------------------------------------------------------------------------------- matmul
// Validation keeps K (the reduction length, which sets the rounding error) and trims M and N.
MatmulShape trim(MatmulShape m, bool reduced) {
    if (reduced) {
        m.M = std::min<int64_t>(m.M, 128);
        m.N = std::min<int64_t>(m.N, 384);
    }
    return m;
}

Problem matmul_fwd(const MatmulShape& full, bool reduced, const Device& d) {
    const MatmulShape m = trim(full, reduced);
    Tensor a = uniform({m.M, m.K}, 1, -1, 1, d), w = uniform({m.N, m.K}, 2, -1, 1, d), out = empty({m.M, m.N}, d);
    Problem p;
    p.shape = dims({m.M, m.N, m.K});
    p.flops = 2.0 * m.M * m.N * m.K;
    p.bytes = F * (m.M * m.K + m.N * m.K + m.M * m.N);
    p.run = [=] { gptx::matmul_forward(a, w, Tensor(), false, true, out); };
    p.results = [=] { return Outs{out}; };
    return p;
}

Problem matmul_bwd(const MatmulShape& full, bool reduced, const Device& d) {
    const MatmulShape m = trim(full, reduced);
    Tensor dout = uniform({m.M, m.N}, 3, -1, 1, d), a = uniform({m.M, m.K}, 4, -1, 1, d);
    Tensor w = uniform({m.N, m.K}, 5, -1, 1, d), da = empty({m.M, m.K}, d), dw = empty({m.N, m.K}, d);
    Problem p;
    p.shape = dims({m.M, m.N, m.K});
    p.flops = 4.0 * m.M * m.N * m.K;  // da = dout @ w and dw = dout^T @ a
    p.bytes = F * (m.M * m.N + 2 * (m.M * m.K + m.N * m.K));
    p.run = [=] { gptx::matmul_backward(dout, a, w, false, true, true, true, false, da, dw); };
    p.results = [=] { return Outs{da, dw}; };
    return p;
}

// ---------------------------------------------------------------------------------------------------- softmax
Problem softmax_fwd(const Sizes& s, bool reduced, const Device& d) {
    const int64_t R = reduced ? std::min<int64_t>(s.softmax_rows, 1024) : s.softmax_rows, L = s.softmax_cols;
    Tensor inp = uniform({R, L}, 6, -4, 4, d), out = empty({R, L}, d);
    Problem p;
    p.shape = dims({R, L});
    p.bytes = 2 * F * R * L;
    p.run = [=] { gptx::softmax_forward(inp, 1.0f, false, out); };
    p.results = [=] { return Outs{out}; };
    return p;
}

Problem softmax_bwd(const Sizes& s, bool reduced, const Device& d) {
    const int64_t R = reduced ? std::min<int64_t>(s.softmax_rows, 1024) : s.softmax_rows, L = s.softmax_cols;
    Tensor out = gptx::softmax_forward(uniform({R, L}, 7, -4, 4)).to(d);  // on the host: the same input everywhere
    Tensor dout = uniform({R, L}, 8, -1, 1, d), dinp = empty({R, L}, d);
    Problem p;
    p.shape = dims({R, L});
    p.bytes = 3 * F * R * L;
    p.run = [=] { gptx::softmax_backward(dout, out, 1.0f, dinp); };
    p.results = [=] { return Outs{dinp}; };
    return p;
}

// ---------------------------------------------------------------------------------------------------- attention
// Packed layout: qkv (B, T, 3, NH, HS) as c_attn writes it, causal, scale 1/sqrt(HS).
double attention_fwd_flops(const AttentionShape& a) { return 4.0 * a.B * a.NH * a.T * a.T * a.HS / 2; }

AttentionShape trim(AttentionShape a, bool reduced) {
    if (reduced) {
        a.B = 1;
        a.NH = std::min<int64_t>(a.NH, 2);
        a.T = std::min<int64_t>(a.T, 256);
    }
    return a;
}

Problem attention(const AttentionShape& full, bool reduced, bool backward, const Device& d) {
    const AttentionShape a = trim(full, reduced);
    Tensor qkv = uniform({a.B, a.T, 3, a.NH, a.HS}, 9, -2, 2, d);
    Tensor out = empty({a.B, a.T, a.NH, a.HS}, d), lse = empty({a.B, a.NH, a.T}, d);
    Tensor dout = uniform({a.B, a.T, a.NH, a.HS}, 10, -1, 1, d), dqkv = empty({a.B, a.T, 3, a.NH, a.HS}, d);
    Problem p;
    p.shape = dims({a.B, a.NH, a.T, a.HS});
    p.flops = attention_fwd_flops(a) * (backward ? 3.5 : 1.0);  // backward counted as 2.5x the forward
    const double qkv_bytes = F * qkv.numel(), o_bytes = F * out.numel(), lse_bytes = F * lse.numel();
    // forward: qkv read, out and lse written; backward: qkv, out, dout, lse read, dqkv written
    p.bytes = qkv_bytes + o_bytes + lse_bytes + (backward ? 2 * qkv_bytes + 2 * o_bytes + lse_bytes : 0);
    if (backward) {
        p.run = [=] {
            gptx::attention_forward(qkv, Tensor(), Tensor(), true, 0.0f, -1, out, lse);
            gptx::attention_backward(dout, qkv, Tensor(), Tensor(), out, lse, true, 0.0f, -1, dqkv);
        };
        p.results = [=] { return Outs{out, lse, dqkv}; };
    } else {
        p.run = [=] { gptx::attention_forward(qkv, Tensor(), Tensor(), true, 0.0f, -1, out, lse); };
        p.results = [=] { return Outs{out, lse}; };
    }
    return p;
}

// ---------------------------------------------------------------------------------------------------- layernorm
Problem layernorm_fwd(const Sizes& s, bool, const Device& d) {
    const int64_t N = s.tokens, C = s.C;
    Tensor inp = uniform({N, C}, 11, -2, 3, d), w = uniform({C}, 12, 0.5f, 1.5f, d);
    Tensor b = uniform({C}, 13, -0.1f, 0.1f, d), out = empty({N, C}, d), mean = empty({N}, d), rstd = empty({N}, d);
    Problem p;
    p.shape = dims({N, C});
    p.bytes = F * (2 * N * C + 2 * C + 2 * N);
    p.run = [=] { gptx::layernorm_forward(inp, w, b, 1e-5f, out, mean, rstd); };
    p.results = [=] { return Outs{out, mean, rstd}; };
    return p;
}

Problem layernorm_bwd(const Sizes& s, bool, const Device& d) {
    const int64_t N = s.tokens, C = s.C;
    Tensor inp = uniform({N, C}, 14, -2, 3), w = uniform({C}, 15, 0.5f, 1.5f), b = uniform({C}, 16, -0.1f, 0.1f);
    const gptx::LayernormOutputs f = gptx::layernorm_forward(inp, w, b);  // on the host: the same mean, rstd anywhere
    const Tensor mean = f.mean.to(d), rstd = f.rstd.to(d);
    inp = inp.to(d);
    w = w.to(d);
    Tensor dout = uniform({N, C}, 17, -1, 1, d), dinp = empty({N, C}, d), dw = empty({C}, d), db = empty({C}, d);
    Problem p;
    p.shape = dims({N, C});
    p.bytes = F * (3 * N * C + 3 * C + 2 * N);
    p.run = [=] { gptx::layernorm_backward(dout, inp, w, mean, rstd, dinp, dw, db); };
    p.results = [=] { return Outs{dinp, dw, db}; };
    return p;
}

// ---------------------------------------------------------------------------------------------------- GELU, residual
Problem gelu(const Sizes& s, bool, bool backward, const Device& d) {
    const int64_t N = s.tokens, H = 4 * s.C;
    Tensor inp = uniform({N, H}, 18, -4, 4, d), dout = uniform({N, H}, 19, -1, 1, d), out = empty({N, H}, d);
    Problem p;
    p.shape = dims({N, H});
    p.bytes = (backward ? 3 : 2) * F * N * H;
    if (backward)
        p.run = [=] { gptx::gelu_backward(dout, inp, out); };
    else
        p.run = [=] { gptx::gelu_forward(inp, out); };
    p.results = [=] { return Outs{out}; };
    return p;
}

Problem add(const Sizes& s, bool, const Device& d) {
    const int64_t N = s.tokens, C = s.C;
    Tensor a = uniform({N, C}, 20, -1, 1, d), b = uniform({N, C}, 21, -1, 1, d), out = empty({N, C}, d);
    Problem p;
    p.shape = dims({N, C});
    p.bytes = 3 * F * N * C;
    p.run = [=] { gptx::add_forward(a, b, out); };
    p.results = [=] { return Outs{out}; };
    return p;
}

// ---------------------------------------------------------------------------------------------------- embedding
std::string embedding_shape(const Sizes& s) {
    return dims({s.emb_B, s.emb_T}) + " C" + std::to_string(s.C) + " V" + std::to_string(s.Vp);
}

Problem embedding_fwd(const Sizes& s, bool, const Device& d) {
    const int64_t B = s.emb_B, T = s.emb_T, C = s.C;
    Tensor idx = ints({B, T}, 22, s.V).to(d), wte = uniform({s.Vp, C}, 23, -1, 1, d);
    Tensor wpe = uniform({s.maxT, C}, 24, -1, 1, d), out = empty({B, T, C}, d);
    Problem p;
    p.shape = embedding_shape(s);
    p.bytes = F * (B * T + 2 * B * T * C + T * C);  // idx, gathered wte rows, wpe rows, out
    p.run = [=] { gptx::embedding_forward(idx, wte, wpe, 0, out); };
    p.results = [=] { return Outs{out}; };
    return p;
}

Problem embedding_bwd(const Sizes& s, bool, const Device& d) {
    const int64_t B = s.emb_B, T = s.emb_T, C = s.C;
    Tensor idx = ints({B, T}, 25, s.V).to(d), dout = uniform({B, T, C}, 26, -1, 1, d);
    Tensor dwte = filled({s.Vp, C}, 0.0, d), dwpe = filled({s.maxT, C}, 0.0, d);
    Problem p;
    p.shape = embedding_shape(s);
    p.bytes = F * (B * T + B * T * C + 2 * B * T * C + 2 * T * C);  // idx, dout, touched rows read + written
    p.run = [=] { gptx::embedding_backward(dout, idx, dwte, dwpe, 0); };
    p.reset = [=] {  // it accumulates
        dwte.fill(0.0);
        dwpe.fill(0.0);
    };
    p.results = [=] { return Outs{dwte, dwpe}; };
    return p;
}

// ---------------------------------------------------------------------------------------------------- cross-entropy
Problem cross_entropy(const Sizes& s, bool reduced, bool backward, const Device& d) {
    const int64_t N = reduced ? std::min<int64_t>(s.tokens, 64) : s.tokens, Vp = s.Vp, V = s.V;
    const Tensor logits_host = uniform({N, Vp}, 27, -4, 4), targets_host = ints({N}, 28, V);
    Tensor logits = logits_host.to(d), targets = targets_host.to(d);
    Problem p;
    p.shape = dims({N, Vp}) + " V" + std::to_string(V);
    if (!backward) {
        Tensor losses = empty({N}, d), lse = empty({N}, d);
        p.bytes = F * (N * Vp + 3 * N);
        p.run = [=] { gptx::cross_entropy_forward(logits, targets, V, -100, losses, lse); };
        p.results = [=] { return Outs{losses, lse}; };
        return p;
    }
    // lse on the host: the same input to the backward whatever the device
    Tensor lse = gptx::cross_entropy_forward(logits_host, targets_host, V, -100).lse.to(d);
    Tensor dlosses = filled({N}, 1.0 / N, d), dlogits = empty({N, Vp}, d);
    p.bytes = F * (2 * N * Vp + 3 * N);
    p.run = [=] { gptx::cross_entropy_backward(logits, lse, targets, dlosses, V, -100, dlogits); };
    p.results = [=] { return Outs{dlogits}; };
    return p;
}

// ---------------------------------------------------------------------------------------------------- optimizer
Problem adamw(const Sizes& s, bool reduced, const Device& d) {
    const int64_t P = reduced ? std::min<int64_t>(s.params, 1 << 20) : s.params;
    Tensor param = uniform({P}, 29, -0.1f, 0.1f, d), grad = uniform({P}, 30, -0.01f, 0.01f, d);
    Tensor m = uniform({P}, 31, -1e-3f, 1e-3f, d), v = uniform({P}, 32, 0.0f, 1e-5f, d);
    gptx::AdamWOptions o;
    o.lr = 6e-4f;
    o.beta1 = 0.9f;
    o.beta2 = 0.95f;
    o.weight_decay = 0.1f;
    o.step = 10;
    Problem p;
    p.shape = std::to_string(P);
    p.bytes = 7 * F * P;  // param, grad, m, v read; param, m, v written
    p.run = [=] { gptx::adamw_step(param, grad, m, v, o); };
    if (reduced) {  // the step is in place: validation restores the starting state (the timed run just keeps going)
        Tensor p0 = param.clone(), m0 = m.clone(), v0 = v.clone();
        p.reset = [=] {
            param.copy_from(p0);
            m.copy_from(m0);
            v.copy_from(v0);
        };
    }
    p.results = [=] { return Outs{param, m, v}; };
    return p;
}

// GPT-2 small's parameter tensors in order (wte, wpe, 12 x 12 per-layer tensors, ln_f), cut into views of one flat
// buffer as a training loop keeps them; a count other than 124475904 takes the list in order and truncates it.
std::vector<int64_t> gpt2_param_sizes(int64_t total) {
    const int64_t C = 768;
    std::vector<int64_t> layer = {C, C, 3 * C * C, 3 * C, C * C, C, C, C, 4 * C * C, 4 * C, 4 * C * C, C};
    std::vector<int64_t> all = {50304 * C, 1024 * C};
    for (int l = 0; l < 12; l++) all.insert(all.end(), layer.begin(), layer.end());
    all.push_back(C);
    all.push_back(C);
    std::vector<int64_t> out;
    for (size_t i = 0; total > 0; i = (i + 1) % all.size()) {
        out.push_back(std::min(all[i], total));
        total -= out.back();
    }
    return out;
}

Problem global_norm(const Sizes& s, bool reduced, const Device& d) {
    const int64_t P = reduced ? std::min<int64_t>(s.params, 1 << 22) : s.params;
    Tensor flat = uniform({P}, 33, -1, 1, d);
    std::vector<Tensor> views;
    int64_t at = 0;
    for (int64_t n : gpt2_param_sizes(P)) {
        views.push_back(flat.slice(at, at + n));
        at += n;
    }
    auto result = std::make_shared<double>(0.0);
    Problem p;
    p.shape = std::to_string(P) + " in " + std::to_string(views.size()) + " tensors";
    p.bytes = F * P;
    p.run = [=] { *result = gptx::global_norm(views); };
    p.results = [=] {  // gptx has no float64 tensor; float32 keeps 7 digits, enough for the check
        return Outs{filled({1}, *result, Device::cpu())};
    };
    return p;
}

}  // namespace

Sizes gpt2_small_sizes() {
    Sizes s;
    s.matmuls = {{"c_attn", 2048, 2304, 768},
                 {"c_fc", 2048, 3072, 768},
                 {"c_proj_mlp", 2048, 768, 3072},
                 {"lm_head", 2048, 50304, 768}};
    return s;
}

Sizes quick_sizes() {
    Sizes s = gpt2_small_sizes();
    s.tokens = 256;
    s.emb_B = 1;
    s.emb_T = 256;
    s.softmax_rows = 4096;
    s.attn = {1, 12, 256, 64};
    for (MatmulShape& m : s.matmuls) m.M = 256;
    s.matmul_bwd.M = 256;
    s.params = 1 << 22;
    return s;
}

std::vector<Case> make_cases(const Sizes& s) {
    const double tol = 1e-4;
    std::vector<Case> c;
    using Make = std::function<Problem(bool, const Device&)>;
    auto add_case = [&](const std::string& name, const std::string& label, Make f) {
        c.push_back({name, label, tol, std::move(f)});
    };
    for (const MatmulShape& m : s.matmuls)
        add_case("matmul_forward", "matmul_forward/" + m.tag,
                 [m](bool r, const Device& d) { return matmul_fwd(m, r, d); });
    const MatmulShape mb = s.matmul_bwd;
    add_case("matmul_backward", "matmul_backward/" + mb.tag,
             [mb](bool r, const Device& d) { return matmul_bwd(mb, r, d); });
    // Ops with one row each: the name is the label.
    auto op = [&](const std::string& name, Make f) { add_case(name, name, std::move(f)); };
    op("softmax_forward", [s](bool r, const Device& d) { return softmax_fwd(s, r, d); });
    op("softmax_backward", [s](bool r, const Device& d) { return softmax_bwd(s, r, d); });
    const AttentionShape a = s.attn;
    op("attention_forward", [a](bool r, const Device& d) { return attention(a, r, false, d); });
    op("attention_forward+backward", [a](bool r, const Device& d) { return attention(a, r, true, d); });
    op("layernorm_forward", [s](bool r, const Device& d) { return layernorm_fwd(s, r, d); });
    op("layernorm_backward", [s](bool r, const Device& d) { return layernorm_bwd(s, r, d); });
    op("gelu_forward", [s](bool r, const Device& d) { return gelu(s, r, false, d); });
    op("gelu_backward", [s](bool r, const Device& d) { return gelu(s, r, true, d); });
    op("add_forward", [s](bool r, const Device& d) { return add(s, r, d); });
    op("embedding_forward", [s](bool r, const Device& d) { return embedding_fwd(s, r, d); });
    op("embedding_backward", [s](bool r, const Device& d) { return embedding_bwd(s, r, d); });
    op("cross_entropy_forward", [s](bool r, const Device& d) { return cross_entropy(s, r, false, d); });
    op("cross_entropy_backward", [s](bool r, const Device& d) { return cross_entropy(s, r, true, d); });
    op("adamw_step", [s](bool r, const Device& d) { return adamw(s, r, d); });
    op("global_norm", [s](bool r, const Device& d) { return global_norm(s, r, d); });
    return c;
}

}  // namespace bench
