"""The buffers one forward/backward pass of a GPT needs at a given (B, T), allocated once and reused every step."""
from __future__ import annotations

import numpy as np

from gptx import _core


class Activations:
    """Every activation backward needs, stacked over layers (L, B, T, ...) like llm.c, plus backward scratch.

    Per layer and token this keeps 12 C floats (ln1, qkv, attention out, residual after attention, ln2, fc) and two
    layernorm statistics; the GELU output (4 C) is not kept but recomputed in backward (one elementwise pass), which
    saves a quarter of the activation memory: B8 T1024 GPT-2 small keeps 12 * 8192 * 12 * 768 * 4 B = 3.6 GB instead
    of 4.8 GB. The logits (B*T, Vp) are the one large buffer; backward overwrites them with their own gradient.
    """

    def __init__(self, B: int, T: int, n_layer: int, n_head: int, n_embd: int, padded_vocab: int,
                 device: str = "cpu", dtype: str = "float32"):
        L, C, NH, HS = n_layer, n_embd, n_head, n_embd // n_head
        self.shape = (B, T)
        self._device, self._dtype = device, dtype
        self._owned = []  # every buffer allocated here (views excluded), for nbytes()
        # Activations (`buf`) are in the compute dtype; statistics saved for backward (`stat`) are float32.
        buf = lambda *shape: self._alloc(shape, dtype)  # noqa: E731
        stat = lambda *shape: self._alloc(shape, "float32")  # noqa: E731

        self.idx = self._alloc((B, T), "int32")
        self.targets = self._alloc((B, T), "int32")
        self.encoded = buf(B, T, C)  # wte[idx] + wpe: the input of layer 0
        self.ln1 = buf(L, B, T, C)
        self.ln1_mean, self.ln1_rstd = stat(L, B, T), stat(L, B, T)
        self.qkv = buf(L, B, T, 3 * C)
        self.atty = buf(L, B, T, NH, HS)
        self.att_lse = stat(L, B, NH, T)
        self.res2 = buf(L, B, T, C)  # residual after attention
        self.ln2 = buf(L, B, T, C)
        self.ln2_mean, self.ln2_rstd = stat(L, B, T), stat(L, B, T)
        self.fch = buf(L, B, T, 4 * C)  # c_fc output, the GELU input
        self.res3 = buf(L, B, T, C)  # residual after the MLP: the next layer's input
        self.lnf = buf(B, T, C)
        self.lnf_mean, self.lnf_rstd = stat(B, T), stat(B, T)
        self.logits = buf(B * T, padded_vocab)
        self.losses, self.ce_lse = stat(B * T), stat(B * T)
        self.dlosses = stat(B * T)
        # Shared scratch: the GELU output in forward, then dfch in backward (gelu_backward works in place).
        self.scratch4 = buf(B, T, 4 * C)
        # Packed attention views: c_attn's (B, T, 3C) output is the (B, T, 3, NH, HS) layout the kernel reads.
        self.qkv5 = self.qkv.reshape(L, B, T, 3, NH, HS)
        self.atty3 = self.atty.reshape(L, B, T, C)
        self._grad_scratch = None
        self._sizes = (B, T, C, NH, HS)

    def _alloc(self, shape, dtype: str):
        """An uninitialised buffer on the model's device: numpy on the CPU (the ops view it), gptx.Tensor on CUDA."""
        if self._device == "cpu":
            a = np.zeros(shape, dtype=np.int32) if dtype == "int32" else np.empty(shape, dtype=np.dtype(dtype))
        else:
            a = _core.Tensor.empty(list(shape), dtype, self._device)
        self._owned.append(a)
        return a

    def layer_input(self, layer: int) -> np.ndarray:
        return self.encoded if layer == 0 else self.res3[layer - 1]

    def final(self) -> np.ndarray:
        return self.res3[-1] if len(self.res3) else self.encoded

    def grad_scratch(self):
        """(dres, dx, dqkv, dqkv5): the residual-stream gradient and per-layer scratch, allocated on first backward."""
        if self._grad_scratch is None:
            B, T, C, NH, HS = self._sizes
            dqkv = self._alloc((B, T, 3 * C), self._dtype)
            self._grad_scratch = (
                self._alloc((B, T, C), self._dtype),
                self._alloc((B, T, C), self._dtype),
                dqkv,
                dqkv.reshape(B, T, 3, NH, HS),
            )
        return self._grad_scratch

    def nbytes(self) -> int:
        return sum(int(a.nbytes) for a in self._owned)
