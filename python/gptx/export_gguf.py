"""Write a GPT as a GGUF file that llama.cpp loads (architecture "gpt2"): f32, f16 or q8_0 weights and the model's
own tokenizer (GPT-2 BPE, the byte tokenizer, or a trained byte-level BPE), in the names llama.cpp's gpt2 loader reads.

Needs the `gguf` package (pip install "gptx-engine[gguf]"); gptx imports and runs without it.

- Weights: 2-D matrices in `dtype`; 1-D tensors (biases, layer norms) stay f32, and so does the position table with
  q8_0 (a tiny table; llama.cpp reads it as given). q8_0 needs rows whose length is a multiple of 32 (every GPT-2
  size is): a matrix whose rows are not is written in f16 instead, which the file's tensor types show.
  Conv1D weights (in, out) are written transposed, as ggml's (out, in); the tied LM head is written again as
  output.weight.
- The file is written next to its destination and renamed into place: a reader never sees half a file.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

DTYPES = ("f32", "f16", "q8_0")

# Per block: HF name suffix -> (GGUF name suffix, is a Conv1D weight stored (in, out) that ggml wants as (out, in)).
BLOCK_TENSORS = [
    ("ln_1.weight", "attn_norm.weight", False),
    ("ln_1.bias", "attn_norm.bias", False),
    ("attn.c_attn.weight", "attn_qkv.weight", True),
    ("attn.c_attn.bias", "attn_qkv.bias", False),
    ("attn.c_proj.weight", "attn_output.weight", True),
    ("attn.c_proj.bias", "attn_output.bias", False),
    ("ln_2.weight", "ffn_norm.weight", False),
    ("ln_2.bias", "ffn_norm.bias", False),
    ("mlp.c_fc.weight", "ffn_up.weight", True),
    ("mlp.c_fc.bias", "ffn_up.bias", False),
    ("mlp.c_proj.weight", "ffn_down.weight", True),
    ("mlp.c_proj.bias", "ffn_down.bias", False),
]

# llama.cpp token types
NORMAL, CONTROL, UNUSED = 1, 3, 5


def import_gguf():
    try:
        import gguf
    except ImportError:
        raise ImportError("writing GGUF needs the gguf package: pip install 'gptx-engine[gguf]' (or pip install gguf)"
                          ) from None
    return gguf


def byte_to_unicode() -> dict[int, str]:
    """GPT-2's map from the 256 byte values to printable characters (printable bytes keep their code point)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def _merge_of(token: bytes, rank: int, ranks: dict[bytes, int]) -> tuple[bytes, bytes]:
    """The pair whose merge made `token`: byte-pair encode it with merges of lower rank only; two parts remain."""
    parts = [bytes([b]) for b in token]
    while len(parts) > 2:
        best, best_i = None, -1
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and r < rank and (best is None or r < best):
                best, best_i = r, i
        if best is None:
            break
        parts[best_i:best_i + 2] = [parts[best_i] + parts[best_i + 1]]
    if len(parts) != 2:
        raise ValueError(f"cannot recover the merge for token {token!r} (rank {rank})")
    return parts[0], parts[1]


def _pad(tokens, types, vocab_size):
    """Unused placeholder tokens up to the model's vocabulary size (its embedding rows)."""
    for i in range(len(tokens), vocab_size):
        tokens.append(f"[PAD{i}]")
        types.append(UNUSED)
    return tokens, types


