"""AdamW over the native fused kernel, the warmup + cosine learning-rate schedule, and global-norm gradient clipping."""
import math

import numpy as np

from gptx import _core, ops
from gptx._host import host_copy

_F32 = 4  # bytes per float32: offsets into a flat buffer come from data_ptr differences


def _named(named_params):
    if not isinstance(named_params, dict) and not hasattr(named_params, "__iter__"):
        raise TypeError(f"AdamW: named_params must be a dict or (name, array) pairs, got {named_params!r}")
    items = list(named_params.items()) if isinstance(named_params, dict) else list(named_params)
    names = [n for n, _ in items]
    if len(set(names)) != len(names):
        raise ValueError("AdamW: duplicate parameter names")
    return items


def _dtype(a) -> str:
    return a.dtype if isinstance(a, _core.Tensor) else np.dtype(a.dtype).name


def _tensor(a):
    """a gptx.Tensor as it is, a numpy array wrapped without a copy (updates reach the array)."""
    return a if isinstance(a, _core.Tensor) else _core.Tensor(a)


class AdamW:
    """AdamW (torch.optim.AdamW arithmetic) updating the parameters in place.

    Weight decay is decoupled and applied only to parameters with >= 2 dimensions (matmul weights and embeddings);
    biases and layernorm parameters are not decayed. `grad_scale` multiplies every gradient inside the fused kernel,
    which is how clipping and the 1/grad_accum averaging cost no extra pass over the gradients.

    Parameters and gradients are gptx.Tensors (numpy arrays are wrapped without a copy, so they are updated in
    place too). flat=(param_buffer, grad_buffer) says every parameter and its gradient are views of those 1-D
    float32 buffers at the same offsets (GPT.flat_buffers()): then the moments are flat buffers too and a step is
    ONE native call over all of it, weight decay confined to the >= 2-D parameters' element ranges. Elements of the
    buffers that belong to no parameter (alignment gaps, wte's padding rows) have zero gradients and zero moments,
    so they stay zero. Without flat, each parameter is one call. Either way m[name] and v[name] are per-parameter
    views (the checkpoint format), and state_dict() holds float32 host copies under the parameter names.
    """

    def __init__(self, named_params, grads, lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, flat=None):
        params = _named(named_params)
        if not params:
            raise ValueError("AdamW: named_params is empty: there is nothing to optimize")
        if not isinstance(grads, dict):
            raise TypeError(f"AdamW: grads must be a dict of name -> gradient, got {type(grads).__name__}")
        for name, p in params:
            if name not in grads:
                raise ValueError(f"AdamW: no gradient for parameter {name!r}")
            g = grads[name]
            if _dtype(p) != "float32" or _dtype(g) != "float32":
                raise TypeError(f"AdamW: parameter {name!r} and its gradient must be float32")
            if tuple(g.shape) != tuple(p.shape):
                raise ValueError(f"AdamW: gradient of {name!r} has shape {tuple(g.shape)}, parameter "
                                 f"{tuple(p.shape)}")
        _check_hparams(lr=lr, eps=eps, weight_decay=weight_decay, betas=betas)
        self.params = [(n, _tensor(p)) for n, p in params]
        self.grads = {n: _tensor(grads[n]) for n, _ in params}
        self.lr = float(lr)
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = float(eps)
        self.weight_decay = float(weight_decay)
        self._flat = None if flat is None else self._flat_layout(*flat)
        if self._flat is not None:
            pbuf = self._flat[0]
            self._m_flat = _core.Tensor.zeros(list(pbuf.shape), "float32", pbuf.device)
            self._v_flat = _core.Tensor.zeros(list(pbuf.shape), "float32", pbuf.device)
            offsets = self._flat[2]
            view = lambda buf, n, p: buf[offsets[n]:offsets[n] + p.size].reshape(*p.shape)  # noqa: E731
            self.m = {n: view(self._m_flat, n, p) for n, p in self.params}
            self.v = {n: view(self._v_flat, n, p) for n, p in self.params}
        else:  # the moments live where the parameters live
            self.m = {n: _core.Tensor.zeros(list(p.shape), "float32", p.device) for n, p in self.params}
            self.v = {n: _core.Tensor.zeros(list(p.shape), "float32", p.device) for n, p in self.params}
        self.step_count = 0  # steps taken; the kernel's bias corrections use the 1-based step_count after increment

    def _flat_layout(self, pbuf, gbuf):
        """(pbuf, gbuf, {name: element offset}, decay ranges (R, 2) int64) after checking that every parameter and
        its gradient sit at the same offset inside the two buffers."""
        pbuf, gbuf = _tensor(pbuf), _tensor(gbuf)
        if pbuf.ndim != 1 or pbuf.dtype != "float32" or tuple(gbuf.shape) != tuple(pbuf.shape) \
                or gbuf.dtype != "float32" or gbuf.device != pbuf.device:
            raise ValueError(f"AdamW: flat buffers must be two 1-D float32 tensors of one shape on one device, got "
                             f"{pbuf!r} and {gbuf!r}")
        offsets, ranges = {}, []
        for name, p in self.params:
            off, rem = divmod(p.data_ptr - pbuf.data_ptr, _F32)
            goff = (self.grads[name].data_ptr - gbuf.data_ptr) / _F32
            if rem or p.device != pbuf.device or not 0 <= off <= pbuf.size - p.size or goff != off:
                raise ValueError(f"AdamW: parameter {name!r} (or its gradient) is not a view of the flat buffers "
                                 f"at one offset")
            offsets[name] = off
            if len(p.shape) >= 2:
                ranges.append((off, off + p.size))
        return pbuf, gbuf, offsets, np.array(sorted(ranges), dtype=np.int64).reshape(-1, 2)

    def step(self, lr=None, grad_scale=1.0, norm=None, max_norm=0.0, norm_scale=1.0):
        """One update of every parameter with `lr` (default: the constructor's) and gradients times grad_scale.

        norm: a one-element float32 tensor on the parameters' device holding the gradients' global norm (from
        ops.global_norm(..., out=norm)); the kernel then also clips, multiplying grad_scale by
        min(1, max_norm / (norm * norm_scale + 1e-6)) when max_norm > 0, and skips the whole update (parameters and
        moments untouched) when norm * norm_scale is not finite. Nothing is read back to the host.
        """
        lr = self.lr if lr is None else float(lr)
        if not math.isfinite(grad_scale):
            raise ValueError(f"AdamW.step: grad_scale is {grad_scale}")
        self.step_count += 1
        b1, b2 = self.betas
        hp = dict(lr=lr, beta1=b1, beta2=b2, eps=self.eps, step=self.step_count, grad_scale=grad_scale, norm=norm,
                  max_norm=max_norm or 0.0, norm_scale=norm_scale)
        if self._flat is not None:
            pbuf, gbuf, _, ranges = self._flat
            ops.adamw_step(pbuf, gbuf, self._m_flat, self._v_flat, weight_decay=self.weight_decay,
                           decay_ranges=ranges, **hp)
            return
        for name, p in self.params:
            wd = self.weight_decay if len(p.shape) >= 2 else 0.0
            ops.adamw_step(p, self.grads[name], self.m[name], self.v[name], weight_decay=wd, **hp)

    def hparams(self):
        return {"lr": self.lr, "betas": list(self.betas), "eps": self.eps, "weight_decay": self.weight_decay}

    def state_dict(self):
        """{'step': int, 'm': {name: array}, 'v': {name: array}} (float32 host copies, whatever the device)."""
        return {"step": self.step_count, "m": {n: host_copy(a) for n, a in self.m.items()},
                "v": {n: host_copy(a) for n, a in self.v.items()}}

    def load_state_dict(self, sd):
        """Restore moments and step from state_dict()'s layout. The moments must be float32 of the parameters'
        shapes: a converted moment (float16, float64, big-endian) would resume a different run without a word."""
        check_state_dict(sd, {n: tuple(t.shape) for n, t in self.m.items()}, "AdamW.load_state_dict")
        for key in ("m", "v"):
            for n, a in sd[key].items():
                src = a if isinstance(a, _core.Tensor) else np.ascontiguousarray(a)
                getattr(self, key)[n].copy_(src)  # in place: views stay valid
        self.step_count = int(sd["step"])

    def memory_bytes(self) -> int:
        """Bytes of optimizer state this process holds (the two moments)."""
        return int(self._m_flat.nbytes + self._v_flat.nbytes) if self._flat is not None else \
            sum(int(self.m[n].nbytes + self.v[n].nbytes) for n in self.m)


