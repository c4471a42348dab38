"""Full training-step throughput and peak memory: gptx (GPT + AdamW + clipping) vs PyTorch eager GPT-2.

    python bench/compare_train.py [--configs tiny-v50304,gpt2-t64] [--write]     # after pip install .
    python bench/compare_train.py --quick --configs tiny-v256        # smoke test

One training step is forward + backward + gradient clipping (max norm 1.0) + an fp32 AdamW step, on the same random
batch every step. gptx does it the way gptx.Trainer does (the clipping factor is applied inside the fused AdamW
kernel); PyTorch runs transformers' GPT2LMHeadModel (attn_implementation="eager", dropout 0) with
torch.nn.utils.clip_grad_norm_ and torch.optim.AdamW (fused=True when the installed torch supports it on CPU, else
foreach=True). Every (framework, config) run is its own child process, so the peak memory (the child's ru_maxrss
from os.wait4) is that framework's alone, interpreter and imported libraries included. Each child does --warmup
untimed steps, then --steps timed ones; tokens/s = B*T / median step time. The frameworks alternate (gptx, torch,
gptx, torch, ...) for --rounds rounds and the table shows the median over rounds.

Both children get the same OpenMP environment: OMP_NUM_THREADS = --threads and, when neither OMP_WAIT_POLICY nor
GOMP_SPINCOUNT is set, GOMP_SPINCOUNT=10000 (what `import gptx` sets for itself; both libraries use GNU OpenMP, whose
default spin of 300000 makes the idle workers of a busy machine steal the cores).

MFU (model FLOP utilisation) = FLOPs/token * tokens/s / peak. FLOPs/token = 6*N + 6*n_layer*T*n_embd, where N counts
every parameter except the position table (the token table counts once: it is the LM head's matmul) and the
attention term is the usual 12*L*T*C halved for the causal mask. The fp32 peak comes from the FMA probe of the
installed gptx-bench on --threads threads (best of a probe before and after the runs), or from --peak-gflops.
"""
import argparse
import datetime
import importlib.metadata
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

from results_md import cpu_model, write_section  # bench/ is on sys.path when run as python bench/X.py

HERE = os.path.dirname(os.path.abspath(__file__))
FRAMEWORKS = ("gptx", "torch")
MARK = "COMPARE_TRAIN_RESULT "  # prefix of the child's one result line (libraries may print other lines)

CONFIGS = {  # name: model and batch shape
    "tiny-v50304": dict(n_layer=4, n_head=4, n_embd=256, T=256, B=8, vocab=50304),
    "tiny-v256": dict(n_layer=4, n_head=4, n_embd=256, T=256, B=8, vocab=256),
    "gpt2-t64": dict(n_layer=12, n_head=12, n_embd=768, T=64, B=4, vocab=50257),  # llm.c's CPU setting
    "gpt2-t1024": dict(n_layer=12, n_head=12, n_embd=768, T=1024, B=1, vocab=50257),
}

# Optimizer settings shared by both frameworks (gptx.TrainConfig's defaults except a fixed lr: no schedule).
LR, BETAS, EPS, WEIGHT_DECAY, GRAD_CLIP = 6e-4, (0.9, 0.95), 1e-8, 0.1, 1.0


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", default=",".join(CONFIGS), help="comma list of: " + ", ".join(CONFIGS))
    p.add_argument("--steps", type=int, default=None, help="timed steps per run (default 5; --quick: 2)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 2; --quick: 1)")
    p.add_argument("--rounds", type=int, default=None, help="gptx/torch alternations per config (default 2; "
                                                             "--quick: 1)")
    p.add_argument("--threads", type=int, default=2, help="threads for both frameworks (default 2)")
    p.add_argument("--dropout", type=float, default=0.0,
                   help="gptx only: train with this dropout probability (GPT-2's three places; default 0)")
    p.add_argument("--quick", action="store_true", help="few steps and one round: smoke tests, not numbers")
    p.add_argument("--peak-gflops", type=float, default=None,
                   help="fp32 peak for MFU (default: measured by the installed gptx-bench)")
    p.add_argument("--write", action="store_true", help="replace the compare_train section of --results")
    p.add_argument("--results", default=os.path.join(HERE, "RESULTS.md"))
    p.add_argument("--_child", choices=FRAMEWORKS, default=None, help=argparse.SUPPRESS)  # internal: one run
    args = p.parse_args(argv)
    quick = args.quick
    args.steps = args.steps if args.steps is not None else (2 if quick else 5)
    args.warmup = args.warmup if args.warmup is not None else (1 if quick else 2)
    args.rounds = args.rounds if args.rounds is not None else (1 if quick else 2)
    args.config_list = [c for c in args.configs.split(",") if c]
    bad = [c for c in args.config_list if c not in CONFIGS]
    if bad or not args.config_list:
        p.error(f"--configs takes a comma list of {', '.join(CONFIGS)}; got {args.configs!r}")
    if args.steps < 1 or args.warmup < 0 or args.rounds < 1 or args.threads < 1:
        p.error("--steps, --rounds and --threads must be >= 1, --warmup >= 0")
    if args._child and len(args.config_list) != 1:
        p.error("a child runs exactly one config")
    return args


