"""gptx CUDA kernels and training step vs PyTorch on the same GPU, in one process, timed with CUDA events.

    python bench/compare_gpu.py [--quick] [--json OUT.json] [--markdown OUT.md]   # gptx installed with CUDA

Both libraries queue their work on the legacy default stream, so a pair of torch.cuda.Events brackets either one.
Each case: --warmup untimed calls, then --reps timed calls one event pair each; the table gives the median time
of each and the ratio gptx/torch of throughputs (> 1: gptx is faster). Every gptx result is checked against torch's
before it is timed (max relative error printed), so a fast wrong kernel cannot pass unnoticed.

Cases (bf16 inputs, fp32 accumulation, as the issue's targets ask):
- matmul at the GPT-2 small shapes with B*T = 16384 rows: c_attn, c_proj, c_fc, mlp c_proj, the LM head, and two
  backward forms (dW = x^T dy with K = 16384, dx = dy W^T); torch: torch.matmul (cuBLAS).
- causal attention forward and forward+backward, B=8 NH=12 T=1024 HS=64; torch: scaled_dot_product_attention
  (flash backend) on (B, NH, T, HS) tensors; gptx: the packed (B, T, 3, NH, HS) layout the model uses.
- softmax over (8*12*1024, 1024) rows; torch.softmax.
- GPT-2 124M training step, B=16 T=1024 (--quick: B=4): gptx GPT(device="cuda", dtype="bfloat16") forward +
  backward + clipping + fused AdamW vs transformers' GPT2LMHeadModel (sdpa attention) under torch.autocast(bf16)
  with clip_grad_norm_ and fused AdamW (PyTorch eager). tokens/s = B*T / median step time.
"""
import argparse
import json
import math
import statistics
import sys
import time

import numpy as np


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer repetitions and a smaller training batch")
    p.add_argument("--reps", type=int, default=None)
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--only", default="", help="comma list of: matmul, attention, softmax, train")
    p.add_argument("--json", default=None, help="write the results here")
    p.add_argument("--markdown", default=None, help="write the table here")
    return p.parse_args(argv)


def timed(fn, reps, warmup):
    import torch

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def rel(a, b):
    a, b = a.float(), b.float()
    return float((a - b).norm() / max(float(b.norm()), 1e-30))


def as_gptx(t):
    import gptx

    return gptx.from_dlpack(t.contiguous())


def as_torch(t):
    import torch

    return torch.from_dlpack(t)


