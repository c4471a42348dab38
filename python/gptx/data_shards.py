"""Token shards: uint16 .bin files with a validated header, memory-mapped for reading, written atomically."""
from __future__ import annotations

import hashlib
import json
import os
import struct

import numpy as np

from gptx._fileio import atomic_write, atomic_write_json

MAGIC = b"GPTXTOKS"
SHARD_VERSION = 1
DTYPE_UINT16 = 1  # the only dtype code so far: little-endian uint16 token ids
DTYPE_CODES = {DTYPE_UINT16: np.dtype("<u2")}
# magic (8s), version (u32), dtype code (u32), header size (u32), reserved (u32), token count (u64): 32 bytes,
# zero-padded to 64 so the token data starts cache-line aligned and later versions have room for more fields.
_HEADER = struct.Struct("<8sIIIIQ")
HEADER_SIZE = 64
MAX_TOKEN_ID = 65535

INDEX_FILE = "index.json"
INDEX_FORMAT = "gptx-token-shards"
INDEX_VERSION = 1
SPLITS = ("train", "val")


def _check_ids(tokens: np.ndarray, where: str) -> None:
    if tokens.size == 0:
        return
    if not np.issubdtype(tokens.dtype, np.integer):
        raise TypeError(f"{where}: token ids must be integers, got dtype {tokens.dtype}")
    hi, lo = int(tokens.max()), int(tokens.min())
    if hi > MAX_TOKEN_ID:
        raise ValueError(
            f"{where}: token id {hi} does not fit a uint16 shard (ids must be below 65536); "
            "use a tokenizer with a vocabulary of at most 65536"
        )
    if lo < 0:
        raise ValueError(f"{where}: negative token id {lo}")


def write_shard(path, tokens) -> dict:
    """Write tokens (1-D integers, each < 65536) as one shard; returns {"file", "tokens", "sha256"}."""
    path = os.fspath(path)
    tokens = np.asarray(tokens)
    if tokens.ndim != 1:
        raise ValueError(f"{path}: tokens must be 1-D, got shape {tokens.shape}")
    _check_ids(tokens, path)
    data = np.ascontiguousarray(tokens, dtype="<u2")
    header = _HEADER.pack(MAGIC, SHARD_VERSION, DTYPE_UINT16, HEADER_SIZE, 0, data.size).ljust(HEADER_SIZE, b"\0")
    digest = hashlib.sha256(header)
    digest.update(memoryview(data).cast("B"))

    def write(f):
        f.write(header)
        f.write(memoryview(data).cast("B"))

    atomic_write(path, write)
    return {"file": os.path.basename(path), "tokens": int(data.size), "sha256": digest.hexdigest()}


def read_shard_header(path) -> dict:
    """Parse and validate a shard header against the file size; ValueError naming the file on any mismatch."""
    path = os.fspath(path)
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        raw = f.read(_HEADER.size)
    if len(raw) < _HEADER.size:
        raise ValueError(f"token shard {path} is truncated: {size} bytes, too short for the {_HEADER.size}-byte header")
    magic, version, dtype_code, header_size, _, count = _HEADER.unpack(raw)
    if magic != MAGIC:
        raise ValueError(f"{path} is not a gptx token shard (magic {magic!r}, expected {MAGIC!r})")
    if version != SHARD_VERSION:
        raise ValueError(f"token shard {path} has format version {version}; this gptx reads version {SHARD_VERSION}")
    if dtype_code not in DTYPE_CODES:
        raise ValueError(f"token shard {path} has unknown dtype code {dtype_code}")
    if header_size < _HEADER.size:
        raise ValueError(f"token shard {path} is corrupt: header size {header_size} < {_HEADER.size}")
    itemsize = DTYPE_CODES[dtype_code].itemsize
    if header_size % itemsize:
        # the ids would be read from an odd offset: every one of them shifted by a byte, silently
        raise ValueError(f"token shard {path} is corrupt: header size {header_size} is not a multiple of the "
                         f"{itemsize}-byte token size")
    expected = header_size + count * itemsize
    if size != expected:
        what = "truncated" if size < expected else "corrupt (longer than its header says)"
        raise ValueError(
            f"token shard {path} is {what}: the header says {count} tokens ({expected} bytes) "
            f"but the file has {size} bytes"
        )
    return {"version": version, "dtype": DTYPE_CODES[dtype_code], "header_size": header_size, "tokens": count}


