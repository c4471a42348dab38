"""The rank side of tests/distributed: `mpiexec -n N python worker.py SCENARIO OUT_DIR [...]`. Each scenario trains
or calls collectives and writes what the test compares (rank 0) into OUT_DIR."""
import json
import os
import signal
import sys
import time

import numpy as np

import gptx
from gptx import distributed as dist

gptx.set_num_threads(1)

CONFIG = dict(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=61)
TRAIN = dict(block_size=16, lr=1e-3, warmup=2, progress=False, log_every=0, eval_every=0, eval_batches=3,
             bucket_mb=0.02)  # buckets of ~5k floats: several per step even in this tiny model


def tokens():
    return np.random.default_rng(123).integers(0, CONFIG["vocab_size"], 20_000)


class Masked(gptx.TokenDataset):
    """Batches whose rows have different numbers of ignored targets (as prompt-masked fine-tuning data has): row b of
    a batch ignores its first (b * 5) % 17 targets, so ranks' slices of a global batch count different targets."""

    def get_batch(self, batch_size, block_size, rng=None):
        x, y = super().get_batch(batch_size, block_size, rng)
        for b in range(batch_size):
            y[b, :(b * 5) % 17] = -100
        return x, y


def trainer(batch_size, steps, out_dir=None, seed=1, masked=False, **kw):
    model = gptx.GPT(gptx.GPTConfig(**CONFIG), seed=seed)
    cfg = gptx.TrainConfig(steps=steps, batch_size=batch_size, out_dir=out_dir, **{**TRAIN, **kw})
    data = Masked if masked else gptx.TokenDataset
    return gptx.Trainer(model, cfg, data(tokens()), data(tokens()[:3000]))


def params(t):
    return np.asarray(t.model.flat_buffers()[0]).copy()


def replicas_agree(t):
    """Every rank holds bitwise the same parameters."""
    mine = params(t)
    everyone = dist.all_gather_object(mine.tobytes())
    return all(e == everyone[0] for e in everyone)


def save(out, name, **arrays):
    if dist.rank() == 0:
        np.savez(os.path.join(out, name + ".npz"), **arrays)


def equivalence(out, B):
    B = int(B)
    """5 steps on N ranks of micro-batch B, with and without ZeRO-1 and gradient accumulation."""
    for name, kw in {"plain": {}, "zero": {"zero": 1}, "accum": {"grad_accum": 2},
                     "accum_zero": {"grad_accum": 2, "zero": 1},
                     "masked": {"grad_accum": 2, "masked": True}}.items():
        t = trainer(B, 5, **kw)
        losses = [t.train_step()["loss"] for _ in range(5)]
        assert replicas_agree(t), name
        val = t.evaluate()
        save(out, name, params=params(t), losses=np.array(losses), val=np.array(val))


def resume(out, B, zero):
    B = int(B)
    """6 steps straight vs 3 steps, checkpoint, resume to 6 (same N): must be bitwise equal. Also leaves the 3-step
    checkpoint for the 2 -> 1 test and resumes out/single (written by one process) for the 1 -> 2 test."""
    zero = int(zero)
    straight = trainer(B, 6, zero=zero)
    losses = [straight.train_step()["loss"] for _ in range(6)]
    half = trainer(B, 6, out_dir=os.path.join(out, "run"), zero=zero)
    half.fit(until=3)
    resumed = gptx.Trainer.resume(os.path.join(out, "run"), gptx.TokenDataset(tokens()),
                                  gptx.TokenDataset(tokens()[:3000]), progress=False)
    assert resumed.step == 3 and resumed.cfg.zero == zero
    more = [resumed.train_step()["loss"] for _ in range(3)]
    assert replicas_agree(resumed)
    osd = resumed.opt.state_dict()  # a collective under ZeRO-1: every rank calls it, rank 0 gets the state
    if dist.rank() == 0:
        save(out, "resume", straight=params(straight), resumed=params(resumed), losses=np.array(losses),
             more=np.array(more), m=osd["m"]["transformer.h.1.mlp.c_fc.weight"])
    single = os.path.join(out, "single")
    if os.path.isdir(single):  # 1 -> 2: a one-process checkpoint continued on N ranks, re-sharded under ZeRO-1
        t = gptx.Trainer.resume(single, gptx.TokenDataset(tokens()), gptx.TokenDataset(tokens()[:3000]),
                                progress=False, zero=zero)
        assert t.cfg.batch_size * dist.world_size() == 2 * B, t.cfg.batch_size
        cont = [t.train_step()["loss"] for _ in range(3)]
        save(out, "from_single", losses=np.array(cont), params=params(t))


