"""Training throughput (forward + backward tokens/s) of gptx.model.GPT vs PyTorch eager GPT2LMHeadModel, with a
per-op time breakdown of the gptx step.

    python bench/compare_model.py [--layers 4 --heads 4 --embd 256 --T 256 --B 8 --vocab 50304]

The two models run alternately in one process on the same thread count, so a shared or throttled machine slows
both alike: compare the ratio, not the absolute numbers.
"""
import argparse
import collections
import time
import types

import numpy as np

import gptx
import gptx.model as gmodel
from gptx import ops as real_ops
from gptx.model import GPT, GPTConfig


class OpTimer:
    """Wraps every op gptx.model calls to sum its wall time (each op runs to completion before returning). Calls that
    touch a (.., Vp) or (Vp, ..) array (LM head, loss, embedding) are listed apart from the per-layer calls."""

    def __init__(self, padded_vocab):
        self.stats = collections.defaultdict(lambda: [0, 0.0])
        self._saved = gmodel.ops
        self._vp = padded_vocab

    def _key(self, name, args, kwargs):
        shapes = [np.shape(x) for x in list(args) + list(kwargs.values()) if isinstance(x, np.ndarray)]
        head = any(s and self._vp in (s[0], s[-1]) for s in shapes)
        return name + (" [vocab-sized]" if head else "")

    def __enter__(self):
        ns = types.SimpleNamespace()
        for name in real_ops.__all__:
            fn = getattr(real_ops, name)

            def timed(*a, _fn=fn, _name=name, **k):
                t = time.perf_counter()
                r = _fn(*a, **k)
                s = self.stats[self._key(_name, a, k)]
                s[0] += 1
                s[1] += time.perf_counter() - t
                return r

            setattr(ns, name, timed)
        gmodel.ops = ns
        return self

    def __exit__(self, *exc):
        gmodel.ops = self._saved

    def report(self, steps, step_s):
        total = sum(t for _, t in self.stats.values())
        print(f"gptx per-op time per step (ops {1e3 * total / steps:.1f} ms of {1e3 * step_s:.1f} ms):")
        for name, (n, t) in sorted(self.stats.items(), key=lambda kv: -kv[1][1]):
            print(f"  {name:34s} {n // steps:4d} calls {1e3 * t / steps:9.1f} ms {100 * t / total:5.1f}%")


def time_steps(step, steps):
    step()  # warm-up: buffers, page faults
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t) / steps


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--embd", type=int, default=256)
    ap.add_argument("--T", type=int, default=256)
    ap.add_argument("--B", type=int, default=8)
    ap.add_argument("--vocab", type=int, default=50304)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2, help="alternate gptx / torch this many times")
    args = ap.parse_args()

    import torch
    import transformers

    torch.set_num_threads(args.threads)
    gptx.set_num_threads(args.threads)
    cfg = GPTConfig(n_layer=args.layers, n_head=args.heads, n_embd=args.embd, block_size=args.T,
                    vocab_size=args.vocab)
    model = GPT(cfg, seed=0)
    hf_cfg = transformers.GPT2Config(n_layer=args.layers, n_head=args.heads, n_embd=args.embd, n_positions=args.T,
                                     vocab_size=args.vocab, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                                     bos_token_id=None, eos_token_id=None, attn_implementation="eager")
    hf = transformers.GPT2LMHeadModel(hf_cfg).train()
    rng = np.random.default_rng(0)
    idx = rng.integers(0, args.vocab, (args.B, args.T))
    targets = rng.integers(0, args.vocab, (args.B, args.T))
    tidx, ttargets = torch.as_tensor(idx), torch.as_tensor(targets)

    def gptx_step():
        model.forward(idx, targets)
        model.backward()

    def torch_step():
        logits = hf(tidx).logits
        loss = torch.nn.functional.cross_entropy(logits.view(-1, args.vocab), ttargets.view(-1))
        loss.backward()

    tokens = args.B * args.T
    print(f"config: L{args.layers} H{args.heads} C{args.embd} T{args.T} B{args.B} V{args.vocab}, "
          f"{args.threads} threads, {gptx.info()['cpu_isa']}")
    best = {"gptx": float("inf"), "torch": float("inf")}
    for r in range(args.rounds):
        for name, step in (("gptx", gptx_step), ("torch", torch_step)):
            s = time_steps(step, args.steps)
            best[name] = min(best[name], s)
            print(f"round {r}: {name:5s} {1e3 * s:8.1f} ms/step {tokens / s:9.0f} tokens/s")
    print(f"best: gptx {tokens / best['gptx']:.0f} tokens/s, torch {tokens / best['torch']:.0f} tokens/s, "
          f"ratio gptx/torch {best['torch'] / best['gptx']:.2f}")
    with OpTimer(cfg.padded_vocab_size) as timer:
        t = time.perf_counter()
        for _ in range(args.steps):
            gptx_step()
        s = (time.perf_counter() - t) / args.steps
    timer.report(args.steps, s)


if __name__ == "__main__":
    main()
