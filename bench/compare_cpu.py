# compare_cpu.py — gptx vs numpy (OpenBLAS) vs PyTorch CPU on the same inputs, interleaved, at 1 and 2 threads.
"""Compare gptx's CPU kernels with numpy (OpenBLAS) and PyTorch CPU.

Run from the repository root against the installed gptx (pip install .):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/compare_cpu.py [--write]

OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE may be set on these machines: they force an OpenBLAS kernel family and cache
size meant for another CPU, and OpenBLAS reads them once when it loads, so they must be unset on the command line
that starts the benchmark (as above). The script only warns when it sees them, and records it in RESULTS.md.

What runs: matmul at the four GPT-2 small shapes (a @ w^T with w stored (N, K), output preallocated for all three),
softmax over 49152 rows of 1024, causal attention B=4 NH=12 T=1024 HS=64 forward and forward+backward (gptx: packed
qkv layout; torch: F.scaled_dot_product_attention on contiguous (B, NH, T, HS) q/k/v; numpy has no attention).
Peers run interleaved (A B C A B C ...) in one process with a short pause between calls, so that the worker threads
of one library (OpenMP and OpenBLAS spin-wait after a call) are asleep before the next library starts. Each row is
the median of the repeats. Ratios are gptx speed / peer speed (> 1: gptx is faster).

Threads: gptx.set_num_threads and torch.set_num_threads in-process; numpy's OpenBLAS through threadpoolctl when it is
installed, else by re-running this script once per thread count with OPENBLAS_NUM_THREADS set.

Options: --quick (1 warm-up, 2 repeats: smoke tests), --small (smaller shapes: smoke tests only), --threads 1,2,
--only matmul,softmax,attention, --repeats N, --write (update bench/RESULTS.md), --results PATH.
"""
import argparse
import datetime
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time

import numpy as np

from results_md import cpu_model, write_section  # bench/ is on sys.path when run as python bench/X.py

PEERS = ("gptx", "numpy", "torch")
GROUPS = ("matmul", "softmax", "attention")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="gptx vs numpy (OpenBLAS) vs PyTorch CPU, interleaved.")
    p.add_argument("--quick", action="store_true", help="1 warm-up and 2 repeats (smoke tests, noisy)")
    p.add_argument("--small", action="store_true", help="smaller shapes (smoke tests only, not for reporting)")
    p.add_argument("--threads", default="1,2", help="comma list of thread counts (default 1,2)")
    p.add_argument("--only", default=",".join(GROUPS), help="comma list of: " + ", ".join(GROUPS))
    p.add_argument("--repeats", type=int, default=0, help="timed calls per peer (default: ~3 s per peer, 5..50)")
    p.add_argument("--gap", type=float, default=0.05, help="seconds of pause before each timed call (default 0.05)")
    p.add_argument("--write", action="store_true", help="replace the compare_cpu section of --results")
    p.add_argument("--results", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md"))
    p.add_argument("--_child", type=int, default=0, help=argparse.SUPPRESS)  # internal: one thread count
    p.add_argument("--_out", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.thread_list = [int(t) for t in args.threads.split(",") if t]
    args.groups = [g for g in args.only.split(",") if g]
    bad = [g for g in args.groups if g not in GROUPS]
    if bad or not args.thread_list or min(args.thread_list) < 1:
        p.error(f"--only takes {', '.join(GROUPS)} and --threads positive integers")
    return args


# ------------------------------------------------------------------------------------------------ the cases
def rand(rng, shape, lo=-1.0, hi=1.0):
    x = rng.random(shape, dtype=np.float32)
    x *= hi - lo
    x += lo
    return x


def rel_diff(a, b):
    """Normwise relative difference max|a - b| / max|b| (per-element relative error blows up where sums cancel)."""
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-30))


def matmul_cases(small):
    M = 256 if small else 2048
    for tag, N, K in (("c_attn", 2304, 768), ("c_fc", 3072, 768), ("c_proj_mlp", 768, 3072), ("lm_head", 50304, 768)):
        yield dict(op="matmul", case=tag, shape=f"{M}x{N}x{K}", flops=2.0 * M * N * K,
                   build=lambda M=M, N=N, K=K: build_matmul(M, N, K))


