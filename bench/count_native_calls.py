"""Counts the Python -> native (gptx._core) calls of one training step (forward, backward, clipping, AdamW).

Every call into the extension crosses the binding once; on a GPU each may also be a launch or a sync, so the count
is what the redesign of issue #10 set out to shrink. Width does not change it, layers do: the default is GPT-2's 12
layers at a small width so the count runs in seconds.

    python bench/count_native_calls.py                 # n_layer 12
    python bench/count_native_calls.py --layers 4 --verbose
"""
from __future__ import annotations

import argparse
import collections
import sys

import numpy as np

import gptx


def _is_native(fn) -> bool:
    # pybind11 functions and methods are builtins whose module (or whose bound object's type's module) is gptx._core
    mod = getattr(fn, "__module__", None)
    if mod is None:
        owner = getattr(fn, "__self__", None)
        mod = type(owner).__module__ if owner is not None else None
    return mod is not None and mod.startswith("gptx._core")


def count_step(trainer) -> collections.Counter:
    calls: collections.Counter = collections.Counter()

    def profile(frame, event, arg):
        if event == "c_call" and _is_native(arg):
            calls[getattr(arg, "__name__", "?")] += 1

    sys.setprofile(profile)
    try:
        trainer.train_step()
    finally:
        sys.setprofile(None)
    return calls


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--verbose", action="store_true", help="print the count per native function")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 50257, 4096).astype(np.uint16)
    model = gptx.GPT(gptx.GPTConfig(n_layer=args.layers, n_head=2, n_embd=64, block_size=64), seed=0)
    cfg = gptx.TrainConfig(steps=10, batch_size=2, block_size=32, warmup=0, eval_every=0, progress=False,
                           log_every=0)
    trainer = gptx.Trainer(model, cfg, gptx.TokenDataset(tokens))
    trainer.train_step()  # first step allocates the activation buffers
    calls = count_step(trainer)
    print(f"n_layer {args.layers}: {sum(calls.values())} Python -> native calls per training step")
    if args.verbose:
        for name, n in calls.most_common():
            print(f"  {n:5d}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
