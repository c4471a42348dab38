"""A gptx Tokenizer as the files transformers reads, built with the `tokenizers` library.

Every kind gets tokenizer.json (what AutoTokenizer loads), tokenizer_config.json and special_tokens_map.json; the
byte-level BPEs (gpt2, trained bpe) also get vocab.json + merges.txt (what the GPT-2 tokenizer without the Rust
backend reads). The same text gives the same ids in transformers as in gptx (tests/data/test_hf_tokenizer.py).
"""
from __future__ import annotations

import functools
import os

from gptx._fileio import atomic_write_bytes, atomic_write_json

HF_FILE = "tokenizer.json"
CONFIG_FILE = "tokenizer_config.json"
SPECIAL_FILE = "special_tokens_map.json"
VOCAB_FILE = "vocab.json"
MERGES_FILE = "merges.txt"


@functools.lru_cache(maxsize=1)
def byte_to_char() -> dict[int, str]:
    """GPT-2's byte -> printable character map (the inverse of the table the tokenizer decodes with)."""
    from gptx.tokenizer import _byte_level_decoder_table

    return {b: ch for ch, b in _byte_level_decoder_table().items()}


def _chars(token: bytes) -> str:
    table = byte_to_char()
    return "".join(table[b] for b in token)


def _split_of(token: bytes, rank: int, ranks: dict[bytes, int]) -> tuple[bytes, bytes]:
    """The pair GPT-2's BPE merged into `token`: its bytes encoded with the merges before it end as two pieces.

    tiktoken keeps only ranks (token -> id); a token's rank is the order of its merge, so replaying the merges of
    lower rank on its bytes stops at exactly the two pieces its own merge joins.
    """
    parts = [token[i:i + 1] for i in range(len(token))]
    while len(parts) > 2:
        best, at = rank, -1
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1], rank)
            if r < best:
                best, at = r, i
        if at < 0:
            break
        parts[at:at + 2] = [parts[at] + parts[at + 1]]
    if len(parts) != 2:
        raise ValueError(f"GPT-2 ranks: token {token!r} (rank {rank}) is not a merge of two earlier tokens")
    return parts[0], parts[1]


@functools.lru_cache(maxsize=1)
def gpt2_vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """GPT-2's vocab.json (byte-level strings -> ids) and its merges in rank order, from the bundled ranks (~1 s)."""
    from gptx.tokenizer import gpt2_ranks

    ranks = gpt2_ranks()
    vocab = {_chars(t): r for t, r in ranks.items()}
    merges = []
    for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        if len(token) > 1:
            a, b = _split_of(token, rank, ranks)
            merges.append((_chars(a), _chars(b)))
    return vocab, merges


def _byte_level(hf, model):
    """A tokenizers.Tokenizer over `model` with GPT-2's byte-level pre-tokenizer, decoder and post-processor."""
    tok = hf.Tokenizer(model)
    tok.pre_tokenizer = hf.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = hf.decoders.ByteLevel()
    tok.post_processor = hf.processors.ByteLevel(trim_offsets=False)
    return tok


def build_hf_tokenizer(tokenizer):
    """The tokenizers.Tokenizer that encodes like `tokenizer` (special tokens as in allow_special=True)."""
    from gptx.tokenizer import EOT, _import_tokenizers

    hf = _import_tokenizers()
    if tokenizer.kind == "bpe":
        return tokenizer.hf_backend()
    if tokenizer.kind == "gpt2":
        vocab, merges = gpt2_vocab_and_merges()
        # <|endoftext|> is in the model's vocabulary too (and so in vocab.json), as in GPT-2's own files.
        tok = _byte_level(hf, hf.models.BPE(vocab=dict(vocab, **{EOT: tokenizer.eot_token}), merges=list(merges)))
    else:  # bytes: one token per byte value, no merges
        tok = _byte_level(hf, hf.models.BPE(vocab={_chars(bytes([b])): b for b in range(256)}, merges=[]))
    if tokenizer.eot_token is not None:
        tok.add_special_tokens([hf.AddedToken(EOT, special=True, normalized=False)])
        if tok.token_to_id(EOT) != tokenizer.eot_token:
            raise ValueError(f"tokenizer {tokenizer.name}: {EOT} got id {tok.token_to_id(EOT)}, "
                             f"expected {tokenizer.eot_token}")
    return tok


def tokenizer_config(tokenizer, model_max_length: int | None = None) -> tuple[dict, dict]:
    """(tokenizer_config.json, special_tokens_map.json) as transformers reads them.

    clean_up_tokenization_spaces is False: transformers would otherwise rewrite " ." to "." when decoding, and the
    text would no longer be the bytes the ids stand for.
    """
    from gptx.tokenizer import EOT

    special = {}
    config = {
        # The generic class that loads tokenizer.json as it is; GPT2Tokenizer would rebuild the pipeline for bytes.
        "tokenizer_class": "GPT2Tokenizer" if tokenizer.kind == "gpt2" else "PreTrainedTokenizerFast",
        "add_prefix_space": False,
        "add_bos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": int(model_max_length) if model_max_length else int(1e30),
    }
    if tokenizer.eot_token is not None:
        special = {"bos_token": EOT, "eos_token": EOT, "unk_token": EOT}
        config.update(special)
        config["added_tokens_decoder"] = {str(tokenizer.eot_token): {
            "content": EOT, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
            "special": True}}
    return config, special


def save_hf_files(tokenizer, directory: str, model_max_length: int | None = None) -> list[str]:
    """Write the Hugging Face tokenizer files of `tokenizer` into directory; returns their names."""
    tok = build_hf_tokenizer(tokenizer)
    written = [HF_FILE, CONFIG_FILE, SPECIAL_FILE]
    atomic_write_bytes(os.path.join(directory, HF_FILE), tok.to_str(pretty=True).encode("utf-8"))
    config, special = tokenizer_config(tokenizer, model_max_length)
    atomic_write_json(os.path.join(directory, CONFIG_FILE), config)
    atomic_write_json(os.path.join(directory, SPECIAL_FILE), special)
    if tokenizer.kind in ("gpt2", "bpe") and type(tok.model).__name__ == "BPE":
        # The model writes its own vocab.json and merges.txt (no hand-made format).
        tmp = os.path.join(directory, f".hf-{os.getpid()}")
        os.makedirs(tmp, exist_ok=True)
        try:
            for made in tok.model.save(tmp):
                with open(made, "rb") as f:
                    atomic_write_bytes(os.path.join(directory, os.path.basename(made)), f.read())
        finally:
            for name in os.listdir(tmp):
                os.unlink(os.path.join(tmp, name))
            os.rmdir(tmp)
        written += [VOCAB_FILE, MERGES_FILE]
    return written
