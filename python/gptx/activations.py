"""The buffers one forward/backward pass of a GPT needs at a given (B, T), allocated once and reused every step."""
from __future__ import annotations

from gptx import _core


class Activations:
    """Every activation backward needs, stacked over layers (L, B*T, ...) like llm.c, plus backward scratch.

    Per layer and token this keeps 12 C floats (ln1, qkv, attention out, residual after attention, ln2, fc) and two
    layernorm statistics; the GELU output (4 C) is not kept but recomputed in backward (one elementwise pass), which
    saves a quarter of the activation memory: B8 T1024 GPT-2 small keeps 12 * 8192 * 12 * 768 * 4 B = 3.6 GB instead
    of 4.8 GB. The logits (B*T, Vp) are the one large buffer; backward overwrites them with their own gradient.

    Every buffer is a gptx.Tensor on the model's device. Rows are tokens: (B*T, X), the 2-D form the matmuls need;
    the per-layer views (`ln1[l]`, ...) and the few 3-D+ views the embedding and attention ops read are made here
    once, so a training step creates no views (each is a call into the extension: ~200 per step at 12 layers).
    """

    def __init__(self, B: int, T: int, n_layer: int, n_head: int, n_embd: int, padded_vocab: int,
                 device: str = "cpu", dtype: str = "float32"):
        L, C, NH, HS, BT = n_layer, n_embd, n_head, n_embd // n_head, B * T
        self.shape = (B, T)
        self._device, self._dtype = device, dtype
        self._owned = []  # every buffer allocated here (views excluded), for nbytes()
        # Activations (`buf`) are in the compute dtype; statistics saved for backward (`stat`) are float32.
        buf = lambda *shape: self._alloc(shape, dtype)  # noqa: E731
        stat = lambda *shape: self._alloc(shape, "float32")  # noqa: E731
        per_layer = lambda t: [t[l] for l in range(L)]  # noqa: E731

        # Token ids stay on the host whatever the device: the model checks them there once per batch, and a CUDA op
        # given host ids range-checks them in place and uploads them itself. Device ids would be checked through a
        # device-to-host copy, one sync in each of the 4 ops that read them per step.
        self.idx = self._alloc((B, T), "int32", zero=True, device="cpu")
        self.targets = self._alloc((BT,), "int32", zero=True, device="cpu")
        self.encoded = buf(BT, C)  # wte[idx] + wpe: the input of layer 0
        self.encoded3 = self.encoded.reshape(B, T, C)  # the embedding ops' (B, T, C) form
        self.ln1 = per_layer(buf(L, BT, C))
        self.ln1_mean, self.ln1_rstd = per_layer(stat(L, BT)), per_layer(stat(L, BT))
        qkv = buf(L, BT, 3 * C)
        self.qkv = per_layer(qkv)
        # Packed attention view: c_attn's (B*T, 3C) output is the (B, T, 3, NH, HS) layout the kernel reads.
        self.qkv5 = per_layer(qkv.reshape(L, B, T, 3, NH, HS))
        atty = buf(L, B, T, NH, HS)
        self.atty = per_layer(atty)
        self.atty2 = per_layer(atty.reshape(L, BT, C))  # the same, as c_proj's (B*T, C) input
        self.att_lse = per_layer(stat(L, B, NH, T))
        self.res2 = per_layer(buf(L, BT, C))  # residual after attention
        self.ln2 = per_layer(buf(L, BT, C))
        self.ln2_mean, self.ln2_rstd = per_layer(stat(L, BT)), per_layer(stat(L, BT))
        self.fch = per_layer(buf(L, BT, 4 * C))  # c_fc output, the GELU input
        self.res3 = per_layer(buf(L, BT, C))  # residual after the MLP: the next layer's input
        self.lnf = buf(BT, C)
        self.lnf_mean, self.lnf_rstd = stat(BT), stat(BT)
        self.logits = buf(BT, padded_vocab)
        self.losses, self.ce_lse = stat(BT), stat(BT)
        self.dlosses = stat(BT)
        self.dlosses_value = None  # the value dlosses was last filled with (backward's 1/count)
        # Shared scratch: the GELU output in forward, then dfch in backward (gelu_backward works in place).
        self.scratch4 = buf(BT, 4 * C)
        self._grad_scratch = None
        self._dropout_scratch = None
        self._sizes = (B, T, C, NH, HS)

    def _alloc(self, shape, dtype: str, zero: bool = False, device: str | None = None):
        """A buffer on the model's device (or `device`), uninitialised unless `zero` (token ids: never garbage)."""
        make = _core.Tensor.zeros if zero else _core.Tensor.empty
        t = make(list(shape), dtype, self._device if device is None else device)
        self._owned.append(t)
        return t

    def layer_input(self, layer: int):
        return self.encoded if layer == 0 else self.res3[layer - 1]

    def final(self):
        return self.res3[-1] if self.res3 else self.encoded

    def grad_scratch(self):
        """(dres, dres3, dx, dx4, dqkv, dqkv5), allocated on first backward: the residual-stream gradient (B*T, C)
        and its (B, T, C) view for embedding_backward, per-layer scratch dx (B*T, C) and its (B, T, NH, HS) view for
        attention_backward, and dqkv (B*T, 3C) with its packed (B, T, 3, NH, HS) view."""
        if self._grad_scratch is None:
            B, T, C, NH, HS = self._sizes
            dres = self._alloc((B * T, C), self._dtype)
            dx = self._alloc((B * T, C), self._dtype)
            dqkv = self._alloc((B * T, 3 * C), self._dtype)
            self._grad_scratch = (dres, dres.reshape(B, T, C), dx, dx.reshape(B, T, NH, HS), dqkv,
                                  dqkv.reshape(B, T, 3, NH, HS))
        return self._grad_scratch

    def dropout_scratch(self):
        """(B*T, C): a residual branch's gradient after its dropout mask, allocated on the first backward with
        dropout (the residual stream's own gradient must stay intact for the other path)."""
        if self._dropout_scratch is None:
            B, T, C, _, _ = self._sizes
            self._dropout_scratch = self._alloc((B * T, C), self._dtype)
        return self._dropout_scratch

    def nbytes(self) -> int:
        return sum(int(a.nbytes) for a in self._owned)