def fault(out, how):
    """Rank 1 fails in the middle of step 3's backward pass, with gradient buckets in flight (killed, raising, or
    stuck); the job must end non-zero in bounded time."""
    t = trainer(2, 1000)
    hook = t.dp.reducer.layer_done

    def failing(layer):
        if dist.rank() == 1 and t.step == 3 and layer == 0:
            if how == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            if how == "raise":
                raise RuntimeError("injected failure")
            if how == "hang":
                time.sleep(3600)
        hook(layer)

    t.dp.reducer.layer_done = failing
    for _ in range(1000):
        t.train_step()


def mismatch(out, what):
    r = dist.rank()
    kw = {"seed": 1 + r} if what == "seed" else {}
    if what == "shape":
        CONFIG["n_layer"] = 2 + r
    if what == "steps":
        kw = {"steps": 5 + r}
    try:
        trainer(2, kw.pop("steps", 5), **kw)
    except ValueError as e:
        print(f"rank {r}: {type(e).__name__}: {e}", flush=True)
        sys.exit(3)
    print(f"rank {r}: no error", flush=True)


def resume_on(out, run):
    """Resume `run` on this many ranks; a global batch they cannot split is a clear error on every rank."""
    try:
        t = gptx.Trainer.resume(run, gptx.TokenDataset(tokens()), gptx.TokenDataset(tokens()[:3000]), progress=False)
    except ValueError as e:
        print(f"rank {dist.rank()}: ValueError: {e}", flush=True)
        sys.exit(3)
    t.train_step()


def collectives(out):
    """gptx.distributed's collectives on gptx Tensors and numpy arrays against numpy on every rank's inputs."""
    r, n = dist.rank(), dist.world_size()
    inputs = [np.random.default_rng([7, k]).standard_normal(1003).astype(np.float32) for k in range(n)]
    stack = np.stack(inputs).astype(np.float64)
    for op, ref in {"sum": stack.sum(0), "avg": stack.mean(0), "max": stack.max(0), "min": stack.min(0)}.items():
        for wrap in (gptx.Tensor, lambda a: a):
            t = wrap(inputs[r].copy())
            assert dist.all_reduce(t, op=op) is t
            np.testing.assert_allclose(np.asarray(t), ref, rtol=1e-6, atol=1e-6, err_msg=op)
    ints = np.arange(10, dtype=np.int64) * (r + 1)
    dist.all_reduce(ints)
    assert np.array_equal(ints, np.arange(10) * sum(range(1, n + 1)))
    total = stack.sum(0)
    lo, hi = dist.shard_range(1003)
    part = dist.reduce_scatter(gptx.Tensor(inputs[r].copy()))
    np.testing.assert_allclose(np.asarray(part), total[lo:hi], rtol=1e-6, atol=1e-6)
    counts = [5 + 2 * k for k in range(n - 1)]
    counts.append(1003 - sum(counts))
    part = dist.reduce_scatter(inputs[r].copy(), counts=counts, op="avg")
    start = sum(counts[:r])
    np.testing.assert_allclose(part, stack.mean(0)[start:start + counts[r]], rtol=1e-6, atol=1e-6)
    mine = np.full((r + 2, 3), float(r), dtype=np.float32)
    gathered = dist.all_gather(gptx.Tensor(mine))
    expect = np.concatenate([np.full((k + 2, 3), float(k), dtype=np.float32) for k in range(n)])
    assert np.array_equal(np.asarray(gathered), expect)
    buf = np.zeros(1003, dtype=np.float32)
    buf[lo:hi] = inputs[r][lo:hi]
    dist.all_gather_into(gptx.Tensor(buf))
    assert np.array_equal(buf, np.concatenate([inputs[k][slice(*dist.shard_range(1003, k))] for k in range(n)]))
    b = gptx.Tensor(inputs[r].copy())
    dist.broadcast(b, root=n - 1)
    assert np.array_equal(np.asarray(b), inputs[n - 1])
    assert dist.broadcast_object({"from": r}, root=n - 1) == {"from": n - 1}
    assert dist.all_gather_object(r * 10) == [k * 10 for k in range(n)]
    dist.barrier()
    for bad, call in (("op must be one of", lambda: dist.all_reduce(gptx.Tensor(inputs[r]), op="prod")),
                      ("counts must be", lambda: dist.reduce_scatter(inputs[r], counts=[1] * n)),
                      ("root must be", lambda: dist.broadcast(inputs[r], root=n))):
        try:
            call()
        except ValueError as e:
            assert bad in str(e), e
        else:
            raise AssertionError(f"no error: {bad}")
    if r == 0:
        with open(os.path.join(out, "collectives.json"), "w") as f:
            json.dump({"ok": True, "world": n}, f)


