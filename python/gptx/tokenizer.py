"""Tokenizers: raw UTF-8 bytes, GPT-2 (bundled ranks, offline tiktoken), and a trainable byte-level BPE."""
from __future__ import annotations

import base64
import json
import os
import threading
from typing import Iterable, Sequence

import numpy as np

from gptx import _assets
from gptx._fileio import atomic_write_bytes, atomic_write_json, iter_text_chunks

EOT = "<|endoftext|>"
GPT2_EOT_ID = 50256
# tiktoken's r50k_base / gpt2 pre-tokenizer pattern: GPT-2's regex with possessive quantifiers, which cut the same
# pieces without the quadratic backtracking of the original on long whitespace runs.
R50K_PATTERN = (
    r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
)
# GPT-2's original regex, for tiktoken builds whose regex engine predates possessive quantifiers.
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# The file Tokenizer.save writes. Not "tokenizer.json": that name belongs to Hugging Face's tokenizers format, which
# a trained BPE is saved in (next to this file), so a checkpoint folder stays loadable by transformers.
META_FILE = "gptx_tokenizer.json"
HF_FILE = "tokenizer.json"
META_FORMAT = "gptx-tokenizer"
META_VERSION = 1
KINDS = ("bytes", "gpt2", "bpe")

_gpt2_lock = threading.Lock()
_gpt2_cache: dict[str, object] = {}


def gpt2_ranks() -> dict[bytes, int]:
    """GPT-2's mergeable ranks (token bytes -> id) from the bundled file: one `base64(token) rank` per line."""
    ranks = {}
    for line in _assets.asset_bytes("gpt2.tiktoken").splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def _gpt2_encoding():
    """The GPT-2 tiktoken Encoding, built from the bundled ranks (no network, no tiktoken cache)."""
    import tiktoken

    key = _assets.ASSET_DIR
    with _gpt2_lock:
        enc = _gpt2_cache.get(key)
        if enc is None:
            ranks = gpt2_ranks()
            enc = None
            for pattern in (R50K_PATTERN, GPT2_PATTERN):
                try:
                    enc = tiktoken.Encoding(name="gpt2", pat_str=pattern, mergeable_ranks=ranks,
                                            special_tokens={EOT: GPT2_EOT_ID}, explicit_n_vocab=GPT2_EOT_ID + 1)
                    break
                except ValueError:  # the regex failed to compile: an older tiktoken; use the original form
                    if pattern is GPT2_PATTERN:
                        raise
            _gpt2_cache[key] = enc
        return enc


def _byte_level_decoder_table() -> dict[str, int]:
    """Inverse of GPT-2's byte -> printable-character map used by byte-level BPE vocabularies.

    Printable Latin-1 bytes map to themselves; the other 68 bytes (controls, space, 0x7F-0xA0, 0xAD) map in order to
    U+0100, U+0101, ... so every byte has a visible, non-whitespace character.
    """
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    table = {}
    extra = 0
    for b in range(256):
        if b in keep:
            table[chr(b)] = b
        else:
            table[chr(256 + extra)] = b
            extra += 1
    return table


def _as_id_array(ids, vocab_size: int) -> np.ndarray:
    arr = np.asarray(ids)
    if arr.ndim > 1:
        raise ValueError(f"decode takes a 1-D sequence of token ids, got shape {arr.shape}")
    arr = arr.reshape(-1)
    if arr.size == 0:
        return arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"token ids must be integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi >= vocab_size:
        bad = lo if lo < 0 else hi
        raise ValueError(f"token id {bad} is outside the vocabulary (ids 0..{vocab_size - 1})")
    return arr