def build_matmul(M, N, K):
    import gptx
    import torch

    rng = np.random.default_rng(0)
    a, w = rand(rng, (M, K)), rand(rng, (N, K))
    out = {p: np.empty((M, N), np.float32) for p in PEERS}
    ga, gw, gout = gptx.from_numpy(a), gptx.from_numpy(w), gptx.from_numpy(out["gptx"])
    ta, tw, tout = torch.from_numpy(a), torch.from_numpy(w), torch.from_numpy(out["torch"])
    wt = w.T  # a view: OpenBLAS gets a transposed operand, no copy
    fns = {
        "gptx": lambda: gptx.ops.matmul_forward(ga, gw, trans_b=True, out=gout),
        "numpy": lambda: np.matmul(a, wt, out=out["numpy"]),
        "torch": lambda: torch.matmul(ta, tw.t(), out=tout),
    }
    return fns, lambda: {p: [out[p]] for p in PEERS}


def softmax_cases(small):
    R, L = (4096 if small else 49152), 1024
    yield dict(op="softmax", case="rows", shape=f"{R}x{L}", bytes=2.0 * 4 * R * L, build=lambda: build_softmax(R, L))


def build_softmax(R, L):
    import gptx
    import torch

    x = rand(np.random.default_rng(1), (R, L), -4.0, 4.0)
    out = {p: np.empty((R, L), np.float32) for p in PEERS}
    tmp = np.empty((R, 1), np.float32)
    gx, gout = gptx.from_numpy(x), gptx.from_numpy(out["gptx"])
    tx, tout = torch.from_numpy(x), torch.from_numpy(out["torch"])

    def np_softmax(o=out["numpy"]):  # the usual stable form with out= everywhere (numpy ufuncs: one thread)
        np.max(x, axis=-1, keepdims=True, out=tmp)
        np.subtract(x, tmp, out=o)
        np.exp(o, out=o)
        np.sum(o, axis=-1, keepdims=True, out=tmp)
        np.divide(o, tmp, out=o)

    fns = {
        "gptx": lambda: gptx.ops.softmax_forward(gx, out=gout),
        "numpy": np_softmax,
        # torch.softmax accepts out=; it was the fastest of softmax / softmax(out=) / _softmax(out=) when tried.
        "torch": lambda: torch.softmax(tx, -1, out=tout),
    }
    return fns, lambda: {p: [out[p]] for p in PEERS}


def attention_cases(small):
    B, NH, T, HS = (1, 12, 256, 64) if small else (4, 12, 1024, 64)
    fwd = 4.0 * B * NH * T * T * HS / 2  # causal: half the score matrix
    shape = f"{B}x{NH}x{T}x{HS}"
    yield dict(op="attention_fwd", case="causal", shape=shape, flops=fwd,
               build=lambda: build_attention(B, NH, T, HS, False))
    yield dict(op="attention_fwd+bwd", case="causal", shape=shape, flops=3.5 * fwd,  # backward = 2.5x forward
               build=lambda: build_attention(B, NH, T, HS, True))


def build_attention(B, NH, T, HS, backward):
    import gptx
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(2)
    qkv = rand(rng, (B, T, 3, NH, HS), -2.0, 2.0)
    dout = rand(rng, (B, T, NH, HS))
    out, lse = np.empty((B, T, NH, HS), np.float32), np.empty((B, NH, T), np.float32)
    dqkv = np.empty_like(qkv)
    g = {k: gptx.from_numpy(v) for k, v in dict(qkv=qkv, dout=dout, out=out, lse=lse, dqkv=dqkv).items()}

    # torch in its own best layout: contiguous (B, NH, T, HS) leaves that require grad (a training forward).
    tqkv = torch.from_numpy(qkv).permute(2, 0, 3, 1, 4)  # (3, B, NH, T, HS)
    q, k, v = (tqkv[i].contiguous().requires_grad_() for i in range(3))
    tdout = torch.from_numpy(dout).permute(0, 2, 1, 3).contiguous()
    res = {}

    def gptx_fwd():
        gptx.ops.attention_forward(g["qkv"], out=g["out"], lse=g["lse"])

    def gptx_fwd_bwd():
        gptx_fwd()
        gptx.ops.attention_backward(g["dout"], g["qkv"], None, None, g["out"], g["lse"], dq=g["dqkv"])

    def torch_fwd():
        res["o"] = F.scaled_dot_product_attention(q, k, v, is_causal=True)

    def torch_fwd_bwd():
        q.grad = k.grad = v.grad = None  # .backward accumulates; start each call from no gradient
        torch_fwd()
        res["o"].backward(tdout)

    def results():
        to = lambda t: t.detach().permute(0, 2, 1, 3).numpy()  # (B, NH, T, HS) -> (B, T, NH, HS)
        r = {"gptx": [out], "torch": [to(res["o"])]}
        if backward:
            r["gptx"] += [dqkv[:, :, i] for i in range(3)]
            r["torch"] += [to(t.grad) for t in (q, k, v)]
        return r

    fns = {"gptx": gptx_fwd_bwd if backward else gptx_fwd, "torch": torch_fwd_bwd if backward else torch_fwd}
    return fns, results


