"""NCCL for CUDA tensors, loaded at run time with ctypes from the NCCL wheel (nvidia-nccl-cu12 / -cu13) or the system:
nothing here is imported or loaded unless a CUDA tensor is reduced. The communicator's unique id travels over MPI;
collectives run on their own stream, ordered with the compute stream by events in both directions."""
from __future__ import annotations

import ctypes
import glob
import os
import sys

from gptx import _core

# ncclDataType_t / ncclRedOp_t values of nccl.h (stable since NCCL 2.0; bfloat16 since 2.10)
_DTYPES = {"int32": 2, "int64": 4, "float16": 6, "float32": 7, "float64": 8, "bfloat16": 9}
_OPS = {"sum": 0, "max": 2, "min": 3, "avg": 4}
_ITEM = {"int32": 4, "int64": 8, "float16": 2, "float32": 4, "float64": 8, "bfloat16": 2}


class _UniqueId(ctypes.Structure):
    _fields_ = [("internal", ctypes.c_char * 128)]  # NCCL_UNIQUE_ID_BYTES


def _candidates():
    if os.environ.get("GPTX_NCCL_LIBRARY"):
        yield os.environ["GPTX_NCCL_LIBRARY"]
    for base in sys.path:
        yield from sorted(glob.glob(os.path.join(base, "nvidia", "nccl", "lib", "libnccl.so*")))
    yield "libnccl.so.2"
    yield "libnccl.so"


def load_library():
    """The NCCL shared library, or an ImportError saying how to install it."""
    errors = []
    for path in _candidates():
        try:
            lib = ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
        except OSError as e:
            errors.append(str(e))
            continue
        lib.ncclGetErrorString.restype = ctypes.c_char_p
        return lib
    raise ImportError("NCCL was not found: pip install nvidia-nccl-cu12 (or -cu13, matching the CUDA driver), or "
                      "set GPTX_NCCL_LIBRARY to libnccl.so.2" + (f" ({errors[-1]})" if errors else ""))


