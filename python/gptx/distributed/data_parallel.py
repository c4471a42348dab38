"""What the Trainer needs to train data-parallel: the gradient reducer, the small host-side agreements between
ranks (losses, flags, the ZeRO-1 norm), rank-0-only checkpoints, and the start-up check that every rank runs the
same job."""
from __future__ import annotations

import json
import math
import zlib

import numpy as np

from gptx import distributed as dist, ops
from gptx._host import host_copy
from gptx.checkpoint import save_checkpoint
from gptx.distributed.grad_reduce import GradReducer

# TrainConfig fields a rank may set for itself: where its output goes (only rank 0 writes), its bar, its threads, its
# clock (ranks agree on stopping every step).
_PER_RANK = ("out_dir", "progress", "threads", "max_seconds")


class DistributedMismatch(ValueError):
    """Ranks were started with different models, data, settings or gptx versions."""


class DataParallel:
    def __init__(self, model, config):
        if getattr(model, "flat_buffers", None) is None or getattr(model, "grad_layer_starts", None) is None:
            raise TypeError("data-parallel training needs a model with flat_buffers() and grad_layer_starts() "
                            "(gptx.GPT)")
        self.group = dist._g()
        self.model, self.cfg = model, config
        self.reducer = None
        self.trainer = None

    def attach(self, trainer):
        """Called once the Trainer has its optimizer: checks the ranks agree, then builds the reducer."""
        self.trainer = trainer
        check_same_job(trainer)
        opt = trainer.opt
        if self.cfg.zero:
            self.reducer = GradReducer(self.model, self.cfg.bucket_mb, (opt.lo, opt.hi), opt.grad_shard)
        else:
            self.reducer = GradReducer(self.model, self.cfg.bucket_mb)

    # ---- small agreements on the host ------------------------------------------------------------------------------
    def _allreduce(self, values: np.ndarray, op) -> np.ndarray:
        out = np.ascontiguousarray(values, dtype=np.float64).copy()
        self.group.wait(self.group.comm.Iallreduce(self.group.MPI.IN_PLACE, out, op=op), "all_reduce")
        return out

    def any(self, flag: bool) -> bool:
        return bool(self._allreduce(np.array([1.0 if flag else 0.0]), self.group.MPI.MAX)[0])

    def sum(self, values) -> np.ndarray:
        return self._allreduce(values, self.group.MPI.SUM)

    def mean(self, values) -> np.ndarray:
        return self.sum(values) / self.group.size

    def weighted_mean(self, means, counts, totals) -> np.ndarray:
        """Means over the global batches from each rank's means over its `counts` targets (of `totals` in all): what
        one process would compute (NaN where no rank counted anything, its mean of nothing). A rank with no counted
        target contributes nothing (its own mean is NaN)."""
        means, counts, totals = (np.asarray(a, dtype=np.float64) for a in (means, counts, totals))
        part = np.where(counts > 0, means * counts / np.where(totals > 0, totals, 1.0), 0.0)
        return np.where(totals > 0, self.sum(part), np.nan)

    def shard_norm(self, grad_shard, out):
        """The global L2 norm of the summed gradients from each rank's shard (ZeRO-1) written into `out`: the root
        of the sum over ranks of the squared shard norms."""
        local = 0.0
        if grad_shard.shape[0]:
            ops.global_norm([grad_shard], out=out)
            local = float(host_copy(out))
        total = self._allreduce(np.array([local * local]), self.group.MPI.SUM)[0]
        out.copy_(np.array(math.sqrt(total) if math.isfinite(total) else math.nan, dtype=np.float32))

    def take_comm_s(self) -> float:
        """Seconds this step spent launching and waiting for collectives (the gradient sums, and under ZeRO-1 the
        parameter all-gather)."""
        s, self.reducer.comm_s = self.reducer.comm_s, 0.0
        opt = self.trainer.opt
        if hasattr(opt, "comm_s"):
            s, opt.comm_s = s + opt.comm_s, 0.0
        return s

    def barrier(self):
        dist.barrier()

    # ---- checkpoints ---------------------------------------------------------------------------------------------
    def save(self, out_dir):
        """One checkpoint whatever N: the optimizer state gathered (ZeRO-1) and written by rank 0 alone. A failure
        on rank 0 reaches every rank as the same OSError, so all of them stop the same way."""
        t = self.trainer
        osd = t.opt.state_dict()  # a collective under ZeRO-1
        result = None
        if self.group.rank == 0:
            try:
                path = save_checkpoint(out_dir, self.model, _Gathered(osd, t.opt), state=t.state(),
                                       tokenizer=t.tokenizer, keep=t.cfg.keep_checkpoints)
                result = ("ok", str(path))
            except OSError as e:
                result = ("error", str(e))
                dist.broadcast_object(result)
                raise
        result = dist.broadcast_object(result)
        if result[0] == "error":
            raise OSError(f"rank 0 could not write the checkpoint: {result[1]}")
        from pathlib import Path

        return Path(result[1])


