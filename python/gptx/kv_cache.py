"""A key/value cache for incremental decoding, preallocated per (layers, batch slots, max length, heads, head size)."""
from __future__ import annotations

from gptx import _core
from gptx.config import native_config


class KVCache:
    """k and v of every layer for `batch` independent sequences ("slots"), each up to `max_len` positions.

    Layout (L, B, Tmax, NH, HS): k[l][b:b+1] is the contiguous (1, Tmax, NH, HS) array that attention_forward's
    separate (KV-cache) layout reads directly, with kv_len = lengths[b]. Each slot has its own length, so sequences of
    different lengths share one cache; rows past a slot's length are stale and never read.
    k and v are gptx.Tensors on the model's device in its compute dtype. lengths is an int64 gptx.Tensor on the host
    whatever the device: positions are bookkeeping that the sampling loop reads every step (np.asarray(lengths)
    views it), and the C++ cache wraps the same memory.
    """

    def __init__(self, n_layer: int, batch: int, max_len: int, n_head: int, head_size: int, device: str = "cpu",
                 dtype: str = "float32"):
        # The sizes come in the layout's order (gptx._core.kv_cache_shape, gptx::KVCache): (L, B, Tmax, NH, HS).
        shape = tuple(int(v) for v in (n_layer, batch, max_len, n_head, head_size))
        for name, v in zip(("n_layer", "batch", "max_len", "n_head", "head_size"), shape):
            if v < 1:
                raise ValueError(f"KVCache: {name} must be >= 1, got {v}")
        self.k = _core.Tensor.zeros(list(shape), dtype, device)
        self.v = _core.Tensor.zeros(list(shape), dtype, device)
        self.lengths = _core.Tensor.zeros([shape[1]], "int64", "cpu")

    @classmethod
    def for_model(cls, model, batch: int, max_len: int | None = None) -> "KVCache":
        """A cache laid out for model (max_len None: its block_size), in its compute dtype and on its device."""
        shape = _core.kv_cache_shape(native_config(model.config), int(batch), -1 if max_len is None else int(max_len))
        return cls(*shape, getattr(model, "device", "cpu"), getattr(model, "dtype", "float32"))

    @property
    def batch(self) -> int:
        return self.k.shape[1]

    @property
    def max_len(self) -> int:
        return self.k.shape[2]

    def reset(self, slot: int | None = None) -> None:
        """Forget a slot's contents (all slots when slot is None); the memory is kept for reuse."""
        (self.lengths if slot is None else self.lengths[slot]).fill_(0)

    def copy_slots(self, dst, src, first_row: int = 0) -> None:
        """Slot dst[i] takes slot src[i]'s length and its keys/values from position first_row on, all at once (every
        source is read before any destination is written; a source may feed several destinations). Beam search
        reorders its beams with it after each step, without recomputing anything; first_row skips the prompt rows
        that every beam of a prompt already shares. Done by the C++ cache (gptx::KVCache::copy_slots): device copies
        of the valid rows only."""
        from gptx.inference import _native_cache  # the C++ view of these tensors (inference imports this module)

        _native_cache(self).copy_slots([int(d) for d in dst], [int(s) for s in src], int(first_row))

    def nbytes(self) -> int:
        return int(self.k.nbytes) + int(self.v.nbytes)