def bench_matmul(reps, warmup, results):
    import torch
    from gptx import ops

    M = 16384
    shapes = [("c_attn", M, 768, 2304), ("attn c_proj", M, 768, 768), ("c_fc", M, 768, 3072),
              ("mlp c_proj", M, 3072, 768), ("lm head", M, 768, 50304)]
    for name, m, k, n in shapes:
        x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
        w = torch.randn(k, n, device="cuda", dtype=torch.bfloat16) / math.sqrt(k)
        out = torch.empty(m, n, device="cuda", dtype=torch.bfloat16)
        gx, gw, gout = as_gptx(x), as_gptx(w), as_gptx(out)
        ops.matmul_forward(gx, gw, out=gout)
        err = rel(out, x @ w)
        t_g = timed(lambda: ops.matmul_forward(gx, gw, out=gout), reps, warmup)
        t_t = timed(lambda: torch.matmul(x, w, out=out), reps, warmup)
        results.append(row(f"matmul {name} ({m}x{k} @ {k}x{n})", t_g, t_t, 2.0 * m * n * k / 1e12, "TFLOP/s", err))
    # backward forms at c_fc: dW (768, 3072) = x^T @ dy (K = 16384) in float32, dx = dy @ W^T
    x = torch.randn(M, 768, device="cuda", dtype=torch.bfloat16)
    dy = torch.randn(M, 3072, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(768, 3072, device="cuda", dtype=torch.bfloat16)
    dw = torch.empty(768, 3072, device="cuda", dtype=torch.float32)
    dx = torch.empty(M, 768, device="cuda", dtype=torch.bfloat16)
    gx, gdy, gw, gdw, gdx = map(as_gptx, (x, dy, w, dw, dx))
    ops.matmul_forward(gx, gdy, trans_a=True, out=gdw)
    err = rel(dw, (x.float().t() @ dy.float()))
    t_g = timed(lambda: ops.matmul_forward(gx, gdy, trans_a=True, out=gdw), reps, warmup)
    t_t = timed(lambda: torch.matmul(x.t(), dy), reps, warmup)  # bf16 out: torch's usual weight-grad path
    results.append(row("matmul dW = x^T dy (768x16384 @ 16384x3072)", t_g, t_t, 2.0 * M * 768 * 3072 / 1e12,
                       "TFLOP/s", err))
    ops.matmul_forward(gdy, gw, trans_b=True, out=gdx)
    err = rel(dx, dy @ w.t())
    t_g = timed(lambda: ops.matmul_forward(gdy, gw, trans_b=True, out=gdx), reps, warmup)
    t_t = timed(lambda: torch.matmul(dy, w.t(), out=dx), reps, warmup)
    results.append(row("matmul dx = dy W^T (16384x3072 @ 3072x768)", t_g, t_t, 2.0 * M * 768 * 3072 / 1e12,
                       "TFLOP/s", err))


def bench_attention(reps, warmup, results):
    import torch
    import torch.nn.functional as F
    from gptx import ops

    B, NH, T, HS = 8, 12, 1024, 64
    qkv = torch.randn(B, T, 3, NH, HS, device="cuda", dtype=torch.bfloat16)
    q, k, v = (qkv[:, :, i].transpose(1, 2).contiguous().requires_grad_() for i in range(3))
    dout = torch.randn(B, NH, T, HS, device="cuda", dtype=torch.bfloat16)
    gq = as_gptx(qkv)
    gout = as_gptx(torch.empty(B, T, NH, HS, device="cuda", dtype=torch.bfloat16))
    glse = as_gptx(torch.empty(B, NH, T, device="cuda", dtype=torch.float32))
    gdout = as_gptx(dout.transpose(1, 2).contiguous())
    gdqkv = as_gptx(torch.empty_like(qkv))
    ops.attention_forward(gq, causal=True, out=gout, lse=glse)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    err = rel(as_torch(gout).transpose(1, 2), ref)
    ref.backward(dout)
    ops.attention_backward(gdout, gq, None, None, gout, glse, causal=True, dq=gdqkv)
    dqkv = as_torch(gdqkv)
    err_b = max(rel(dqkv[:, :, i].transpose(1, 2), g.grad) for i, g in enumerate((q, k, v)))
    flops_f = 4.0 * B * NH * T * T * HS / 2 / 1e12  # causal: half the score matrix
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        t_g = timed(lambda: ops.attention_forward(gq, causal=True, out=gout, lse=glse), reps, warmup)
        t_t = timed(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True), reps, warmup)
        results.append(row(f"attention fwd B{B} NH{NH} T{T} HS{HS} causal", t_g, t_t, flops_f, "TFLOP/s", err))

        def g_step():
            ops.attention_forward(gq, causal=True, out=gout, lse=glse)
            ops.attention_backward(gdout, gq, None, None, gout, glse, causal=True, dq=gdqkv)

        def t_step():
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            o.backward(dout)

        t_g = timed(g_step, reps, warmup)
        t_t = timed(t_step, reps, warmup)
        results.append(row(f"attention fwd+bwd B{B} NH{NH} T{T} HS{HS} causal", t_g, t_t, 3.5 * flops_f, "TFLOP/s",
                           max(err, err_b)))


def bench_softmax(reps, warmup, results):
    import torch
    from gptx import ops

    rows, L = 8 * 12 * 1024, 1024
    for dt in (torch.float32, torch.bfloat16):
        x = torch.randn(rows, L, device="cuda", dtype=dt)
        out = torch.empty_like(x)
        gx, gout = as_gptx(x), as_gptx(out)
        ops.softmax_forward(gx, out=gout)
        err = rel(out, torch.softmax(x.float(), -1))
        t_g = timed(lambda: ops.softmax_forward(gx, out=gout), reps, warmup)
        t_t = timed(lambda: torch.softmax(x, -1, out=out), reps, warmup)
        gb = 2.0 * x.numel() * x.element_size() / 1e12  # TB moved
        results.append(row(f"softmax {rows}x{L} {str(dt).split('.')[-1]}", t_g, t_t, gb, "TB/s", err))


