"""GPT-2 on the gptx.ops kernels: GPTConfig, parameters under Hugging Face names, explicit forward and backward."""
from __future__ import annotations

import math
import os
import threading
from pathlib import Path

import numpy as np

from gptx import _core, cuda, ops
from gptx._host import host_copy, host_values
from gptx.activations import Activations
# GPTConfig and parameter_shapes are defined in gptx.config (from the C++ definition) and re-exported here.
from gptx.config import VOCAB_MULTIPLE, GPTConfig, parameter_shapes  # noqa: F401
from gptx.config import parameter_table

IGNORE_INDEX = -100

# The dropout sites of one layer, the `site` of a mask's key (gptx.ops.Dropout): GPT-2 drops the embedding sum
# (layer 0 only), the attention probabilities and the output of each residual branch.
DROPOUT_EMBED, DROPOUT_ATTN, DROPOUT_ATTN_RESID, DROPOUT_MLP_RESID = 0, 1, 2, 3


def _short(name: str) -> str:
    """'transformer.h.3.attn.c_proj.weight' -> 'attn.c_proj.weight' (the per-layer key)."""
    return name.split(".", 3)[3]


class _FlatStore:
    """All tensors of one kind (parameters or gradients) as aligned views of one zeroed gptx.Tensor buffer.

    The buffer is 1-D of `dtype` on `device`: float32 master weights and gradients, or the bfloat16 copy of the
    weights that mixed-precision compute reads. Tensor storage starts 64-byte aligned (256 on a GPU), so the
    16-float alignment of every offset makes every parameter start on a 64-byte boundary.
    """

    def __init__(self, config: GPTConfig, device: str = "cpu", dtype: str = "float32"):
        # Names, shapes, storage shapes (wte padded to Vp rows; the named tensor views its first vocab_size rows) and
        # aligned offsets all come from the one parameter table (gptx/gpt_spec.h).
        table = parameter_table(config)
        specs, offset = [(p.name, p.shape, p.storage, p.offset) for p in table.params], table.size
        self.flat = _core.Tensor.zeros([offset], dtype, device)
        self.full, self.named = {}, {}
        for name, shape, storage, off in specs:
            full = self.flat[off:off + math.prod(storage)].reshape(*storage)
            self.full[name] = full
            self.named[name] = full[: shape[0]] if storage != shape else full
        L = config.n_layer
        self.layers = [
            {_short(n): a for n, a in self.named.items() if n.startswith(f"transformer.h.{i}.")} for i in range(L)
        ]
        self.wte = self.full["transformer.wte.weight"]  # (Vp, C)
        self.wpe = self.named["transformer.wpe.weight"]
        self.lnf_w = self.named["transformer.ln_f.weight"]
        self.lnf_b = self.named["transformer.ln_f.bias"]


DTYPES = ("float32", "bfloat16")


def check_placement(device: str, dtype: str, what: str) -> tuple[str, str]:
    """Validated (device, dtype) for a model: float32 anywhere, bfloat16 (mixed precision) on CUDA only."""
    device, dtype = str(device), str(dtype)
    if dtype not in DTYPES:
        raise TypeError(f"{what}: dtype must be one of {DTYPES}, got {dtype!r}")
    if device == "cpu":
        if dtype != "float32":
            raise TypeError(f"{what}: dtype {dtype} runs on CUDA only; on the CPU use float32")
        return device, dtype
    if device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit()):
        if not cuda.is_available():
            why = "this build has no CUDA backend" if not cuda.is_built() else "no CUDA device is visible"
            raise RuntimeError(f"{what}: device {device!r} asked for but {why}")
        index = int(device[5:]) if ":" in device else 0
        if index >= cuda.device_count():
            raise RuntimeError(f"{what}: device {device!r} is not available ({cuda.device_count()} visible)")
        return f"cuda:{index}", dtype
    raise ValueError(f"{what}: unknown device {device!r} (cpu, cuda, cuda:N)")


class _ComputeStore:
    """The weights mixed-precision compute reads: matrices (>= 2-D) from the bfloat16 copy, biases and layernorm
    parameters from the float32 master store (the kernels take those in float32)."""

    def __init__(self, master: _FlatStore, low: _FlatStore):
        self.flat = low.flat
        pick = lambda name, d: d[name] if len(master.named[name].shape) >= 2 else master.named[name]  # noqa: E731
        self.named = {n: pick(n, low.named) for n in master.named}
        self.full = {n: pick(n, low.full) for n in master.full}
        self.layers = [{k: (low_l[k] if len(m_l[k].shape) >= 2 else m_l[k]) for k in m_l}
                       for m_l, low_l in zip(master.layers, low.layers)]
        self.wte, self.wpe = low.wte, low.wpe
        self.lnf_w, self.lnf_b = master.lnf_w, master.lnf_b