CASES = {"matmul": matmul_cases, "softmax": softmax_cases, "attention": attention_cases}


# ------------------------------------------------------------------------------------------------ measuring
def measure(fns, warmup, repeats, gap):
    """Warm up every peer, then time them interleaved; returns {peer: sorted list of seconds}."""
    first = {}
    for name, fn in fns.items():
        for i in range(warmup):
            t0 = time.perf_counter()
            fn()
            first[name] = time.perf_counter() - t0
    if repeats <= 0:  # default: ~3 s per peer at the slowest, within 5..50 calls
        repeats = int(min(50, max(5, 3.0 / max(max(first.values()), 1e-6))))
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            time.sleep(gap)
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: sorted(ts) for name, ts in times.items()}


def run_thread_count(n, args):
    """All selected cases at n threads; returns result rows (plain dicts, JSON-able)."""
    import gptx
    import torch

    gptx.set_num_threads(n)
    torch.set_num_threads(n)
    warmup, repeats = (1, 2) if args.quick else (1, args.repeats)
    if args.repeats:
        repeats = args.repeats
    rows = []
    for group in args.groups:
        for case in CASES[group](args.small):
            fns, results = case["build"]()
            times = measure(fns, warmup, repeats, args.gap)
            outs = results()
            ref = "torch" if "torch" in outs else "numpy"
            agree = max(rel_diff(a, b) for a, b in zip(outs["gptx"], outs[ref]))
            row = {k: case[k] for k in ("op", "case", "shape") if k in case}
            row.update(threads=n, repeats=len(times["gptx"]), agree=agree, agree_with=ref,
                       unit="GFLOP/s" if "flops" in case else "GB/s", work=case.get("flops", case.get("bytes")),
                       median_ms={p: 1e3 * ts[len(ts) // 2] for p, ts in times.items()},
                       min_ms={p: 1e3 * ts[0] for p, ts in times.items()})
            rows.append(row)
            print(f"  [{n} thread(s)] {row['op']} {row['case']} {row['shape']}: "
                  + ", ".join(f"{p} {ms:.2f} ms" for p, ms in row["median_ms"].items()), file=sys.stderr, flush=True)
            del fns, results, outs
    return rows


def run_all(args):
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    rows = []
    for n in args.thread_list:
        if threadpool_limits is not None:
            with threadpool_limits(limits=n, user_api="blas"):
                rows += run_thread_count(n, args)
            continue
        # OpenBLAS fixes its thread count when it loads: one child process per thread count.
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "rows.json")
            cmd = [sys.executable, os.path.abspath(__file__), *sys.argv[1:], "--_child", str(n), "--_out", out]
            env = dict(os.environ, OPENBLAS_NUM_THREADS=str(n))
            subprocess.run(cmd, env=env, check=True)
            with open(out) as f:
                rows += json.load(f)
    return rows


# ------------------------------------------------------------------------------------------------ reporting


def versions():
    import gptx
    import torch

    blas = "OpenBLAS"
    try:
        cfg = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas = f"{cfg.get('name', 'blas')} {cfg.get('version', '')}".strip()
    except Exception:  # older numpy: no dict mode
        pass
    torch_blas = "MKL" if torch.backends.mkl.is_available() else "its own BLAS"
    return (f"gptx {gptx.__version__} (cpu path {gptx.info()['cpu_isa']}), numpy {np.__version__} ({blas}), "
            f"torch {torch.__version__} (matmul via {torch_blas})")


def command_line():
    """The command that reproduces this run (the OPENBLAS_* variables it must unset are part of it)."""
    parts = []
    if not any(v in os.environ for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")):
        parts.append("env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE")
    if os.environ.get("PYTHONPATH"):
        parts.append("PYTHONPATH=" + shlex.quote(os.environ["PYTHONPATH"]))
    script = os.path.relpath(os.path.abspath(__file__))
    return " ".join(parts + ["python", shlex.quote(script)] + [shlex.quote(a) for a in sys.argv[1:]])


def openblas_warning():
    set_vars = [f"{v}={os.environ[v]}" for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if v in os.environ]
    if set_vars:
        return ("WARNING: " + ", ".join(set_vars) + " set: numpy's OpenBLAS ran with a forced kernel/cache setting; "
                "rerun with `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE ...`")
    return ""


def markdown_table(rows):
    """One line per (op, shape, threads); rates are work / median time; ratios are gptx speed / peer speed."""
    def cell(r, p, f):
        return f(r["median_ms"][p]) if p in r["median_ms"] else "—"

    head = ("| op | shape | threads | gptx ms | numpy ms | torch ms | unit | gptx | numpy | torch "
            "| gptx/numpy | gptx/torch | max rel diff |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    order = {}
    for r in rows:  # group the thread counts of one case together, cases in the order they ran
        order.setdefault((r["op"], r["case"]), len(order))
    for r in sorted(rows, key=lambda r: (order[(r["op"], r["case"])], r["threads"])):
        g = r["median_ms"]["gptx"]
        ms = lambda p: cell(r, p, lambda t: f"{t:.2f}")
        rate = lambda p: cell(r, p, lambda t: f"{r['work'] / t * 1e-6:.1f}")  # work per ms -> G per s
        ratio = lambda p: cell(r, p, lambda t: f"{t / g:.2f}x")
        name = f"matmul {r['case']}" if r["op"] == "matmul" else r["op"]
        lines.append(f"| {name} | {r['shape']} | {r['threads']} | {ms('gptx')} | {ms('numpy')} | {ms('torch')} "
                     f"| {r['unit']} | {rate('gptx')} | {rate('numpy')} | {rate('torch')} | {ratio('numpy')} "
                     f"| {ratio('torch')} | {r['agree']:.1e} vs {r['agree_with']} |")
    return "\n".join(lines)


def section(rows, args):
    notes = [
        f"- Date: {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
        f"- CPU: {cpu_model()}",
        f"- Threads: {', '.join(str(n) for n in args.thread_list)} (gptx.set_num_threads, torch.set_num_threads, "
        "OPENBLAS_NUM_THREADS / threadpoolctl for numpy)",
        f"- Versions: {versions()}",
        f"- Command: `{command_line()}`",
    ]
    if args.quick or args.small:
        notes.append("- SMOKE TEST (--quick/--small): few repeats or reduced shapes; not for comparison.")
    warning = openblas_warning()
    if warning:
        notes.append("- " + warning)
    method = (
        "Median of the repeats; peers interleaved in one process with a pause before each call. gptx, numpy and torch "
        "matmuls compute a @ w^T into a preallocated output. numpy softmax is max/subtract/exp/sum/divide with out= "
        "(numpy ufuncs use one thread at any thread count). torch attention is F.scaled_dot_product_attention("
        "is_causal=True) on contiguous (B, NH, T, HS) tensors that require grad, + .backward(dout); gptx attention "
        "uses the packed qkv (B, T, 3, NH, HS) layout with preallocated outputs. Attention FLOPs: 4*B*NH*T*T*HS/2 "
        "forward, 2.5x that backward. Softmax: GB/s of 1 read + 1 write. Ratios: gptx speed / peer speed (> 1: gptx "
        "faster). max rel diff: max|gptx - peer| / max|peer| over the outputs (a sanity check of the results)."
    )
    return "\n".join(["## gptx vs numpy (OpenBLAS) vs PyTorch CPU", "", *notes, "", markdown_table(rows), "",
                      method])




def main():
    args = parse_args()
    if args._child:  # one thread count, rows to a file for the parent
        rows = run_thread_count(args._child, args)
        with open(args._out, "w") as f:
            json.dump(rows, f)
        return 0
    warning = openblas_warning()
    if warning:
        print(warning, file=sys.stderr)
    rows = run_all(args)
    text = section(rows, args)
    print(text)
    if args.write:
        write_section(args.results, "compare_cpu", text)
        print(f"\nwrote {args.results}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