def bench_train(quick, reps, warmup, results):
    import torch
    import gptx
    from gptx.model import GPT, GPTConfig
    from gptx.optim import AdamW, clip_grad_norm

    B, T = (4, 1024) if quick else (16, 1024)
    cfg = GPTConfig()  # GPT-2 124M
    rng = np.random.default_rng(0)
    idx = rng.integers(0, cfg.vocab_size, size=(B, T))
    tg = rng.integers(0, cfg.vocab_size, size=(B, T))

    model = GPT(cfg, seed=0, device="cuda", dtype="bfloat16")
    opt = AdamW(model.named_parameters(), model.grads, lr=6e-4, betas=(0.9, 0.95), weight_decay=0.1)

    def g_step():
        model.zero_grad()
        model.forward(idx, tg)
        model.backward()
        _, clip = clip_grad_norm([model._g.flat], 1.0)
        opt.step(grad_scale=clip)

    gptx.cuda.reset_peak_memory_stats()
    t_g = timed(g_step, reps, warmup)
    mem_g = gptx.cuda.max_memory_allocated() / 2**20
    del model, opt
    gptx.cuda.empty_cache()

    from transformers import GPT2Config, GPT2LMHeadModel

    hf = GPT2LMHeadModel(GPT2Config(n_positions=1024, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                                    attn_implementation="sdpa")).cuda()
    topt = torch.optim.AdamW(hf.parameters(), lr=6e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
    ti, tt = torch.as_tensor(idx, device="cuda"), torch.as_tensor(tg, device="cuda")

    def t_step():
        topt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = hf(ti, labels=tt).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(hf.parameters(), 1.0)
        topt.step()

    torch.cuda.reset_peak_memory_stats()
    t_t = timed(t_step, reps, warmup)
    mem_t = torch.cuda.max_memory_allocated() / 2**20
    tokens = B * T
    results.append(row(f"GPT-2 124M train step B{B} T{T} bf16 (tokens/s; peak MiB gptx {mem_g:.0f}, torch "
                       f"{mem_t:.0f})", t_g, t_t, tokens / 1e12, "Mtok/s", float("nan")))


def row(name, t_g, t_t, work, unit, err):
    scale = 1e6 if unit == "Mtok/s" else 1.0  # work is in 1e12 units: TFLOP, TB, or Ttokens
    return {"case": name, "gptx_ms": t_g, "torch_ms": t_t, "gptx_rate": work / (t_g / 1e3) * scale,
            "torch_rate": work / (t_t / 1e3) * scale, "unit": unit, "ratio": t_t / t_g, "max_rel_err": err}


def table(results, header):
    lines = [header, "", "| case | gptx ms | torch ms | gptx | torch | gptx/torch | rel. err |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        err = "" if r["max_rel_err"] != r["max_rel_err"] else f"{r['max_rel_err']:.1e}"
        lines.append(f"| {r['case']} | {r['gptx_ms']:.3f} | {r['torch_ms']:.3f} | {r['gptx_rate']:.1f} "
                     f"{r['unit']} | {r['torch_rate']:.1f} {r['unit']} | {r['ratio']:.2f}x | {err} |")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    import torch

    reps = args.reps or (5 if args.quick else 20)
    warmup = args.warmup or (2 if args.quick else 5)
    only = set(filter(None, args.only.split(","))) or {"matmul", "attention", "softmax", "train"}
    torch.manual_seed(0)
    results = []
    steps = [("matmul", lambda: bench_matmul(reps, warmup, results)),
             ("attention", lambda: bench_attention(reps, warmup, results)),
             ("softmax", lambda: bench_softmax(reps, warmup, results)),
             ("train", lambda: bench_train(args.quick, max(3, reps // 3), 2, results))]
    for name, fn in steps:
        if name not in only:
            continue
        t0 = time.time()
        try:
            fn()
        except Exception as e:  # one failing case must not hide the others' figures
            print(f"{name}: FAILED: {type(e).__name__}: {e}", file=sys.stderr)
            results.append({"case": f"{name} FAILED: {type(e).__name__}: {str(e)[:200]}", "gptx_ms": float("nan"),
                            "torch_ms": float("nan"), "gptx_rate": float("nan"), "torch_rate": float("nan"),
                            "unit": "", "ratio": float("nan"), "max_rel_err": float("nan")})
        print(f"[{name}: {time.time() - t0:.1f} s]", file=sys.stderr)
    props = torch.cuda.get_device_properties(0)
    header = (f"GPU: {props.name}, torch {torch.__version__}, {time.strftime('%Y-%m-%d')}, medians of {reps} "
              f"(train: {max(3, reps // 3)}) CUDA-event timings after {warmup} warm-ups")
    text = table(results, header)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"header": header, "results": results}, f, indent=1)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