def check_state_dict(sd, shapes: dict, where: str) -> None:
    """Raise unless sd is AdamW.state_dict()'s layout for parameters of these shapes ({name: shape})."""
    if not isinstance(sd, dict) or not all(k in sd for k in ("step", "m", "v")):
        raise ValueError(f"{where}: sd must be a dict with 'step', 'm' and 'v'")
    step = sd["step"]
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        raise ValueError(f"{where}: step must be an integer >= 0, got {step!r}")
    for key in ("m", "v"):
        if not isinstance(sd[key], dict):
            raise ValueError(f"{where}: {key} must be a dict of parameter name -> array")
        missing = set(shapes) - set(sd[key])
        extra = set(sd[key]) - set(shapes)
        if missing or extra:
            raise ValueError(f"{where}: {key} missing {sorted(missing)}, unexpected {sorted(extra)}")
        for n, a in sd[key].items():
            if not isinstance(a, (np.ndarray, _core.Tensor)):
                raise TypeError(f"{where}: {key}[{n!r}] must be an array, got {type(a).__name__}")
            if not _is_float32(a):
                raise TypeError(f"{where}: {key}[{n!r}] has dtype {a.dtype}, expected float32 "
                                f"(the moments are stored and restored without conversion)")
            if tuple(a.shape) != tuple(shapes[n]):
                raise ValueError(f"{where}: {key}[{n!r}] has shape {tuple(a.shape)}, expected "
                                 f"{tuple(shapes[n])}")


