"""qmatmul_forward (bf16 and int8 packed weights) vs float32 matmul_forward at GPT-2 small's matmul shapes, on every
CPU path this machine runs: decode (M = 1 row) and prefill (M = --rows rows).

For each path and shape the three forms take turns (f32, bf16, int8, f32, ...) for --repeats rounds of --inner calls
each; tables show medians and the speed ratios to float32 on the same path. Weights: uniform random, the same
arrays for every form. Forcing a path (set_cpu_isa) shows here what another CPU would run: avx2 is what an AVX2-only
CPU gets (e.g. Zen 3), avx512 what AVX-512 without VNNI/BF16 gets; avx512_bf16 adds vdpbf16ps / vpdpbusd and, on CPUs
with AMX, AMX tiles for bf16 from 64 rows.

    python bench/compare_qmatmul.py --write          # from the repository root, after pip install .
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SHAPES = [("c_attn", 768, 2304), ("c_fc", 768, 3072), ("c_proj_mlp", 3072, 768), ("lm_head", 768, 50304)]


def load_avg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def markdown(rows, header):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(out + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rows", type=int, default=128, help="prefill rows (default 128)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--inner", type=int, default=3, help="calls per timing (the median of them is kept)")
    p.add_argument("--paths", default=None, help="comma-separated CPU paths (default: all but reference)")
    p.add_argument("--write", action="store_true")
    p.add_argument("--results", default=os.path.join(HERE, "RESULTS.md"))
    a = p.parse_args(argv)

    import gptx
    from gptx import _core, ops

    sys.path.insert(0, HERE)
    from results_md import cpu_model, write_section

    gptx.set_num_threads(a.threads)
    paths = a.paths.split(",") if a.paths else [x for x in _core.available_cpu_isas() if x != "reference"]
    rng = np.random.default_rng(0)
    load_before = load_avg()
    rows = []
    before = _core.cpu_isa()
    for name, K, N in SHAPES:
        w = rng.uniform(-0.05, 0.05, (K, N)).astype(np.float32)
        packed = {f: ops.pack_weight(w, f) for f in ("bf16", "int8")}
        for M in (1, a.rows):
            x = rng.uniform(-1, 1, (M, K)).astype(np.float32)
            out = np.empty((M, N), np.float32)
            forms = {"f32": lambda: ops.matmul_forward(x, w, out=out),
                     "bf16": lambda: ops.qmatmul_forward(x, packed["bf16"], out=out),
                     "int8": lambda: ops.qmatmul_forward(x, packed["int8"], out=out)}
            for path in paths:
                _core.set_cpu_isa(path)
                times = {f: [] for f in forms}
                for f in forms.values():
                    f()  # warm-up
                for _ in range(a.repeats):
                    for k, f in forms.items():
                        ts = []
                        for _ in range(a.inner):
                            t = time.perf_counter()
                            f()
                            ts.append(time.perf_counter() - t)
                        times[k].append(float(np.median(ts)))
                med = {k: float(np.median(v)) for k, v in times.items()}
                rows.append([name, f"{M}x{K}x{N}", path, f"{med['f32'] * 1e3:.3f}", f"{med['bf16'] * 1e3:.3f}",
                             f"{med['int8'] * 1e3:.3f}", f"{med['f32'] / med['bf16']:.2f}x",
                             f"{med['f32'] / med['int8']:.2f}x"])
                print(" | ".join(rows[-1]), flush=True)
    _core.set_cpu_isa(before)
    load_after = load_avg()
    table = markdown(rows, ["matmul", "M x K x N", "path", "f32 ms", "bf16 ms", "int8 ms", "bf16 speed / f32",
                            "int8 speed / f32"])
    print(table)
    if a.write:
        cmd = "python bench/compare_qmatmul.py " + " ".join(argv if argv is not None else sys.argv[1:])
        text = "\n".join([
            "## qmatmul_forward: bf16 / int8 packed weights vs float32 matmul, per CPU path",
            "",
            f"{time.strftime('%Y-%m-%d %H:%M %Z')} | {cpu_model()} | {a.threads} threads | load average before "
            f"{load_before}, after {load_after}",
            f"`{cmd.strip()}`",
            "",
            table,
            "",
            f"Medians of {a.repeats} rounds (each the median of {a.inner} calls), the three forms taking turns on each "
            f"path. M = 1 is a decoding step (reads every weight once: the ratio is about the bytes, 2x for bf16 and "
            f"~3.8x for int8 at best); M = {a.rows} a prompt. Paths other than the CPU's own (avx512_bf16 here) are "
            f"forced: they show what a CPU without VNNI / BF16 / AMX gets.",
        ])
        write_section(a.results, "compare_qmatmul", text)
        print(f"wrote {a.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
