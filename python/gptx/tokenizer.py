"""Tokenizers: raw UTF-8 bytes, GPT-2 (bundled ranks, offline tiktoken), and a trainable byte-level BPE."""
from __future__ import annotations

import base64
import json
import os
import threading
from typing import Iterable, Sequence

import numpy as np

from gptx import _assets
from gptx._fileio import atomic_write_json, iter_text_chunks

EOT = "<|endoftext|>"
GPT2_EOT_ID = 50256
# The byte tokenizer's end-of-text: one id past the 256 byte values (vocab 257), so byte-level models can learn to
# stop. Checkpoints made before it existed hold vocab-256 models: Tokenizer.bytes(end_of_text=False) reads those.
BYTES_EOT_ID = 256
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
# A gptx_tokenizer.json holds a few short fields; anything far larger is not one (and is not read into memory).
META_MAX_BYTES = 1 << 20

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
    def bytes(cls, end_of_text: bool = True) -> "Tokenizer":
        """One token per UTF-8 byte (ids 0..255 are the byte values, lossless) and <|endoftext|> = 256 (vocab 257).

        end_of_text=False is the older form without the end-of-text id (vocab 256, eot_token None), which byte-level
        checkpoints saved before gptx had it use; loading such a checkpoint picks it by itself.
        """
        if end_of_text:
            return cls("bytes", "bytes", BYTES_EOT_ID + 1, BYTES_EOT_ID)
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
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, (int, np.integer)):
            raise TypeError(f"Tokenizer.train: vocab_size must be an integer, got {vocab_size!r}")
        if source is None or isinstance(source, (int, float, bytes)):
            raise TypeError(f"Tokenizer.train: source must be a path, a list of paths or texts, got "
                            f"{type(source).__name__}")
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
        from gptx._checks import path as _path

        path = _path("Tokenizer.load", "path", path)
        if os.path.isdir(path):
            meta_path = os.path.join(path, META_FILE)
            if os.path.exists(meta_path):
                return cls._from_meta(meta_path)
            if os.path.exists(os.path.join(path, HF_FILE)):
                return cls._from_hf_file(os.path.join(path, HF_FILE), os.path.basename(os.path.abspath(path)))
            raise FileNotFoundError(f"no tokenizer in {path}: expected {META_FILE} (gptx) or {HF_FILE} (Hugging Face)")
        if not os.path.exists(path):
            raise FileNotFoundError(f"tokenizer path {path} does not exist")
        if os.path.basename(path) == META_FILE:
            return cls._from_meta(path)
        obj = _read_json(path, None)
        if isinstance(obj, dict) and obj.get("format") == META_FORMAT:
            return cls._from_meta(path)
        return cls._from_hf_file(path, os.path.splitext(os.path.basename(path))[0])

    @classmethod
    def from_spec(cls, spec) -> "Tokenizer":
        """'bytes', 'gpt2', a Tokenizer, or a path accepted by load() (the form the command line uses)."""
        if isinstance(spec, Tokenizer):
            return spec
        if not isinstance(spec, (str, os.PathLike)):  # an int would be taken as an open file descriptor's path
            raise TypeError(f"tokenizer spec must be 'bytes', 'gpt2', a path or a Tokenizer, got {spec!r}")
        if spec in ("bytes", "byte"):
            return cls.bytes()
        if spec == "gpt2":
            return cls.gpt2()
        if not os.path.exists(os.fspath(spec)):
            raise ValueError(f"tokenizer {spec!r} is neither 'bytes', 'gpt2' nor an existing path")
        return cls.load(spec)

    @classmethod
    def _from_meta(cls, meta_path: str) -> "Tokenizer":
        # The file is untrusted input: every field is checked before it is used, and nothing is sized by it.
        meta = _read_json(meta_path, META_MAX_BYTES)
        if not isinstance(meta, dict):
            raise ValueError(f"{meta_path} is not a gptx tokenizer file: it holds a JSON {type(meta).__name__}, "
                             f"not an object")
        version = meta.get("version")
        if meta.get("format") != META_FORMAT or not _is_int(version):
            raise ValueError(f"{meta_path} is not a gptx tokenizer file")
        if version > META_VERSION:
            raise ValueError(f"{meta_path} has format version {version}; this gptx reads up to {META_VERSION}")
        vocab_size, eot = meta.get("vocab_size"), meta.get("eot_token")
        if "vocab_size" in meta and not _is_int(vocab_size):
            raise ValueError(f"{meta_path}: vocab_size must be an integer, got {vocab_size!r}")
        if eot is not None and not _is_int(eot):
            raise ValueError(f"{meta_path}: eot_token must be an integer or null, got {eot!r}")
        name = meta.get("name", meta.get("kind"))
        if not isinstance(name, str):
            raise ValueError(f"{meta_path}: name must be a string, got {name!r}")
        kind = meta.get("kind")
        if kind == "bytes":
            # vocab 257 (with <|endoftext|>) or the older 256 (without); missing means the older form.
            if vocab_size not in (None, 256, BYTES_EOT_ID + 1):
                raise ValueError(f"{meta_path}: a bytes tokenizer has vocab_size 257 (or 256 without end-of-text), "
                                 f"not {vocab_size}")
            tok = cls.bytes(end_of_text=vocab_size == BYTES_EOT_ID + 1)
        elif kind == "gpt2":
            tok = cls.gpt2()
        elif kind == "bpe":
            hf_path = _member_path(meta_path, meta.get("files", {}), "tokenizer", HF_FILE)
            tok = cls._from_hf_file(hf_path, name)
        else:
            raise ValueError(f"{meta_path}: unknown tokenizer kind {kind!r}; expected one of {KINDS}")
        if "vocab_size" in meta and vocab_size != tok.vocab_size:
            raise ValueError(f"{meta_path} records vocab_size {vocab_size} but the tokenizer has {tok.vocab_size}")
        if "eot_token" in meta and eot != tok.eot_token:
            raise ValueError(f"{meta_path} records eot_token {eot} but the tokenizer has {tok.eot_token}")
        return tok

    @classmethod
    def _from_hf_file(cls, path: str, name: str) -> "Tokenizer":
        if not os.path.exists(path):
            raise FileNotFoundError(f"tokenizer file {path} is missing")
        with open(path, "rb") as f:
            data = f.read()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{path} is not a tokenizer file: not UTF-8 text") from None
        return cls._from_hf_json(text, name, path)

    @classmethod
    def _from_hf_json(cls, text: str, name: str, where: str | None = None) -> "Tokenizer":
        hf = _import_tokenizers()
        where = where or f"tokenizer {name!r}"
        try:
            special = hf.Tokenizer.from_str(text)
            plain = hf.Tokenizer.from_str(text)
        except Exception as e:  # the Rust side raises a plain Exception on malformed files
            raise ValueError(f"{where}: cannot read it as a Hugging Face tokenizer: {e}") from None
        # Two instances rather than toggling a flag per call, so concurrent encodes never race.
        try:
            plain.encode_special_tokens = True
        except AttributeError:
            raise ImportError("BPE tokenizers need tokenizers >= 0.15.1 (encode_special_tokens); upgrade it") from None
        vocab = special.get_vocab(with_added_tokens=True)
        vocab_size = max(vocab.values()) + 1 if vocab else 0
        # Ids must be 0..n-1 for the n tokens the file holds: the byte table below has one entry per id, so an id
        # such as 2**31-1 would otherwise allocate gigabytes for a file of a few bytes.
        if vocab_size > len(vocab):
            raise ValueError(f"{where}: token ids must be 0..{len(vocab) - 1} for its {len(vocab)} tokens, "
                             f"but it uses id {vocab_size - 1}")
        if len(set(vocab.values())) != len(vocab):
            # two tokens with one id: which one decode gives back would depend on the order of a hash map
            seen = {}
            for token, i in sorted(vocab.items(), key=lambda kv: kv[1]):
                if i in seen:
                    raise ValueError(f"{where}: tokens {seen[i]!r} and {token!r} both have id {i}")
                seen[i] = token
        added = {t.content for t in special.get_added_tokens_decoder().values()}
        byte_level = type(special.decoder).__name__ == "ByteLevel"
        table = None
        if byte_level:
            inv = _byte_level_decoder_table()
            missing = [inv[ch] for ch in inv if ch not in vocab]
            if missing:  # encode would drop those bytes without a word (tokenizers has no unknown token for them)
                raise ValueError(f"{where}: a byte-level BPE needs a token for each of the 256 bytes, but has none "
                                 f"for {', '.join(f'0x{b:02x}' for b in sorted(missing)[:8])}"
                                 f"{' ...' if len(missing) > 8 else ''} ({len(missing)} missing)")
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

    def save(self, directory, model_max_length: int | None = None) -> str:
        """Write gptx_tokenizer.json (kind, sizes, files) into directory, and the files transformers reads:
        tokenizer.json, tokenizer_config.json, special_tokens_map.json, and vocab.json + merges.txt for byte-level
        BPEs (see gptx.hf_tokenizer). model_max_length (the model's block_size) goes into tokenizer_config.json.
        Returns the path of gptx_tokenizer.json."""
        from gptx.hf_tokenizer import save_hf_files

        directory = os.fspath(directory)
        os.makedirs(directory, exist_ok=True)
        save_hf_files(self, directory, model_max_length)
        path = os.path.join(directory, META_FILE)
        atomic_write_json(path, self.to_dict())
        return path

    def hf_backend(self):
        """The trained BPE's tokenizers.Tokenizer (what tokenizer.json holds); None for the other kinds."""
        return self._backend[0] if self.kind == "bpe" else None

    # ----- encoding -----
    def encode(self, text: str, allow_special: bool = False) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"encode: text must be a str, got {type(text).__name__}")
        if self.kind == "bytes":
            if allow_special and self.eot_token is not None and EOT in text:
                return self.encode_array(text, allow_special).tolist()
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
            if allow_special and self.eot_token is not None and EOT in text:
                parts = [np.frombuffer(t.encode("utf-8"), dtype=np.uint8).astype(np.uint32) for t in text.split(EOT)]
                eot = np.array([self.eot_token], dtype=np.uint32)
                return np.concatenate([a for p in parts[:-1] for a in (p, eot)] + [parts[-1]])
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
            ends = np.flatnonzero(arr == self.eot_token) if self.eot_token is not None else ()
            if not len(ends):
                return arr.astype(np.uint8).tobytes()
            pieces, start = [], 0
            for e in ends.tolist():
                pieces += [arr[start:e].astype(np.uint8).tobytes(), EOT.encode("utf-8")]
                start = e + 1
            return b"".join(pieces + [arr[start:].astype(np.uint8).tobytes()])
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


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_text(s: str) -> bool:
    """Whether s encodes to UTF-8 (JSON's \\ud800-style escapes can spell lone surrogates, which do not)."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _read_json(path: str, max_bytes: int | None):
    """A JSON file's value; ValueError naming the file when it is too large, not UTF-8 or not JSON."""
    with open(path, "rb") as f:
        data = f.read(max_bytes + 1) if max_bytes is not None else f.read()
    if max_bytes is not None and len(data) > max_bytes:
        raise ValueError(f"{path} is not a gptx tokenizer file: larger than {max_bytes} bytes")
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:  # RecursionError: nested too deeply
        raise ValueError(f"{path} is not a tokenizer file: invalid JSON ({e})") from None


def _member_path(meta_path: str, files, key: str, default: str) -> str:
    """The path of a file the tokenizer meta file names: a plain file name inside the meta file's own folder."""
    if not isinstance(files, dict):
        raise ValueError(f"{meta_path}: 'files' must be an object, got {files!r}")
    name = files.get(key, default)
    folder = os.path.dirname(os.path.abspath(meta_path))
    bad = (not isinstance(name, str) or not name or name != os.path.basename(name) or name in (".", "..")
           or "/" in name or "\\" in name or "\0" in name or not _is_text(name))
    if not bad:
        target = os.path.realpath(os.path.join(folder, name))
        bad = os.path.dirname(target) != os.path.realpath(folder)
    if bad:
        raise ValueError(f"{meta_path}: files.{key} must name a file in the same folder, got {name!r}")
    return os.path.join(folder, name)


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
