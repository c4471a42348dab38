"""The inference forward pass of a GPT with a KV cache: one-pass prompt prefill, then one token per step."""
from __future__ import annotations

import numpy as np

from gptx import ops
from gptx.kv_cache import KVCache


def _as(t) -> np.ndarray:
    return np.asarray(t)


def _check_slot(cache: KVCache, slot: int) -> int:
    if not 0 <= int(slot) < cache.batch:
        raise ValueError(f"cache slot {slot} out of range [0, {cache.batch})")
    return int(slot)


def _mlp_and_proj(p, x, att, eps):
    """The rest of a block after attention: x + proj(att), then + MLP(LN2(.)). Shapes (..., C)."""
    res2 = _as(ops.matmul_forward(att, p["attn.c_proj.weight"], p["attn.c_proj.bias"]))
    ops.add_forward(x, res2, out=res2)
    ln2 = _as(ops.layernorm_forward(res2, p["ln_2.weight"], p["ln_2.bias"], eps)[0])
    h = _as(ops.matmul_forward(ln2, p["mlp.c_fc.weight"], p["mlp.c_fc.bias"]))
    ops.gelu_forward(h, out=h)
    out = _as(ops.matmul_forward(h, p["mlp.c_proj.weight"], p["mlp.c_proj.bias"]))
    ops.add_forward(res2, out, out=out)
    return out


def _head(model, x_last: np.ndarray) -> np.ndarray:
    """Final LayerNorm and the tied LM head for rows (n, C) only -> logits (n, vocab_size), float32."""
    P, c = model._p, model.config
    ln = _as(ops.layernorm_forward(np.ascontiguousarray(x_last), P.lnf_w, P.lnf_b, c.layer_norm_epsilon)[0])
    logits = _as(ops.matmul_forward(ln, P.wte, trans_b=True))  # (n, Vp): padding columns dropped below
    return logits[:, : c.vocab_size]


def prefill(model, cache: KVCache, slot: int, ids, all_logits: bool = False) -> np.ndarray:
    """Run `ids` (T tokens) through the model in one pass, appending their keys/values to cache slot `slot`.

    The tokens sit at positions lengths[slot] .. lengths[slot] + T - 1 (a slot may be prefilled in several chunks).
    Returns the logits of the last token (vocab_size,), or of every token (T, vocab_size) with all_logits: the LM
    head, the largest matmul, runs only over the rows asked for.
    """
    c, P = model.config, model._p
    slot = _check_slot(cache, slot)
    idx = np.ascontiguousarray(np.asarray(ids, dtype=np.int32).reshape(1, -1))
    T = idx.shape[1]
    p0 = int(cache.lengths[slot])
    if T < 1:
        raise ValueError("prefill: no tokens")
    if p0 + T > cache.max_len:
        raise ValueError(f"prefill: {p0} cached + {T} new tokens exceed the cache length {cache.max_len}")
    NH, HS, eps = c.n_head, c.head_size, c.layer_norm_epsilon
    x = _as(ops.embedding_forward(idx, P.wte, P.wpe, pos_offset=p0))  # (1, T, C)
    for l, p in enumerate(P.layers):
        ln1 = _as(ops.layernorm_forward(x, p["ln_1.weight"], p["ln_1.bias"], eps)[0])
        qkv = _as(ops.matmul_forward(ln1, p["attn.c_attn.weight"], p["attn.c_attn.bias"])).reshape(1, T, 3, NH, HS)
        kc, vc = cache.k[l, slot:slot + 1], cache.v[l, slot:slot + 1]
        kc[0, p0:p0 + T] = qkv[0, :, 1]
        vc[0, p0:p0 + T] = qkv[0, :, 2]
        q = np.ascontiguousarray(qkv[:, :, 0])
        att = _as(ops.attention_forward(q, kc, vc, causal=True, kv_len=p0 + T)[0]).reshape(1, T, c.n_embd)
        x = _mlp_and_proj(p, x, att, eps)
    cache.lengths[slot] = p0 + T
    rows = x[0] if all_logits else x[0, -1:]
    logits = _head(model, rows)
    return logits if all_logits else logits[0]


def decode(model, cache: KVCache, slots, tokens) -> np.ndarray:
    """One new token for each of the given cache slots (each at its own position lengths[slot]) -> logits (n, V).

    The matmuls run over all n sequences together ((n, C) rows); attention runs per sequence because each has its
    own kv_len (one query against its slot's cache; cheap next to the matmuls at Tq = 1).
    """
    c, P = model.config, model._p
    slots = [_check_slot(cache, s) for s in slots]
    tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
    n = len(slots)
    if n != tokens.size or n == 0 or len(set(slots)) != n:
        raise ValueError(f"decode: need one token per distinct slot, got {n} slots and {tokens.size} tokens")
    pos = cache.lengths[slots]
    if int(pos.max()) >= cache.max_len:
        raise ValueError(f"decode: a slot is full (cache length {cache.max_len})")
    NH, HS, eps = c.n_head, c.head_size, c.layer_norm_epsilon
    # wte[id] + wpe[pos] in float32, the same single rounding as embedding_forward, with a position per row.
    x = (P.wte[tokens] + P.wpe[pos]).reshape(n, 1, c.n_embd)
    att = np.empty((n, 1, NH, HS), dtype=np.float32)
    for l, p in enumerate(P.layers):
        ln1 = _as(ops.layernorm_forward(x, p["ln_1.weight"], p["ln_1.bias"], eps)[0])
        qkv = _as(ops.matmul_forward(ln1, p["attn.c_attn.weight"], p["attn.c_attn.bias"])).reshape(n, 1, 3, NH, HS)
        q = np.ascontiguousarray(qkv[:, :, 0])
        for i, s in enumerate(slots):
            t = int(pos[i])
            cache.k[l, s, t] = qkv[i, 0, 1]
            cache.v[l, s, t] = qkv[i, 0, 2]
            ops.attention_forward(q[i:i + 1], cache.k[l, s:s + 1], cache.v[l, s:s + 1], causal=True, kv_len=t + 1,
                                  out=att[i:i + 1])
        x = _mlp_and_proj(p, x, att.reshape(n, 1, c.n_embd), eps)
    cache.lengths[slots] = pos + 1
    return _head(model, x.reshape(n, c.n_embd))
