"""The inference forward pass of a GPT with a KV cache: one-pass prompt prefill, then one token per step.

The pass itself is the C++ library's (gptx/model.h: gptx::prefill / gptx::decode, the same code the C++ example
runs); this module wraps the model's parameter tensors and the cache's tensors for it without copying. Logits come back
as numpy arrays: the sampler that reads them is host code.
"""
from __future__ import annotations

import numpy as np

from gptx import _core
from gptx.config import native_config
from gptx.kv_cache import KVCache


def _native_model(model, refresh: bool = True) -> "_core.GPTModel":
    """The C++ view of the parameters the model computes with, built once per parameter store.

    It wraps the very tensors (wte as the padded (Vp, C) table), so in-place
    updates (optimizer steps, load_state_dict) are seen without a rebuild; a new store (unpickling, _allocate) gets a
    new view. Mixed precision: _compute_params() refreshes the bfloat16 copy of the weights first, as forward() does.
    """
    if not hasattr(model, "_compute_params"):
        P = model._p
    else:  # decode steps reuse the copy their prefill refreshed (saves a cast of every weight per token)
        P = model._compute_params() if refresh or "_native_inference" not in model.__dict__ else model._c
    cached = model.__dict__.get("_native_inference")
    if cached is not None and cached[0] is P:
        return cached[1]
    params = dict(P.named)
    params["transformer.wte.weight"] = P.wte  # (Vp, C): the LM head runs over the padded table, as in training
    native = _core.GPTModel(native_config(model.config), params)
    weights = model.__dict__.get("_weights", "f32")
    if weights != "f32":  # a new parameter store of a quantized model: pack its weights too
        native.quantize(weights)
    model.__dict__["_native_inference"] = (P, native)
    return native


def _native_cache(cache: KVCache) -> "_core.KVCache":
    """The C++ view of cache's k, v and lengths tensors (shared: lengths written by either side are seen by both)."""
    arrays = (cache.k, cache.v, cache.lengths)
    cached = cache.__dict__.get("_native")
    if cached is not None and all(a is b for a, b in zip(cached[0], arrays)):
        return cached[1]
    native = _core.KVCache(*arrays)
    cache.__dict__["_native"] = (arrays, native)
    return native


def prefill(model, cache: KVCache, slot: int, ids, all_logits: bool = False) -> np.ndarray:
    """Run `ids` (T tokens) through the model in one pass, appending their keys/values to cache slot `slot`.

    The tokens sit at positions lengths[slot] .. lengths[slot] + T - 1 (a slot may be prefilled in several chunks).
    Returns the logits of the last token (vocab_size,), or of every token (T, vocab_size) with all_logits: the LM
    head, the largest matmul, runs only over the rows asked for.
    """
    idx = np.asarray(ids, dtype=np.int64).reshape(-1)
    logits = np.asarray(_core.model_prefill(_native_model(model), _native_cache(cache), int(slot), idx, all_logits))
    return logits if all_logits else logits[0]


def decode(model, cache: KVCache, slots, tokens) -> np.ndarray:
    """One new token for each of the given cache slots (each at its own position lengths[slot]) -> logits (n, V).

    The matmuls run over all n sequences together ((n, C) rows); attention runs per sequence because each has its
    own kv_len (one query against its slot's cache; cheap next to the matmuls at Tq = 1).
    """
    slots = [int(s) for s in slots]
    tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
    return np.asarray(_core.model_decode(_native_model(model, refresh=False), _native_cache(cache), slots, tokens))