# ------------------------------------------------------------------------------------------------ the child side
def proc_status_mib(key):
    """VmRSS / VmHWM of this process in MiB (Linux), or None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def batch(cfg):
    """The same (idx, targets) in both children: the work is identical and the data costs nothing per step."""
    import numpy as np

    rng = np.random.default_rng(0)
    idx = rng.integers(0, cfg["vocab"], (cfg["B"], cfg["T"]), dtype=np.int64)
    targets = rng.integers(0, cfg["vocab"], (cfg["B"], cfg["T"]), dtype=np.int64)
    return idx, targets


def _display_path(path):
    """The package folder relative to the repository when it is inside it (an in-place build), else "the installed
    package": results must not name this machine's folders."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rel = os.path.relpath(path, root)
    return "the installed package" if rel.startswith("..") else rel


def time_steps(step, warmup, steps):
    """(seconds of each timed step, losses of all steps). Warm-up covers buffer allocation and the optimizer's state."""
    losses = []
    for _ in range(warmup):
        losses.append(step())
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        losses.append(step())
        times.append(time.perf_counter() - t0)
    return times, losses


def run_gptx(cfg, args):
    import numpy as np

    import gptx
    from gptx.model import GPT, GPTConfig
    from gptx.optim import AdamW

    gptx.set_num_threads(args.threads)
    import_mib = proc_status_mib("VmRSS")
    drop = {"dropout": args.dropout} if args.dropout else {}  # a build from before dropout has no such field
    model = GPT(GPTConfig(n_layer=cfg["n_layer"], n_head=cfg["n_head"], n_embd=cfg["n_embd"], block_size=cfg["T"],
                          vocab_size=cfg["vocab"], **drop), seed=0)
    opt = AdamW(model.named_parameters(), model.grads, lr=LR, betas=BETAS, eps=EPS, weight_decay=WEIGHT_DECAY,
                flat=model.flat_buffers())
    idx, targets = (a.astype(np.int32) for a in batch(cfg))
    stats = gptx.Tensor.zeros([2], "float32", model.device)  # loss, gradient norm
    loss_out, norm = stats[0], stats[1]

    def step():  # gptx.Trainer.train_step without the schedule, the data sampling and the logging
        model.zero_grad()
        model.forward_loss(idx, targets, out=loss_out)
        model.backward()
        gptx.ops.global_norm([model.flat_buffers()[1]], out=norm)
        opt.step(norm=norm, max_norm=GRAD_CLIP)  # clips inside the one fused call
        return float(stats.to("cpu").numpy()[0])  # the step's one read, after the update

    times, losses = time_steps(step, args.warmup, args.steps)
    return dict(times=times, losses=losses, import_mib=import_mib, threads=gptx.get_num_threads(),
                versions=f"gptx {gptx.__version__} (cpu path {gptx.info()['cpu_isa']}, from "
                         f"{_display_path(os.path.dirname(os.path.abspath(gptx.__file__)))})",
                optimizer="gptx.AdamW (one fused native call over the flat buffer, clipping inside it)")


