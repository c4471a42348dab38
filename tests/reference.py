"""NumPy float64 references for every op: the independent ground truth the native kernels are compared with."""
import numpy as np

GELU_C = np.sqrt(2.0 / np.pi)


def f64(x):
    return np.asarray(x, dtype=np.float64)


def matmul(a, b, bias=None, trans_a=False, trans_b=False):
    a, b = f64(a), f64(b)
    if trans_a:
        a = np.swapaxes(a, -1, -2)
    if trans_b:
        b = np.swapaxes(b, -1, -2)
    out = a @ b
    return out + f64(bias) if bias is not None else out


def matmul_backward(dout, a, b, trans_a=False, trans_b=False):
    """da, db, dbias of out = op(a) @ op(b) + bias; db is summed over the batch when b is 2-D and a is batched."""
    dout, a, b = f64(dout), f64(a), f64(b)
    A = np.swapaxes(a, -1, -2) if trans_a else a
    B = np.swapaxes(b, -1, -2) if trans_b else b
    dA = dout @ np.swapaxes(B, -1, -2)
    dB = np.swapaxes(A, -1, -2) @ dout
    if b.ndim == 2 and dB.ndim > 2:
        dB = dB.reshape(-1, *dB.shape[-2:]).sum(axis=0)
    da = np.swapaxes(dA, -1, -2) if trans_a else dA
    db = np.swapaxes(dB, -1, -2) if trans_b else dB
    return da, db, dout.reshape(-1, dout.shape[-1]).sum(axis=0)


def causal_mask(Tq, L):
    """True where column j is kept by query row i (position i + L - Tq)."""
    i = np.arange(Tq)[:, None]
    j = np.arange(L)[None, :]
    return j <= i + (L - Tq)


def softmax(x, scale=1.0, causal=False):
    x = f64(x) * scale
    if causal:
        x = np.where(causal_mask(x.shape[-2], x.shape[-1]), x, -np.inf)
    m = np.max(x, axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    e = np.exp(x - m)
    s = e.sum(axis=-1, keepdims=True)
    return np.where(s > 0, e / np.where(s > 0, s, 1.0), 0.0)


def softmax_backward(dout, out, scale=1.0):
    dout, out = f64(dout), f64(out)
    return scale * out * (dout - (dout * out).sum(axis=-1, keepdims=True))


def attention(q, k, v, causal=True, scale=None):
    """q (B, Tq, NH, HS), k/v (B, Tk, NH, HS) -> out (B, Tq, NH, HS), lse (B, NH, Tq), probs (B, NH, Tq, Tk)."""
    q, k, v = f64(q), f64(k), f64(v)
    HS = q.shape[-1]
    scale = 1.0 / np.sqrt(HS) if scale is None else scale
    s = np.einsum("bqhd,bkhd->bhqk", q, k) * scale
    if causal:
        s = np.where(causal_mask(s.shape[-2], s.shape[-1]), s, -np.inf)
    m = s.max(axis=-1, keepdims=True)
    p = np.exp(s - m)
    l = p.sum(axis=-1, keepdims=True)
    p = p / l
    out = np.einsum("bhqk,bkhd->bqhd", p, v)
    lse = (m + np.log(l))[..., 0]
    return out, lse, p


def attention_backward(dout, q, k, v, causal=True, scale=None):
    q, k, v, dout = f64(q), f64(k), f64(v), f64(dout)
    HS = q.shape[-1]
    scale = 1.0 / np.sqrt(HS) if scale is None else scale
    _, _, p = attention(q, k, v, causal, scale)
    dv = np.einsum("bhqk,bqhd->bkhd", p, dout)
    dp = np.einsum("bqhd,bkhd->bhqk", dout, v)
    ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True))
    dq = np.einsum("bhqk,bkhd->bqhd", ds, k) * scale
    dk = np.einsum("bhqk,bqhd->bkhd", ds, q) * scale
    return dq, dk, dv


