"""A key/value cache for incremental decoding, preallocated per (layers, batch slots, max length, heads, head size)."""
from __future__ import annotations

import numpy as np

from gptx import _core


class KVCache:
    """k and v of every layer for `batch` independent sequences ("slots"), each up to `max_len` positions.

    Layout (L, B, Tmax, NH, HS): k[l, b:b+1] is the contiguous (1, Tmax, NH, HS) array that attention_forward's
    separate (KV-cache) layout reads directly, with kv_len = lengths[b]. Each slot has its own length, so sequences of
    different lengths share one cache; rows past a slot's length are stale and never read.
    On CUDA (a model on the GPU) k and v are gptx.Tensors on that device in the compute dtype; lengths stay on the host.
    """

    def __init__(self, n_layer: int, batch: int, n_head: int, max_len: int, head_size: int, device: str = "cpu",
                 dtype: str = "float32"):
        for name, v in (("n_layer", n_layer), ("batch", batch), ("n_head", n_head), ("max_len", max_len),
                        ("head_size", head_size)):
            if int(v) < 1:
                raise ValueError(f"KVCache: {name} must be >= 1, got {v}")
        shape = (int(n_layer), int(batch), int(max_len), int(n_head), int(head_size))
        if device == "cpu" and dtype == "float32":
            self.k = np.zeros(shape, dtype=np.float32)
            self.v = np.zeros(shape, dtype=np.float32)
        else:
            self.k = _core.Tensor.zeros(list(shape), dtype, device)
            self.v = _core.Tensor.zeros(list(shape), dtype, device)
        self.lengths = np.zeros(int(batch), dtype=np.int64)

    @classmethod
    def for_model(cls, model, batch: int, max_len: int | None = None) -> "KVCache":
        c = model.config
        max_len = c.block_size if max_len is None else int(max_len)
        if not 1 <= max_len <= c.block_size:
            raise ValueError(f"KVCache: max_len must be in [1, {c.block_size}] (the model's block_size), got {max_len}")
        return cls(c.n_layer, batch, c.n_head, max_len, c.head_size, getattr(model, "device", "cpu"),
                   getattr(model, "dtype", "float32"))

    @property
    def batch(self) -> int:
        return self.k.shape[1]

    @property
    def max_len(self) -> int:
        return self.k.shape[2]

    def reset(self, slot: int | None = None) -> None:
        """Forget a slot's contents (all slots when slot is None); the memory is kept for reuse."""
        if slot is None:
            self.lengths[:] = 0
        else:
            self.lengths[slot] = 0

    def nbytes(self) -> int:
        return int(self.k.nbytes) + int(self.v.nbytes)