class Tokenizer:
    """Text <-> token ids. Build with Tokenizer.bytes(), .gpt2(), .train(...) or .load(dir).

    encode(text) treats the whole text as ordinary text ("<|endoftext|>" typed in a document is just characters);
    pass allow_special=True to map the literal special-token text to its id. decode never fails on valid ids:
    bytes that are not UTF-8 become U+FFFD; decode_bytes gives the exact bytes.
    """

    def __init__(self, kind: str, name: str, vocab_size: int, eot_token: int | None, backend=None,
                 token_bytes_table: list | None = None):
        if kind not in KINDS:
            raise ValueError(f"unknown tokenizer kind {kind!r}; expected one of {KINDS}")
        self.kind = kind
        self.name = name
        self.vocab_size = int(vocab_size)
        self.eot_token = eot_token
        self._backend = backend
        self._table = token_bytes_table

    # ----- constructors -----
    @classmethod
    def bytes(cls) -> "Tokenizer":
        """One token per UTF-8 byte (vocab 256, lossless). There is no end-of-text token (eot_token is None)."""
        return cls("bytes", "bytes", 256, None)

    @classmethod
    def gpt2(cls) -> "Tokenizer":
        """GPT-2's tokenizer (50257 ids, <|endoftext|> = 50256) from the bundled, hash-checked ranks file."""
        return cls("gpt2", "gpt2", GPT2_EOT_ID + 1, GPT2_EOT_ID, _gpt2_encoding())

    @classmethod
    def train(cls, source, vocab_size: int, min_frequency: int = 2, special_tokens: Sequence[str] = (EOT,),
              name: str = "bpe", show_progress: bool = False) -> "Tokenizer":
        """Train a byte-level BPE (GPT-2 pre-tokenizer regex, all 256 bytes in the base alphabet).

        source: one path (str or os.PathLike), a list of os.PathLike paths, or an iterable of text strings (a list of
        str is always texts, never file names). vocab_size counts the 256 byte tokens and the special tokens (ids 0..
        for the specials, in the order given); the result can be smaller when the text has too few distinct pairs.
        Needs the `tokenizers` package.
        """
        hf = _import_tokenizers()
        if vocab_size < 256 + len(special_tokens):
            raise ValueError(f"vocab_size must be at least 256 + {len(special_tokens)} special tokens, "
                             f"got {vocab_size}")
        if vocab_size > 65536:
            # Token shards store uint16 ids; larger vocabularies would need a different on-disk format.
            raise ValueError(f"vocab_size must be at most 65536, got {vocab_size}")
        tok = hf.Tokenizer(hf.models.BPE())
        tok.pre_tokenizer = hf.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tok.decoder = hf.decoders.ByteLevel()
        trainer = hf.trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=list(special_tokens),
            initial_alphabet=hf.pre_tokenizers.ByteLevel.alphabet(),
            show_progress=show_progress,
        )
        tok.train_from_iterator(_training_texts(source), trainer=trainer)
        return cls._from_hf_json(tok.to_str(), name)

    @classmethod
    def load(cls, path) -> "Tokenizer":
        """Restore a tokenizer saved by save(dir). Also accepts a Hugging Face tokenizer.json (file or folder)."""
        path = os.fspath(path)
        if os.path.isdir(path):
            meta_path = os.path.join(path, META_FILE)
            if os.path.exists(meta_path):
                return cls._from_meta(meta_path)
            if os.path.exists(os.path.join(path, HF_FILE)):
                return cls._from_hf_file(os.path.join(path, HF_FILE), os.path.basename(os.path.abspath(path)))
            raise FileNotFoundError(f"no tokenizer in {path}: expected {META_FILE} (gptx) or {HF_FILE} (Hugging Face)")
        if not os.path.exists(path):
            raise FileNotFoundError(f"tokenizer path {path} does not exist")
        with open(path, "rb") as f:
            try:
                obj = json.loads(f.read())
            except json.JSONDecodeError as e:
                raise ValueError(f"{path} is not a tokenizer file: invalid JSON ({e.msg} at line {e.lineno})") from None
        if isinstance(obj, dict) and obj.get("format") == META_FORMAT:
            return cls._from_meta(path)
        return cls._from_hf_file(path, os.path.splitext(os.path.basename(path))[0])

    @classmethod
    def from_spec(cls, spec) -> "Tokenizer":
        """'bytes', 'gpt2', a Tokenizer, or a path accepted by load() (the form the command line uses)."""
        if isinstance(spec, Tokenizer):
            return spec
        if spec in ("bytes", "byte"):
            return cls.bytes()
        if spec == "gpt2":
            return cls.gpt2()
        if not os.path.exists(os.fspath(spec)):
            raise ValueError(f"tokenizer {spec!r} is neither 'bytes', 'gpt2' nor an existing path")
        return cls.load(spec)

    @classmethod
    def _from_meta(cls, meta_path: str) -> "Tokenizer":
        with open(meta_path, "rb") as f:
            meta = json.loads(f.read())
        version = meta.get("version")
        if meta.get("format") != META_FORMAT or not isinstance(version, int):
            raise ValueError(f"{meta_path} is not a gptx tokenizer file")
        if version > META_VERSION:
            raise ValueError(f"{meta_path} has format version {version}; this gptx reads up to {META_VERSION}")
        kind = meta.get("kind")
        if kind == "bytes":
            tok = cls.bytes()
        elif kind == "gpt2":
            tok = cls.gpt2()
        elif kind == "bpe":
            hf_name = meta.get("files", {}).get("tokenizer", HF_FILE)
            tok = cls._from_hf_file(os.path.join(os.path.dirname(meta_path), hf_name), meta.get("name", "bpe"))
        else:
            raise ValueError(f"{meta_path}: unknown tokenizer kind {kind!r}; expected one of {KINDS}")
        if "vocab_size" in meta and meta["vocab_size"] != tok.vocab_size:
            raise ValueError(f"{meta_path} records vocab_size {meta['vocab_size']} "
                             f"but the tokenizer has {tok.vocab_size}")
        if "eot_token" in meta and meta["eot_token"] != tok.eot_token:
            raise ValueError(f"{meta_path} records eot_token {meta['eot_token']} but the tokenizer has {tok.eot_token}")
        return tok

    @classmethod
    def _from_hf_file(cls, path: str, name: str) -> "Tokenizer":
        if not os.path.exists(path):
            raise FileNotFoundError(f"tokenizer file {path} is missing")
        with open(path, "rb") as f:
            return cls._from_hf_json(f.read().decode("utf-8"), name)

    @classmethod
    def _from_hf_json(cls, text: str, name: str) -> "Tokenizer":
        hf = _import_tokenizers()
        try:
            special = hf.Tokenizer.from_str(text)
            plain = hf.Tokenizer.from_str(text)
        except Exception as e:  # the Rust side raises a plain Exception on malformed files
            raise ValueError(f"cannot read tokenizer {name!r}: {e}") from None
        # Two instances rather than toggling a flag per call, so concurrent encodes never race.
        try:
            plain.encode_special_tokens = True
        except AttributeError:
            raise ImportError("BPE tokenizers need tokenizers >= 0.15.1 (encode_special_tokens); upgrade it") from None
        vocab = special.get_vocab(with_added_tokens=True)
        vocab_size = max(vocab.values()) + 1 if vocab else 0
        added = {t.content for t in special.get_added_tokens_decoder().values()}
        byte_level = type(special.decoder).__name__ == "ByteLevel"
        table = None
        if byte_level:
            inv = _byte_level_decoder_table()
            table = [b""] * vocab_size
            for token, i in vocab.items():
                if token in added or any(ch not in inv for ch in token):
                    table[i] = token.encode("utf-8")
                else:
                    table[i] = bytes(inv[ch] for ch in token)
        return cls("bpe", name, vocab_size, vocab.get(EOT), (special, plain), table)

    # ----- saving -----
    def to_dict(self) -> dict:
        """What save() records: enough to rebuild the tokenizer and to check it matches."""
        d = {"format": META_FORMAT, "version": META_VERSION, "kind": self.kind, "name": self.name,
             "vocab_size": self.vocab_size, "eot_token": self.eot_token, "files": {}}
        if self.kind == "bpe":
            d["files"]["tokenizer"] = HF_FILE
        return d

    def save(self, directory) -> str:
        """Write gptx_tokenizer.json (kind, sizes, files) into directory, plus tokenizer.json for a BPE."""
        directory = os.fspath(directory)
        os.makedirs(directory, exist_ok=True)
        if self.kind == "bpe":
            atomic_write_bytes(os.path.join(directory, HF_FILE), self._backend[0].to_str(pretty=True).encode("utf-8"))
        path = os.path.join(directory, META_FILE)
        atomic_write_json(path, self.to_dict())
        return path

    # ----- encoding -----
    def encode(self, text: str, allow_special: bool = False) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"encode takes a str, got {type(text).__name__}")
        if self.kind == "bytes":
            return list(text.encode("utf-8"))
        if self.kind == "gpt2":
            if allow_special:
                return self._backend.encode(text, allowed_special="all")
            return self._backend.encode_ordinary(text)
        hf = self._backend[0] if allow_special else self._backend[1]
        return hf.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str], allow_special: bool = False) -> list[list[int]]:
        """encode() over many texts (in parallel for gpt2 and bpe)."""
        texts = list(texts)
        if self.kind == "gpt2":
            if allow_special:
                return self._backend.encode_batch(texts, allowed_special="all")
            return self._backend.encode_ordinary_batch(texts)
        if self.kind == "bpe":
            hf = self._backend[0] if allow_special else self._backend[1]
            return [e.ids for e in hf.encode_batch(texts, add_special_tokens=False)]
        return [self.encode(t) for t in texts]

    def encode_array(self, text: str, allow_special: bool = False) -> np.ndarray:
        """encode() as a 1-D uint32 numpy array (cheap for the bytes tokenizer)."""
        if self.kind == "bytes":
            return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.uint32)
        return np.asarray(self.encode(text, allow_special), dtype=np.uint32)

    def encode_file(self, path, chunk_bytes: int | None = None) -> np.ndarray:
        """Tokenize a UTF-8 file in chunks (same ids as encoding it whole) into a uint32 array."""
        kw = {} if chunk_bytes is None else {"chunk_bytes": chunk_bytes}
        parts = [self.encode_array(t) for t in iter_text_chunks(os.fspath(path), **kw)]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint32)

    # ----- decoding -----
    def decode_bytes(self, ids) -> bytes:
        """The exact bytes the ids stand for (special tokens as their UTF-8 text)."""
        arr = _as_id_array(ids, self.vocab_size)
        if self.kind == "bytes":
            return arr.astype(np.uint8).tobytes()
        if self.kind == "gpt2":
            return self._backend.decode_bytes(arr.tolist())
        if self._table is not None:
            table = self._table
            return b"".join([table[i] for i in arr.tolist()])
        return self._backend[0].decode(arr.tolist(), skip_special_tokens=False).encode("utf-8")

    def decode(self, ids) -> str:
        """Text for the ids; bytes that do not form valid UTF-8 (e.g. half a character) become U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def token_bytes(self, token_id: int) -> bytes:
        """Bytes of one token (for streaming output: feed them to an incremental UTF-8 decoder)."""
        return self.decode_bytes([token_id])

    def __repr__(self) -> str:
        return (f"Tokenizer(kind={self.kind!r}, name={self.name!r}, vocab_size={self.vocab_size}, "
                f"eot_token={self.eot_token})")


def _import_tokenizers():
    try:
        import tokenizers
    except ImportError:
        raise ImportError(
            "training or loading a BPE tokenizer needs the 'tokenizers' package: pip install tokenizers"
        ) from None
    return tokenizers


def _training_texts(source) -> Iterable[str]:
    """Normalise Tokenizer.train's source to an iterator of text pieces (files streamed in exact-split chunks)."""
    if isinstance(source, (str, os.PathLike)):
        paths = [source]
    elif isinstance(source, (list, tuple)) and source and all(isinstance(s, os.PathLike) for s in source):
        paths = list(source)
    else:
        return _checked_texts(source)
    for p in paths:
        if not os.path.isfile(os.fspath(p)):
            raise FileNotFoundError(f"training file {os.fspath(p)} does not exist (pass texts as a list of strings)")
    return (chunk for p in paths for chunk in iter_text_chunks(os.fspath(p), 1 << 20))


def _checked_texts(texts):
    for t in texts:
        if not isinstance(t, str):
            raise TypeError(f"training texts must be str, got {type(t).__name__}")
        yield t