def layernorm(x, w, b, eps=1e-5):
    x = f64(x)
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    rstd = 1.0 / np.sqrt(var + eps)
    return (x - mean) * rstd * f64(w) + f64(b), mean[..., 0], rstd[..., 0]


def layernorm_backward(dout, x, w, eps=1e-5):
    x, dout, w = f64(x), f64(dout), f64(w)
    _, mean, rstd = layernorm(x, w, np.zeros_like(w), eps)
    norm = (x - mean[..., None]) * rstd[..., None]
    dnorm = dout * w
    dx = rstd[..., None] * (dnorm - dnorm.mean(-1, keepdims=True) - norm * (dnorm * norm).mean(-1, keepdims=True))
    lead = tuple(range(x.ndim - 1))
    return dx, (dout * norm).sum(axis=lead), dout.sum(axis=lead)


def gelu(x):
    x = f64(x)
    return 0.5 * x * (1.0 + np.tanh(GELU_C * (x + 0.044715 * x**3)))


def gelu_backward(dout, x):
    x = f64(x)
    u = GELU_C * (x + 0.044715 * x**3)
    t = np.tanh(u)
    du = GELU_C * (1.0 + 3 * 0.044715 * x**2)
    return f64(dout) * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t**2) * du)


def embedding(idx, wte, wpe, pos_offset=0):
    T = idx.shape[1]
    return f64(wte)[idx] + f64(wpe)[pos_offset : pos_offset + T][None]


def embedding_backward(dout, idx, V, maxT, pos_offset=0):
    dout = f64(dout)
    B, T, C = dout.shape
    dwte = np.zeros((V, C))
    np.add.at(dwte, idx.reshape(-1), dout.reshape(-1, C))
    dwpe = np.zeros((maxT, C))
    dwpe[pos_offset : pos_offset + T] = dout.sum(axis=0)
    return dwte, dwpe


def cross_entropy(logits, targets, V=None, ignore_index=-100):
    logits = f64(logits)
    V = logits.shape[-1] if V is None else V
    real = logits[..., :V]
    m = real.max(axis=-1, keepdims=True)
    lse = (m + np.log(np.exp(real - m).sum(axis=-1, keepdims=True)))[..., 0]
    t = np.where(targets == ignore_index, 0, targets)
    picked = np.take_along_axis(real, t[..., None], axis=-1)[..., 0]
    losses = np.where(targets == ignore_index, 0.0, lse - picked)
    return losses, lse


def cross_entropy_backward(logits, targets, dlosses, V=None, ignore_index=-100):
    logits = f64(logits)
    Vp = logits.shape[-1]
    V = Vp if V is None else V
    _, lse = cross_entropy(logits, targets, V, ignore_index)
    d = np.zeros_like(logits)
    d[..., :V] = np.exp(logits[..., :V] - lse[..., None])
    t = np.where(targets == ignore_index, 0, targets)
    np.put_along_axis(d, t[..., None], np.take_along_axis(d, t[..., None], axis=-1) - 1.0, axis=-1)
    d *= f64(dlosses)[..., None]
    d[targets == ignore_index] = 0.0
    return d


def adamw(p, g, m, v, lr, beta1, beta2, eps, weight_decay, step, grad_scale=1.0):
    """One torch.optim.AdamW step in float64; returns new (p, m, v)."""
    p, g, m, v = f64(p), f64(g) * grad_scale, f64(m), f64(v)
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    p = p * (1 - lr * weight_decay)
    bc1 = 1 - beta1**step
    bc2 = 1 - beta2**step
    p = p - (lr / bc1) * m / (np.sqrt(v) / np.sqrt(bc2) + eps)
    return p, m, v


def central_difference(f, x, coords, h=1e-4):
    """d f / d x at the given flat coordinates of x, by central differences in float64."""
    x = f64(x).copy()
    flat = x.reshape(-1)
    grads = []
    for c in coords:
        old = flat[c]
        flat[c] = old + h
        fp = f(x)
        flat[c] = old - h
        fm = f(x)
        flat[c] = old
        grads.append((fp - fm) / (2 * h))
    return np.array(grads)