class GPT:
    """GPT-2 (learned positions, pre-LayerNorm blocks, causal attention, GELU MLP, LM head tied to wte).

    forward() keeps what backward() needs in buffers allocated once per (B, T); backward() adds the gradient of the
    mean loss into `grads`. Parameters, gradients and activations are gptx.Tensors on the model's device (on the CPU
    np.asarray(t) views one without a copy): views of one flat parameter buffer and one flat gradient buffer.

    device="cuda" keeps everything on the GPU. dtype="bfloat16" (CUDA only) is mixed precision: float32 master
    weights, gradients and optimizer state, a bfloat16 copy of the weight matrices refreshed at every forward(),
    bfloat16 activations, float32 statistics. Checkpoints and state_dict() hold float32 host arrays whatever the device.

    Dropout (config.dropout > 0) applies only in training mode, as in torch: a new GPT is in training mode, train()
    / eval() switch (from_pretrained and gptx.load return eval mode, as transformers does). Each training-mode
    forward draws its masks from the key (dropout_seed, dropout_step, layer, site) and then advances dropout_step,
    so a step's masks are a function of those two numbers (the Trainer sets them from its seed and step; a resumed
    run regenerates the same masks). Sampling and generate never drop; evaluation runs in eval mode.

    Threads: the activation buffers are shared and the kernels release the GIL, so forward(), forward_loss() and
    backward() each run under the model's lock: every call sees its own batch and returns its own loss. The logits
    forward() returns may be that shared buffer (see forward), so a thread that keeps them must be the only caller;
    and a forward/backward pair belongs to one thread: backward() refuses when another thread's forward() ran in
    between (it would differentiate that batch). Sampling (generate, stream) keeps its own caches and runs in
    parallel without the lock.
    """

    def __init__(self, config: GPTConfig, seed: int = 0, device: str = "cpu", dtype: str = "float32"):
        from gptx._checks import integer

        if seed is not None:  # None: fresh random weights; numpy's generators take no negative or fractional seed
            seed = integer("GPT", "seed", seed, 0, 2**63 - 1)
        self._allocate(config, device, dtype)
        self._init_weights(seed)
        self.dropout_seed = 0 if seed is None else seed

    @classmethod
    def _uninitialized(cls, config: GPTConfig, device: str = "cpu", dtype: str = "float32") -> "GPT":
        """A model with zeroed parameters, for loaders that overwrite all of them (skips ~1 s of sampling at 124M)."""
        model = cls.__new__(cls)
        model._allocate(config, device, dtype)
        return model

    def _allocate(self, config: GPTConfig, device: str = "cpu", dtype: str = "float32") -> None:
        if not isinstance(config, GPTConfig):
            raise TypeError(f"GPT: config must be a GPTConfig, got {type(config).__name__}")
        self.device, self.dtype = check_placement(device, dtype, "GPT")
        self.config = config
        self._p = _FlatStore(config, self.device)
        self._g = _FlatStore(config, self.device)
        # Mixed precision: the bfloat16 weights compute reads; otherwise compute reads the master weights.
        self._low = _FlatStore(config, self.device, self.dtype) if self.dtype != "float32" else None
        self._c = _ComputeStore(self._p, self._low) if self._low is not None else self._p
        self.grads: dict[str, _core.Tensor] = self._g.named
        self._acts: Activations | None = None
        self._pending = False  # forward(idx, targets) done, backward() not yet
        self._pending_thread = None  # the thread whose forward() the activations hold
        self._count = 0
        self._lock = threading.RLock()  # the activations and gradients are shared by every caller
        self.training = True  # torch's default for a new module; dropout acts only in training mode
        self.dropout_seed = 0
        self.dropout_step = 0
        self._drop = None  # the dropout of the pending forward: backward regenerates its masks
        self._weights = "f32"  # the decoding weight format (quantize)
        self._packed = None  # per layer {name: PackedWeight} and the LM head, when quantized

    # ------------------------------------------------------------------------------------------- mode
    def train(self, mode: bool = True) -> "GPT":
        """Training mode (dropout active when config.dropout > 0) or, with mode=False, eval mode. Returns self."""
        if not isinstance(mode, bool):
            raise TypeError(f"GPT.train: mode must be a bool, got {type(mode).__name__}")
        self.training = mode
        return self

    def eval(self) -> "GPT":
        """Eval mode: no dropout (what sampling and evaluation use). Returns self."""
        return self.train(False)

    def _dropout_for_pass(self):
        """A function (layer, site) -> gptx.ops.Dropout for this forward, or None when nothing is dropped; advances
        dropout_step so the next training forward draws new masks."""
        p = self.config.dropout
        if not self.training or p == 0.0:
            return None
        seed, step = int(self.dropout_seed), int(self.dropout_step)
        if seed < 0 or step < 0:
            raise ValueError(f"GPT.forward: dropout_seed and dropout_step must be >= 0, got {seed} and {step}")
        self.dropout_step = step + 1
        cache = {}

        def spec(layer: int, site: int):
            key = (layer, site)
            if key not in cache:
                cache[key] = ops.Dropout(p, seed=seed, step=step, layer=layer, site=site)
            return cache[key]

        return spec

    # ------------------------------------------------------------------------------------------- parameters
    def _init_weights(self, seed: int) -> None:
        """GPT-2 init: N(0, 0.02); residual projections N(0, 0.02 / sqrt(2 n_layer)); biases 0; layernorm 1, 0.

        Drawn on the host in parameter order and uploaded one parameter at a time: the same numbers on every device,
        and the host memory needed is one parameter (wte: 154 MB at GPT-2 small), not the model."""
        rng = np.random.default_rng(seed)
        proj_std = 0.02 / math.sqrt(2 * self.config.n_layer)
        for name, a in self._p.named.items():
            if name.endswith(".bias"):
                continue  # the buffer starts zeroed
            if ".ln_" in name:
                a.fill_(1.0)
                continue
            w = rng.standard_normal(a.shape, dtype=np.float32)
            w *= np.float32(proj_std if name.endswith("c_proj.weight") else 0.02)
            a.copy_(w)

    def _compute_params(self):
        """The parameters forward passes read: refreshes the bfloat16 copy from the master weights (one cast)."""
        if self._low is not None:
            self._low.flat.copy_(self._p.flat)
        return self._c

    def named_parameters(self) -> list[tuple[str, _core.Tensor]]:
        return list(self._p.named.items())

    def parameters(self) -> list[_core.Tensor]:
        return list(self._p.named.values())

    def flat_buffers(self) -> tuple[_core.Tensor, _core.Tensor]:
        """(parameters, gradients): the two 1-D float32 buffers every parameter and its gradient are views of (the
        optimizer updates all of them with one call; alignment gaps and wte's padding rows stay zero)."""
        return self._p.flat, self._g.flat

    def num_parameters(self) -> int:
        return sum(int(a.size) for a in self._p.named.values())

    def zero_grad(self) -> None:
        self._g.flat.fill_(0.0)

    def state_dict(self) -> dict[str, np.ndarray]:
        """float32 host copies of the parameters (whatever the device)."""
        return {name: host_copy(a) for name, a in self._p.named.items()}

    def load_state_dict(self, sd: dict, strict: bool = True) -> None:
        """Copy sd's arrays into the parameters in place (the optimizer's views stay valid)."""
        params = self._p.named
        missing = [n for n in params if n not in sd]
        unexpected = [n for n in sd if n not in params]
        if strict and (missing or unexpected):
            raise ValueError(f"load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
        for name in params:
            if name in sd:
                v = np.asarray(sd[name])
                if tuple(v.shape) != tuple(params[name].shape):
                    raise ValueError(
                        f"load_state_dict: {name} has shape {tuple(v.shape)}, expected {tuple(params[name].shape)}"
                    )
                if not np.issubdtype(v.dtype, np.floating):
                    raise ValueError(f"load_state_dict: {name} has dtype {v.dtype}, expected a float type")
        for name, a in params.items():
            if name in sd:
                a.copy_(np.ascontiguousarray(sd[name], dtype=np.float32))
        if self._weights != "f32":
            self.quantize(self._weights)  # the packed copies follow the new parameters

    @classmethod
    def from_pretrained(cls, path) -> "GPT":
        """Load a Hugging Face GPT-2 directory (config.json + model.safetensors), a gptx checkpoint step folder or a
        run folder (its latest checkpoint). Local folders only: a Hub id such as "gpt2" is not downloaded.
        gptx.load(path) gives the tokenizer too."""
        from gptx._bounds import check_config_fits
        from gptx._checks import path as _path
        from gptx.hf_io import _safetensors_files, load_pretrained

        if not _path("GPT.from_pretrained", "path", path):
            raise ValueError("GPT.from_pretrained: path is empty")
        if os.path.isdir(os.fspath(path)):  # anything else gets load_pretrained's message (e.g. a Hub id)
            # Bound the config by the weight files before anything is sized from it (see gptx._bounds).
            try:
                found, values = _core.read_config_file(os.fspath(path))
            except ValueError:  # e.g. a run folder without latest.json: the checkpoint loader finds its step
                found = None
            if found is not None:
                files = _safetensors_files(Path(found))
                check_config_fits(values, files, files[0] if len(files) == 1 else Path(found))
        return load_pretrained(cls, path).eval()  # eval mode, as transformers' from_pretrained returns it

    def save_pretrained(self, path, tokenizer=None) -> None:
        """Write config.json + model.safetensors that transformers.GPT2LMHeadModel.from_pretrained loads, and
        generation_config.json; pass the tokenizer to save its files too (transformers' AutoTokenizer reads them)."""
        from gptx._checks import path as _path
        from gptx.hf_io import save_pretrained

        save_pretrained(self, _path("GPT.save_pretrained", "path", path), tokenizer)

    # ------------------------------------------------------------------------------------------- weights for decoding
    @property
    def weights(self) -> str:
        """The format the matmul weights run in: "f32", "bf16" or "int8" (see quantize)."""
        return self._weights

    def quantize(self, weights: str) -> "GPT":
        """Run the matmuls (attention qkv and projection, MLP fc and projection, the tied LM head) with packed
        weights: "bf16", or "int8" with one float16 scale per block of 32 along K (GGUF's q8_0). Activations are
        converted once per matmul; accumulation is float32 (int32 within an int8 block). "f32" undoes it.

        Sampling, generate, stream and forward / forward_loss (evaluation) use the packed weights; backward() refuses
        (training needs "f32"). The float32 parameters are kept (the embedding, checkpoints, state_dict and
        save_pretrained read them, so saving a quantized model saves float32); load_state_dict packs again. CPU
        float32 models only. Returns the model.
        """
        from gptx.inference import _native_model
        from gptx.weights import check_weights

        check_weights(weights)
        if weights != "f32" and (self.device != "cpu" or self.dtype != "float32"):
            raise TypeError(f"GPT.quantize: bf16 / int8 weights run on the CPU in float32; this model is on "
                            f"{self.device} in {self.dtype}")
        with self._lock:
            native = _native_model(self)
            native.quantize(weights)
            self._weights = weights
            if weights == "f32":
                self._packed = None
            else:
                pre = "transformer.h."
                names = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
                layers = [{n: native.packed(f"{pre}{l}.{n}") for n in names} for l in range(self.config.n_layer)]
                self._packed = (layers, native.packed("transformer.wte.weight"))
        return self

    # ------------------------------------------------------------------------------------------- forward
    def _buffers(self, B: int, T: int) -> Activations:
        if self._acts is None or self._acts.shape != (B, T):
            self._acts = None  # free the old set first: peak memory is one set, not two
            c = self.config
            self._acts = Activations(B, T, c.n_layer, c.n_head, c.n_embd, c.padded_vocab_size, self.device,
                                     self.dtype)
        return self._acts

    def _load_batch(self, idx, targets) -> Activations:
        """Validate a batch on the host (the one place the model checks token ids) and put it into the id buffers.

        Sets self._count, the targets that are not IGNORE_INDEX: backward's 1/count comes from here, so reading the
        loss never needs a device sync."""
        c = self.config
        idx = np.asarray(idx)
        arrays = [("idx", idx)] if targets is None else [("idx", idx), ("targets", np.asarray(targets))]
        for what, x in arrays:
            if x.dtype == np.bool_ or not np.issubdtype(x.dtype, np.integer):
                raise TypeError(f"GPT.forward: {what} must be an integer array, got dtype {x.dtype}")
            if x.ndim != 2:
                raise ValueError(f"GPT.forward: {what} must be (B, T), got shape {x.shape}")
        B, T = idx.shape
        if not 1 <= T <= c.block_size or B < 1:
            raise ValueError(f"GPT.forward: idx shape {idx.shape} needs B >= 1 and 1 <= T <= {c.block_size}")
        V = c.vocab_size
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= V:
            raise ValueError(f"GPT.forward: idx values must be in [0, {V}); got min {lo}, max {hi}")
        count = 0
        if targets is not None:
            targets = arrays[1][1]
            if targets.shape != idx.shape:
                raise ValueError(f"GPT.forward: targets shape {targets.shape} != idx shape {idx.shape}")
            counted = targets != IGNORE_INDEX
            count = int(np.count_nonzero(counted))
            if count:
                kept = targets[counted]
                lo, hi = int(kept.min()), int(kept.max())
                if lo < 0 or hi >= V:
                    raise ValueError(f"GPT.forward: targets values must be in [0, {V}) or {IGNORE_INDEX}; got min "
                                     f"{lo}, max {hi}")
        a = self._buffers(B, T)
        # int32 into the host id buffers (values were range-checked above, so the cast is exact)
        a.idx.copy_(np.ascontiguousarray(idx, dtype=np.int32))
        if targets is not None:
            a.targets.copy_(np.ascontiguousarray(targets, dtype=np.int32).reshape(B * T))
        self._count = count
        return a

    def _run(self, idx, targets, loss) -> Activations:
        """The forward pass: the logits in a.logits (B*T, Vp); with targets, the mean loss written into `loss`."""
        c = self.config
        self._pending = False
        a = self._load_batch(idx, targets)
        drop = self._drop = self._dropout_for_pass()
        P, eps = self._compute_params(), c.layer_norm_epsilon
        packed = self._packed

        def linear(l, x, p, name, out):  # x @ W + b, through the packed W when quantized
            bias = p[name[:-len("weight")] + "bias"]
            if packed is None:
                ops.matmul_forward(x, p[name], bias, out=out)
            else:
                ops.qmatmul_forward(x, packed[0][l][name], bias, out=out)

        ops.embedding_forward(a.idx, P.wte, P.wpe, out=a.encoded3)
        if drop:
            ops.dropout_forward(a.encoded, drop(0, DROPOUT_EMBED), out=a.encoded)
        for l, p in enumerate(P.layers):
            x = a.layer_input(l)
            ops.layernorm_forward(x, p["ln_1.weight"], p["ln_1.bias"], eps, out=a.ln1[l], mean=a.ln1_mean[l],
                                  rstd=a.ln1_rstd[l])
            linear(l, a.ln1[l], p, "attn.c_attn.weight", a.qkv[l])
            ops.attention_forward(a.qkv5[l], causal=True, out=a.atty[l], lse=a.att_lse[l],
                                  dropout=drop(l, DROPOUT_ATTN) if drop else None)
            linear(l, a.atty2[l], p, "attn.c_proj.weight", a.res2[l])
            if drop:  # x + dropout(branch), one fused pass
                ops.dropout_forward(a.res2[l], drop(l, DROPOUT_ATTN_RESID), residual=x, out=a.res2[l])
            else:
                ops.add_forward(x, a.res2[l], out=a.res2[l])
            ops.layernorm_forward(a.res2[l], p["ln_2.weight"], p["ln_2.bias"], eps, out=a.ln2[l],
                                  mean=a.ln2_mean[l], rstd=a.ln2_rstd[l])
            linear(l, a.ln2[l], p, "mlp.c_fc.weight", a.fch[l])
            ops.gelu_forward(a.fch[l], out=a.scratch4)
            linear(l, a.scratch4, p, "mlp.c_proj.weight", a.res3[l])
            if drop:
                ops.dropout_forward(a.res3[l], drop(l, DROPOUT_MLP_RESID), residual=a.res2[l], out=a.res3[l])
            else:
                ops.add_forward(a.res2[l], a.res3[l], out=a.res3[l])
        ops.layernorm_forward(a.final(), P.lnf_w, P.lnf_b, eps, out=a.lnf, mean=a.lnf_mean, rstd=a.lnf_rstd)
        # LM head tied to wte: logits (B*T, Vp) = lnf @ wte^T over the padded table.
        if packed is None:
            ops.matmul_forward(a.lnf, P.wte, trans_b=True, out=a.logits)
        else:
            ops.qmatmul_forward(a.lnf, packed[1], out=a.logits)
        if targets is not None:
            # per-row losses and lse for backward; the mean over the counted rows (NaN when there are none, like
            # torch's mean of nothing) written into `loss` on the device, nothing read back
            ops.cross_entropy_forward(a.logits, a.targets, V=c.vocab_size, ignore_index=IGNORE_INDEX,
                                      losses=a.losses, lse=a.ce_lse, loss=loss)
            self._pending = True
            self._pending_thread = threading.get_ident()
        return a

    def forward(self, idx, targets=None):
        """idx (B, T) token ids (any integer dtype) -> (logits, loss), the same kinds on every device.

        logits: a gptx.Tensor (B, T, vocab_size) in the compute dtype on the model's device (np.asarray(logits)
        views a CPU one; .to("float32").numpy() copies any). When vocab_size is a multiple of 64 they are the
        model's own buffer, valid until the next forward() or backward() (backward turns them into their gradient in
        place); otherwise the padded columns are left out by one copy of the first vocab_size columns.
        loss: None without targets; with targets (B, T) (IGNORE_INDEX = -100 marks positions that do not count) a
        0-d (one element) float32 gptx.Tensor on the model's device holding the mean cross-entropy over the counted
        positions (NaN when there are none), computed natively; float(loss) / loss.item() reads it (on a GPU that
        waits for the pass). A new tensor every call.
        Training loops that do not need the logits call forward_loss() instead (no copy).
        """
        c = self.config
        loss = None if targets is None else _core.Tensor.empty([], "float32", self.device)
        with self._lock:
            a = self._run(idx, targets, loss)
            B, T = a.shape
            if c.padded_vocab_size == c.vocab_size:
                logits = a.logits.reshape(B, T, c.vocab_size)
            else:
                logits = _first_columns(a.logits, c.vocab_size).reshape(B, T, c.vocab_size)
        return logits, loss

    def forward_loss(self, idx, targets, out=None):
        """forward(idx, targets) without making the logits: returns the 0-d float32 loss tensor (written into
        `out`, a one-element float32 tensor on the model's device, when given), read by the caller when it wants to
        (nothing waits for the device here). What the Trainer and evaluation call."""
        if targets is None:
            raise ValueError("GPT.forward_loss: targets are required (use forward() for logits alone)")
        loss = _core.Tensor.empty([], "float32", self.device) if out is None else out
        with self._lock:
            self._run(idx, targets, loss)
        return loss

    # ------------------------------------------------------------------------------------------- backward
    def backward(self, layer_done=None, denominator=None) -> None:
        """Add d(mean loss)/d(parameter) of the last forward(idx, targets) into self.grads.

        denominator: average the loss over this many targets instead of the batch's own count of counted targets
        (data parallelism: the global batch's count divided by the ranks, so that ranks whose rows hold different
        numbers of ignored targets still add up to the mean over the whole global batch).

        layer_done(l), when given, is called as soon as the gradients of block l are final (l = n_layer - 1 down to 0;
        for the last block, ln_f's too), then layer_done(-1) once the embeddings' are: data parallelism starts
        averaging those parts of the flat gradient buffer while the rest of the backward pass runs
        (grad_layer_starts() gives where each block's gradients begin in the buffer)."""
        with self._lock:
            self._backward(layer_done, denominator)

    def grad_layer_starts(self) -> list[int]:
        """Element offset in the flat gradient buffer where each block's gradients begin (blocks are contiguous, in
        order, after wte and wpe and before ln_f)."""
        starts = []
        for layer in self._g.layers:
            starts.append(min((t.data_ptr - self._g.flat.data_ptr) // 4 for t in layer.values()))
        return starts

    def _backward(self, layer_done=None, denominator=None) -> None:
        if self._weights != "f32":
            raise RuntimeError(f"GPT.backward: the model runs {self._weights} weights for decoding, which cannot be "
                               f"trained; call model.quantize('f32') first (the float32 parameters are intact)")
        if not self._pending:
            raise RuntimeError("GPT.backward: call forward(idx, targets) first (one backward per forward)")
        if self._pending_thread != threading.get_ident():
            raise RuntimeError("GPT.backward: the last forward(idx, targets) ran in another thread; a forward/backward "
                               "pair must stay in one thread (train one model from one thread)")
        self._pending = False
        if self._count == 0:  # every target ignored: the gradient is zero
            for l in range(self.config.n_layer - 1, -2, -1):
                if layer_done is not None:
                    layer_done(l)
            return
        c, a, P, G, drop = self.config, self._acts, self._c, self._g, self._drop
        dres, dres3, dx, dx4, dqkv, dqkv5 = a.grad_scratch()
        dbranch = a.dropout_scratch() if drop else None  # a residual branch's gradient through its dropout
        # Loss -> logits: softmax - onehot, scaled by 1/count, written over the logits (no second (BT, Vp) buffer).
        if denominator is not None and not (denominator > 0 and math.isfinite(denominator)):
            raise ValueError(f"GPT.backward: denominator must be a positive number, got {denominator!r}")
        inv = 1.0 / (self._count if denominator is None else denominator)
        if a.dlosses_value != inv:  # refilled only when the count changes (it rarely does)
            a.dlosses.fill_(inv)
            a.dlosses_value = inv
        ops.cross_entropy_backward(a.logits, a.ce_lse, a.targets, a.dlosses, V=c.vocab_size,
                                   ignore_index=IGNORE_INDEX, dlogits=a.logits)
        # dwte += dlogits^T @ lnf (padding columns of dlogits are 0, so padded rows stay 0); dlnf = dlogits @ wte.
        ops.matmul_backward(a.logits, a.lnf, P.wte, trans_b=True, need_da=False, need_db=True, db=G.wte,
                            accumulate=True)
        ops.matmul_backward(a.logits, a.lnf, P.wte, trans_b=True, need_da=True, need_db=False, da=dx)
        dres.fill_(0.0)
        ops.layernorm_backward(dx, a.final(), P.lnf_w, a.lnf_mean, a.lnf_rstd, dinp=dres, dweight=G.lnf_w,
                               dbias=G.lnf_b, accumulate=True)
        for l in reversed(range(c.n_layer)):
            p, g = P.layers[l], G.layers[l]
            # MLP. dres = d(res3) = d(res2) through the identity path; the LN path is added by layernorm_backward.
            ops.gelu_forward(a.fch[l], out=a.scratch4)  # recompute the GELU output (not kept by forward)
            dmlp = dres
            if drop:
                dmlp = ops.dropout_backward(dres, drop(l, DROPOUT_MLP_RESID), dinp=dbranch)
            self._linear_weight_grads(dmlp, a.scratch4, p, g, "mlp.c_proj")
            ops.matmul_forward(dmlp, p["mlp.c_proj.weight"], trans_b=True, out=a.scratch4)
            ops.gelu_backward(a.scratch4, a.fch[l], dinp=a.scratch4)
            self._linear_weight_grads(a.scratch4, a.ln2[l], p, g, "mlp.c_fc")
            ops.matmul_forward(a.scratch4, p["mlp.c_fc.weight"], trans_b=True, out=dx)
            ops.layernorm_backward(dx, a.res2[l], p["ln_2.weight"], a.ln2_mean[l], a.ln2_rstd[l], dinp=dres,
                                   dweight=g["ln_2.weight"], dbias=g["ln_2.bias"], accumulate=True)
            # Attention.
            datt = dres
            if drop:
                datt = ops.dropout_backward(dres, drop(l, DROPOUT_ATTN_RESID), dinp=dbranch)
            self._linear_weight_grads(datt, a.atty2[l], p, g, "attn.c_proj")
            ops.matmul_forward(datt, p["attn.c_proj.weight"], trans_b=True, out=dx)
            ops.attention_backward(dx4, a.qkv5[l], None, None, a.atty[l], a.att_lse[l], causal=True, dq=dqkv5,
                                   dropout=drop(l, DROPOUT_ATTN) if drop else None)
            self._linear_weight_grads(dqkv, a.ln1[l], p, g, "attn.c_attn")
            ops.matmul_forward(dqkv, p["attn.c_attn.weight"], trans_b=True, out=dx)
            ops.layernorm_backward(dx, a.layer_input(l), p["ln_1.weight"], a.ln1_mean[l], a.ln1_rstd[l],
                                   dinp=dres, dweight=g["ln_1.weight"], dbias=g["ln_1.bias"], accumulate=True)
            if layer_done is not None:
                layer_done(l)
        if drop:
            ops.dropout_backward(dres, drop(0, DROPOUT_EMBED), dinp=dres)
        ops.embedding_backward(dres3, a.idx, G.wte, G.wpe)
        if layer_done is not None:
            layer_done(-1)

    @staticmethod
    def _linear_weight_grads(dout, inp, p, g, prefix: str) -> None:
        """dW += inp^T @ dout and db += sum(dout) for the Conv1D `prefix` (y = inp @ W + b; inp, dout (B*T, .)), in
        one call (the input gradient is made separately: it overwrites, these accumulate)."""
        w = prefix + ".weight"
        ops.matmul_backward(dout, inp, p[w], need_da=False, need_db=True, need_dbias=True, db=g[w],
                            dbias=g[prefix + ".bias"], accumulate=True)

    # ------------------------------------------------------------------------------------------- inference
    # The inference pass (KV cache, LM head on the last position only) lives in gptx.inference / gptx.generate;
    # these delegate so the model is the one object users handle.
    def forward_cached(self, idx_new, cache, slot: int = 0, all_logits: bool = False):
        """Prefill idx_new (T tokens) into cache slot `slot` -> logits of the last token (or of all with all_logits)."""
        from gptx.inference import prefill

        return prefill(self, cache, slot, idx_new, all_logits=all_logits)

    def generate(self, prompt_ids, max_new_tokens=None, **kwargs):
        """New token ids for a prompt or a batch of prompts; see gptx.generate.generate for the arguments."""
        from gptx.generate import generate

        return generate(self, prompt_ids, max_new_tokens, **kwargs)

    def stream(self, prompt_ids, max_new_tokens=None, **kwargs):
        """Yield tokens (or text pieces, given a tokenizer) as they are made; see gptx.generate.stream."""
        from gptx.generate import stream

        return stream(self, prompt_ids, max_new_tokens, **kwargs)

    def summarize(self, texts, tokenizer=None, **kwargs):
        """A summary per text (the fine-tuning prompt template, then generate); see gptx.summarize.summarize."""
        from gptx.summarize import summarize

        return summarize(self, texts, tokenizer=tokenizer, **kwargs)

    # Pickle / copy.deepcopy: the parameters and gradients are views of two flat buffers, which a member-by-member copy
    # would turn into unrelated arrays; rebuild the views instead (activation buffers are re-made on demand).
    def __getstate__(self) -> dict:
        return {"config": self.config.to_dict(), "params": host_copy(self._p.flat), "grads": host_copy(self._g.flat),
                "device": self.device, "dtype": self.dtype, "training": self.training,
                "dropout_seed": self.dropout_seed, "dropout_step": self.dropout_step, "weights": self._weights}

    def __setstate__(self, state: dict) -> None:
        self._allocate(GPTConfig.from_dict(state["config"]), state.get("device", "cpu"), state.get("dtype", "float32"))
        self._p.flat.copy_(np.ascontiguousarray(state["params"], dtype=np.float32))
        self._g.flat.copy_(np.ascontiguousarray(state["grads"], dtype=np.float32))
        self.training = bool(state.get("training", True))
        self.dropout_seed = int(state.get("dropout_seed", 0))
        self.dropout_step = int(state.get("dropout_step", 0))
        if state.get("weights", "f32") != "f32":
            self.quantize(state["weights"])

    def to(self, device: str, dtype: str | None = None) -> "GPT":
        """A copy of this model (parameters only; gradients zero) on another device and/or compute dtype."""
        other = GPT._uninitialized(self.config, device, self.dtype if dtype is None else dtype)
        other._p.flat.copy_(self._p.flat)  # float32 to float32, across devices: one transfer
        other.training, other.dropout_seed, other.dropout_step = self.training, self.dropout_seed, self.dropout_step
        return other

    def __repr__(self) -> str:
        c = self.config
        where = "" if self.device == "cpu" else f", device={self.device!r}, dtype={self.dtype!r}"
        if c.dropout:
            where += f", dropout={c.dropout:g}"
        if self._weights != "f32":
            where += f", weights={self._weights!r}"
        return (f"GPT(n_layer={c.n_layer}, n_head={c.n_head}, n_embd={c.n_embd}, block_size={c.block_size}, "
                f"vocab_size={c.vocab_size}, parameters={self.num_parameters():,}{where})")


def _first_columns(src, V: int):
    """A new (N, V) tensor holding the first V columns of src (N, Vp), on src's device and in its dtype: one strided
    copy (a cudaMemcpy2D on a GPU)."""
    out = _core.Tensor.empty([src.shape[0], V], src.dtype, src.device)
    return out.copy_columns_from(src, 0)
