"""gptx.distributed: data-parallel training across processes. MPI (mpi4py) carries CPU tensors, NCCL carries CUDA
tensors; neither is needed to import gptx or to train in one process.

    import gptx.distributed as dist
    dist.init()                       # once per process, under `mpiexec -n N python train.py`
    dist.all_reduce(grads, op="avg")  # any contiguous gptx.Tensor (or numpy array), in place

Every collective must be called by every rank in the same order (the MPI rule). A collective that waits longer than
GPTX_DIST_TIMEOUT seconds (default 300) aborts the whole job naming the rank that gave up, and an uncaught exception
on any rank aborts the job too, so a failure never leaves the other ranks hanging.
"""
from __future__ import annotations

import numpy as np

from gptx import _core
from gptx.distributed._comm import launched_by_mpi

_group = None
_nccl = {}  # device index -> NcclComm

OPS = ("sum", "avg", "max", "min")
SHARD_ALIGN = 16  # floats: shard boundaries on 64-byte lines, like every parameter in the flat buffer


def init(device: str | None = None):
    """Join the job (MPI_Init through mpi4py) and return the process group; calling it again returns the same group.

    device "cuda" / "cuda:N" also makes the NCCL communicator for CUDA tensors (its id is broadcast over MPI); "cuda"
    picks the GPU local_rank() % (visible GPUs): one rank per GPU. Raises ImportError when mpi4py is missing.

    With several ranks on one node, each rank's CPU threads default to the node's cores divided by its ranks (unless
    OMP_NUM_THREADS says otherwise): N ranks of all-cores thread pools would fight over the same cores."""
    global _group
    if _group is None:
        import os

        from gptx import _core
        from gptx.distributed._comm import Group, install_excepthook

        _group = Group()
        install_excepthook(_group)
        if _group.local_size > 1 and "OMP_NUM_THREADS" not in os.environ:
            try:
                cores = len(os.sched_getaffinity(0))
            except AttributeError:
                cores = os.cpu_count() or 1
            _core.set_num_threads(max(1, cores // _group.local_size))
    if device is not None and str(device).startswith("cuda"):
        nccl_comm(device)
    return _group


def is_initialized() -> bool:
    return _group is not None


def _g():
    if _group is None:
        raise RuntimeError("gptx.distributed: call gptx.distributed.init() first")
    return _group


def rank() -> int:
    """This process's rank (0 when distributed is not initialized)."""
    return 0 if _group is None else _group.rank


def world_size() -> int:
    """The number of ranks (1 when distributed is not initialized)."""
    return 1 if _group is None else _group.size


def local_rank() -> int:
    """This process's rank among the ranks on its node."""
    return 0 if _group is None else _group.local_rank


def local_size() -> int:
    """Ranks on this node (what the CPU cores are shared by)."""
    return 1 if _group is None else _group.local_size


def is_main() -> bool:
    """Rank 0: the one that prints, logs and writes checkpoints."""
    return rank() == 0


def abort(message: str, code: int = 1):
    """End every rank of the job with `message` (printed by this rank); a no-op exit in one process."""
    if _group is None:
        raise SystemExit(f"gptx.distributed: {message}")
    _group.abort(message, code)


def shard_range(n: int, rank_: int | None = None, world: int | None = None) -> tuple[int, int]:
    """[begin, end) of rank_'s part of n elements: equal parts rounded up to SHARD_ALIGN, the last ones shorter (or
    empty). The split ZeRO-1 and reduce_scatter use."""
    world = world_size() if world is None else int(world)
    rank_ = rank() if rank_ is None else int(rank_)
    per = -(-n // world)
    per = -(-per // SHARD_ALIGN) * SHARD_ALIGN
    return min(n, rank_ * per), min(n, (rank_ + 1) * per)


# ---- collectives -------------------------------------------------------------------------------------------------
def _is_cuda(t) -> bool:
    return isinstance(t, _core.Tensor) and str(t.device).startswith("cuda")


def _host_view(t, what: str) -> np.ndarray:
    """A numpy array over t's memory (no copy) for MPI to read and write."""
    a = np.asarray(t)
    if not a.flags.c_contiguous:
        raise ValueError(f"gptx.distributed.{what}: the tensor must be contiguous")
    if a.dtype not in (np.float32, np.float64, np.int32, np.int64):
        raise TypeError(f"gptx.distributed.{what}: dtype {a.dtype} is not supported (float32, float64, int32, int64)")
    return a


def _check_op(op: str, what: str):
    if op not in OPS:
        raise ValueError(f"gptx.distributed.{what}: op must be one of {OPS}, got {op!r}")


def _mpi_op(MPI, op):
    return {"sum": MPI.SUM, "avg": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN}[op]


def all_reduce(t, op: str = "sum"):
    """Reduce t over all ranks in place (every rank ends with the result); returns t."""
    _check_op(op, "all_reduce")
    g = _g()
    if _is_cuda(t):
        nccl_comm(t.device).all_reduce(t, op)
        return t
    a = _host_view(t, "all_reduce")
    g.wait(g.comm.Iallreduce(g.MPI.IN_PLACE, a, op=_mpi_op(g.MPI, op)), "all_reduce")
    if op == "avg":
        a /= a.dtype.type(g.size)
    return t


def _counts(n: int, counts, what: str) -> list[int]:
    g = _g()
    if counts is None:
        return [b - a for a, b in (shard_range(n, r, g.size) for r in range(g.size))]
    counts = [int(c) for c in counts]
    if len(counts) != g.size or any(c < 0 for c in counts) or sum(counts) != n:
        raise ValueError(f"gptx.distributed.{what}: counts must be {g.size} numbers >= 0 adding up to {n}, got "
                         f"{counts}")
    return counts


def reduce_scatter(t, counts=None, out=None, op: str = "sum"):
    """Reduce the 1-D t over all ranks and give rank r only its part: elements [sum(counts[:r]), sum(counts[:r+1]))
    (counts default: shard_range's split). Returns the part (a new tensor, or `out`)."""
    _check_op(op, "reduce_scatter")
    g = _g()
    if len(t.shape) != 1:
        raise ValueError(f"gptx.distributed.reduce_scatter: t must be 1-D, got shape {tuple(t.shape)}")
    counts = _counts(int(t.shape[0]), counts, "reduce_scatter")
    mine = counts[g.rank]
    if out is None:
        out = _core.Tensor.empty([mine], t.dtype, t.device) if isinstance(t, _core.Tensor) else \
            np.empty(mine, dtype=np.asarray(t).dtype)
    if tuple(out.shape) != (mine,):
        raise ValueError(f"gptx.distributed.reduce_scatter: out must have shape ({mine},), got {tuple(out.shape)}")
    if _is_cuda(t):
        nccl_comm(t.device).reduce_scatter(t, out, counts, op)
        return out
    a, o = _host_view(t, "reduce_scatter"), _host_view(out, "reduce_scatter")
    g.wait(g.comm.Ireduce_scatter(a, o, counts, op=_mpi_op(g.MPI, op)), "reduce_scatter")
    if op == "avg":
        o /= o.dtype.type(g.size)
    return out


def all_gather(t, out=None):
    """The ranks' tensors concatenated along dim 0 in rank order, on every rank. Their first dimensions may differ;
    the other dimensions must agree. Returns a new tensor, or `out`."""
    g = _g()
    a_shape = tuple(t.shape) if len(t.shape) else (1,)
    sizes = all_gather_object(a_shape)
    if any(s[1:] != a_shape[1:] for s in sizes):
        raise ValueError(f"gptx.distributed.all_gather: ranks hold shapes {sizes}; all but the first dimension must "
                         f"agree")
    total = (sum(s[0] for s in sizes),) + a_shape[1:]
    if out is None:
        out = _core.Tensor.empty(list(total), t.dtype, t.device) if isinstance(t, _core.Tensor) else \
            np.empty(total, dtype=np.asarray(t).dtype)
    if tuple(out.shape) != total:
        raise ValueError(f"gptx.distributed.all_gather: out must have shape {total}, got {tuple(out.shape)}")
    inner = int(np.prod(a_shape[1:], dtype=np.int64))
    counts = [s[0] * inner for s in sizes]
    if _is_cuda(t):
        nccl_comm(t.device).all_gather(t, out, counts)
        return out
    a, o = _host_view(t, "all_gather"), _host_view(out, "all_gather")
    displs = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int).tolist()
    g.wait(g.comm.Iallgatherv(a, [o, (counts, displs)]), "all_gather")
    return out


def all_gather_into(buf, counts=None):
    """In-place all-gather of a 1-D buffer split as reduce_scatter splits it: each rank's part is already in place,
    every rank ends with all of it (ZeRO-1's parameter gather). Returns buf."""
    g = _g()
    n = int(buf.shape[0])
    counts = _counts(n, counts, "all_gather_into")
    if _is_cuda(buf):
        nccl_comm(buf.device).all_gather_into(buf, counts)
        return buf
    a = _host_view(buf, "all_gather_into")
    displs = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int).tolist()
    g.wait(g.comm.Iallgatherv(g.MPI.IN_PLACE, [a, (counts, displs)]), "all_gather")
    return buf


def broadcast(t, root: int = 0):
    """Copy root's t into every rank's t (in place); returns t."""
    g = _g()
    if not 0 <= root < g.size:
        raise ValueError(f"gptx.distributed.broadcast: root must be in [0, {g.size}), got {root}")
    if _is_cuda(t):
        nccl_comm(t.device).broadcast(t, root)
        return t
    a = _host_view(t, "broadcast")
    g.wait(g.comm.Ibcast(a, root=root), "broadcast")
    return t


def broadcast_object(obj, root: int = 0):
    """A picklable object from root, on every rank."""
    g = _g()
    import pickle

    data = np.frombuffer(pickle.dumps(obj), dtype=np.uint8) if g.rank == root else None
    n = np.array([0 if data is None else data.size], dtype=np.int64)
    g.wait(g.comm.Ibcast(n, root=root), "broadcast")
    buf = data.copy() if data is not None else np.empty(int(n[0]), dtype=np.uint8)
    g.wait(g.comm.Ibcast(buf, root=root), "broadcast")
    return pickle.loads(buf.tobytes())


def all_gather_object(obj) -> list:
    """Every rank's picklable object, in rank order, on every rank."""
    g = _g()
    import pickle

    data = np.frombuffer(pickle.dumps(obj), dtype=np.uint8)
    sizes = np.zeros(g.size, dtype=np.int64)
    g.wait(g.comm.Iallgather(np.array([data.size], dtype=np.int64), sizes), "all_gather")
    out = np.empty(int(sizes.sum()), dtype=np.uint8)
    displs = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int).tolist()
    g.wait(g.comm.Iallgatherv(data, [out, (sizes.tolist(), displs)]), "all_gather")
    return [pickle.loads(out[d:d + s].tobytes()) for d, s in zip(displs, sizes.tolist())]


def barrier():
    """Wait until every rank gets here."""
    g = _g()
    g.wait(g.comm.Ibarrier(), "barrier")


def nccl_comm(device):
    """The NCCL communicator of this job on CUDA device `device` (made on first use)."""
    from gptx import cuda
    from gptx.distributed.nccl import NcclComm

    if str(device) == "cuda":
        if local_size() > cuda.device_count():
            raise RuntimeError(f"gptx.distributed: {local_size()} ranks on this node but {cuda.device_count()} CUDA "
                               f"device(s) visible: NCCL takes one GPU per rank (start at most that many ranks)")
        index = local_rank()
    else:
        index = cuda._index(device)
    if index not in _nccl:
        _nccl[index] = NcclComm(_g(), index)
    return _nccl[index]


__all__ = ["init", "is_initialized", "rank", "world_size", "local_rank", "local_size", "is_main", "abort",
           "shard_range", "all_reduce", "reduce_scatter", "all_gather", "all_gather_into", "broadcast",
           "broadcast_object", "all_gather_object", "barrier", "launched_by_mpi", "nccl_comm", "OPS"]