def _finite(name: str, v, low: float, low_open: bool = False, where: str = "AdamW") -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise TypeError(f"{where}: {name} must be a number, got {type(v).__name__}")
    v = float(v)
    if not math.isfinite(v) or (v <= low if low_open else v < low):
        raise ValueError(f"{where}: {name} must be a finite number {'>' if low_open else '>='} {low:g}, got {v!r}")
    return v


def _check_hparams(lr, eps, weight_decay, betas) -> None:
    """A NaN, infinite or negative learning rate, eps or decay would quietly turn every parameter into garbage."""
    _finite("lr", lr, 0.0)
    _finite("eps", eps, 0.0, low_open=True)
    _finite("weight_decay", weight_decay, 0.0)
    if len(betas) != 2 or not all(0.0 <= _finite("betas", b, 0.0) < 1.0 for b in betas):
        raise ValueError(f"AdamW: betas must be two numbers in [0, 1), got {betas!r}")


def _is_float32(a) -> bool:
    if isinstance(a, _core.Tensor):
        return a.dtype == "float32"
    return np.dtype(a.dtype) == np.dtype("=f4")  # native byte order only: '>f4' is refused, never reinterpreted


def lr_schedule(step, max_steps, lr, warmup_steps=0, min_lr=0.0):
    """Learning rate for the 0-based `step`: linear warmup to lr over warmup_steps, then cosine decay to min_lr.

    Warmup reaches lr at step warmup_steps - 1 ((step + 1) / warmup_steps, so step 0 never has lr 0); the cosine runs
    from step warmup_steps (lr) to max_steps (min_lr); steps beyond max_steps stay at min_lr. The warmup values do not
    depend on max_steps, so a run that is later extended shares its warmup with a longer run.
    """
    for name, v in (("step", step), ("max_steps", max_steps), ("warmup_steps", warmup_steps)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"lr_schedule: {name} must be an integer >= 0, got {v!r}")
    _finite("lr", lr, 0.0, where="lr_schedule")
    _finite("min_lr", min_lr, 0.0, where="lr_schedule")
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if step >= max_steps:
        return min_lr
    ratio = (step - warmup_steps) / max(1, max_steps - warmup_steps)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)


def clip_coefficient(norm, max_norm):
    """min(1, max_norm / (norm + 1e-6)) in float32, torch.nn.utils.clip_grad_norm_'s coefficient (the same arithmetic
    the AdamW kernel applies when given the norm tensor)."""
    coef = np.float32(max_norm) / (np.float32(norm) + np.float32(1e-6))
    return float(min(np.float32(1.0), coef))


def clip_grad_norm(grads, max_norm, grad_scale=1.0):
    """(total_norm, scale): the global L2 norm of all gradients (times grad_scale) and the factor that clips it.

    The gradients are not modified: pass `scale` (times grad_scale) to AdamW.step so the kernel applies it. As in
    torch.nn.utils.clip_grad_norm_, scale = min(1, max_norm / (norm + 1e-6)); max_norm None or <= 0 disables clipping.
    A non-finite norm returns scale 1.0 (the caller decides what to do with a diverged step). This reads the norm on
    the host; the Trainer instead hands the norm tensor to AdamW.step (ops.global_norm(..., out=) + step(norm=)),
    which clips with the same arithmetic inside the kernel.
    """
    if max_norm is not None and (isinstance(max_norm, bool) or not isinstance(max_norm, (int, float, np.number))
                                 or math.isnan(max_norm)):
        raise ValueError(f"clip_grad_norm: max_norm must be a number (<= 0 or None: no clipping), got {max_norm!r}")
    if not isinstance(grads, dict) and not hasattr(grads, "__iter__"):
        raise TypeError(f"clip_grad_norm: grads must be a dict or a list of arrays, got {grads!r}")
    arrays = list(grads.values()) if isinstance(grads, dict) else list(grads)
    norm = float(ops.global_norm(arrays)) * abs(grad_scale)
    if max_norm is None or max_norm <= 0 or not math.isfinite(norm):
        return norm, 1.0
    return norm, clip_coefficient(norm, max_norm)