def run_torch(cfg, args):
    import torch
    import transformers

    torch.set_num_threads(args.threads)
    import_mib = proc_status_mib("VmRSS")
    torch.manual_seed(0)
    hf_cfg = transformers.GPT2Config(n_layer=cfg["n_layer"], n_head=cfg["n_head"], n_embd=cfg["n_embd"],
                                     n_positions=cfg["T"], vocab_size=cfg["vocab"], resid_pdrop=0.0,
                                     embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=None, eos_token_id=None,
                                     attn_implementation="eager")
    model = transformers.GPT2LMHeadModel(hf_cfg).train()
    if model.config._attn_implementation != "eager":
        raise RuntimeError(f"transformers chose attention {model.config._attn_implementation!r}, not eager")
    params = list(model.parameters())  # the tied wte / lm_head weight appears once
    # Weight decay on the >= 2-D tensors only, as gptx.AdamW does it.
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": WEIGHT_DECAY},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    try:
        opt = torch.optim.AdamW(groups, lr=LR, betas=BETAS, eps=EPS, fused=True)
        variant = "torch.optim.AdamW(fused=True)"
    except (RuntimeError, ValueError):  # torch builds without the CPU fused kernel refuse fused=True up front
        opt = torch.optim.AdamW(groups, lr=LR, betas=BETAS, eps=EPS, foreach=True)
        variant = "torch.optim.AdamW(foreach=True)"
    idx, targets = (torch.as_tensor(a) for a in batch(cfg))
    V = cfg["vocab"]

    def step():
        opt.zero_grad(set_to_none=True)
        logits = model(idx, use_cache=False).logits
        # all B*T targets, like gptx (HF's labels= path would shift them and drop one position per row)
        loss = torch.nn.functional.cross_entropy(logits.view(-1, V), targets.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, GRAD_CLIP)
        opt.step()
        return loss.item()

    times, losses = time_steps(step, args.warmup, args.steps)
    mkl = "MKL" if torch.backends.mkl.is_available() else "no MKL"
    return dict(times=times, losses=losses, import_mib=import_mib, threads=torch.get_num_threads(),
                versions=f"torch {torch.__version__} ({mkl}), transformers {transformers.__version__}",
                optimizer=variant)


def child_main(args):
    cfg = CONFIGS[args.config_list[0]]
    out = (run_gptx if args._child == "gptx" else run_torch)(cfg, args)
    out["vmhwm_mib"] = proc_status_mib("VmHWM")
    print(MARK + json.dumps(out), flush=True)
    return 0


