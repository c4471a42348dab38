"""ZeRO-1: AdamW whose moments are split over the ranks. Each rank keeps the moments of one shard of the flat
parameter buffer (about 1/N of them), updates that shard of the float32 weights from its shard of the summed
gradients (the reduce-scatter of GradReducer), and the updated shards are all-gathered into every rank's weights."""
from __future__ import annotations

import math
import time

import numpy as np

from gptx import _core, distributed as dist, ops
from gptx._host import host_copy
from gptx.optim import AdamW, _named, _tensor, check_state_dict


class ZeroAdamW:
    """AdamW (the same kernel and arithmetic as gptx.optim.AdamW with flat buffers) over this rank's shard.

    grad_shard: the (shard length,) float32 buffer the reduce-scatter writes this rank's summed gradients into.
    state_dict() is a collective (every rank calls it; rank 0 receives the whole state, in AdamW's layout, the others
    None); load_state_dict() takes the whole state on every rank and keeps its shard, whatever N it was saved with."""

    def __init__(self, named_params, grads, flat, lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1):
        self.params = [(n, _tensor(p)) for n, p in _named(named_params)]
        self.grads = {n: _tensor(grads[n]) for n, _ in self.params}
        self.lr, self.betas, self.eps = float(lr), (float(betas[0]), float(betas[1])), float(eps)
        self.weight_decay = float(weight_decay)
        pbuf, _, offsets, ranges = AdamW._flat_layout(self, *flat)
        self.pbuf, self.offsets = pbuf, offsets
        n = int(pbuf.shape[0])
        self.lo, self.hi = dist.shard_range(n)
        self.counts = [b - a for a, b in (dist.shard_range(n, r) for r in range(dist.world_size()))]
        shard = self.hi - self.lo
        self.grad_shard = _core.Tensor.zeros([shard], "float32", pbuf.device)
        self.m = _core.Tensor.zeros([shard], "float32", pbuf.device)
        self.v = _core.Tensor.zeros([shard], "float32", pbuf.device)
        clipped = [(max(a, self.lo) - self.lo, min(b, self.hi) - self.lo) for a, b in ranges.tolist()
                   if min(b, self.hi) > max(a, self.lo)]
        self.decay_ranges = np.array(clipped, dtype=np.int64).reshape(-1, 2)
        self.step_count = 0
        self.comm_s = 0.0  # seconds spent in the parameter all-gather (read and reset by the Trainer)

    def step(self, lr=None, grad_scale=1.0, norm=None, max_norm=0.0, norm_scale=1.0):
        """Update this rank's shard (see AdamW.step for the arguments; `norm` must be the global norm), then gather
        every rank's updated shard into the whole parameter buffer."""
        lr = self.lr if lr is None else float(lr)
        if not math.isfinite(grad_scale):
            raise ValueError(f"ZeroAdamW.step: grad_scale is {grad_scale}")
        self.step_count += 1
        if self.hi > self.lo:
            ops.adamw_step(self.pbuf[self.lo:self.hi], self.grad_shard, self.m, self.v, lr=lr, beta1=self.betas[0],
                           beta2=self.betas[1], eps=self.eps, weight_decay=self.weight_decay,
                           decay_ranges=self.decay_ranges, step=self.step_count, grad_scale=grad_scale, norm=norm,
                           max_norm=max_norm or 0.0, norm_scale=norm_scale)
        t0 = time.perf_counter()
        dist.all_gather_into(self.pbuf, self.counts)
        self.comm_s += time.perf_counter() - t0

    def hparams(self):
        return {"lr": self.lr, "betas": list(self.betas), "eps": self.eps, "weight_decay": self.weight_decay}

    def memory_bytes(self) -> int:
        """Bytes of optimizer state this rank holds: its shard of the two moments. (The reduce-scatter also needs
        grad_shard, one more shard-sized buffer: shard_buffer_bytes.)"""
        return int(self.m.nbytes + self.v.nbytes)

    @property
    def shard_buffer_bytes(self) -> int:
        return int(self.grad_shard.nbytes)

    # ---- checkpoints: one whole state whatever N -------------------------------------------------------------------
    def state_dict(self):
        g = dist._g()
        n = int(self.pbuf.shape[0])
        displs = np.concatenate([[0], np.cumsum(self.counts)[:-1]]).astype(int).tolist()
        out = {}
        for key in ("m", "v"):
            full = np.empty(n, dtype=np.float32) if g.rank == 0 else None
            part = host_copy(getattr(self, key))
            g.wait(g.comm.Igatherv(part, [full, (self.counts, displs)] if g.rank == 0 else None, root=0),
                   "optimizer gather")
            out[key] = full
        if g.rank != 0:
            return None
        views = {key: {name: out[key][off:off + p.size].reshape(tuple(p.shape)).copy()
                       for (name, p), off in ((np_, self.offsets[np_[0]]) for np_ in self.params)}
                 for key in ("m", "v")}
        return {"step": self.step_count, **views}

    def load_state_dict(self, sd):
        shapes = {n: tuple(p.shape) for n, p in self.params}
        check_state_dict(sd, shapes, "ZeroAdamW.load_state_dict")
        for key in ("m", "v"):
            dst = getattr(self, key)
            dst.fill_(0.0)  # alignment gaps and padding rows belong to no parameter and stay zero
            for name, p in self.params:
                off = self.offsets[name]
                a, b = max(off, self.lo), min(off + p.size, self.hi)
                if b > a:
                    src = np.ascontiguousarray(np.asarray(sd[key][name]).reshape(-1)[a - off:b - off])
                    dst[a - self.lo:b - self.lo].copy_(src)
        self.step_count = int(sd["step"])
