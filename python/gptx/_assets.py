"""Bundled data files (gzip-compressed in gptx/assets/), each checked against the sha256 of the original file."""
from __future__ import annotations

import gzip
import hashlib
import os
import threading

# Folder holding the compressed files; a module attribute so tests can point it at a tampered copy.
ASSET_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets")

# name -> (file in ASSET_DIR, sha256 of the uncompressed original, uncompressed size in bytes).
# The hashes are those published with the sources (see assets/NOTICE.md); gpt2.tiktoken's equals tiktoken's own
# expected hash for r50k_base.
ASSETS = {
    "tinyshakespeare.txt": (
        "tinyshakespeare.txt.gz",
        "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
        1_115_394,
    ),
    "gpt2.tiktoken": (
        "gpt2.tiktoken.gz",
        "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930",
        835_554,
    ),
}

_cache: dict[tuple[str, str], bytes] = {}
_lock = threading.Lock()


class AssetError(ValueError):
    """A bundled file is missing, unreadable or does not match its recorded hash."""


def asset_path(name: str) -> str:
    if name not in ASSETS:
        raise KeyError(f"unknown bundled asset {name!r}; known: {sorted(ASSETS)}")
    return os.path.join(ASSET_DIR, ASSETS[name][0])


def asset_bytes(name: str) -> bytes:
    """The original bytes of a bundled file, decompressed and verified (cached per folder after the first load)."""
    path = asset_path(name)
    _, expected_sha, expected_size = ASSETS[name]
    key = (ASSET_DIR, name)
    with _lock:
        if key in _cache:
            return _cache[key]
        try:
            with gzip.open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise AssetError(f"bundled file {path} is missing; the gptx installation is incomplete") from None
        except (OSError, EOFError) as e:
            raise AssetError(f"bundled file {path} is not a readable gzip file ({e}); reinstall gptx") from None
        got = hashlib.sha256(data).hexdigest()
        if got != expected_sha or len(data) != expected_size:
            raise AssetError(
                f"bundled file {path} does not match its recorded sha256: expected {expected_sha} "
                f"({expected_size} bytes), got {got} ({len(data)} bytes); the copy is damaged or was altered"
            )
        _cache[key] = data
        return data


def clear_cache() -> None:
    with _lock:
        _cache.clear()
