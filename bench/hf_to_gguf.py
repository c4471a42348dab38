"""Convert a Hugging Face GPT-2 directory (config.json + model.safetensors) to a GGUF file that llama.cpp loads.

Only what bench/compare_infer.py needs: architecture "gpt2", f32 or f16 weights (1-D tensors stay f32), the tied
LM head written again as output.weight, and the GPT-2 byte-level BPE tokenizer rebuilt from gptx's bundled ranks
(tokens as byte-level unicode strings plus the merge list recovered from the ranks).

    python bench/hf_to_gguf.py HF_DIR OUT.gguf [--dtype f32|f16]       # with gptx installed (pip install .)
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

# Per block: HF name suffix -> (GGUF name suffix, is a Conv1D weight stored (in, out) that ggml wants as (out, in)).
_BLOCK = [
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


def _byte_to_unicode() -> dict[int, str]:
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


def gpt2_vocab(vocab_size: int):
    """(tokens, token types, merges) of GPT-2's tokenizer, padded with unused tokens up to vocab_size."""
    from gptx.tokenizer import gpt2_ranks

    ranks = gpt2_ranks()
    b2u = _byte_to_unicode()
    show = lambda b: "".join(b2u[x] for x in b)  # noqa: E731
    by_id = {r: t for t, r in ranks.items()}
    tokens, types, merges = [], [], []
    for i in range(vocab_size):
        t = by_id.get(i)
        if t is not None:
            tokens.append(show(t))
            types.append(1)  # NORMAL
            if len(t) > 1:
                a, b = _merge_of(t, i, ranks)
                merges.append((i, f"{show(a)} {show(b)}"))
        elif i == len(ranks):
            tokens.append("<|endoftext|>")
            types.append(3)  # CONTROL
        else:
            tokens.append(f"[PAD{i}]")
            types.append(5)  # UNUSED
    merges.sort()
    return tokens, types, [m for _, m in merges]


def convert(hf_dir, out_path, dtype: str = "f32") -> None:
    import gguf
    from safetensors.numpy import load_file

    hf_dir = Path(hf_dir)
    cfg = json.loads((hf_dir / "config.json").read_text())
    sd = load_file(str(hf_dir / "model.safetensors"))
    sd = {k[len("transformer."):] if k.startswith("transformer.") else k: v for k, v in sd.items()}
    L, C, V = cfg["n_layer"], cfg["n_embd"], cfg["vocab_size"]
    n_ctx = cfg.get("n_positions", cfg.get("n_ctx", 1024))
    n_inner = cfg.get("n_inner") or 4 * C
    if dtype not in ("f32", "f16"):
        raise ValueError(f"dtype must be f32 or f16, got {dtype!r}")
    wdt = np.float16 if dtype == "f16" else np.float32

    w = gguf.GGUFWriter(str(out_path), "gpt2")
    w.add_name("gptx-gpt2")
    w.add_context_length(n_ctx)
    w.add_embedding_length(C)
    w.add_feed_forward_length(n_inner)
    w.add_block_count(L)
    w.add_head_count(cfg["n_head"])
    w.add_layer_norm_eps(float(cfg.get("layer_norm_epsilon", 1e-5)))
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if dtype == "f16" else gguf.LlamaFileType.ALL_F32)

    tokens, types, merges = gpt2_vocab(V)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    eot = tokens.index("<|endoftext|>") if "<|endoftext|>" in tokens else V - 1
    w.add_bos_token_id(eot)
    w.add_eos_token_id(eot)
    w.add_add_bos_token(False)

    def put(name, arr, matrix):
        arr = np.ascontiguousarray(arr, dtype=wdt if matrix else np.float32)
        w.add_tensor(name, arr)

    put("token_embd.weight", sd["wte.weight"], True)
    put("position_embd.weight", sd["wpe.weight"], True)
    for l in range(L):
        for hf, gg, transpose in _BLOCK:
            a = sd[f"h.{l}.{hf}"]
            put(f"blk.{l}.{gg}", a.T if transpose else a, a.ndim == 2)
    put("output_norm.weight", sd["ln_f.weight"], False)
    put("output_norm.bias", sd["ln_f.bias"], False)
    put("output.weight", sd.get("lm_head.weight", sd["wte.weight"]), True)  # tied: the token embedding again

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("hf_dir")
    ap.add_argument("out")
    ap.add_argument("--dtype", default="f32", choices=["f32", "f16"])
    a = ap.parse_args(argv)
    convert(a.hf_dir, a.out, a.dtype)
    print(f"wrote {a.out} ({os.path.getsize(a.out) / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