def read_shard(path) -> np.ndarray:
    """A validated shard as a read-only np.memmap of uint16 (nothing is read until used)."""
    h = read_shard_header(path)
    if h["tokens"] == 0:
        return np.zeros(0, dtype=h["dtype"])  # mmap cannot map zero bytes
    return np.memmap(os.fspath(path), dtype=h["dtype"], mode="r", offset=h["header_size"], shape=(h["tokens"],))


class ShardedTokens:
    """Several shards seen as one 1-D token sequence (len, slicing and batch windows across shard boundaries)."""

    def __init__(self, shards: list, paths: list | None = None):
        self.shards = list(shards)
        self.paths = list(paths) if paths is not None else [None] * len(self.shards)
        self.starts = np.cumsum([0] + [len(s) for s in self.shards]).astype(np.int64)
        self.dtype = self.shards[0].dtype if self.shards else np.dtype("<u2")
        self.ndim = 1

    def __len__(self) -> int:
        return int(self.starts[-1])

    @property
    def shape(self):
        return (len(self),)

    def _slice(self, a: int, b: int) -> np.ndarray:
        if a >= b:
            return np.zeros(0, dtype=self.dtype)
        k = int(np.searchsorted(self.starts, a, side="right")) - 1
        parts = []
        while a < b:
            s0 = int(self.starts[k])
            s1 = int(self.starts[k + 1])
            take = min(b, s1)
            if take > a:
                parts.append(self.shards[k][a - s0:take - s0])
            a = max(a, take)
            k += 1
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def __getitem__(self, key):
        n = len(self)
        if isinstance(key, slice):
            a, b, step = key.indices(n)
            if step != 1:
                return self._slice(0, n)[key]  # rare: strided or reversed slices read everything
            return self._slice(a, b)
        i = int(key)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"index {key} out of range for {n} tokens")
        return self._slice(i, i + 1)[0]

    def windows(self, offsets, length: int) -> np.ndarray:
        """(len(offsets), length) array of tokens[o:o+length] for each offset."""
        return np.stack([self._slice(int(o), int(o) + length) for o in offsets])

    def __array__(self, dtype=None, copy=None):
        out = self._slice(0, len(self))
        return out.astype(dtype) if dtype is not None else np.asarray(out)

    def __repr__(self) -> str:
        return f"ShardedTokens({len(self)} tokens in {len(self.shards)} shards)"


