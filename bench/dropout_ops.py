"""What dropout adds to the ops it touches: attention forward + backward with and without a mask on the
probabilities, and the residual add against the fused dropout_forward(residual=), timed interleaved (medians).

    python bench/dropout_ops.py --threads 2 --p 0.1

Under a build from before dropout existed it times the dropout-free cases only (a before/after of those kernels).
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import gptx
from gptx import ops


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--p", type=float, default=0.1)
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--shape", default="8,256,4,64", help="attention B,T,NH,HS (default 8,256,4,64)")
    ap.add_argument("--rows", type=int, default=2048, help="rows (tokens) of the residual case")
    ap.add_argument("--cols", type=int, default=256, help="columns (n_embd) of the residual case")
    args = ap.parse_args(argv)
    gptx.set_num_threads(args.threads)
    B, T, NH, HS = (int(v) for v in args.shape.split(","))
    rng = np.random.default_rng(0)
    qkv = rng.standard_normal((B, T, 3, NH, HS)).astype(np.float32)
    dout = rng.standard_normal((B, T, NH, HS)).astype(np.float32)
    x = rng.standard_normal((args.rows, args.cols)).astype(np.float32)
    res, out = x.copy(), np.empty_like(x)
    has_dropout = hasattr(ops, "Dropout")
    if has_dropout:
        attn_drop = ops.Dropout(args.p, seed=1, step=2, layer=0, site=1)
        resid_drop = ops.Dropout(args.p, seed=1, step=2, layer=0, site=2)

    def attention(d):
        kw = {"dropout": d} if d is not None else {}
        o, lse = ops.attention_forward(qkv, **kw)
        ops.attention_backward(dout, qkv, None, None, o, lse, **kw)

    cases = {
        f"attention fwd+bwd B{B} T{T} NH{NH} HS{HS}, no dropout": lambda: attention(None),
        f"add_forward {args.rows}x{args.cols}": lambda: ops.add_forward(x, res, out=out),
    }
    if has_dropout:
        cases.update({
            f"attention fwd+bwd B{B} T{T} NH{NH} HS{HS}, p={args.p}": lambda: attention(attn_drop),
            f"dropout_forward(residual=) {args.rows}x{args.cols}, p={args.p}":
                lambda: ops.dropout_forward(x, resid_drop, residual=res, out=out),
            f"dropout_backward {args.rows}x{args.cols}, p={args.p}":
                lambda: ops.dropout_backward(x, resid_drop, dinp=out),
        })
    for f in cases.values():  # warm-up
        f()
    times = {k: [] for k in cases}
    for _ in range(args.repeats):
        for k, f in cases.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    for k, v in times.items():
        print(f"{k}: median {statistics.median(v) * 1e3:.2f} ms, best {min(v) * 1e3:.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
