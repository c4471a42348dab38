"""Training-step time of two gptx builds, side by side: before/after figures for a change.

Each build is a Python interpreter whose environment has that gptx installed, plus the checkout it came from (its
bench/compare_train.py runs the step, so each revision is timed with its own script). Runs alternate (A B, B A, ...)
so load on a shared machine hits both alike; the report is the median step time of each and the ratio.

    python -m venv --system-site-packages /path/venv-old && (cd old-checkout && /path/venv-old/bin/pip install .)
    python bench/compare_revisions.py --before /path/venv-old/bin/python:old-checkout \\
        --after "$(command -v python)":. --configs tiny-v256,gpt2-t64
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

# config -> (timed steps per run, warm-up steps, rounds): about a minute each on 2 cores
PLAN = {"tiny-v256": (8, 2, 6), "tiny-v50304": (4, 1, 4), "gpt2-t64": (4, 1, 3), "gpt2-t1024": (2, 1, 2)}


def run_once(python: str, checkout: str, config: str, steps: int, warmup: int, threads: int,
             extra: list[str] = ()) -> dict:
    cmd = [python, "bench/compare_train.py", "--_child", "gptx", "--configs", config, "--steps", str(steps),
           "--warmup", str(warmup), "--threads", str(threads), *extra]
    out = subprocess.run(cmd, cwd=checkout, capture_output=True, text=True)
    lines = [line for line in out.stdout.splitlines() if line.startswith("COMPARE_TRAIN_RESULT ")]
    if not lines:
        raise SystemExit(f"{python} in {checkout} failed on {config}:\n{out.stderr[-2000:]}")
    return json.loads(lines[0].split(" ", 1)[1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, metavar="PYTHON:CHECKOUT")
    ap.add_argument("--after", required=True, metavar="PYTHON:CHECKOUT")
    ap.add_argument("--configs", default="tiny-v256,gpt2-t64", help=f"comma list of {', '.join(PLAN)}")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--after-args", default="", metavar="ARGS",
                    help='extra compare_train.py arguments for the after build only, e.g. "--dropout 0.1" (the same '
                         "build on both sides then times the cost of a setting)")
    args = ap.parse_args(argv)
    builds = {name: spec.split(":", 1) for name, spec in (("before", args.before), ("after", args.after))}
    for config in args.configs.split(","):
        steps, warmup, rounds = PLAN[config]
        times = {"before": [], "after": []}
        losses = {}
        for r in range(rounds):
            order = ["before", "after"] if r % 2 == 0 else ["after", "before"]
            for name in order:
                extra = args.after_args.split() if name == "after" else []
                res = run_once(*builds[name], config, steps, warmup, args.threads, extra)
                times[name] += res["times"]
                losses[name] = res["losses"]
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        # the losses agree to float32 rounding when the change keeps the arithmetic
        drift = max(abs(a - b) for a, b in zip(losses["before"], losses["after"]))
        print(f"{config}: before {med['before']:.1f} ms/step, after {med['after']:.1f} ms/step "
              f"(median of {len(times['before'])} steps each), speed ratio {med['before'] / med['after']:.2f}x; "
              f"largest loss difference {drift:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