def load_shard_index(directory) -> dict:
    directory = os.fspath(directory)
    path = os.path.join(directory, INDEX_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no token shards in {directory}: {INDEX_FILE} is missing (run `gptx prepare`)")
    with open(path, "rb") as f:
        try:
            index = json.loads(f.read())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is corrupt: invalid JSON ({e.msg} at line {e.lineno})") from None
        except (UnicodeDecodeError, RecursionError) as e:  # RecursionError: nested too deeply
            raise ValueError(f"{path} is corrupt: invalid JSON ({e})") from None
    if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT:
        raise ValueError(f"{path} is not a gptx token shard index")
    if index.get("version", 0) > INDEX_VERSION:
        raise ValueError(f"{path} has index version {index.get('version')}; this gptx reads up to {INDEX_VERSION}")
    return index


def load_shards(directory, split: str = "train", verify: bool = False) -> ShardedTokens:
    """Memory-map one split of a `gptx prepare` folder; every header is checked against its file and the index.

    verify=True also re-hashes each file against the sha256 in the index (reads everything once).
    """
    from gptx._checks import path as _path

    directory = _path("load_shards", "directory", directory)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    index = load_shard_index(directory)
    shards, paths = [], []
    for entry in _split_entries(index, split, os.path.join(directory, INDEX_FILE)):
        path = os.path.join(directory, entry["file"])
        if not os.path.exists(path):
            raise FileNotFoundError(f"token shard {path} listed in {INDEX_FILE} is missing")
        arr = read_shard(path)
        if len(arr) != entry["tokens"]:
            raise ValueError(f"token shard {path} holds {len(arr)} tokens but {INDEX_FILE} says {entry['tokens']}")
        if verify and "sha256" in entry:
            got = _file_sha256(path)
            if got != entry["sha256"]:
                raise ValueError(f"token shard {path} does not match the sha256 in {INDEX_FILE}: the file changed")
        shards.append(arr)
        paths.append(path)
    return ShardedTokens(shards, paths)


def _split_entries(index: dict, split: str, where: str) -> list:
    """The index's entries of one split, each checked: a plain file name inside the folder (never a path that
    leaves it), a non-negative token count and, when present, a sha256 string."""
    entries = index.get(split, [])
    if not isinstance(entries, list):
        raise ValueError(f"{where}: {split!r} must be a list of shard entries")
    for i, e in enumerate(entries):
        what = f"{where}: {split}[{i}]"
        if not isinstance(e, dict):
            raise ValueError(f"{what} must be an object with 'file' and 'tokens'")
        for key in ("file", "tokens"):
            if key not in e:
                raise ValueError(f"{what} has no {key!r}")
        name = e["file"]
        if not isinstance(name, str) or name in ("", ".", "..") or os.path.basename(name) != name \
                or "/" in name or "\\" in name:
            raise ValueError(f"{what}: file {name!r} must be a plain file name inside the folder")
        if isinstance(e["tokens"], bool) or not isinstance(e["tokens"], int) or e["tokens"] < 0:
            raise ValueError(f"{what}: tokens must be a non-negative integer, got {e['tokens']!r}")
        if "sha256" in e and not isinstance(e["sha256"], str):
            raise ValueError(f"{what}: sha256 must be a string")
    return entries


def _file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_split(tokens, directory, split: str, shard_tokens: int) -> list[dict]:
    """Cut a 1-D token array (a memmap is fine) into shards <split>_000000.bin, ... of at most shard_tokens each."""
    if isinstance(shard_tokens, bool) or not isinstance(shard_tokens, (int, np.integer)) or shard_tokens < 1:
        raise ValueError(f"shard_tokens must be a positive integer, got {shard_tokens!r}")
    entries = []
    n = len(tokens)
    for k, start in enumerate(range(0, n, shard_tokens)):
        name = f"{split}_{k:06d}.bin"
        entries.append(write_shard(os.path.join(directory, name), tokens[start:start + shard_tokens]))
    return entries


def write_index(directory, index: dict) -> str:
    """Write index.json, then delete shard files the previous index listed that the new one does not."""
    directory = os.fspath(directory)
    path = os.path.join(directory, INDEX_FILE)
    old_files = set()
    if os.path.exists(path):
        try:
            old = load_shard_index(directory)
            old_files = {e["file"] for s in SPLITS for e in old.get(s, [])}
        except (ValueError, KeyError, TypeError):
            old_files = set()
    body = {"format": INDEX_FORMAT, "version": INDEX_VERSION, "dtype": "uint16"}
    body.update(index)
    atomic_write_json(path, body)
    new_files = {e["file"] for s in SPLITS for e in body.get(s, [])}
    for name in old_files - new_files:
        # Only names our own index listed, and only plain file names (never a path outside the folder).
        if os.path.basename(name) == name and os.path.exists(os.path.join(directory, name)):
            os.unlink(os.path.join(directory, name))
    return path


def val_count(n_tokens: int, val_fraction: float) -> int:
    """Tokens held out for validation: round(n * fraction), the same rule as data.train_val_split."""
    if isinstance(val_fraction, (bool, str)) or not isinstance(val_fraction, (int, float, np.number)) or \
            not 0.0 <= val_fraction < 1.0:  # a NaN fails the comparison too
        raise ValueError(f"val_fraction must be a number in [0, 1), got {val_fraction!r}")
    return int(round(n_tokens * val_fraction))


def prepare(inputs, out_dir, tokenizer="gpt2", shard_tokens: int = 100_000_000, val_fraction: float = 0.1,
            progress: bool = False) -> dict:
    """Tokenize text files once into train/val shards plus index.json and the tokenizer, in out_dir.

    The files are read as UTF-8 in chunks (same ids as encoding each file whole) and joined with the tokenizer's
    end-of-text token between files when it has one. The last val_fraction of the joined tokens is the val split,
    exactly as train_val_split would cut the same array. Returns the index.
    """
    import time

    from gptx._fileio import iter_text_chunks
    from gptx.tokenizer import Tokenizer

    from gptx._checks import path as _path

    _path("prepare", "out_dir", out_dir)
    started = time.perf_counter()
    tok = Tokenizer.from_spec(tokenizer)
    if tok.vocab_size > MAX_TOKEN_ID + 1:
        raise ValueError(f"tokenizer {tok.name} has {tok.vocab_size} ids; uint16 shards hold at most 65536")
    try:
        inputs = [os.fspath(p) for p in ([inputs] if isinstance(inputs, (str, os.PathLike)) else inputs)]
    except TypeError:
        raise TypeError(f"prepare: inputs must be a path or a list of paths, got {inputs!r}") from None
    if not inputs:
        raise ValueError("prepare: inputs holds no input files")
    for p in inputs:
        if not os.path.isfile(p):
            raise FileNotFoundError(f"input file {p} does not exist")
    val_count(0, val_fraction)  # validate before doing any work
    if isinstance(shard_tokens, bool) or not isinstance(shard_tokens, (int, np.integer)) or shard_tokens < 1:
        raise ValueError(f"shard_tokens must be a positive integer, got {shard_tokens!r}")
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=sum(os.path.getsize(p) for p in inputs), unit="B", unit_scale=True, desc="tokenizing")
    # All tokens go to one temporary raw file first: the val split is the END of the stream, whose start is only
    # known once everything is tokenized. Tokens take ~2 bytes vs ~4 bytes of text each, so this is cheap.
    stream = os.path.join(out_dir, f".prepare-{os.getpid()}.u16.tmp")
    sources = []
    try:
        with open(stream, "wb") as f:
            for i, path in enumerate(inputs):
                if i > 0 and tok.eot_token is not None:
                    f.write(np.array([tok.eot_token], dtype="<u2").tobytes())
                n_file = 0
                for texts in _batched(iter_text_chunks(path, 1 << 20), 8):
                    # encode_batch runs the 1 MiB pieces in parallel (tiktoken / tokenizers threads).
                    pieces = [tok.encode_array(t) for t in texts] if tok.kind == "bytes" else tok.encode_batch(texts)
                    for ids in pieces:
                        arr = np.asarray(ids, dtype=np.int64)
                        _check_ids(arr, path)
                        f.write(arr.astype("<u2").tobytes())
                        n_file += arr.size
                    if bar is not None:
                        bar.update(sum(len(t.encode("utf-8")) for t in texts))
                sources.append({"file": os.path.abspath(path), "bytes": os.path.getsize(path), "tokens": n_file})
        n = os.path.getsize(stream) // 2
        all_tokens = np.memmap(stream, dtype="<u2", mode="r") if n else np.zeros(0, dtype="<u2")
        n_val = val_count(n, val_fraction)
        train = write_split(all_tokens[:n - n_val], out_dir, "train", shard_tokens)
        val = write_split(all_tokens[n - n_val:], out_dir, "val", shard_tokens)
        del all_tokens
    finally:
        if bar is not None:
            bar.close()
        if os.path.exists(stream):
            os.unlink(stream)
    tok.save(out_dir)
    index = {
        "tokenizer": {k: v for k, v in tok.to_dict().items() if k in ("kind", "name", "vocab_size", "eot_token")},
        "tokens": {"train": n - n_val, "val": n_val},
        "val_fraction": val_fraction,
        "shard_tokens": shard_tokens,
        "sources": sources,
        "train": train,
        "val": val,
    }
    write_index(out_dir, index)
    index["seconds"] = time.perf_counter() - started
    return index


def _batched(it, n):
    batch = []
    for x in it:
        batch.append(x)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch
