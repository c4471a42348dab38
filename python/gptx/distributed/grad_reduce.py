"""Averaging gradients over ranks during the backward pass: the flat gradient buffer cut into buckets of whole
blocks, each one's all-reduce (or, under ZeRO-1, reduce-scatter) launched as soon as backward has finished it."""
from __future__ import annotations

import time

import numpy as np

from gptx import distributed as dist


def plan_buckets(n: int, layer_starts: list[int], bucket_elems: int) -> dict[int, tuple[int, int]]:
    """{layer index at whose end the bucket starts: [begin, end)} over the n-element buffer laid out as
    [embeddings | block 0 | ... | block L-1 + ln_f]. Backward finishes blocks from the last to the first and the
    embeddings at the very end (wte also gets the LM head's gradient first), so buckets grow from the end of the
    buffer downwards; each holds whole blocks, at least bucket_elems elements unless it is the last (key -1, which
    also takes the embeddings)."""
    plan, end = {}, n
    for l in range(len(layer_starts) - 1, -1, -1):
        begin = layer_starts[l]
        if end - begin >= bucket_elems:
            plan[l] = (begin, end)
            end = begin
    plan[-1] = (0, end)
    return plan


class _MpiLauncher:
    """Non-blocking MPI collectives over numpy views of the (CPU) gradient buffer."""

    def __init__(self, group, gbuf, shard_buf):
        self.group = group
        self.g = np.asarray(gbuf)
        self.s = None if shard_buf is None else np.asarray(shard_buf)

    def all_reduce(self, lo, hi):
        MPI = self.group.MPI
        return self.group.comm.Iallreduce(MPI.IN_PLACE, self.g[lo:hi], op=MPI.SUM)

    def reduce_scatter(self, lo, hi, counts, out_lo, out_hi):
        return self.group.comm.Ireduce_scatter(self.g[lo:hi], self.s[out_lo:out_hi], counts, op=self.group.MPI.SUM)

    def progress(self, requests):
        self.group.MPI.Request.Testall(requests)  # MPICH advances non-blocking collectives only inside MPI calls

    def finish(self, requests):
        self.group.wait_all(requests, "gradient all-reduce")


class GradReducer:
    """Sums the model's flat gradient buffer over all ranks (the caller divides by the world size through the
    optimizer's grad_scale, so the buffer is never rescaled in place).

    Without ZeRO every rank ends with the whole sum in the gradient buffer; with ZeRO-1 (shard=(lo, hi), shard_buf)
    rank r ends with only its shard's sum, in shard_buf. Use `layer_done` as GPT.backward's hook on the last
    micro-batch of a step, then finish()."""

    def __init__(self, model, bucket_mb: float = 25.0, shard: tuple[int, int] | None = None, shard_buf=None):
        _, gbuf = model.flat_buffers()
        self.n = int(gbuf.shape[0])
        self.world, self.rank = dist.world_size(), dist.rank()
        self.plan = plan_buckets(self.n, model.grad_layer_starts(), max(1, int(bucket_mb * 2**20 / 4)))
        self.shard, self.shards = shard, [dist.shard_range(self.n, r, self.world) for r in range(self.world)]
        if str(gbuf.device).startswith("cuda"):
            self.launcher = dist.nccl_comm(gbuf.device).launcher(gbuf, shard_buf)
        else:
            self.launcher = _MpiLauncher(dist._g(), gbuf, shard_buf)
        self.requests = []
        self.launched = 0
        self.comm_s = 0.0  # seconds the step waited for communication (not hidden behind backward)

    def layer_done(self, layer: int):
        span = self.plan.get(layer)
        t0 = time.perf_counter()
        if span is not None:
            self.requests.append(self._launch(*span))
            self.launched += 1
        elif self.requests:
            self.launcher.progress(self.requests)
        self.comm_s += time.perf_counter() - t0

    def _launch(self, lo, hi):
        if self.shard is None:
            return self.launcher.all_reduce(lo, hi)
        counts = [max(0, min(hi, b) - max(lo, a)) for a, b in self.shards]
        a, _ = self.shard
        out_lo = max(lo, a) - a
        return self.launcher.reduce_scatter(lo, hi, counts, out_lo, out_lo + counts[self.rank])

    def finish(self):
        """Wait for every bucket; returns the seconds waited."""
        if self.launched != len(self.plan):
            raise RuntimeError(f"GradReducer: {self.launched} of {len(self.plan)} buckets were launched (was the "
                               f"hook passed to the last backward?)")
        t0 = time.perf_counter()
        self.launcher.finish(self.requests)
        self.requests, self.launched = [], 0
        waited = time.perf_counter() - t0
        self.comm_s += waited
        return waited