class _Gathered:
    """The optimizer as save_checkpoint sees it: the gathered state and the hyperparameters."""

    def __init__(self, osd, opt):
        self._osd, self._opt, self.step_count = osd, opt, osd["step"]

    def state_dict(self):
        return self._osd

    def hparams(self):
        return self._opt.hparams()


def resume_overrides(ck, cfg, overrides: dict) -> None:
    """Trainer.resume's overrides for a checkpoint saved with another number of ranks: the per-rank batch that keeps
    the global batch (so the run continues with the same sequence of global batches), and no ZeRO-1 in one process
    (it describes how a run was spread over ranks, not the run itself)."""
    saved_world, world = int(ck.state.get("world_size", 1)), dist.world_size()
    if not dist.is_initialized():
        overrides.setdefault("zero", 0)
    if "batch_size" not in overrides and saved_world != world:
        global_batch = cfg.batch_size * saved_world
        if global_batch % world:
            raise ValueError(f"checkpoint {ck.path} was trained with a global batch of {global_batch} "
                             f"({saved_world} x {cfg.batch_size}), which {world} ranks cannot split evenly; "
                             f"pass batch_size to choose another")
        overrides["batch_size"] = global_batch // world


# ---- the start-up check ---------------------------------------------------------------------------------------------
def _crc(a) -> int:
    return zlib.crc32(np.ascontiguousarray(a).view(np.uint8)) if np.asarray(a).size else 0


def data_fingerprint(data):
    """What identifies a dataset cheaply: its type, length, a checksum of its first and last tokens or examples, and
    its resumable position."""
    if data is None:
        return None
    fp = {"type": type(data).__name__}
    try:
        fp["len"] = len(data)
    except TypeError:
        pass
    tokens = getattr(data, "tokens", None)
    if tokens is not None and len(tokens):
        head, tail = np.asarray(tokens[:4096]), np.asarray(tokens[max(0, len(tokens) - 4096):])
        fp["crc"] = [_crc(head.astype(np.int64)), _crc(tail.astype(np.int64))]
    examples = getattr(data, "examples", None)
    if examples is not None and len(examples):
        fp["crc"] = [_crc(np.asarray(part, dtype=np.int64)) for ex in (examples[0], examples[-1]) for part in ex]
    if hasattr(data, "state_dict"):
        fp["state"] = json.loads(json.dumps(data.state_dict(), default=str))
    return fp


def job_fingerprint(trainer) -> dict:
    import gptx

    pbuf, _ = trainer.model.flat_buffers()
    train = {k: v for k, v in trainer.cfg.to_dict().items() if k not in _PER_RANK}
    return {"gptx version": gptx.__version__, "model config": trainer.model.config.to_dict(),
            "model weights (crc32)": _crc(host_copy(pbuf)), "model dtype": getattr(trainer.model, "dtype", None),
            "train config": train, "training data": data_fingerprint(trainer.train_data),
            "validation data": data_fingerprint(trainer.val_data), "step": trainer.step}


def _flatten(d, prefix=""):
    out = {}
    for k, v in (d.items() if isinstance(d, dict) else []):
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def check_same_job(trainer):
    """Every rank's fingerprint against rank 0's: a DistributedMismatch on every rank (the same message) naming the
    ranks and what differs, instead of a run whose ranks silently train different things."""
    everyone = dist.all_gather_object(job_fingerprint(trainer))
    ref = _flatten(everyone[0])
    problems = []
    for r, fp in enumerate(everyone[1:], start=1):
        mine = _flatten(fp)
        diff = [k for k in sorted(set(ref) | set(mine)) if ref.get(k) != mine.get(k)]
        if diff:
            shown = "; ".join(f"{k}: {mine.get(k)!r} vs {ref.get(k)!r}" for k in diff[:4])
            problems.append(f"rank {r} differs from rank 0 in {shown}" + (" ..." if len(diff) > 4 else ""))
    if problems:
        raise DistributedMismatch("the ranks were not started with the same job (model, data, settings, seed and "
                                  "gptx version must agree): " + " | ".join(problems))