def nccl(out):
    """CUDA tensors through NCCL (at any N, N=1 included): collectives against numpy, then 5 training steps on the GPU
    with gptx.distributed (plain and ZeRO-1) against the same run without it."""
    r, n = dist.rank(), dist.world_size()
    dist.init("cuda")
    dev = dist.nccl_comm("cuda").device_name
    inputs = [np.random.default_rng([9, k]).standard_normal(1003).astype(np.float32) for k in range(n)]
    stack = np.stack(inputs).astype(np.float64)
    for op, ref in {"sum": stack.sum(0), "avg": stack.mean(0), "max": stack.max(0)}.items():
        t = gptx.Tensor(inputs[r].copy()).to(dev)
        dist.all_reduce(t, op=op)
        np.testing.assert_allclose(t.to("cpu").numpy(), ref, rtol=1e-5, atol=1e-5, err_msg=op)
    lo, hi = dist.shard_range(1003)
    part = dist.reduce_scatter(gptx.Tensor(inputs[r].copy()).to(dev))
    np.testing.assert_allclose(part.to("cpu").numpy(), stack.sum(0)[lo:hi], rtol=1e-5, atol=1e-5)
    g = dist.all_gather(gptx.Tensor(np.full((r + 2, 3), float(r), dtype=np.float32)).to(dev))
    expect = np.concatenate([np.full((k + 2, 3), float(k), dtype=np.float32) for k in range(n)])
    assert np.array_equal(g.to("cpu").numpy(), expect)
    b = gptx.Tensor(inputs[r].copy()).to(dev)
    dist.broadcast(b, root=n - 1)
    assert np.array_equal(b.to("cpu").numpy(), inputs[n - 1])
    results = {}
    for zero in (0, 1):
        model = gptx.GPT(gptx.GPTConfig(**CONFIG), seed=1).to(dev)
        cfg = gptx.TrainConfig(steps=5, batch_size=2, zero=zero, **TRAIN)
        t = gptx.Trainer(model, cfg, gptx.TokenDataset(tokens()))
        results[zero] = ([t.train_step()["loss"] for _ in range(5)], model.state_dict())
    if r == 0:
        np.savez(os.path.join(out, "nccl.npz"), plain=results[0][0], zero=results[1][0],
                 **{f"p{z}/{k}": v for z in (0, 1) for k, v in results[z][1].items()})


if __name__ == "__main__":
    dist.init()
    scenario, out = sys.argv[1], sys.argv[2]
    {"equivalence": equivalence, "resume": resume, "fault": fault, "mismatch": mismatch,
     "collectives": collectives, "nccl": nccl,
     "resume_on": resume_on}[scenario](out, *sys.argv[3:])