# ------------------------------------------------------------------------------------------------ the parent side
def child_env(threads):
    """One OpenMP environment for both children (see the module docstring)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    if "OMP_WAIT_POLICY" not in env and "GOMP_SPINCOUNT" not in env:
        env["GOMP_SPINCOUNT"] = "10000"
    return env


def omp_note(env):
    keys = sorted(k for k in env if k.startswith(("OMP_", "GOMP_", "KMP_", "MKL_")))
    return ", ".join(f"{k}={env[k]}" for k in keys)


def run_child(framework, config, args, env):
    """One child process; returns its result dict with peak_mib (its own ru_maxrss) or an 'error'."""
    cmd = [sys.executable, os.path.abspath(__file__), "--_child", framework, "--configs", config,
           "--steps", str(args.steps), "--warmup", str(args.warmup), "--threads", str(args.threads)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env, text=True)  # stderr passes through
    text = proc.stdout.read()
    proc.stdout.close()
    # wait4 (not proc.wait) because it returns this child's own resource usage; RUSAGE_CHILDREN would be the
    # maximum over every child waited for so far.
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    lines = [ln for ln in text.splitlines() if ln.startswith(MARK)]
    if proc.returncode != 0 or not lines:
        return {"error": f"exit status {proc.returncode}", "wall_s": wall}
    out = json.loads(lines[-1][len(MARK):])
    out.update(peak_mib=usage.ru_maxrss / 1024, wall_s=wall)  # ru_maxrss is in KiB on Linux
    out["median_s"] = statistics.median(out["times"])
    out["tokens_per_s"] = CONFIGS[config]["B"] * CONFIGS[config]["T"] / out["median_s"]
    return out


def probe_peak(args):
    """(fp32 GFLOP/s, how it was obtained) or (None, why not)."""
    if args.peak_gflops:
        return args.peak_gflops, "given with --peak-gflops"
    from gptx.cli.bench import find_bench  # the wheel's gptx-bench, else $GPTX_BENCH, else PATH

    try:
        exe = find_bench()
    except FileNotFoundError as e:
        return None, f"{e} (or pass --peak-gflops)"
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "peak.json")
        # the cheapest op with a tiny bandwidth probe: only the FMA probe's number is used
        cmd = [exe, "--threads", str(args.threads), "--op", "add_forward", "--quick", "--no-validate",
               "--repeats", "1", "--probe-mib", "8", "--json", path]
        try:
            subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True, timeout=120)
            with open(path) as f:
                machine = json.load(f)["machine"]
        except (OSError, subprocess.SubprocessError, ValueError, KeyError) as e:
            return None, f"gptx-bench probe failed: {e}"
    return machine["peak_gflops"], f"gptx-bench {machine['peak_gflops_how']}, {machine['threads']} threads"


def flops_per_token(cfg):
    """6*N + 6*L*T*C, N = all parameters except the position table (see the module docstring)."""
    L, C, V, T = cfg["n_layer"], cfg["n_embd"], cfg["vocab"], cfg["T"]
    n = V * C + L * (12 * C * C + 13 * C) + 2 * C
    return 6 * n + 6 * L * T * C, n




def package_version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def command_line():
    parts = ["PYTHONPATH=" + shlex.quote(os.environ["PYTHONPATH"])] if os.environ.get("PYTHONPATH") else []
    script = os.path.relpath(os.path.abspath(__file__))
    return " ".join(parts + ["python", shlex.quote(script)] + [shlex.quote(a) for a in sys.argv[1:]])


def fmt(v, spec, missing="—"):
    return missing if v is None else format(v, spec)


def summarize(config, runs, peak):
    """Median tokens/s over the rounds, max peak memory, MFU for one config; None where a framework failed."""
    fpt, _ = flops_per_token(CONFIGS[config])
    row = {"config": config}
    for fw in FRAMEWORKS:
        ok = [r for r in runs[fw] if "error" not in r]
        tps = statistics.median([r["tokens_per_s"] for r in ok]) if ok else None
        row[fw] = tps
        row[fw + "_mib"] = max(r["peak_mib"] for r in ok) if ok else None
        row[fw + "_mfu"] = tps * fpt / (peak * 1e9) if tps and peak else None
    row["ratio"] = row["gptx"] / row["torch"] if row["gptx"] and row["torch"] else None
    return row


def markdown_table(rows):
    head = ("| config | gptx tokens/s | torch tokens/s | ratio gptx/torch | gptx peak MB | torch peak MB | gptx MFU "
            "| torch MFU |")
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        pct = lambda v: fmt(None if v is None else 100 * v, ".1f") + ("%" if v is not None else "")
        lines.append(f"| {r['config']} | {fmt(r['gptx'], ',.0f', 'failed')} | {fmt(r['torch'], ',.0f', 'failed')} "
                     f"| {fmt(r['ratio'], '.2f')}{'x' if r['ratio'] else ''} | {fmt(r['gptx_mib'], ',.0f')} "
                     f"| {fmt(r['torch_mib'], ',.0f')} | {pct(r['gptx_mfu'])} | {pct(r['torch_mfu'])} |")
    return "\n".join(lines)


def runs_table(all_runs):
    head = ("| config | round | framework | median ms/step | min ms/step | tokens/s | peak MB | after imports MB "
            "| loss first -> last |")
    lines = [head, "|---|---:|---|---:|---:|---:|---:|---:|---|"]
    for config, rnd, fw, r in all_runs:
        if "error" in r:
            lines.append(f"| {config} | {rnd} | {fw} | {r['error']} | | | | | |")
            continue
        lines.append(f"| {config} | {rnd} | {fw} | {1e3 * r['median_s']:,.1f} | {1e3 * min(r['times']):,.1f} "
                     f"| {r['tokens_per_s']:,.0f} | {r['peak_mib']:,.0f} | {fmt(r['import_mib'], ',.0f')} "
                     f"| {r['losses'][0]:.3f} -> {r['losses'][-1]:.3f} |")
    return "\n".join(lines)


def section(args, rows, all_runs, peak, peak_how, env):
    done = [r for _, _, _, r in all_runs if "error" not in r]
    by_fw = {fw: next((r for c, _, f, r in all_runs if f == fw and "error" not in r), None) for fw in FRAMEWORKS}
    gptx_v = by_fw["gptx"]["versions"] if by_fw["gptx"] else "gptx (no successful run)"
    torch_v = by_fw["torch"]["versions"] if by_fw["torch"] else (
        f"torch {package_version('torch')}, transformers {package_version('transformers')}")
    adamw = by_fw["torch"]["optimizer"] if by_fw["torch"] else "unknown (no successful torch run)"
    shapes = "; ".join(
        f"{c}: L{CONFIGS[c]['n_layer']} H{CONFIGS[c]['n_head']} C{CONFIGS[c]['n_embd']} T{CONFIGS[c]['T']} "
        f"B{CONFIGS[c]['B']} V{CONFIGS[c]['vocab']}, N={flops_per_token(CONFIGS[c])[1] / 1e6:.1f}M, "
        f"{flops_per_token(CONFIGS[c])[0] / 1e9:.2f} GFLOP/token" for c in args.config_list)
    notes = [
        f"- Date: {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
        f"- CPU: {cpu_model()}",
        f"- Threads: {args.threads} (gptx.set_num_threads, torch.set_num_threads; child threads seen: "
        f"{sorted({r['threads'] for r in done})})",
        f"- OpenMP environment of both children: {omp_note(env)} (GOMP_SPINCOUNT=10000 is what `import gptx` sets "
        "for itself when neither it nor OMP_WAIT_POLICY is set; the torch child gets the same value, so both GNU "
        "OpenMP runtimes spin alike)",
        f"- Versions: {gptx_v}; {torch_v}",
        f"- Optimizers: gptx.AdamW (global norm on the device, clipped inside the fused step); torch: {adamw} + torch.nn.utils.clip_grad_norm_ "
        f"(lr {LR}, betas {BETAS}, eps {EPS}, weight decay {WEIGHT_DECAY} on >= 2-D tensors, max norm {GRAD_CLIP})",
        f"- fp32 peak for MFU: {fmt(peak, '.1f')} GFLOP/s ({peak_how})",
        f"- Steps: {args.warmup} warm-up + {args.steps} timed per run, {args.rounds} round(s) alternating gptx, torch",
        f"- Configs: {shapes}",
        f"- Command: `{command_line()}`",
    ]
    if args.quick:
        notes.append("- SMOKE TEST (--quick): too few steps to compare; not numbers to quote.")
    method = (
        "A step is zero_grad + forward + backward + clip to global norm 1.0 + AdamW, on the same random batch each "
        "step. gptx: GPT.forward_loss/backward, the global norm into a device tensor, AdamW.step(norm=, max_norm=) "
        "as gptx.Trainer does it (one read of loss and norm per step, after the update). "
        "torch: transformers GPT2LMHeadModel (eager attention, dropout 0, n_inner 4C, gelu_new, tied LM head), "
        "F.cross_entropy over all B*T targets, zero_grad(set_to_none=True). Every (framework, config, round) is its "
        "own process; tokens/s = B*T / median step time, the table shows the median over rounds. Peak MB: the "
        "largest ru_maxrss (os.wait4) of the rounds, in MiB, for the whole process: the Python interpreter and the "
        "imported libraries are included (the per-run table lists the RSS right after the imports). MFU: "
        "(6*N + 6*L*T*C) * tokens/s / fp32 peak, N = parameters without the position table (the token table counts "
        "once, as the LM head matmul). Ratio: gptx tokens/s / torch tokens/s (> 1: gptx faster)."
    )
    return "\n".join(["## Training step: gptx vs PyTorch eager (transformers GPT-2)", "", *notes, "",
                      markdown_table(rows), "", method, "", "Per run:", "", runs_table(all_runs)])




def main():
    args = parse_args()
    if args._child:
        return child_main(args)
    env = child_env(args.threads)
    print(f"children's OpenMP environment: {omp_note(env)} (same for gptx and torch)", file=sys.stderr, flush=True)
    peak_before, peak_how = probe_peak(args)
    all_runs, rows = [], []
    for config in args.config_list:
        runs = {fw: [] for fw in FRAMEWORKS}
        for rnd in range(1, args.rounds + 1):
            for fw in FRAMEWORKS:
                r = run_child(fw, config, args, env)
                runs[fw].append(r)
                all_runs.append((config, rnd, fw, r))
                if "error" in r:
                    print(f"[{config}] round {rnd}/{args.rounds} {fw}: FAILED ({r['error']})", file=sys.stderr,
                          flush=True)
                    continue
                print(f"[{config}] round {rnd}/{args.rounds} {fw:5s}: {1e3 * r['median_s']:9.1f} ms/step, "
                      f"{r['tokens_per_s']:9,.0f} tokens/s, peak {r['peak_mib']:7,.0f} MiB, loss "
                      f"{r['losses'][0]:.3f} -> {r['losses'][-1]:.3f} ({r['wall_s']:.0f} s)", file=sys.stderr,
                      flush=True)
        rows.append(runs)
    peak = peak_before
    if not args.peak_gflops and peak_before is not None:
        # the machine may be shared: the best of two probes is the closer estimate of what it can do
        peak_after, _ = probe_peak(args)
        peak = max(peak_before, peak_after or 0.0)
        peak_how += f", best of before/after ({peak_before:.1f} / {fmt(peak_after, '.1f')})"
    rows = [summarize(c, runs, peak) for c, runs in zip(args.config_list, rows)]
    text = section(args, rows, all_runs, peak, peak_how, env)
    print(text)
    if args.write:
        write_section(args.results, "compare_train", text)
        print(f"\nwrote {args.results}", file=sys.stderr)
    failed = any("error" in r for _, _, _, r in all_runs)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