def gguf_vocab(tokenizer, vocab_size: int):
    """(tokens, token types, merges, end-of-text id or None) in GGUF's byte-level BPE form ("gpt2" tokenizer model)."""
    b2u = byte_to_unicode()
    show = lambda b: "".join(b2u[x] for x in b)  # noqa: E731
    if tokenizer.vocab_size > vocab_size:
        raise ValueError(f"the tokenizer has {tokenizer.vocab_size} ids but the model only {vocab_size} rows")
    if tokenizer.kind == "gpt2":
        from gptx.tokenizer import gpt2_ranks

        ranks = gpt2_ranks()
        by_id = {r: t for t, r in ranks.items()}
        tokens, types, merges = [], [], []
        for i in range(tokenizer.vocab_size):
            t = by_id.get(i)
            if t is None:  # <|endoftext|>, after the 50256 ranked tokens
                tokens.append("<|endoftext|>")
                types.append(CONTROL)
                continue
            tokens.append(show(t))
            types.append(NORMAL)
            if len(t) > 1:
                a, b = _merge_of(t, i, ranks)
                merges.append((i, f"{show(a)} {show(b)}"))
        merges = [m for _, m in sorted(merges)]
    elif tokenizer.kind == "bytes":  # id = byte value
        # llama.cpp refuses a BPE vocabulary without merges. One merge (NUL NUL) whose result is no token: llama.cpp
        # then falls back to the single bytes, so every text still tokenizes to its byte values.
        tokens, types, merges = [b2u[b] for b in range(256)], [NORMAL] * 256, [f"{b2u[0]} {b2u[0]}"]
        if tokenizer.eot_token is not None:
            tokens.append("<|endoftext|>")
            types.append(CONTROL)
    elif tokenizer.kind == "bpe":  # a trained byte-level BPE: tokenizer.json already holds byte-level strings
        spec = json.loads(tokenizer.hf_backend().to_str())
        vocab = spec["model"]["vocab"]
        special = {t["id"]: t["content"] for t in spec.get("added_tokens", [])}
        by_id = {i: t for t, i in vocab.items()}
        by_id.update(special)
        tokens, types = [], []
        for i in range(tokenizer.vocab_size):
            if i not in by_id:
                raise ValueError(f"the trained tokenizer has no token for id {i}")
            tokens.append(by_id[i])
            types.append(CONTROL if i in special else NORMAL)
        merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"].get("merges", [])]
    else:
        raise ValueError(f"no GGUF vocabulary for a tokenizer of kind {tokenizer.kind!r}")
    tokens, types = _pad(tokens, types, vocab_size)
    return tokens, types, merges, tokenizer.eot_token


def write_gguf(model, tokenizer, out_path, dtype: str = "f32", name: str = "gptx-gpt2") -> Path:
    """Write model (a gptx.GPT) and its tokenizer to out_path as GGUF with 2-D weights in dtype (f32, f16, q8_0)."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    gguf = import_gguf()
    from gguf import quants

    out_path = Path(out_path)
    c = model.config
    sd = model.state_dict()  # float32 host arrays, HF names with "transformer." prefixes
    sd = {k[len("transformer."):] if k.startswith("transformer.") else k: v for k, v in sd.items()}
    tokens, types, merges, eot = gguf_vocab(tokenizer, c.vocab_size)

    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=out_path.name + ".", suffix=".tmp", dir=out_path.parent)
    os.close(fd)
    try:
        w = gguf.GGUFWriter(tmp, "gpt2")
        w.add_name(name)
        w.add_context_length(c.block_size)
        w.add_embedding_length(c.n_embd)
        w.add_feed_forward_length(4 * c.n_embd)
        w.add_block_count(c.n_layer)
        w.add_head_count(c.n_head)
        w.add_layer_norm_eps(float(c.layer_norm_epsilon))
        w.add_file_type({"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                         "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[dtype])
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre("gpt-2")
        w.add_token_list(tokens)
        w.add_token_types(types)
        w.add_token_merges(merges)
        if eot is not None:
            w.add_bos_token_id(eot)
            w.add_eos_token_id(eot)
        w.add_add_bos_token(False)

        def put(gname, arr, matrix, allow_q8=True):
            arr = np.ascontiguousarray(arr, dtype=np.float32)
            if not matrix or dtype == "f32" or (dtype == "q8_0" and not allow_q8):
                w.add_tensor(gname, arr)
            elif dtype == "q8_0" and allow_q8 and arr.shape[-1] % 32 == 0:
                q = quants.quantize(arr, gguf.GGMLQuantizationType.Q8_0)
                w.add_tensor(gname, q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)  # shape from the byte rows
            else:
                w.add_tensor(gname, arr.astype(np.float16))

        put("token_embd.weight", sd["wte.weight"], True)
        put("position_embd.weight", sd["wpe.weight"], True, allow_q8=False)
        for l in range(c.n_layer):
            for hf, gg, transpose in BLOCK_TENSORS:
                a = sd[f"h.{l}.{hf}"]
                put(f"blk.{l}.{gg}", a.T if transpose else a, a.ndim == 2)
        put("output_norm.weight", sd["ln_f.weight"], False)
        put("output_norm.bias", sd["ln_f.bias"], False)
        put("output.weight", sd["wte.weight"], True)  # tied: the token embedding again
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        os.replace(tmp, out_path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return out_path
