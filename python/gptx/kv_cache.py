"""A key/value cache for incremental decoding, preallocated per (layers, batch slots, max length, heads, head size)."""
from __future__ import annotations

from gptx import _core


class KVCache:
    """k and v of every layer for `batch` independent sequences ("slots"), each up to `max_len` positions.

    Layout (L, B, Tmax, NH, HS): k[l][b:b+1] is the contiguous (1, Tmax, NH, HS) array that attention_forward's
    separate (KV-cache) layout reads directly, with kv_len = lengths[b]. Each slot has its own length, so sequences of
    different lengths share one cache; rows past a slot's length are stale and never read.
    k and v are gptx.Tensors on the model's device in its compute dtype. lengths is an int64 gptx.Tensor on the host
    whatever the device: positions are bookkeeping that the sampling loop reads every step (np.asarray(lengths)
    views it), and the C++ cache wraps the same memory.
    """

    def __init__(self, n_layer: int, batch: int, n_head: int, max_len: int, head_size: int, device: str = "cpu",
                 dtype: str = "float32"):
        for name, v in (("n_layer", n_layer), ("batch", batch), ("n_head", n_head), ("max_len", max_len),
                        ("head_size", head_size)):
            if int(v) < 1:
                raise ValueError(f"KVCache: {name} must be >= 1, got {v}")
        shape = (int(n_layer), int(batch), int(max_len), int(n_head), int(head_size))
        self.k = _core.Tensor.zeros(list(shape), dtype, device)
        self.v = _core.Tensor.zeros(list(shape), dtype, device)
        self.lengths = _core.Tensor.zeros([int(batch)], "int64", "cpu")

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
        (self.lengths if slot is None else self.lengths[slot]).fill_(0)

    def nbytes(self) -> int:
        return int(self.k.nbytes) + int(self.v.nbytes)