class NcclComm:
    """One NCCL communicator over all ranks of the MPI group, on CUDA device `device`."""

    def __init__(self, group, device: int):
        self.lib = load_library()
        self.group, self.device = group, int(device)
        self.name = f"cuda:{self.device}"
        uid = _UniqueId()
        if group.rank == 0:
            self._check(self.lib.ncclGetUniqueId(ctypes.byref(uid)), "ncclGetUniqueId")
        raw = bytearray(bytes(uid.internal).ljust(128, b"\0"))
        group.wait(group.comm.Ibcast(raw, root=0), "NCCL id broadcast")
        uid = _UniqueId.from_buffer_copy(bytes(raw))
        self.comm = ctypes.c_void_p()
        _core.cuda_set_device(self.device)  # NCCL binds the communicator to the current device
        self._check(self.lib.ncclCommInitRank(ctypes.byref(self.comm), group.size, uid, group.rank),
                    "ncclCommInitRank")
        self.stream = _core.cuda_stream_create(self.device)

    @property
    def device_name(self):
        return self.name

    def _check(self, result, what):
        if result != 0:
            msg = self.lib.ncclGetErrorString(result).decode(errors="replace")
            self.group.abort(f"{what} failed: NCCL error {result}: {msg}")

    # ---- ordering with the compute stream ---------------------------------------------------------------------------
    def _begin(self):
        """Collectives queued next wait for the compute work queued so far (e.g. the backward that made a bucket)."""
        _core.cuda_stream_wait_stream(self.device, self.stream, _core.cuda_current_stream(self.device))

    def _end(self):
        """Compute work queued next waits for the collectives queued so far (the update reads the sums)."""
        _core.cuda_stream_wait_stream(self.device, _core.cuda_current_stream(self.device), self.stream)

    def _args(self, t):
        dtype = t.dtype
        if dtype not in _DTYPES:
            raise TypeError(f"gptx.distributed: NCCL does not reduce dtype {dtype}")
        return ctypes.c_void_p(t.data_ptr), _DTYPES[dtype], _ITEM[dtype]

    def _ptr(self, t, offset_elems=0):
        return ctypes.c_void_p(t.data_ptr + offset_elems * _ITEM[t.dtype])

    def _grouped(self, calls, what):
        self._check(self.lib.ncclGroupStart(), "ncclGroupStart")
        for fn, args in calls:
            self._check(fn(*args), what)
        self._check(self.lib.ncclGroupEnd(), "ncclGroupEnd")

    # ---- the collectives of gptx.distributed -----------------------------------------------------------------------
    def all_reduce(self, t, op):
        p, dt, _ = self._args(t)
        self._begin()
        self._check(self.lib.ncclAllReduce(p, p, ctypes.c_size_t(t.size), dt, _OPS[op], self.comm,
                                           ctypes.c_void_p(self.stream)), "ncclAllReduce")
        self._end()

    def reduce_scatter(self, t, out, counts, op):
        """Rank r receives the reduced elements [sum(counts[:r]), sum(counts[:r+1])): one ncclReduce per rank,
        grouped (ncclReduceScatter needs equal counts)."""
        _, dt, _ = self._args(t)
        calls, start = [], 0
        for r, c in enumerate(counts):
            recv = self._ptr(out) if r == self.group.rank else self._ptr(t, start)
            calls.append((self.lib.ncclReduce, (self._ptr(t, start), recv, ctypes.c_size_t(c), dt, _OPS[op], r,
                                                self.comm, ctypes.c_void_p(self.stream))))
            start += c
        self._begin()
        self._grouped(calls, "ncclReduce")
        self._end()

    def all_gather(self, t, out, counts):
        _, dt, _ = self._args(t)
        calls, start = [], 0
        for r, c in enumerate(counts):
            send = self._ptr(t) if r == self.group.rank else self._ptr(out, start)
            calls.append((self.lib.ncclBroadcast, (send, self._ptr(out, start), ctypes.c_size_t(c), dt, r, self.comm,
                                                   ctypes.c_void_p(self.stream))))
            start += c
        self._begin()
        self._grouped(calls, "ncclBroadcast")
        self._end()

    def all_gather_into(self, buf, counts):
        _, dt, _ = self._args(buf)
        calls, start = [], 0
        for r, c in enumerate(counts):
            p = self._ptr(buf, start)
            calls.append((self.lib.ncclBroadcast, (p, p, ctypes.c_size_t(c), dt, r, self.comm,
                                                   ctypes.c_void_p(self.stream))))
            start += c
        self._begin()
        self._grouped(calls, "ncclBroadcast")
        self._end()

    def broadcast(self, t, root):
        p, dt, _ = self._args(t)
        self._begin()
        self._check(self.lib.ncclBroadcast(p, p, ctypes.c_size_t(t.size), dt, root, self.comm,
                                           ctypes.c_void_p(self.stream)), "ncclBroadcast")
        self._end()

    def launcher(self, gbuf, shard_buf):
        return _NcclLauncher(self, gbuf, shard_buf)


class _NcclLauncher:
    """GradReducer's buckets on NCCL: each launch waits (on the GPU) for the backward work queued before it, so the
    sums of finished blocks run while later blocks' backward kernels still run on the compute stream."""

    def __init__(self, nc: NcclComm, gbuf, shard_buf):
        self.nc, self.g, self.s = nc, gbuf, shard_buf

    def all_reduce(self, lo, hi):
        nc = self.nc
        p = nc._ptr(self.g, lo)
        nc._begin()
        nc._check(nc.lib.ncclAllReduce(p, p, ctypes.c_size_t(hi - lo), _DTYPES["float32"], _OPS["sum"], nc.comm,
                                       ctypes.c_void_p(nc.stream)), "ncclAllReduce")
        return None

    def reduce_scatter(self, lo, hi, counts, out_lo, out_hi):
        nc = self.nc
        calls, start = [], lo
        for r, c in enumerate(counts):
            if c:
                recv = nc._ptr(self.s, out_lo) if r == nc.group.rank else nc._ptr(self.g, start)
                calls.append((nc.lib.ncclReduce, (nc._ptr(self.g, start), recv, ctypes.c_size_t(c),
                                                  _DTYPES["float32"], _OPS["sum"], r, nc.comm,
                                                  ctypes.c_void_p(nc.stream))))
            start += c
        nc._begin()
        nc._grouped(calls, "ncclReduce")
        return None

    def progress(self, requests):
        pass  # NCCL progresses on the GPU by itself

    def finish(self, requests):
        self.nc._end()
