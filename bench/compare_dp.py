"""Data parallelism on this machine: tokens/s of one process x 2 threads against 2 MPI ranks x 1 thread (plain and
ZeRO-1, and with the gradient sums left until after backward), the share of step time the ranks wait for
communication, and the optimizer memory per rank. The configurations alternate (A B C D A B C D ...) within one run.

    python bench/compare_dp.py [--rounds 3] [--steps 8] [--json out.json] [--write-results]

Each configuration is one job (`mpiexec -n 2 python bench/compare_dp.py --worker ...` or one process) that trains
--steps steps after 2 warm-up steps on the same global batch (2 x 8 sequences of 256 tokens of random bytes) and
prints medians as JSON.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

MODELS = {
    # a byte-level model with a small vocabulary: 3.2 M parameters, compute-heavy per gradient byte
    "L4-C256-V256": dict(n_layer=4, n_head=4, n_embd=256, block_size=256, vocab_size=256),
    # GPT-2 124M's shape with a short context: 124 M parameters (497 MB of gradients) per step of 2 x 2 x 64 tokens
    "GPT-2 124M T64": dict(n_layer=12, n_head=12, n_embd=768, block_size=64, vocab_size=50257),
}
BATCH = {"L4-C256-V256": (8, 256), "GPT-2 124M T64": (2, 64)}  # per-rank micro-batch at 2 ranks, tokens/sequence

CONFIGS = [  # name, ranks, threads per rank, zero, bucket_mb (None: one bucket per block, the overlapping default)
    ("1 process x 2 threads", 1, 2, 0, None),
    ("2 ranks x 1 thread", 2, 1, 0, None),
    ("2 ranks x 1 thread, ZeRO-1", 2, 1, 1, None),
    ("2 ranks x 1 thread, sums after backward", 2, 1, 0, 1e6),
]
BUCKET_MB = {"L4-C256-V256": 1.0, "GPT-2 124M T64": 25.0}  # a bucket per block in both (3.1 MB and 28 MB blocks)


def worker(args):
    import numpy as np

    import gptx
    from gptx import distributed as dist

    if args.ranks > 1:
        dist.init()
    gptx.set_num_threads(args.threads)
    B, T = BATCH[args.model]
    model = gptx.GPT(gptx.GPTConfig(**MODELS[args.model]), seed=0)
    data = gptx.TokenDataset(np.random.default_rng(0).integers(0, 256, 2_000_000))
    cfg = gptx.TrainConfig(steps=10**6, batch_size=B * 2 // args.ranks, block_size=T, lr=1e-4, warmup=0,
                           progress=False, log_every=0, eval_every=0, zero=args.zero, bucket_mb=args.bucket_mb)
    t = gptx.Trainer(model, cfg, data)
    recs = [t.train_step() for _ in range(args.steps + 2)][2:]
    step = statistics.median(r["step_s"] for r in recs)
    out = {"tokens_per_s": statistics.median(r["tokens_per_s"] for r in recs), "step_s": step,
           "comm_s": statistics.median(r.get("comm_s", 0.0) for r in recs),
           "optimizer_bytes_per_rank": t.opt.memory_bytes(), "parameters": model.num_parameters(),
           "shard_buffer_bytes": getattr(t.opt, "shard_buffer_bytes", 0)}
    if dist.rank() == 0:
        print("RESULT " + json.dumps(out), flush=True)


def run_config(model, ranks, threads, zero, bucket_mb, steps):
    me = [sys.executable, os.path.abspath(__file__), "--worker", "--model", model, "--ranks", str(ranks),
          "--threads", str(threads), "--zero", str(zero), "--bucket-mb", str(bucket_mb), "--steps", str(steps)]
    if ranks > 1:
        from gptx.distributed.launch import mpiexec_command

        me = mpiexec_command(ranks) + me
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    r = subprocess.run(me, capture_output=True, text=True, env=env, timeout=1800)
    line = [x for x in r.stdout.splitlines() if x.startswith("RESULT ")]
    if r.returncode or not line:
        raise RuntimeError(f"{model} {ranks} ranks failed:\n{r.stdout}\n{r.stderr}")
    return json.loads(line[0][7:])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--worker", action="store_true")
    p.add_argument("--model", default="L4-C256-V256")
    p.add_argument("--ranks", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--zero", type=int, default=0)
    p.add_argument("--bucket-mb", type=float, default=25.0)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--json")
    p.add_argument("--write-results", action="store_true")
    p.add_argument("--from-json", metavar="FILE", help="render (and with --write-results record) a saved --json run")
    p.add_argument("--note", default="", help="a line added under the table (e.g. the machine's load)")
    args = p.parse_args()
    if args.worker:
        return worker(args)
    results = {}
    if args.from_json:
        with open(args.from_json) as f:
            results = json.load(f)
    for model in ([] if args.from_json else args.models.split(",")):
        steps = args.steps if "124M" not in model else max(3, args.steps // 2)
        for rnd in range(args.rounds):
            for name, ranks, threads, zero, bmb in CONFIGS:
                res = run_config(model, ranks, threads, zero, bmb or BUCKET_MB[model], steps)
                results.setdefault(model, {}).setdefault(name, []).append(res)
                print(f"{model} | {name} | round {rnd}: {res['tokens_per_s']:,.0f} tok/s, step "
                      f"{res['step_s'] * 1e3:.1f} ms, comm {res['comm_s'] * 1e3:.1f} ms", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    text = table(results, args)
    print(text)
    if args.write_results:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from results_md import write_section

        write_section(os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md"), "compare_dp", text)


def table(results, args):
    import datetime

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from results_md import cpu_model

    lines = [f"## Data parallelism on 2 cores: 1 process x 2 threads vs 2 MPI ranks x 1 thread "
             f"({datetime.date.today()})", "",
             f"CPU: {cpu_model()}. MPI: the mpich wheel ({_mpich_version()}), shared memory between the two ranks.",
             f"Command: `python bench/compare_dp.py --rounds {args.rounds} --steps {args.steps} --json dp.json` "
             "(then `--from-json dp.json --write-results`). "
             "Each cell is the median over rounds of each job's median step (2 warm-up steps dropped); the "
             "configurations alternate within each round. The global batch is the same in every row. "
             "\"comm\" is the time a step spends launching and waiting for the gradient sums (under ZeRO-1 also "
             "the parameter all-gather); \"sums after backward\" launches one bucket after the whole backward "
             "pass, i.e. no overlap.", ""]
    for model, rows in results.items():
        base = statistics.median(r["tokens_per_s"] for r in rows[CONFIGS[0][0]])
        n = rows[CONFIGS[0][0]][0]["parameters"]
        B, T = BATCH[model]
        lines += [f"### {model} ({n / 1e6:.1f} M parameters, global batch {2 * B} x {T} tokens)", "",
                  "| configuration | tokens/s | vs 1 x 2 threads | step ms | comm ms (share of step) | "
                  "AdamW moments MB per rank | + reduce-scatter buffer MB |", "|---|---:|---:|---:|---:|---:|---:|"]
        for name, *_ in CONFIGS:
            rs = rows[name]
            tok = statistics.median(r["tokens_per_s"] for r in rs)
            step = statistics.median(r["step_s"] for r in rs)
            comm = statistics.median(r["comm_s"] for r in rs)
            mem = rs[0]["optimizer_bytes_per_rank"] / 2**20
            extra = rs[0]["shard_buffer_bytes"] / 2**20
            lines.append(f"| {name} | {tok:,.0f} | {tok / base:.2f}x | {step * 1e3:.1f} | "
                         f"{comm * 1e3:.1f} ({comm / step:.0%}) | {mem:.1f} | {extra:.1f} |")
        lines.append("")
    if args.note:
        lines += [args.note, ""]
    return "\n".join(lines).rstrip()


def _mpich_version():
    try:
        from importlib.metadata import version

        return f"mpich {version('mpich')}, mpi4py {version('mpi4py')}"
    except Exception:
        return "unknown version"


if __name__ == "__main__":
    main()
