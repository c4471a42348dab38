"""AdamW over the native fused kernel, the warmup + cosine learning-rate schedule, and global-norm gradient clipping."""
import math

import numpy as np

from gptx import _device, ops


def _named(named_params):
    items = list(named_params.items()) if isinstance(named_params, dict) else list(named_params)
    names = [n for n, _ in items]
    if len(set(names)) != len(names):
        raise ValueError("AdamW: duplicate parameter names")
    return items


class AdamW:
    """AdamW (torch.optim.AdamW arithmetic) updating the model's own parameter arrays in place.

    Weight decay is decoupled and applied only to parameters with >= 2 dimensions (matmul weights and embeddings);
    biases and layernorm parameters are not decayed. `grad_scale` multiplies every gradient inside the fused kernel,
    which is how clipping and the 1/grad_accum averaging cost no extra pass over the gradients.
    """

    def __init__(self, named_params, grads, lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1):
        self.params = _named(named_params)
        self.grads = grads
        self.lr = float(lr)
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = float(eps)
        self.weight_decay = float(weight_decay)
        for name, p in self.params:
            if name not in grads:
                raise ValueError(f"AdamW: no gradient for parameter {name!r}")
            if _device.dtype_name(p) != "float32" or _device.dtype_name(grads[name]) != "float32":
                raise TypeError(f"AdamW: parameter {name!r} and its gradient must be float32")
            if tuple(grads[name].shape) != tuple(p.shape):
                raise ValueError(f"AdamW: gradient of {name!r} has shape {tuple(grads[name].shape)}, parameter "
                                 f"{tuple(p.shape)}")
        # The moments live where the parameters live (host arrays or device tensors).
        self.m = {n: _device.zeros_like(p) for n, p in self.params}
        self.v = {n: _device.zeros_like(p) for n, p in self.params}
        self.step_count = 0  # steps taken; the kernel's bias corrections use the 1-based step_count after increment

    def step(self, lr=None, grad_scale=1.0):
        """One update of every parameter with `lr` (default: the constructor's) and gradients times grad_scale."""
        lr = self.lr if lr is None else float(lr)
        if not math.isfinite(grad_scale):
            raise ValueError(f"AdamW.step: grad_scale is {grad_scale}")
        self.step_count += 1
        b1, b2 = self.betas
        for name, p in self.params:
            wd = self.weight_decay if len(p.shape) >= 2 else 0.0
            ops.adamw_step(p, self.grads[name], self.m[name], self.v[name], lr=lr, beta1=b1, beta2=b2, eps=self.eps,
                           weight_decay=wd, step=self.step_count, grad_scale=grad_scale)

    def hparams(self):
        return {"lr": self.lr, "betas": list(self.betas), "eps": self.eps, "weight_decay": self.weight_decay}

    def state_dict(self):
        """{'step': int, 'm': {name: array}, 'v': {name: array}} (float32 host copies, whatever the device)."""
        return {"step": self.step_count, "m": {n: _device.host_copy(a) for n, a in self.m.items()},
                "v": {n: _device.host_copy(a) for n, a in self.v.items()}}

    def load_state_dict(self, sd):
        for key in ("m", "v"):
            missing = set(self.m) - set(sd[key])
            extra = set(sd[key]) - set(self.m)
            if missing or extra:
                raise ValueError(f"AdamW.load_state_dict: {key} missing {sorted(missing)}, unexpected {sorted(extra)}")
            for n, a in sd[key].items():
                dst = getattr(self, key)[n]
                if tuple(a.shape) != tuple(dst.shape):
                    raise ValueError(f"AdamW.load_state_dict: {key}[{n!r}] has shape {tuple(a.shape)}, expected "
                                     f"{tuple(dst.shape)}")
                if _device.is_tensor(dst):
                    _device.put(dst, a)
                else:
                    dst[...] = a  # in place: the arrays keep their identity
        step = int(sd["step"])
        if step < 0:
            raise ValueError(f"AdamW.load_state_dict: step {step} < 0")
        self.step_count = step


def lr_schedule(step, max_steps, lr, warmup_steps=0, min_lr=0.0):
    """Learning rate for the 0-based `step`: linear warmup to lr over warmup_steps, then cosine decay to min_lr.

    Warmup reaches lr at step warmup_steps - 1 ((step + 1) / warmup_steps, so step 0 never has lr 0); the cosine runs
    from step warmup_steps (lr) to max_steps (min_lr); steps beyond max_steps stay at min_lr. The warmup values do not
    depend on max_steps, so a run that is later extended shares its warmup with a longer run.
    """
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if step >= max_steps:
        return min_lr
    ratio = (step - warmup_steps) / max(1, max_steps - warmup_steps)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)


def clip_grad_norm(grads, max_norm, grad_scale=1.0):
    """(total_norm, scale): the global L2 norm of all gradients (times grad_scale) and the factor that clips it.

    The gradients are not modified: pass `scale` (times grad_scale) to AdamW.step so the kernel applies it. As in
    torch.nn.utils.clip_grad_norm_, scale = min(1, max_norm / (norm + 1e-6)); max_norm None or <= 0 disables clipping.
    A non-finite norm returns scale 1.0 (the caller decides what to do with a diverged step).
    """
    arrays = list(grads.values()) if isinstance(grads, dict) else list(grads)
    norm = float(ops.global_norm(arrays)) * abs(grad_scale)
    if max_norm is None or max_norm <= 0 or not math.isfinite(norm):
        return norm, 1.0
    # float32 like torch, so the fused scale equals torch's clip coefficient bit for bit when the norms agree
    coef = np.float32(max_norm) / (np.float32(norm) + np.float32(1e-6))
    return norm, float(min(np.float32(1.0), coef))
