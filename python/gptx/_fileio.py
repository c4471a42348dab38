"""File helpers for the data modules: atomic writes, strict UTF-8 reads, and text chunks that tokenize exactly."""
from __future__ import annotations

import json
import os
import secrets
from typing import Iterator

import numpy as np

# Default chunk for streaming a large text file through a tokenizer: 4 MiB keeps memory small while still giving
# the tokenizer long inputs (a GPT-2 encode of 4 MiB takes ~0.5 s, so per-call overhead is negligible).
CHUNK_BYTES = 4 << 20


def atomic_write(path: str, write) -> None:
    """Create path so that readers see either the old file or the complete new one, never a partial write.

    write(f) fills a temporary file in the same folder, which then replaces path in one os.replace.
    """
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    # os.open with 0o666 (not mkstemp's 0o600) so the final file gets the usual umask-based permissions.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno is not None and e.filename is None:
            # a failed write or fsync (e.g. disk full) says no file name: name the file it was for
            raise OSError(e.errno, e.strerror, path) from None
        raise


def atomic_write_bytes(path: str, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write_json(path: str, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode("utf-8"))


def decode_utf8(data: bytes, path: str, offset: int = 0) -> str:
    """Strict UTF-8 decode whose error names the file and the byte offset of the first bad byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{path} is not valid UTF-8: byte offset {offset + e.start} ({data[e.start:e.start + 4]!r}): {e.reason}"
        ) from None


def read_text(path: str) -> str:
    with open(path, "rb") as f:
        data = f.read()
    return decode_utf8(data, str(path))


def _is_word_byte(b: int) -> bool:
    # Printable ASCII other than space: never part of a whitespace token under any Unicode definition of \s.
    return 0x21 <= b <= 0x7E


def _last_safe_split(buf: bytes | bytearray, lo: int) -> int:
    """Index just after the last "\\n" in buf[lo:] whose neighbours are both printable non-space ASCII, or -1.

    GPT-2's pre-tokenizer regex (tiktoken's r50k and Hugging Face's ByteLevel) never puts a newline and a
    non-whitespace character in one piece, and a lone "\\n" between two such characters is its own piece whether or
    not the text ends right after it. So cutting after such a newline yields exactly the pieces of the whole text,
    and encoding chunk by chunk equals encoding the whole file.
    """
    i = len(buf) - 1
    while True:
        i = buf.rfind(b"\n", lo, i)
        if i <= 0 or i + 1 >= len(buf):
            return -1
        if _is_word_byte(buf[i - 1]) and _is_word_byte(buf[i + 1]):
            return i + 1


def iter_byte_chunks(path: str, chunk_bytes: int = CHUNK_BYTES) -> Iterator[tuple[int, bytes]]:
    """Yield (offset, chunk) covering the file, each cut only at a safe newline (see _last_safe_split).

    A file with no safe newline is yielded as one chunk (correctness over memory).
    """
    if chunk_bytes < 2:
        raise ValueError("chunk_bytes must be at least 2")
    pending = bytearray()
    offset = 0
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk_bytes)
            if not block:
                break
            pending += block
            if len(pending) < chunk_bytes:
                continue
            cut = _last_safe_split(pending, max(0, len(pending) - 2 * chunk_bytes))
            if cut <= 0:
                continue
            yield offset, bytes(pending[:cut])
            offset += cut
            del pending[:cut]
    if pending:
        yield offset, bytes(pending)


def iter_text_chunks(path: str, chunk_bytes: int = CHUNK_BYTES) -> Iterator[str]:
    """The file as strict UTF-8 text, in chunks that tokenize exactly like the whole (cuts fall after ASCII bytes)."""
    for offset, chunk in iter_byte_chunks(path, chunk_bytes):
        yield decode_utf8(chunk, str(path), offset)


def to_json_types(obj):
    """numpy scalars/arrays inside a generator state -> Python ints/lists, so json.dumps accepts it."""
    if isinstance(obj, dict):
        return {k: to_json_types(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_json_types(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.integer):
        return int(obj)
    return obj
